"""Completion log-probs of GRPO groups, computed so that long prompts cost little.

A group's G completions share their prompt, so `group_log_probs` runs each prompt through the model once, with
logits for its last position only, and repeats its key/value cache G times for the completions (gradients flow
back through the repeat into the one prompt pass). Compute and activation memory for prompts drop by a factor G,
and logits exist only for completion tokens: O(B C V) memory, not O(B T V). With ~1,000-token prompts and ~12-token
answers the prompts are most of a naive update's cost (docs/training.md has the figures). The result equals a
full forward of each (prompt + completion) sequence to float rounding (tests/test_train.py).

The update's micro-batches are built here too: whole groups (single_turn: a group's prompt runs once for its G
completions) or single turns (multi_turn: every turn has its own prompt), each row carrying its advantage.
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import torch
from transformers import DynamicCache

from planner_rl.grpo import group_advantages, token_log_probs


class MicroBatch(NamedTuple):
    """One forward/backward of the update: n prompts, their completions (group-contiguous, n*G rows; G = 1 for
    turns), one advantage per completion, and a loss weight (0.0 for a filler that only keeps the ranks' collective
    calls equal)."""

    prompts: list[list[int]]
    completions: list[list[int]]
    advantages: torch.Tensor  # [n*G]
    weight: float = 1.0


def kept_advantages(
    scores: list[float], keep: list[int], group_size: int, scale: str, negative_weight: float = 1.0
) -> torch.Tensor:
    """Group-relative advantages [len(keep) * G] of the kept groups' rows (scores: every group's, G adjacent)."""
    rewards = torch.tensor([scores[g * group_size + k] for g in keep for k in range(group_size)])  # [B]
    return group_advantages(rewards, group_size, scale, negative_weight=negative_weight) if len(rewards) else rewards


def group_micro_batches(
    prompts: list[list[int]], completions: list[list[int]], advantages: torch.Tensor, group_size: int, size: int
) -> list[MicroBatch]:
    """Micro-batches of whole groups, about `size` completions each (at least one group): group g has prompt
    `prompts[g]` and completions `completions[g*G : (g+1)*G]`."""
    per, G = max(1, size // group_size), group_size
    return [
        MicroBatch(prompts[s : s + per], completions[s * G : (s + per) * G], advantages[s * G : (s + per) * G])
        for s in range(0, len(prompts), per)
    ]


def turn_micro_batches(turns: list[tuple[list[int], list[int], float]], size: int) -> list[MicroBatch]:
    """Micro-batches of `size` (prompt, completion, advantage) rows: plain rows, no shared prefix."""
    return [
        MicroBatch([p for p, _, _ in turns[s : s + size]], [c for _, c, _ in turns[s : s + size]],
                   torch.tensor([a for _, _, a in turns[s : s + size]]))
        for s in range(0, len(turns), size)
    ]  # fmt: skip


def group_log_probs(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, temperature: float, full: bool = False
) -> tuple[torch.Tensor, ...]:
    """(log-probs [n*G, C], mask [n*G, C]) for n prompts and their n*G completions (group-contiguous: row n*G + g
    answers prompt n), the prompts run once. Completions are right-padded after left-padded prompts. full: also
    the float32 log-probs of the whole vocabulary at each completion position, [n*G, C, V] (grpo.kl_estimator exact)."""
    n, rows = len(prompts), len(completions)
    if rows % n:
        raise ValueError(f"{rows} completions do not split into groups for {n} prompts")
    G = rows // n
    device = next(model.parameters()).device
    width, longest = max(len(p) for p in prompts), max(len(c) for c in completions)
    p_ids = torch.full((n, width), pad_id, dtype=torch.long)
    p_attn = torch.zeros((n, width), dtype=torch.long)
    for r, p in enumerate(prompts):
        p_ids[r, width - len(p) :], p_attn[r, width - len(p) :] = torch.tensor(p), 1
    c_ids = torch.full((rows, longest), pad_id, dtype=torch.long)
    lengths = torch.tensor([len(c) for c in completions])  # [n*G]
    for r, c in enumerate(completions):
        c_ids[r, : len(c)] = torch.tensor(c)
    mask = torch.arange(longest)[None, :] < lengths[:, None]  # [n*G, C]
    p_ids, p_attn, c_ids, mask = p_ids.to(device), p_attn.to(device), c_ids.to(device), mask.to(device)

    cache = DynamicCache()
    kw = cache_keyword(model)
    p_pos = (p_attn.cumsum(dim=1) - 1).clamp(min=0)  # [n, P]
    first = model(
        input_ids=p_ids, attention_mask=p_attn, position_ids=p_pos, **{kw: cache}, use_cache=True,
        logits_to_keep=1,
    ).logits  # [n, 1, V]: predicts each completion's first token  # fmt: skip
    cache.batch_repeat_interleave(G)  # [n, ...] -> [n*G, ...], differentiable
    attn = torch.cat([p_attn.repeat_interleave(G, dim=0), mask.long()], dim=1)  # [n*G, P + C]
    c_pos = p_attn.sum(dim=1).repeat_interleave(G)[:, None] + torch.arange(longest, device=device)  # [n*G, C]
    rest = model(
        input_ids=c_ids, attention_mask=attn, position_ids=c_pos, **{kw: cache}, use_cache=True
    ).logits  # [n*G, C, V]
    # column t predicts c_ids[:, t] (the last column predicts past the completion and is not read)
    logits = torch.cat([first.repeat_interleave(G, dim=0), rest], dim=1)  # [n*G, C+1, V]
    ids = torch.cat([torch.zeros_like(c_ids[:, :1]), c_ids], dim=1)  # [n*G, C+1]: token_log_probs reads ids[:, 1:]
    if not full:
        return token_log_probs(logits, ids, temperature), mask
    vocab = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)  # [n*G, C, V], normalised once
    return vocab.gather(-1, c_ids[..., None]).squeeze(-1), mask, vocab


def cache_keyword(model) -> str:
    """`cache` in transformers >= 5.2x, `past_key_values` before (and for wrappers that hide the signature)."""
    return _cache_keyword(type(getattr(model, "module", model)))  # a DeepSpeed engine wraps the model


@functools.cache
def _cache_keyword(cls: type) -> str:  # per model class: signature inspection is not free on every forward
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"
