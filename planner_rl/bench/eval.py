"""Benchmark of the multi-turn evaluator (`make bench`): lockstep vs one episode at a time, side by side in one run.

    python -m planner_rl.bench.eval                       # 4 paper tasks x 5 test seeds, untrained tiny model
    python -m planner_rl.bench.eval --model outputs/long_horizon/<run>/sft_model --tasks all --seeds 10 --out x.json

Both play the same episodes (greedy, the same memo of answered prompts, the expert cache warm) and must give the
same results (printed); the figures are episodes/s, generate calls and the speed-up factor. With `--theory`, also
the time of the theory check (one teacher-forced forward per expert state). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from planner_rl.data import expert_trajectory, task_list
from planner_rl.evaluate import EvalConfig, evaluate
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig
from planner_rl.rollout.hf import HFRollout

TEST_SEEDS = [42, 84, 126, 168, 210, 252, 294, 336, 378, 420]


class CountingRollout(HFRollout):
    calls = 0

    def generate(self, prompts, n, sampling, seeds=None):
        self.calls += 1
        return super().generate(prompts, n, sampling, seeds)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a saved model dir (default: the untrained tiny model)")
    ap.add_argument("--tasks", nargs="+", default=["cheese_sandwich", "burger", "cheeseburger", "double_cheeseburger"])
    ap.add_argument("--seeds", type=int, default=5, help="the first N of Robotouille's test seeds")
    ap.add_argument("--theory", action="store_true", help="also time the theory check")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    tasks = task_list(args.tasks if args.tasks != ["all"] else "all")
    seeds = TEST_SEEDS[: args.seeds]
    model, tokenizer = load_model_and_tokenizer(ModelConfig(path=args.model))
    prompt = PromptConfig(system="brief")
    for t in tasks:  # expert plans solved before timing
        for s in seeds:
            expert_trajectory(t, s)
    figures: dict = {"tasks": tasks, "seeds": seeds, "threads": torch.get_num_threads(), "model": args.model or "tiny"}
    runs = {}
    for lockstep in (True, False):
        rollout = CountingRollout(model, tokenizer)
        cfg = EvalConfig(lockstep=lockstep, theory=False)
        t0 = time.perf_counter()
        ev = evaluate(rollout, tokenizer, tasks, seeds, prompt, cfg)
        dt = time.perf_counter() - t0
        runs[lockstep] = ev.episodes
        key = "lockstep" if lockstep else "one_at_a_time"
        figures[key] = {"seconds": dt, "episodes_per_s": len(ev.episodes) / dt, "generate_calls": rollout.calls,
                        "answers": sum(r.answers for r in ev.episodes), "sr": ev.summary["sr"]}  # fmt: skip
        print(f"{key:>14}: {len(ev.episodes)} episodes in {dt:.1f} s ({len(ev.episodes) / dt:.2f} episodes/s), "
              f"{rollout.calls} generate calls, {figures[key]['answers']} answers")  # fmt: skip
    figures["speedup"] = figures["one_at_a_time"]["seconds"] / figures["lockstep"]["seconds"]
    figures["same_results"] = runs[True] == runs[False]
    print(f"lockstep speed-up {figures['speedup']:.2f}x; same results: {figures['same_results']}")
    if args.theory:
        t0 = time.perf_counter()
        ev = evaluate(
            HFRollout(model, tokenizer), tokenizer, tasks, seeds, prompt, replace(cfg, lockstep=True), None, model
        )
        figures["with_theory_seconds"] = time.perf_counter() - t0
        figures["play_seconds"] = ev.summary["play_seconds"]
        print(f"play + theory check: {figures['with_theory_seconds']:.1f} s (play {figures['play_seconds']:.1f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
