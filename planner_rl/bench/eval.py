"""Benchmark of the multi-turn evaluator (`make bench`): lockstep vs one episode at a time, side by side in one run.

    python -m planner_rl.bench.eval                       # 4 paper tasks x 5 test seeds, untrained tiny model
    python -m planner_rl.bench.eval --model outputs/long_horizon/<run>/sft_model --tasks all --seeds 10 --out x.json
    python -m planner_rl.bench.eval --model <sft_model> --tasks cheeseburger --seeds 10 --valid-actions

Both play the same episodes (greedy, the same memo of answered prompts, the expert cache warm) and must give the
same results (printed); the figures are episodes/s, generate calls and the speed-up factor. With `--theory`, also
the time of the theory check (one teacher-forced forward per expert state); with `--valid-actions`, the same
instances again with decoding restricted to the valid actions (eval.decoding=valid_actions), its time and results
beside free generation's. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from planner_rl.data import expert_trajectory, task_list, trajectory_examples
from planner_rl.evaluate import EvalConfig, evaluate
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig
from planner_rl.rollout.hf import HFRollout, encode_prompt, generate
from planner_rl.rollout.restricted import answer_choices, choose

TEST_SEEDS = [42, 84, 126, 168, 210, 252, 294, 336, 378, 420]


class CountingRollout(HFRollout):
    calls = 0

    def generate(self, prompts, n, sampling, seeds=None):
        self.calls += 1
        return super().generate(prompts, n, sampling, seeds)


def decoding_cost(model, tokenizer, tasks, seeds, prompt: PromptConfig) -> dict:
    """Seconds per prompt of one answer, free (greedy `generate`, eval's 24 new tokens) vs restricted to the valid
    actions (`choose`), on the same prompts: every state of the expert plans, no memo (closed-loop counts differ:
    a free agent stuck on one state repeats a prompt, which costs nothing the second time)."""
    examples = [ex for t in tasks for s in seeds for ex in trajectory_examples(expert_trajectory(t, s), prompt)]
    prompts = [encode_prompt(tokenizer, ex["prompt"]) for ex in examples]
    choices = [answer_choices(ex["valid_actions"], prompt.output_format) for ex in examples]
    model.eval()
    t0 = time.perf_counter()
    generate(model, tokenizer, prompts, max_new_tokens=24, batch_size=64)
    t1 = time.perf_counter()
    choose(model, tokenizer, prompts, choices, batch_size=64 * 8)  # about the same prompts per forward
    t2 = time.perf_counter()
    out = {"prompts": len(prompts), "choices_per_prompt": sum(map(len, choices)) / len(choices),
           "free_ms": 1000 * (t1 - t0) / len(prompts), "valid_actions_ms": 1000 * (t2 - t1) / len(prompts)}  # fmt: skip
    print(f"per prompt, {len(prompts)} expert-plan states ({out['choices_per_prompt']:.1f} valid actions each): free "
          f"{out['free_ms']:.1f} ms, valid actions {out['valid_actions_ms']:.1f} ms")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a saved model dir (default: the untrained tiny model)")
    ap.add_argument("--tasks", nargs="+", default=["cheese_sandwich", "burger", "cheeseburger", "double_cheeseburger"])
    ap.add_argument("--seeds", type=int, default=5, help="the first N of Robotouille's test seeds")
    ap.add_argument("--theory", action="store_true", help="also time the theory check")
    ap.add_argument("--valid-actions", action="store_true", help="also time decoding restricted to the valid actions")
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
                        "answers": sum(r.answers for r in ev.episodes), "sr": ev.summary["sr"],
                        "invalid_rate": ev.summary["invalid_rate"]}  # fmt: skip
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
    if args.valid_actions:
        t0 = time.perf_counter()
        ev = evaluate(HFRollout(model, tokenizer), tokenizer, tasks, seeds, prompt,
                      EvalConfig(decoding="valid_actions", theory=False), None, model)  # fmt: skip
        dt = time.perf_counter() - t0
        answers = sum(r.answers for r in ev.episodes)
        figures["valid_actions"] = {"seconds": dt, "episodes_per_s": len(ev.episodes) / dt, "answers": answers,
                                    "sr": ev.summary["sr"], "invalid_rate": ev.summary["invalid_rate"]}  # fmt: skip
        for key in ("lockstep", "valid_actions"):
            f = figures[key]
            print(f"{key:>14}: {f['seconds']:.1f} s for {f['answers']} answers, sr {f['sr']:.2f}, invalid "
                  f"{f['invalid_rate']:.2f}")  # fmt: skip
        figures["per_prompt"] = decoding_cost(model, tokenizer, tasks, seeds, prompt)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
