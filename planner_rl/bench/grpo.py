"""Benchmark: what sharing a group's prompt saves in one GRPO step, side by side in one run (tiny model, CPU).

    python -m planner_rl.bench.grpo                  # N=8 prompts x G=8 samples of double-cheeseburger states
    python -m planner_rl.bench.grpo --prompts 4 --group 16 --repeats 5

Times, as the median of `--repeats` alternating runs on the same batch:
- sampling: `generate` with num_return_sequences=G (each prompt prefilled G times) vs the hf backend's shared
  prefill (each prompt once, its cache repeated);
- log-probs + backward of the completion tokens: a forward of every full (prompt + completion) sequence vs
  `planner_rl.packing.group_log_probs` (each prompt once). Both losses are checked to agree first.
Prints the figures and their ratios; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from planner_rl.env.cooking import make_world
from planner_rl.env.planner import solve
from planner_rl.grpo import token_log_probs
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.packing import group_log_probs
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rollout.hf import encode_prompt, generate, left_pad, stop_ids


def state_prompts(tokenizer, count: int, prompt: PromptConfig) -> list[list[int]]:
    world = make_world("double_cheeseburger", 1000)
    plan = solve(world, optimal_sets=False).plan
    state, out = world.initial_state, []
    for step, action in enumerate(plan[:count]):
        out.append(encode_prompt(tokenizer, build_messages(world, state, [a.text for a in plan[:step]], prompt)))
        state = world.step(state, action)
    return out


def naive_log_probs(model, prompts, completions, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (prompt + completion) as its own right-padded row, logits for every position."""
    G = len(completions) // len(prompts)
    rows = [prompts[r // G] + c for r, c in enumerate(completions)]
    ids, attn = left_pad(rows, pad_id)  # left padding keeps completions at the end
    positions = (attn.cumsum(dim=1) - 1).clamp(min=0)
    logp = token_log_probs(model(input_ids=ids, attention_mask=attn, position_ids=positions).logits, ids)
    lengths = torch.tensor([len(c) for c in completions])
    mask = torch.arange(ids.shape[1] - 1)[None, :] >= (ids.shape[1] - 1 - lengths)[:, None]
    return logp, mask


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--system", default="brief", choices=["full", "brief"])
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model_and_tokenizer(ModelConfig())
    prompts = state_prompts(tok, args.prompts, PromptConfig(system=args.system))
    G, pad = args.group, tok.pad_token_id
    comps = [c.token_ids for c in generate(model, tok, prompts, n=G, max_new_tokens=16, temperature=1.0)]
    mean_completion = sum(map(len, comps)) / len(comps)
    print(f"batch: {len(prompts)} prompts x {G} samples, prompt tokens {min(map(len, prompts))}-"
          f"{max(map(len, prompts))}, completion tokens {mean_completion:.1f} on average")  # fmt: skip

    a, am = naive_log_probs(model, prompts, comps, pad)
    b, bm = group_log_probs(model, prompts, comps, pad, 1.0)
    assert torch.allclose((a * am).sum(), (b * bm).sum(), rtol=1e-4), "the two log-prob paths disagree"

    def plain_generate():
        ids, mask = left_pad(prompts, pad)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=True,
                           num_return_sequences=G, eos_token_id=stop_ids(tok), pad_token_id=pad)  # fmt: skip

    def shared_generate():
        generate(model, tok, prompts, n=G, max_new_tokens=16, temperature=1.0)

    def naive_update():
        model.zero_grad()
        logp, mask = naive_log_probs(model, prompts, comps, pad)
        (logp * mask).sum().backward()

    def shared_update():
        model.zero_grad()
        logp, mask = group_log_probs(model, prompts, comps, pad, 1.0)
        (logp * mask).sum().backward()

    phases = [("generate", plain_generate), ("generate_shared", shared_generate),
              ("update", naive_update), ("update_shared", shared_update)]  # fmt: skip
    figures: dict[str, list[float]] = {name: [] for name, _ in phases}
    for _, fn in phases:
        fn()  # warm-up
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both sides alike
        for name, fn in phases:
            figures[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"sampling:           plain {med['generate']:.3f} s, shared prefill {med['generate_shared']:.3f} s "
          f"-> {med['generate'] / med['generate_shared']:.1f}x")  # fmt: skip
    print(f"log-probs+backward: full rows {med['update']:.3f} s, shared prompts {med['update_shared']:.3f} s "
          f"-> {med['update'] / med['update_shared']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
