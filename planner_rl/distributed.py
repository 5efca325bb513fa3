"""The few collectives the GRPO loop needs under data parallelism; each is a no-op in one process.

Launch with torchrun or the deepspeed launcher (they set RANK / WORLD_SIZE); the process group itself is started by
the update backend (`trainer=deepspeed`). Rank 0 logs, evaluates and writes the run's files; every rank samples
and trains on its share of each step's groups.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def _reduce(values: list[float], op: str) -> list[float]:
    if not _active():
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces device tensors only
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return t.tolist()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks."""
    return _reduce(values, "SUM")


def all_max(values: list[float]) -> list[float]:
    """Element-wise maximum over ranks."""
    return _reduce(values, "MAX")


def check_same_weights(model: torch.nn.Module, step: int) -> None:
    """Raise if the ranks' copies of the weights differ (a checksum over ranks): data parallelism must keep them
    equal, and a silent drift would make every later step's gradient average meaningless."""
    total = sum(p.detach().double().sum().item() for p in model.parameters())
    hi, neg_lo = all_max([total, -total])
    if hi != -neg_lo:
        raise RuntimeError(f"step {step}: the ranks' weights differ (checksums {-neg_lo} .. {hi})")
