"""Shared pieces of tests/test_deepspeed.py, and its data-parallel run (one process per rank):

    torchrun --standalone --nproc_per_node=2 tests/ds_two_ranks.py OUT_DIR ZERO_STAGE

Each rank trains on its half of every global batch with the loss-weight rule of planner_rl/trainer/deepspeed.py
(W * the micro-batch's share of the global batch's loss) and writes its final weights to OUT_DIR/rank<r>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from planner_rl.grpo import micro_batch_weight

VOCAB, LENGTH, ROWS, MICRO = 50, 12, 8, 2


def tiny_model(seed: int = 0) -> torch.nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    return Qwen3ForCausalLM(
        Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16, max_position_embeddings=64)
    )  # fmt: skip


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed random global batches: ids [ROWS, LENGTH] and the mask [ROWS, LENGTH-1] of the targets that count (a
    completion of 2..11 tokens at the end of each row, so rows weigh differently under a token mean)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (ROWS, LENGTH), generator=g)
        counted = torch.randint(2, LENGTH, (ROWS,), generator=g)
        mask = torch.arange(LENGTH - 1)[None, :] >= (LENGTH - 1 - counted)[:, None]  # [ROWS, LENGTH-1]
        out.append((ids, mask))
    return out


def token_mean_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, :-1]  # [b, T-1, V]: position t predicts token t+1
    nll = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none").view(mask.shape)
    return (nll * mask).sum() / mask.sum()


def train(backend, data, rank: int = 0, world: int = 1) -> list[dict[str, float]]:
    """One step per global batch: this rank's rows in micro-batches of MICRO, each loss weighted by world * its
    share of the global batch's token-mean loss (the rule in planner_rl/trainer/deepspeed.py)."""
    stats = []
    for ids, mask in data:
        mine = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
        for s in range(mine.start, mine.stop, MICRO):
            mb_ids, mb_mask = ids[s : s + MICRO], mask[s : s + MICRO]
            with backend.autocast():
                loss = token_mean_loss(backend.model, mb_ids.to(backend.device), mb_mask.to(backend.device))
            backend.backward(loss * micro_batch_weight(mb_mask, mask.sum(), mask.shape[0], "token_mean") * world)
        stats.append(backend.step())
    return stats


def weights(backend) -> dict[str, torch.Tensor]:
    """The full weights on this rank (gathered under ZeRO-3), on CPU."""
    import deepspeed

    params = dict(backend.unwrapped.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values())):  # a no-op unless partitioned
        return {k: v.detach().float().cpu().clone() for k, v in params.items()}


def config(**overrides):
    from planner_rl.trainer.deepspeed import DeepSpeedTrainerConfig

    keys = dict(lr=1e-2, weight_decay=0.1, schedule="cosine", warmup_steps=1, grad_clip=0.5, micro_batch_size=MICRO,
                precision="fp32")  # fmt: skip
    return DeepSpeedTrainerConfig(**(keys | overrides))


if __name__ == "__main__":
    import torch.distributed as dist

    from planner_rl.trainer.deepspeed import DeepSpeedTrainer

    out, stage = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    backend = DeepSpeedTrainer(tiny_model(), config(zero_stage=stage), total_steps=3)
    rank, world = dist.get_rank(), dist.get_world_size()
    stats = train(backend, batches(3), rank, world)
    torch.save({"weights": weights(backend), "stats": stats}, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
