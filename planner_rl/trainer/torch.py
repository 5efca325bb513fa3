"""`trainer=torch`: the plain PyTorch update backend (one process; see planner_rl/trainer/__init__.py).

AdamW with decoupled weight decay on matrices only, a warmup then constant/cosine/linear schedule over the run's
optimizer steps, global-norm gradient clipping, bf16 autocast on CUDA (fp16 with a gradient scaler if asked), and
fp32 on CPU, where bf16 is about 10x slower (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from planner_rl.distributed import world_size
from planner_rl.integrity import CheckpointError, load_weights
from planner_rl.sft import lr_factor

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class TorchTrainerConfig:
    """conf/trainer/torch.yaml."""

    _target_: str = "planner_rl.trainer.torch.TorchTrainer"
    lr: float = 2e-4  # peak learning rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "constant"  # one of SCHEDULES, after warmup
    warmup_steps: int = 0  # optimizer steps of linear warmup from 0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    micro_batch_size: int = 16  # sequences per forward/backward; gradients accumulate over the batch
    precision: str = "auto"  # one of PRECISIONS; auto: bf16 autocast on CUDA, fp32 on CPU
    resume: str = "auto"  # auto: newest complete checkpoint of this run dir, if any | none | a checkpoint dir
    checkpoint_every: int = 10  # GRPO steps between checkpoints (0: only the last)
    keep_checkpoints: int = 2  # newest complete checkpoints kept (>= 1)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"trainer.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"trainer.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0 or self.micro_batch_size < 1 or self.keep_checkpoints < 1 or self.checkpoint_every < 0:
            raise ValueError(
                "trainer: need lr > 0, micro_batch_size >= 1, keep_checkpoints >= 1, checkpoint_every >= 0"
            )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`, or None for plain fp32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class TorchTrainer:
    def __init__(self, model: torch.nn.Module, cfg: TorchTrainerConfig, total_steps: int):
        self.cfg = cfg
        if world_size() > 1:
            raise ValueError("trainer=torch runs in one process; launch several ranks with trainer=deepspeed")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = self.unwrapped = model.to(self.device).train()
        self.dtype = autocast_dtype(cfg.precision, self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # norms, biases
            ],
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, cfg.schedule)
        )
        # fp16 needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def close(self) -> None:
        pass  # nothing to tear down in one process

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> dict[str, float]:
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip or float("inf"))
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"train/grad_norm": float(norm), "train/lr": lr}

    def save(self, path: Path) -> None:
        self.unwrapped.save_pretrained(path, max_shard_size="1000GB")  # one file, which `load` reads
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
             "scaler": self.scaler.state_dict()},
            path / "optimizer.pt",
        )  # fmt: skip

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        load_weights(self.unwrapped, load_file(path / "model.safetensors", device=str(self.device)), path)
        try:  # weights_only: tensors and plain containers, never code (an UnpicklingError names what was refused)
            state = torch.load(path / "optimizer.pt", map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except pickle.UnpicklingError as e:  # torch's message suggests weights_only=False: not here
            what = next((line for line in str(e).splitlines() if "GLOBAL" in line), "objects other than tensors")
            raise CheckpointError(
                f"{path / 'optimizer.pt'}: refused, it holds more than tensors and plain containers, which could run "
                f"code on load ({what.strip()})"
            ) from None
        except (RuntimeError, KeyError, TypeError, ValueError, OSError) as e:
            raise CheckpointError(f"{path / 'optimizer.pt'}: cannot be loaded ({type(e).__name__}: {e})") from None
