"""One more SFT epoch from a trained SFT model on fresh layouts, with or without the policy's own states (DAgger).

    python experiments/scaling/dagger.py <sft model> <out dir> --task cheeseburger --layouts 2000-2999 [--policy]

Builds the expert's examples (compact, no history, detours 0.5: the study's recipe) on the given layouts; with
`--policy`, also plays the SFT model greedily on them and adds every state it reaches off the expert's plan, labelled
by the expert replanned there (planner_rl/onpolicy.py). Then one epoch at `--lr` (cosine), and the closed-loop
evaluation on Robotouille's 10 evaluation layouts, free and restricted to the valid actions. Prints and writes
<out dir>/result.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from planner_rl.data import build_examples, expert_states, seed_list
from planner_rl.eval_protocol import EvalConfig
from planner_rl.evaluate import evaluate
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.onpolicy import policy_examples
from planner_rl.prompts import PromptConfig
from planner_rl.rollout.hf import HFRollout
from planner_rl.sft import SFTConfig, single_step_accuracy, train_sft

TEST_SEEDS = list(OmegaConf.load(Path(__file__).parents[2] / "conf/env/robotouille.yaml").test_seeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--task", default="cheeseburger")
    ap.add_argument("--layouts", default="2000-2999")
    ap.add_argument("--policy", action="store_true")
    ap.add_argument("--no-expert", action="store_true", help="only the policy's states (with --policy)")
    ap.add_argument("--detours", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prompt = PromptConfig(system="brief", observation="compact", history=0, detours=args.detours)
    model, tok = load_model_and_tokenizer(ModelConfig(path=args.model))
    seeds = seed_list(args.layouts)
    train = [] if args.no_expert else build_examples([args.task], seeds, prompt, {"num_proc": 1})
    n_expert = len(train)
    if args.policy:
        train += policy_examples(model, tok, [args.task], seeds, prompt, EvalConfig(theory=False), off_plan_only=True)
    test = expert_states(build_examples([args.task], TEST_SEEDS, prompt, {"num_proc": 1}))
    t_data = time.perf_counter() - t0
    cfg = SFTConfig(epochs=args.epochs, lr=args.lr, eval_examples=0)
    torch.manual_seed(0)
    train_sft(model, tok, {"train": train, "test": test}, cfg, "action", None, log=lambda m: None)
    acc = single_step_accuracy(model, tok, test, "action", cfg)
    ev = evaluate(HFRollout(model, tok), tok, [args.task], TEST_SEEDS, prompt,
                  EvalConfig(also_valid_actions=True, theory=False), model=model)  # fmt: skip
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    result = {
        "examples": len(train), "expert_examples": n_expert, "policy_examples": len(train) - n_expert,
        "accuracy": acc["eval/sft_accuracy"], "sr": ev.summary["sr"], "sr_valid": ev.summary["valid_actions/sr"],
        "invalid_rate": ev.summary["invalid_rate"], "data_s": t_data, "minutes": (time.perf_counter() - t0) / 60,
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
