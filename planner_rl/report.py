"""Paper-style reports from runs and sweeps: markdown tables, the generalization heatmap, training curves and the
theory check, as PNG.

    python -m planner_rl.report multirun/generalization/small            # a sweep dir (its jobs' run dirs)
    python -m planner_rl.report outputs/long_horizon/seed0 outputs/long_horizon/seed1 --out reports/long_horizon

Reads what the jobs wrote: .hydra/overrides.yaml (the variant), status.json (failed jobs), results.json (the
SFT-only and final evaluations of `planner_rl.train`, or the summary of `planner_rl.evaluate`), metrics.jsonl
(curves) and eval/step_*.json (the theory check); a stage evaluated with eval.also_valid_actions gets a second row,
`valid-action decoding`. Runs are grouped by their overrides without `seed`; every cell is
mean ± standard deviation over the seeds of its group (n in the table). Writes into --out (default: <first dir>/report):

    report.md         tables: per variant, stage and task, SR / ASAT / ASST / min-step SR / P_0 / single-step
                      accuracy; the generalization matrix when runs were trained on one task and evaluated on several;
                      failed jobs
    generalization.png  the SR matrix as a heatmap (rows: trained on, columns: evaluated on)
    curves.png        reward, single-step accuracy and eval SR per step (and against sampled tokens)
    theory.png        predicted min-step success (P_0) vs measured, per task and evaluation
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

METRICS = ("sr", "asat", "asst", "min_step_sr", "p0", "step_accuracy")
MATRIX_METRICS = {"sr": "SR", "step_accuracy": "Single-step accuracy on the column task's test states"}
SKIP_OVERRIDES = ("seed", "+sweep", "hydra.")  # not part of a variant's name


@dataclass
class Run:
    path: Path
    variant: str  # the overrides that are not the seed, e.g. "env.tasks=[burger] sft.epochs=4"
    seed: int | None
    status: str  # ok | failed | missing (no status.json and no results)
    error: str | None
    stages: dict[str, dict[str, float]]  # "sft_only" / "final" (train) or "eval" (evaluate) -> flat metrics
    train_tasks: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _overrides(path: Path) -> list[str]:
    f = path / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(f)) if f.exists() else []


def load_run(path: Path) -> Run:
    overrides = _overrides(path)
    seed = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("seed=")), None)
    variant = " ".join(o for o in overrides if not o.startswith(SKIP_OVERRIDES)) or "(defaults)"
    status = json.loads((path / "status.json").read_text()) if (path / "status.json").exists() else {}
    config = (
        OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml")) if (path / ".hydra").exists() else {}
    )
    if seed is None and isinstance(config.get("seed"), int):
        seed = config["seed"]
    stages: dict[str, dict[str, float]] = {}
    results = path / "results.json"
    if results.exists():
        doc = json.loads(results.read_text())
        if "final" in doc:  # planner_rl.train
            stages = {k: _strip(doc[k]) for k in ("sft_only", "final") if isinstance(doc.get(k), dict)}
        elif "summary" in doc:  # planner_rl.evaluate
            stages = {"eval": doc["summary"]}
        stages = {k: v for name, metrics in stages.items() for k, v in split_restricted(name, metrics).items()}
    tasks = config.get("env", {}).get("tasks", [])
    run_status = status.get("status", "ok" if stages else "missing")
    return Run(path, variant, seed, run_status, status.get("error"), stages, tasks if isinstance(tasks, list) else
               [tasks], config)  # fmt: skip


def _strip(metrics: dict) -> dict[str, float]:
    return {k.removeprefix("eval/"): v for k, v in metrics.items()}


def split_restricted(stage: str, metrics: dict) -> dict[str, dict]:
    """{stage: the free-generation metrics} and, when eval.also_valid_actions added `valid_actions/...` metrics,
    {stage + "_valid_actions": those, unprefixed}: a stage of its own, so it gets its own table rows."""
    key = "valid_actions/"
    free = {k: v for k, v in metrics.items() if not k.startswith(key)}
    restricted = {k.removeprefix(key): v for k, v in metrics.items() if k.startswith(key)}
    return {stage: free} | ({f"{stage}_valid_actions": restricted} if restricted else {})


def find_runs(dirs: list[Path]) -> list[Run]:
    """The run dirs under each given dir (itself if it is one): any dir with .hydra/ or status.json."""
    out = []
    for d in dirs:
        cands = [d] if (d / ".hydra").exists() or (d / "status.json").exists() else sorted(
            (p for p in d.iterdir() if p.is_dir() and ((p / ".hydra").exists() or (p / "status.json").exists())),
            key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
        )  # fmt: skip
        out += [load_run(p) for p in cands]
    return out


# --- numbers -----------------------------------------------------------------------------------------------------
def mean_std(values: list[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values (NaN, n=0 without any)."""
    xs = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return float("nan"), float("nan"), 0
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0, len(xs)


def cell(values: list[float | None]) -> str:
    m, s, n = mean_std(values)
    return "-" if n == 0 else f"{m:.2f} ± {s:.2f}" if n > 1 else f"{m:.2f}"


def eval_tasks(run: Run) -> list[str]:
    stage = next(iter(run.stages.values()), {})
    return sorted({k.split("/")[0] for k in stage if k.endswith("/sr") and k.count("/") == 1}, key=_task_order)


@functools.cache
def _task_order(name: str) -> tuple:
    """Robotouille's task order, then Blocksworld by blocks, then paths, for rows and columns (once per name)."""
    from planner_rl.env.families import task_rank

    return task_rank(name)


STAGE_LABELS = {"sft_only": "step 0 (SFT-only; untrained when sft.epochs=0)",
                "sft_only_valid_actions": "step 0 (SFT-only), valid-action decoding", "final": "final (after GRPO)",
                "final_valid_actions": "final (after GRPO), valid-action decoding", "eval": "evaluation",
                "eval_valid_actions": "evaluation, valid-action decoding"}  # fmt: skip


def variant_tables(runs: list[Run]) -> str:
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.stages:
            groups[r.variant].append(r)
    lines = []
    for variant, members in groups.items():
        seeds = ", ".join(str(r.seed) for r in members)
        lines += [f"### {variant}", "", f"seeds: {seeds} (n = {len(members)})", ""]
        lines += ["| stage | task | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
        for stage in [s for s in STAGE_LABELS if any(s in r.stages for r in members)]:
            for task in [*eval_tasks(members[0]), None]:
                prefix = f"{task}/" if task else ""
                vals = [cell([r.stages.get(stage, {}).get(prefix + m) for r in members]) for m in METRICS]
                lines.append(f"| {STAGE_LABELS[stage]} | {task or 'all'} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def generalization(
    runs: list[Run], stage: str = "final", metric: str = "sr"
) -> tuple[list[str], list[str], list[list[tuple]]] | None:
    """(trained-on rows, evaluated-on columns, [row][col] = (mean, std, n) of `metric`: sr, or step_accuracy on
    the column task's test states) when each run trained on one task and was evaluated on more than one, and some
    run logged `metric`; else None."""
    usable = [r for r in runs if stage in r.stages and len(r.train_tasks) == 1 and len(eval_tasks(r)) > 1]
    if not usable:
        return None
    rows = sorted({r.train_tasks[0] for r in usable}, key=_task_order)
    cols = sorted({t for r in usable for t in eval_tasks(r)}, key=_task_order)
    grid = [[mean_std([r.stages[stage].get(f"{c}/{metric}") for r in usable if r.train_tasks[0] == row]) for c in cols]
            for row in rows]  # fmt: skip
    return (rows, cols, grid) if any(n for row in grid for _, _, n in row) else None


def generalization_table(runs: list[Run]) -> str:
    out = []
    for (metric, label), stage in itertools.product(MATRIX_METRICS.items(), ("sft_only", "final")):
        g = generalization(runs, stage, metric)
        if g is None:
            continue
        rows, cols, grid = g
        out += [f"{label}, {STAGE_LABELS[stage]}: rows = trained on, columns = evaluated on", ""]
        out += ["| trained on \\ evaluated on | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for row, vals in zip(rows, grid, strict=True):
            out.append(
                f"| {row} | " + " | ".join("-" if n == 0 else f"{m:.2f} ± {s:.2f} (n={n})" for m, s, n in vals) + " |"
            )
        out.append("")
    return "\n".join(out)


def failures(runs: list[Run]) -> str:
    bad = [r for r in runs if r.status != "ok"]
    if not bad:
        return "all jobs completed"
    return "\n".join(f"- {r.path.name} ({r.variant}, seed {r.seed}): {r.status}: {r.error}" for r in bad)


# --- plots -------------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_generalization(runs: list[Run], out: Path) -> Path | None:
    """The final SR matrix as a heatmap and, beside it when the runs logged it, the single-step accuracy matrix."""
    panels = [(m, g) for m in MATRIX_METRICS if (g := generalization(runs, "final", m)) is not None]
    if not panels:
        return None
    plt = _pyplot()
    rows, cols = panels[0][1][0], panels[0][1][1]
    fig, axes = plt.subplots(1, len(panels), figsize=((1.6 + 1.4 * len(cols)) * len(panels), 1.4 + 0.8 * len(rows)),
                             squeeze=False)  # fmt: skip
    for ax, (metric, (rows, cols, grid)) in zip(axes[0], panels, strict=True):
        values = [[m if n else float("nan") for m, _, n in r] for r in grid]
        im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("trained on")
        for i, r in enumerate(grid):
            for j, (m, s, n) in enumerate(r):
                ax.text(j, i, "-" if not n else f"{m:.2f}\n±{s:.2f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im, ax=ax, label=f"{'SR' if metric == 'sr' else 'single-step accuracy'} (final)")
    fig.tight_layout()
    path = out / "generalization.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _short(label: str, width: int = 70) -> str:
    return label if len(label) <= width else label[: width - 3] + "..."


def read_metrics(run: Run) -> list[dict]:
    """metrics.jsonl's records; a damaged line (a live or killed run's last one) is skipped."""
    f = run.path / "metrics.jsonl"
    rows = []
    for line in f.read_text(errors="replace").splitlines() if f.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def plot_curves(runs: list[Run], out: Path) -> Path | None:
    series = [(r, read_metrics(r)) for r in runs]
    series = [(r, rows) for r, rows in series if any("reward/mean" in x for x in rows)]
    if not series:
        return None
    plt = _pyplot()
    panels = [("train/step", "reward/mean"), ("train/step", "eval/step_accuracy"), ("train/step", "eval/sr"),
              ("train/generated_tokens", "reward/mean")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    colors = {v: f"C{i}" for i, v in enumerate(dict.fromkeys(r.variant for r, _ in series))}
    for ax, (x, y) in zip(axes, panels, strict=True):
        for r, rows in series:
            pts = [(row[x], row[y]) for row in rows if x in row and row.get(y) is not None]
            if y.startswith("eval/"):  # evaluations are logged at train/step, step 0 included
                pts = [(row["train/step"], row[y]) for row in rows if "train/step" in row and row.get(y) is not None]
            if pts:
                marker = "." if len(pts) < 30 else None
                ax.plot(*zip(*pts, strict=True), color=colors[r.variant], alpha=0.8, marker=marker,
                        label=_short(f"{r.variant} seed {r.seed}"))  # fmt: skip
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.05 + 0.03 * min(len(labels), 12) / 2, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=6, frameon=False)
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(run_dir: Path) -> Path:
    """<run dir>/training.png for one finished run of the main job: the GRPO training reward per step (and
    `pool/label_p` at each build of the prompt pool, where logged), single-step accuracy on the test states at each
    evaluation (step 0: SFT-only), and closed-loop SR before and after GRPO."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((run_dir / "results.json").read_text())
    reward = [(r["train/step"], r["reward/mean"]) for r in rows if "reward/mean" in r]
    accuracy = [(r["train/step"], r["eval/step_accuracy"]) for r in rows if r.get("eval/step_accuracy") is not None]
    pool = [(r["train/step"] - 1, r["pool/label_p"]) for r in rows if "pool/label_p" in r]  # at the step it was built
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, pts, label in [(axes[0], reward, "reward/mean (training)"), (axes[1], accuracy, "eval/step_accuracy")]:
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 30 else None)
        ax.set_xlabel("train/step")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
    sr = [results[k].get("eval/sr") if results.get(k) else None for k in ("sft_only", "final")]
    if pool:  # the expected reward on the pool's prompts: a learning curve where the pool is filtered again
        axes[0].plot(*zip(*pool, strict=True), marker="o", color="C3", label="pool/label_p")
        axes[0].legend(fontsize=7, loc="lower right")
    axes[2].bar(["SFT-only", "SFT+GRPO"], [v if v is not None else 0.0 for v in sr], color=["C7", "C0"])
    for x, v in enumerate(sr):
        axes[2].text(x, (v or 0.0) + 0.02, "-" if v is None else f"{v:.2f}", ha="center")
    axes[2].set_ylim(0, 1.1)
    axes[2].set_ylabel("eval/sr (multi-turn)")
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    path = run_dir / "training.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def theory_points(runs: list[Run]) -> list[tuple[str, float, float]]:
    """(label, predicted P_0, measured min-step SR) per task of every evaluation file of every run."""
    pts = []
    for r in runs:
        files = sorted((r.path / "eval").glob("step_*.json")) or ([r.path / "results.json"] if r.stages.get("eval")
                                                                   else [])  # fmt: skip
        for f in files:
            summary = json.loads(f.read_text()).get("summary", {})
            for key, p0 in summary.items():
                if key.endswith("/p0") and p0 is not None and summary.get(key[:-3] + "/min_step_sr") is not None:
                    pts.append((key[:-3], p0, summary[key[:-3] + "/min_step_sr"]))
    return pts


def plot_theory(runs: list[Run], out: Path) -> Path | None:
    pts = theory_points(runs)
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    tasks = sorted({t for t, _, _ in pts}, key=_task_order)
    for i, t in enumerate(tasks):
        xs, ys = zip(*[(p, m) for name, p, m in pts if name == t], strict=True)
        ax.scatter(xs, ys, s=14, color=f"C{i}", label=t, alpha=0.7)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("predicted min-step success P_0 (product of expert-answer probabilities)")
    ax.set_ylabel("measured min-step SR")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "theory.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- the report --------------------------------------------------------------------------------------------------
def write_report(dirs: list[Path], out: Path) -> Path:
    runs = find_runs(dirs)
    if not runs:
        raise FileNotFoundError(f"no run dirs (with .hydra/ or status.json) in {', '.join(map(str, dirs))}")
    out.mkdir(parents=True, exist_ok=True)
    plots = [p for p in (plot_generalization(runs, out), plot_curves(runs, out), plot_theory(runs, out)) if p]
    done = [r for r in runs if r.stages]
    evaluation = next((r.config.get("eval", {}) for r in done if r.config), {})
    text = [
        f"# Report: {', '.join(str(d) for d in dirs)}",
        "",
        f"{len(runs)} jobs, {len(done)} with results. Evaluation protocol: budget {evaluation.get('budget', '?')}, "
        f"invalid actions {evaluation.get('invalid', '?')}, temperature {evaluation.get('temperature', '?')}. "
        "Cells: mean ± sample std over seeds. p0: the theory check's predicted min-step SR (greedy: the fraction of "
        "instances whose expert plan greedy decoding replays); step_accuracy: greedy single-step accuracy on "
        "the expert states of the evaluation layouts: a task's row on that task's, `all` on the training tasks'.",
        "",
        "## Results by variant",
        "",
        variant_tables(runs),
    ]
    gen = generalization_table(runs)
    if gen:
        text += ["## Generalization", "", gen]
    text += ["## Jobs", "", failures(runs), ""]
    if plots:
        text += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="sweep dirs (multirun/...) or run dirs (outputs/...)")
    ap.add_argument("--out", type=Path, default=None, help="output dir (default: <first dir>/report)")
    args = ap.parse_args(argv)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        raise SystemExit(f"error: not a directory: {', '.join(map(str, missing))}")
    try:
        path = write_report(args.dirs, args.out or args.dirs[0] / "report")
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(path.read_text())
    print(f"report: {path}")


if __name__ == "__main__":
    main()
