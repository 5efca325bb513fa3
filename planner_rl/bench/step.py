"""Benchmark: planner_rl's GRPO step by phase, against its floor, and how time and memory grow (tiny model, CPU).

    python -m planner_rl.bench.step                          # 8 prompts, G in 4 8 16 32, history 0 / 5 / all
    python -m planner_rl.bench.step --groups 4 8 --steps 4 --out outputs/bench/step.json

Every figure comes from the real loop: `python -m planner_rl.train` in a fresh process and run dir, the tiny model
after a short SFT (trained once, then copied into each run dir as its finished SFT stage, so the runs go straight
to GRPO), double-cheeseburger states with the brief system message, the expert_match reward, beta 0, mu 1. Per run:
the loop's `perf/*` phases per step (the first step dropped as warm-up, then the median) and the process's peak RSS
(`ru_maxrss` of the child). The floor is what no GRPO step can go below: one batched `generate` of the N x G samples
plus one forward+backward of the batch (`planner_rl.packing.group_log_probs`, micro-batches of 16 sequences),
timed in this process on the same model and prompts for every (G, history) measured, with the memory that one such
step adds (the rise of VmHWM after resetting it through /proc/self/clear_refs). Writes JSON and two PNG plots
(time by phase and memory, against G and against prompt length); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"
# the benchmark's data: 10 double-cheeseburger layouts (210 prompts), one test layout for the loop's final evaluation
DATA = {"env.tasks": "[double_cheeseburger]", "env.train_seeds": "1000-1009", "env.test_seeds": "[42]",
        "prompt.system": "brief"}  # fmt: skip
# what the loop does besides GRPO steps, made cheap: no sample tables or checkpoints before the end, a final
# evaluation of one layout with one-token answers (a run's timings never include it)
QUIET = {"sft.eval_examples": "1", "sft.max_new_tokens": "1", "eval.max_new_tokens": "1", "grpo.eval_every": "0",
         "grpo.sample_every": "0", "trainer.checkpoint_every": "0", "logger": "none"}  # fmt: skip
PHASES = ("generate", "score", "logprob", "forward_backward", "optimizer", "sync")


def bench_overrides(history: int = 5) -> list[str]:
    return [f"{k}={v}" for k, v in (DATA | {"prompt.history": str(history)}).items()]


def compose_train(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from planner_rl.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_measured(cmd: list[str], log: Path) -> float:
    """Run `cmd`, output into `log`; its peak resident memory in MiB (the child's own ru_maxrss)."""
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def train_command(overrides: dict[str, str], run_dir: Path) -> list[str]:
    keys = DATA | QUIET | overrides | {"hydra.run.dir": str(run_dir)}  # later keys win
    return [sys.executable, "-m", "planner_rl.train", *(f"{k}={v}" for k, v in keys.items())]


def sft_model(work: Path, epochs: int = 1) -> Path:
    """A run dir whose finished SFT stage (`sft_model/`) is the benchmark's model; trained once, then reused."""
    root = work / "sft"
    if not (root / "sft_model" / "COMPLETE").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        cmd = train_command({"sft.epochs": str(epochs), "sft.lr": "3e-3", "grpo.steps": "0"}, root)
        t = time.perf_counter()
        rss = run_measured(cmd, root / "log.txt")
        (root / "bench.json").write_text(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": rss}))
        print(f"SFT model: {epochs} epoch(s) in {time.perf_counter() - t:.0f} s, peak RSS {rss:.0f} MiB", flush=True)
    return root


def run_train(overrides: list[str], run_dir: Path, model_root: Path) -> float:
    """The GRPO loop in a fresh process and run dir, starting from `model_root`'s SFT stage; its peak RSS (MiB)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shutil.copytree(model_root / "sft_model", run_dir / "sft_model")
    for name in ("metrics.jsonl", "samples.jsonl"):  # the records the SFT stage's offsets refer to
        shutil.copy(model_root / name, run_dir / name)
    keys = dict(o.split("=", 1) for o in overrides)
    return run_measured(train_command(keys, run_dir), run_dir / "log.txt")


def step_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "perf/step_s" in r]


def phases(records: list[dict]) -> dict[str, float]:
    """Median seconds per phase over the steps after the first, and the step's own total."""
    steps = records[1:] or records
    med = {k: statistics.median(r[k] for r in steps) for k in steps[0] if k.startswith("perf/") and k.endswith("_s")}
    out = {
        "generate": med["perf/generate_s"], "score": med["perf/score_s"], "logprob": med["perf/logprob_s"],
        "forward_backward": med["perf/update_s"] - med["perf/optimizer_s"], "optimizer": med["perf/optimizer_s"],
        "sync": med["perf/sync_s"], "step": med["perf/step_s"],
    }  # fmt: skip
    out["other"] = out["step"] - sum(out[p] for p in PHASES)
    out["prompt_tokens"] = statistics.mean(r["rollout/prompt_tokens"] for r in steps)
    out["completion_tokens"] = statistics.mean(r["rollout/completion_tokens"] for r in steps)
    return out


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak since the last `reset_peak` (VmHWM), in MiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS


def floors(model_root: Path, prompts: int, configs: list[tuple[int, int]], max_new_tokens: int, repeats: int) -> dict:
    """Per (G, history): seconds of one batched generate of the batch and of one forward+backward of it (median of
    `repeats`), and the most resident memory that pair added above what the process held before it."""
    import torch

    from planner_rl.data import build_dataset
    from planner_rl.model import ModelConfig, load_model_and_tokenizer
    from planner_rl.packing import group_log_probs
    from planner_rl.rollout.hf import encode_prompt, generate

    model, tok = load_model_and_tokenizer(ModelConfig(path=str(model_root / "sft_model")))
    out = {}
    for n, (group, history) in enumerate(configs):
        rows = build_dataset(compose_train(bench_overrides(history)))[0]["train"].to_list()
        step = max(1, len(rows) // prompts)
        batch = [encode_prompt(tok, rows[i * step]["prompt"]) for i in range(prompts)]  # spread over the layouts
        micro = max(1, 16 // group)  # groups per micro-batch, as trainer.micro_batch_size=16 in the loop
        times: dict[str, list[float]] = {"generate": [], "forward_backward": []}
        added = 0.0
        for r in range(repeats + (n == 0)):  # the process's first round warms up
            torch.manual_seed(r)
            before = rss_mb()
            reset_peak()
            t = time.perf_counter()
            comps = generate(model, tok, batch, n=group, max_new_tokens=max_new_tokens, temperature=1.0, batch_size=64)
            gen = time.perf_counter() - t
            model.train()
            t = time.perf_counter()
            tokens = sum(len(c.token_ids) for c in comps)
            for s in range(0, prompts, micro):
                cs = [c.token_ids for c in comps[s * group : (s + micro) * group]]
                logp, mask = group_log_probs(model, batch[s : s + micro], cs, tok.pad_token_id, 1.0)
                ((logp * mask).sum() / tokens).backward()
            fb = time.perf_counter() - t
            model.zero_grad(set_to_none=True)
            model.eval()
            added = max(added, rss_mb("VmHWM") - before)
            if r or n:
                times["generate"].append(gen)
                times["forward_backward"].append(fb)
        fl = {k: statistics.median(v) for k, v in times.items()}
        out[group, history] = fl | {"floor": fl["generate"] + fl["forward_backward"], "added_rss_mb": added}
    return out


def plot(points: list[dict], key: str, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p[key] for p in points]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    bottom = [0.0] * len(points)
    for name in (*PHASES, "other"):
        vals = [max(p["phases"][name], 0.0) for p in points]
        if max(vals) > 0.005:
            a.bar([str(x) for x in xs], vals, bottom=bottom, label=name)
            bottom = [u + v for u, v in zip(bottom, vals, strict=True)]
    a.plot([str(x) for x in xs], [p["floor"]["floor"] for p in points], "k_", markersize=30, mew=2,
           label="floor: generate + forward+backward")  # fmt: skip
    a.set_xlabel(label)
    a.set_ylabel("seconds per GRPO step")
    a.legend(fontsize=8)
    b.plot([str(x) for x in xs], [p["peak_rss_mb"] for p in points], marker="o", label="peak RSS of the job")
    b.plot([str(x) for x in xs], [p["floor"]["added_rss_mb"] for p in points], marker="s",
           label="added by one step (generate + forward+backward)")  # fmt: skip
    b.set_xlabel(label)
    b.set_ylabel("MiB")
    b.set_ylim(bottom=0)
    b.legend(fontsize=8)
    fig.suptitle(f"planner_rl GRPO step, tiny model, CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--histories", type=int, nargs="+", default=[0, 5, -1], help="prompt.history values, at G=8")
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per run (the first is warm-up)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2, help="floor measurements (after one warm-up)")
    ap.add_argument("--out", default="outputs/bench/step.json")
    args = ap.parse_args()
    out = Path(args.out)
    work = out.parent / "runs"
    model_root = sft_model(work)
    base = [
        f"grpo.steps={args.steps}",
        f"grpo.prompts_per_step={args.prompts}",
        "trainer.micro_batch_size=16",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        "trainer.lr=5e-4",
    ]
    runs: dict[tuple[int, int], dict] = {}

    def measure(group: int, history: int) -> dict:
        if (group, history) not in runs:
            run = work / f"step_g{group}_h{history}"
            rss = run_train([*base, f"grpo.group_size={group}", f"prompt.history={history}"], run, model_root)
            runs[group, history] = {"group": group, "history": history, "peak_rss_mb": rss,
                                    "phases": phases(step_records(run))}  # fmt: skip
            p = runs[group, history]["phases"]
            print(
                f"G={group:<3} history={history:<3} prompt {p['prompt_tokens']:.0f} tokens: step {p['step']:.2f} s "
                f"(generate {p['generate']:.2f}, forward+backward {p['forward_backward']:.2f}, optimizer "
                f"{p['optimizer']:.3f}, other {p['other']:.3f}), peak RSS {rss:.0f} MiB",
                flush=True,
            )
        return runs[group, history]

    by_group = [measure(g, 5) for g in args.groups]
    by_history = [measure(8, h) for h in args.histories]
    main_run = measure(8, 5)
    fls = floors(model_root, args.prompts, [(8, 5), *(k for k in runs if k != (8, 5))], args.max_new_tokens,
                 args.repeats)  # fmt: skip
    for key, fl in fls.items():
        runs[key]["floor"] = fl
        runs[key]["step_over_floor"] = runs[key]["phases"]["step"] / fl["floor"]
    fl, p = fls[8, 5], main_run["phases"]
    result = {
        "what": "planner_rl GRPO step by phase (median over steps after the first), its floor, scaling in G and prompt",
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "args": vars(args),
        "main": main_run | {"step_over_own_floor": p["step"] / (p["generate"] + p["forward_backward"])},
        "sft_stage": json.loads((model_root / "bench.json").read_text()),
        "by_group": by_group,
        "by_history": by_history,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for pts in (by_group, by_history):
        for q in pts:
            q["prompt_tokens"] = round(q["phases"]["prompt_tokens"])
    plot(by_group, "group", "group size G (8 prompts a step)", out.parent / "step_by_group.png")
    plot(by_history, "prompt_tokens", "mean prompt tokens (history 0 / 5 / all)", out.parent / "step_by_prompt.png")

    print(f"\nGRPO step, {args.prompts} prompts x 8 samples, OMP_NUM_THREADS={result['threads']}:")
    for name in (*PHASES, "other"):
        print(f"  {name:<17} {p[name]:7.3f} s  {p[name] / p['step']:6.1%}")
    print(f"  {'step':<17} {p['step']:7.3f} s")
    print(
        f"floor: batched generate {fl['generate']:.3f} s + one forward+backward {fl['forward_backward']:.3f} s = "
        f"{fl['floor']:.3f} s; step / floor = {result['main']['step_over_floor']:.2f}x "
        f"(against the loop's own generate + forward+backward: {result['main']['step_over_own_floor']:.2f}x)"
    )
    for q in runs.values():
        print(f"G={q['group']:<3} history={q['history']:<3} step {q['phases']['step']:.2f} s, floor "
              f"{q['floor']['floor']:.2f} s ({q['step_over_floor']:.2f}x); peak RSS {q['peak_rss_mb']:.0f} MiB, "
              f"one step adds {q['floor']['added_rss_mb']:.0f} MiB")  # fmt: skip
    print(
        f"peak RSS: {main_run['peak_rss_mb']:.0f} MiB (GRPO run), {result['sft_stage']['peak_rss_mb']:.0f} MiB "
        "(SFT stage + evaluation)"
    )
    print(f"wrote {out}, {out.parent / 'step_by_group.png'}, {out.parent / 'step_by_prompt.png'}")


if __name__ == "__main__":
    main()
