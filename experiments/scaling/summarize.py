"""Table (markdown) and plot of the learning study: single-step test accuracy against CPU wall-clock minutes.

python experiments/scaling/summarize.py outputs/scaling     # -> table on stdout, outputs/scaling/study.png
"""

import json
import sys
from pathlib import Path


def runs(root: Path) -> list[dict]:
    out = []
    for d in sorted(p for p in root.iterdir() if (p / "metrics.jsonl").exists()):
        evals = [r for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "eval/sft_accuracy" in r]
        if not evals:
            continue
        seconds = float((d / "time.txt").read_text()) if (d / "time.txt").exists() else float("nan")
        out.append({"name": d.name, "evals": evals, "minutes": seconds / 60})
    return out


def main(root: Path) -> None:
    rows = runs(root)
    print("| run | epochs | accuracy | optimal | valid | tokens/s | minutes |\n|---|---|---|---|---|---|---|")
    for r in rows:
        last = r["evals"][-1]
        print(f"| {r['name']} | {last['sft/epoch']} | {last['eval/sft_accuracy']:.3f} | "
              f"{last['eval/sft_optimal_rate']:.3f} | {last['eval/sft_valid_rate']:.3f} | "
              f"{last['perf/sft_tokens_per_s']:.0f} | {r['minutes']:.1f} |")  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:  # epochs are equally long, so epoch k ends at k/n of the run's time
        n = len(r["evals"])
        ax.plot([r["minutes"] * (k + 1) / n for k in range(n)], [e["eval/sft_accuracy"] for e in r["evals"]],
                marker="o", label=r["name"])  # fmt: skip
    ax.set(xlabel="wall-clock minutes (1 thread)", ylabel="single-step test accuracy", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(root / "study.png", dpi=110)
    print(f"\nplot: {root / 'study.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/scaling"))
