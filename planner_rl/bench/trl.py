"""Benchmark: a GRPO step of planner_rl vs TRL's GRPOTrainer, side by side in one run (tiny model, CPU).

    python -m planner_rl.bench.trl                       # 8 prompts x 8 samples, 3 alternating rounds of 3 steps
    python -m planner_rl.bench.trl --rounds 5 --steps 6 --out outputs/bench/trl.json
    python -m planner_rl.bench.trl --settings mixed      # only the mixed-reward setting (below)

Both train the same saved model (the tiny model after a short SFT, `planner_rl.bench.step.sft_model`) on the same
single-turn prompts (double-cheeseburger states, brief system message) with the same settings: N prompts x G
samples a step, micro-batches of 16 sequences accumulated into one optimizer step (AdamW, constant learning rate,
gradient clipping 1.0), temperature 1, top_p 1, no top-k, the same maximum completion length and end-of-turn
stop, the expert_match reward, beta 0 (no reference model), one update per batch (mu = 1: no old log-probs), the
batch's token mean as the loss (planner_rl `token_mean`, TRL `loss_type="dapo"`), group-std advantages, float32.
TRL runs without vLLM, gradient checkpointing, evaluation, logging or checkpoints (every setting is written into
the JSON and docs/performance.md). Each round runs planner_rl (`python -m planner_rl.train`, the real loop) then
TRL, each in a fresh process; a step's time is the loop's `perf/step_s` for planner_rl and on_step_begin ->
on_step_end for TRL (sampling, scoring, forward/backward, optimizer), the first step of each run dropped as
warm-up. Prints completions/s and tokens/s of both and the median over rounds of the ratio; asserts nothing.

Two reward settings (`--settings`, both by default), each with its own rounds and ratio. `expert_match`: the plain
0/1 reward; the SFT model never gives the expert's action on these states, so every group is all-0 (zero variance,
zero advantages). `mixed`: the same reward plus 1 for a well-formed answer (`reward.format_weight=1`, the same
`RewardConfig` on both sides), 0/1 in practice: the SFT model's samples are well formed about a fifth of the time,
so most groups mix well-formed and malformed answers and their advantages are non-zero.
Each setting prints the informative share (groups with reward std > 0) of both frameworks' timed steps, and of G
samples on a few prompts before timing (`informative_share`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from planner_rl.bench.step import (
    bench_overrides,
    compose_train,
    run_measured,
    run_train,
    sft_model,
    step_records,
)
from planner_rl.grpo import zero_variance_fraction
from planner_rl.rewards import RewardConfig, compute_reward

# reward settings: RewardConfig keyword arguments besides name="expert_match" (module docstring)
SETTINGS = {"expert_match": {}, "mixed": {"format_weight": 1.0}}


def informative_share(rewards: list[float], group: int) -> float:
    """Share of groups (`group` consecutive rewards each) whose rewards are not all equal (std > 0)."""
    return 1.0 - zero_variance_fraction(torch.tensor(rewards, dtype=torch.float32), group)


def sampled_shares(model_dir: Path, rows: list[dict], args) -> dict[str, float]:
    """Per reward setting, `informative_share` of the same G samples (temperature 1, the benchmark's length cap) on
    each of `rows`' prompts: the model is loaded and sampled once, each setting only scores them."""
    from planner_rl.model import ModelConfig, load_model_and_tokenizer
    from planner_rl.rollout.hf import encode_prompt, generate

    torch.manual_seed(0)
    model, tok = load_model_and_tokenizer(ModelConfig(path=str(model_dir)))
    model.eval()
    prompts = [encode_prompt(tok, r["prompt"]) for r in rows]
    outs = generate(model, tok, prompts, n=args.group, max_new_tokens=args.max_new_tokens, temperature=1.0,
                    batch_size=max(1, 32 // args.group))  # fmt: skip
    shares = {}
    for setting in args.settings:
        reward = RewardConfig(name="expert_match", **SETTINGS[setting])
        scores = [compute_reward(reward, o.text, rows[k // args.group], "action")[0] for k, o in enumerate(outs)]
        shares[setting] = informative_share(scores, args.group)
    return shares


def trl_settings(args: argparse.Namespace, out_dir: str) -> dict:
    """GRPOConfig keyword arguments: planner_rl's settings in TRL's names, and TRL's overheads switched off."""
    micro = 16  # planner_rl's trainer.micro_batch_size
    return {
        "output_dir": out_dir,
        "max_steps": args.steps,
        "per_device_train_batch_size": micro,  # completions per forward/backward
        "gradient_accumulation_steps": args.prompts * args.group // micro,  # -> one optimizer step per N*G batch
        "num_generations": args.group,
        "max_completion_length": args.max_new_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "learning_rate": args.lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "max_grad_norm": 1.0,
        "beta": 0.0,
        "num_iterations": 1,
        "epsilon": 0.2,
        "loss_type": "dapo",
        "scale_rewards": "group",
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "use_vllm": False,
        "use_cpu": True,
        "model_init_kwargs": {"dtype": "float32"},
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "log_completions": False,
        "dataloader_num_workers": 0,
        "seed": 0,
    }


def trl_worker(args: argparse.Namespace) -> None:
    """One TRL run in this process: writes {"steps": [seconds per step], "prompt_tokens": [...], ...} to --run-dir."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from planner_rl.data import build_dataset
    from planner_rl.rollout.hf import encode_prompt

    run_dir = Path(args.run_dir)
    cfg = compose_train(bench_overrides(args.history))
    data, _ = build_dataset(cfg)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    keys = ("prompt", "expert_action", "optimal_actions", "valid_actions", "task", "seed", "step")
    rows = [{k: ex[k] for k in keys} | {"prompt_tokens": len(encode_prompt(tokenizer, ex["prompt"]))}
            for ex in data["train"].to_list()]  # fmt: skip
    reward_cfg = RewardConfig(name="expert_match", **SETTINGS[args.setting])
    seen = {"prompt": [], "completion": [], "reward": []}

    def expert_match(prompts, completions, completion_ids, **columns) -> list[float]:
        scores = []
        for k, completion in enumerate(completions):
            example = {key: columns[key][k] for key in keys[1:]}
            scores.append(compute_reward(reward_cfg, completion[0]["content"], example, "action")[0])
        seen["prompt"] += columns["prompt_tokens"]
        seen["completion"] += [len(c) for c in completion_ids]
        seen["reward"] += scores
        return scores

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps, self.t0 = [], 0.0

        def on_step_begin(self, *_, **__):
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.steps.append(time.perf_counter() - self.t0)

    timer = StepTimer()
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=[expert_match],
        args=GRPOConfig(**trl_settings(args, str(run_dir / "trl"))),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    out = {"steps": timer.steps, "prompt_tokens": seen["prompt"], "completion_tokens": seen["completion"],
           "reward": seen["reward"], "torch_threads": torch.get_num_threads()}  # fmt: skip
    (run_dir / "trl_steps.json").write_text(json.dumps(out))


def planner_summary(records: list[dict], args) -> dict:
    steps = records[1:]  # the first step warms up
    rows = args.prompts * args.group
    step_s = statistics.median(r["perf/step_s"] for r in steps)
    completion = statistics.mean(r["rollout/completion_tokens"] for r in steps)
    prompt = statistics.mean(r["rollout/prompt_tokens"] for r in steps)
    share = statistics.mean(1.0 - r["rollout/zero_variance_frac"] for r in steps)
    return summarise(step_s, rows, prompt, completion) | {"informative_share": share}


def trl_summary(out: dict, args) -> dict:
    rows = args.prompts * args.group
    step_s = statistics.median(out["steps"][1:])
    skip = rows  # the warm-up step's samples
    completion = statistics.mean(out["completion_tokens"][skip:])
    prompt = statistics.mean(out["prompt_tokens"][skip:])
    # the reward function sees each generation batch with a prompt's G samples consecutive (TRL's RepeatSampler)
    share = informative_share(out["reward"][skip:], args.group)
    return summarise(step_s, rows, prompt, completion) | {"informative_share": share}


def summarise(step_s: float, rows: int, prompt: float, completion: float) -> dict:
    """Throughput of one step; tokens count each sequence's prompt and completion (what a full forward reads)."""
    return {
        "step_s": step_s,
        "completions_per_s": rows / step_s,
        "tokens_per_s": rows * (prompt + completion) / step_s,
        "generated_tokens_per_s": rows * completion / step_s,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }


def run_setting(setting: str, args, model_dir: Path, work: Path) -> dict:
    """Alternating rounds of planner_rl and TRL under one reward setting; per round both summaries and the ratio."""
    grpo = [
        f"grpo.steps={args.steps}",
        f"grpo.prompts_per_step={args.prompts}",
        f"grpo.group_size={args.group}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        f"trainer.lr={args.lr}",
        "trainer.micro_batch_size=16",
        f"prompt.history={args.history}",
        *(f"reward.{k}={v}" for k, v in SETTINGS[setting].items()),
    ]
    rounds = []
    for r in range(args.rounds):  # alternate, so drift in machine load hits both alike
        run = work / f"{setting}_planner_{r}"
        rss = run_train(grpo, run, model_dir)
        mine = planner_summary(step_records(run), args) | {"peak_rss_mb": rss}
        run = work / f"{setting}_trl_{r}"
        cmd = [sys.executable, "-m", "planner_rl.bench.trl", "--worker", "trl", "--run-dir", str(run),
               "--model", str(model_dir / "sft_model"), "--steps", str(args.steps), "--prompts", str(args.prompts),
               "--group", str(args.group), "--max-new-tokens", str(args.max_new_tokens), "--lr", str(args.lr),
               "--history", str(args.history), "--setting", setting]  # fmt: skip
        run.mkdir(parents=True, exist_ok=True)
        rss = run_measured(cmd, run / "log.txt")
        theirs = trl_summary(json.loads((run / "trl_steps.json").read_text()), args) | {"peak_rss_mb": rss}
        ratio = theirs["step_s"] / mine["step_s"]
        rounds.append({"planner_rl": mine, "trl": theirs, "ratio": ratio})
        print(
            f"{setting} round {r + 1}/{args.rounds}: planner_rl {mine['step_s']:.2f} s/step (informative "
            f"{mine['informative_share']:.2f}), TRL {theirs['step_s']:.2f} s/step (informative "
            f"{theirs['informative_share']:.2f}) -> {ratio:.2f}x",
            flush=True,
        )
    med = {side: {k: statistics.median(x[side][k] for x in rounds) for k in rounds[0][side]}
           for side in ("planner_rl", "trl")}  # fmt: skip
    return {"rounds": rounds, "median": med, "ratio_trl_over_planner_rl": statistics.median(x["ratio"] for x in rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per run (the first is warm-up)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--history", type=int, default=5)
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--share-prompts", type=int, default=16, help="prompts sampled for the share before timing")
    ap.add_argument("--out", default="outputs/bench/trl.json")
    ap.add_argument("--worker", choices=["trl"], help=argparse.SUPPRESS)
    ap.add_argument("--setting", choices=list(SETTINGS), default="expert_match", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "trl":
        trl_worker(args)
        return
    if (args.prompts * args.group) % 16:
        sys.exit("--prompts x --group must be a multiple of 16 (the micro-batch)")
    from planner_rl.data import build_dataset

    out = Path(args.out)
    work = out.parent / "runs"
    model_dir = sft_model(work)
    rows = build_dataset(compose_train(bench_overrides(args.history)))[0]["train"].to_list()
    picked = rows[:: max(1, len(rows) // args.share_prompts)][: args.share_prompts]  # spread over the layouts
    result = {
        "what": "GRPO step, planner_rl vs TRL GRPOTrainer, median of alternating rounds, per reward setting",
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "args": vars(args) | {"worker": None},
        "trl_settings": trl_settings(args, "<run dir>/trl"),
        "settings": {},
    }
    shares = sampled_shares(model_dir / "sft_model", picked, args)
    for setting in args.settings:
        before = shares[setting]
        print(f"{setting}: informative share before timing {before:.2f} ({len(picked)} prompts x {args.group})")
        result["settings"][setting] = {"reward": SETTINGS[setting], "informative_share_before": before}
        result["settings"][setting] |= run_setting(setting, args, model_dir, work)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        f"\nGRPO step, {args.prompts} prompts x {args.group} samples, max {args.max_new_tokens} new tokens, "
        f"OMP_NUM_THREADS={result['threads']}, median of {args.rounds} rounds x {args.steps - 1} timed steps:"
    )
    print(f"{'':<24} {'s/step':>8} {'compl/s':>9} {'tokens/s':>9} {'gen tok/s':>9} {'prompt':>7} {'compl':>6} "
          f"{'informative':>11}")  # fmt: skip
    for setting, res in result["settings"].items():
        for side in ("planner_rl", "trl"):
            m = res["median"][side]
            print(
                f"{setting + ' ' + side:<24} {m['step_s']:>8.2f} {m['completions_per_s']:>9.1f} "
                f"{m['tokens_per_s']:>9.0f} {m['generated_tokens_per_s']:>9.0f} {m['prompt_tokens']:>7.0f} "
                f"{m['completion_tokens']:>6.1f} {m['informative_share']:>11.2f}"
            )
    for setting, res in result["settings"].items():
        print(f"{setting}: planner_rl is {res['ratio_trl_over_planner_rl']:.2f}x TRL's step throughput "
              "(median over rounds of TRL s/step / planner_rl s/step)")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
