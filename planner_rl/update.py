"""The GRPO update of one step: the batch's micro-batches balanced across ranks, the log-probs before the update
and under the reference, then `grpo.mu` policy-gradient steps with micro-batches accumulated.

The objective itself (advantages, clipping, KL, loss aggregation) is planner_rl/grpo.py's; the micro-batches and
their log-probs are planner_rl/packing.py's; the optimizer is the update backend's (planner_rl/trainer/). Under data
parallelism each rank takes its share of the groups, and the loss weights make the ranks' accumulated gradients sum
to the whole batch's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from planner_rl import distributed as dist
from planner_rl.grpo import GRPOConfig, grpo_loss, kl_exact, micro_batch_weight
from planner_rl.packing import MicroBatch, group_log_probs


@dataclass
class Policy:
    """What the update reads: the update backend (it owns the model), the frozen reference (None at beta 0), and
    how completions are scored (pad id, the sampling temperature)."""

    backend: Any
    reference: torch.nn.Module | None
    pad_id: int
    temperature: float  # log-probs of the sampling distribution (greedy sampling: of the policy)

    def log_probs(self, model, mb: MicroBatch, full: bool = False) -> tuple[torch.Tensor, ...]:
        """(log-probs [b, C], mask [b, C]), and with full the whole vocabulary's log-probs [b, C, V]."""
        return group_log_probs(model, mb.prompts, mb.completions, self.pad_id, self.temperature, full=full)


def balance_micro_batches(
    micro_batches: list[MicroBatch], kept: int, filler: MicroBatch | None
) -> tuple[list[MicroBatch], float, float, int]:
    """(micro-batches, the batch's completion tokens and rows over all ranks, this rank's completion tokens), from
    this rank's micro-batches of its `kept` groups. ZeRO reduces inside backward, so every rank makes as many calls:
    a rank short of micro-batches adds weight-0 `filler`s."""
    lengths = [len(c) for mb in micro_batches for c in mb.completions]  # [B] on this rank
    batch_tokens, batch_rows, kept_all = dist.all_sum([sum(lengths), len(lengths), kept])
    mbs = list(micro_batches) if kept_all else []  # every rank dropped every group: no update anywhere
    most = dist.all_max([len(mbs)])[0]
    mbs += [filler] * int(most - len(mbs))
    return mbs, batch_tokens, batch_rows, sum(lengths)


def old_and_reference_log_probs(policy: Policy, mbs: list[MicroBatch], grpo: GRPOConfig) -> tuple[list, list]:
    """Per micro-batch the log-probs [b, C] before the update (needed for mu > 1) and under the reference (beta >
    0; with grpo.kl_estimator exact, the whole vocabulary's, [b, C, V]); None where unused."""
    backend, none = policy.backend, [None] * len(mbs)
    exact = grpo.kl_estimator == "exact"
    with torch.no_grad(), backend.autocast():
        olds = [policy.log_probs(backend.model, mb)[0] for mb in mbs] if grpo.mu > 1 else none
        refs = none
        if policy.reference is not None:
            refs = [policy.log_probs(policy.reference, mb, full=exact)[2 if exact else 0] for mb in mbs]
    return olds, refs


def policy_update(
    policy: Policy,
    mbs: list[MicroBatch],
    olds: list,
    refs: list,
    grpo: GRPOConfig,
    batch_tokens: float,
    batch_rows: float,
    world: int,
    anchor: Callable[[torch.nn.Module], torch.Tensor] | None = None,
) -> tuple[dict[str, float], float]:
    """mu policy-gradient steps on the batch, micro-batches accumulated: (the batch's loss/ and train/ statistics
    over all ranks, seconds in optimizer steps). `anchor(model)`: a loss added with weight grpo.sft_coef to each
    step's gradient (the SFT loss on a batch of SFT examples; ranks' anchors are averaged)."""  # fmt: skip
    backend, stats, t_opt = policy.backend, {}, 0.0
    exact = grpo.kl_estimator == "exact"
    for _ in range(grpo.mu if mbs else 0):
        stats = {}
        for mb, old, ref in zip(mbs, olds, refs, strict=True):
            with backend.autocast():
                logp, mask, *full = policy.log_probs(backend.model, mb, full=exact)  # [b, C] x2 (+ [b, C, V])
            kl = kl_exact(full[0], ref) if exact and ref is not None else None  # [b, C]
            loss, s = grpo_loss(logp, old, None if exact else ref, mb.advantages.to(logp.device), mask, grpo, kl)
            w = micro_batch_weight(mask, batch_tokens, batch_rows, grpo.loss_agg) * mb.weight
            backend.backward(loss * w * world)  # ranks' gradients are averaged: x world sums them
            share = float(mask.sum()) / max(batch_tokens, 1) * mb.weight
            for k, v in s.items():
                weight = w if k in ("loss/policy", "loss/kl", "loss/total") else share
                stats[k] = max(stats.get(k, v), v) if k == "loss/ratio_max" else stats.get(k, 0.0) + weight * v
        if anchor is not None:  # given only when grpo.sft_coef > 0 (train.sft_anchor)
            with backend.autocast():
                sft_loss = anchor(backend.model)
            backend.backward(sft_loss * grpo.sft_coef)  # averaged over ranks, as each rank's batch is a sample
            stats["loss/sft_anchor"] = float(sft_loss.detach()) / world  # summed over ranks below: their mean
        t = time.perf_counter()
        stats |= backend.step()
        t_opt += time.perf_counter() - t
    if stats:  # each rank's share of the batch's loss statistics -> the batch's
        keys = [k for k in stats if k.startswith("loss/") and k != "loss/ratio_max"]
        stats |= dict(zip(keys, dist.all_sum([stats[k] for k in keys]), strict=True))
        stats["loss/ratio_max"] = dist.all_max([stats["loss/ratio_max"]])[0]
    return stats, t_opt
