"""`trainer=deepspeed`: DeepSpeed ZeRO update backend, the same interface and numerics as `trainer=torch`.

The same torch AdamW (passed in, so nothing JIT-compiles), the same LambdaLR schedule, DeepSpeed's global-norm
gradient clipping, ZeRO stage 1/2/3 (optionally with the optimizer state offloaded to CPU). Precision: DeepSpeed
itself keeps bf16 (or fp16 with dynamic loss scaling) weights on the GPU and fp32 master weights in the optimizer, so
`autocast()` is a no-op; fp32 on CPU. One process is a world of one; several come from a launcher:

    python -m planner_rl.train trainer=deepspeed                             # one process (CPU or one GPU)
    torchrun --nproc_per_node=N -m planner_rl.train trainer=deepspeed        # N ranks, data parallel

Gradient accumulation: the loop calls `backward` once per micro-batch, with loss weights that already sum to the
batch loss, then `step` once. DeepSpeed runs with `managed_gradient_accumulation: false`: `backward` only
accumulates, and `step` is the boundary (reduce over ranks, clip, AdamW, schedule), so the gradient is exactly the
sum of the micro-batch gradients. (DeepSpeed 0.19.8's default, managed mode with gradient_accumulation_steps 1 and
several `backward` calls per step, keeps only part of the gradient under ZeRO-1/2: measured.) Under ZeRO-2/3 the
reduction runs inside `backward`, so every rank must call it the same number of times per step (a rank with
fewer rows runs a micro-batch with loss weight 0).

Loss weights under data parallelism: DeepSpeed averages gradients over the W ranks. For an update that equals one
process's update on the whole global batch, each rank weights each of its micro-batch losses by

    W * (the micro-batch's share of the GLOBAL batch's loss)

i.e. `micro_batch_weight(mb_mask, global_tokens, global_rows, loss_agg) * W`, where the global batch's normaliser
(its token count, or its row count) is summed over all ranks (an all_reduce), not the rank's own. Then
mean over ranks of sum_mb W * w_mb * grad(L_mb) = sum over all micro-batches of w_mb * grad(L_mb) = grad(L_batch).
With W = 1 this is the torch backend's rule unchanged.

Checkpoints: `save(dir)` is collective (every rank calls it on the same, shared dir): DeepSpeed's sharded model,
optimizer and schedule state go into dir/ds/, and rank 0 writes the HF weights (dir/model.safetensors, gathered
first under ZeRO-3) like the torch backend. `load(dir)` restores from such a dir (also after it was renamed), on the
same number of ranks. Under ZeRO-3 `unwrapped`'s parameters are partitioned: code that reads the weights outside a
forward (generation, weight sync) must gather them first (`deepspeed.zero.GatheredParameters`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from packaging.version import Version

from planner_rl.sft import lr_factor
from planner_rl.trainer.torch import TorchTrainerConfig, autocast_dtype

TAG = "ds"  # DeepSpeed's sub-folder of a checkpoint dir
MIN_VERSION = "0.19.8"  # managed_gradient_accumulation=false with ZeRO-2/3: tested with this one


@dataclass
class DeepSpeedTrainerConfig(TorchTrainerConfig):
    """conf/trainer/deepspeed.yaml: trainer=torch's keys (same meaning) plus the ZeRO ones."""

    _target_: str = "planner_rl.trainer.deepspeed.DeepSpeedTrainer"
    zero_stage: int = 2  # 1: optimizer state sharded | 2: + gradients | 3: + parameters
    offload_optimizer: bool = False  # keep the optimizer state (and its step) in CPU memory

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"trainer.zero_stage must be 1, 2 or 3, got {self.zero_stage!r}")


def is_main_process() -> bool:
    """True on rank 0, or when no process group is running (one process): where to log and write once."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


_DEFAULTED: list[str] = []  # environment variables that init_distributed set, which destroy_distributed removes


def free_port() -> str:
    with socket.socket() as s:  # machines are shared: no fixed port
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def init_distributed() -> None:
    """Start the process group if no one has: gloo on CPU, nccl on CUDA; a lone process is rank 0 of 1."""
    import deepspeed

    if not torch.cuda.is_available():
        # DeepSpeed's CPU all-reduce op JIT-compiles for about a minute; gloo does the job without it
        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    if not dist.is_initialized():  # a launcher (torchrun, deepspeed) sets these; a lone process is rank 0 of 1
        defaults = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
        for key, value in defaults.items():
            if key not in os.environ:
                os.environ[key] = value or free_port()
                _DEFAULTED.append(key)
    # a no-op once DeepSpeed's comm is up; wraps a process group that the caller started itself
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)


def destroy_distributed() -> None:
    """Tear the process group down (the loop's `finally`), so that the next job in this process starts clean."""
    if dist.is_available() and dist.is_initialized():
        import deepspeed

        deepspeed.comm.destroy_process_group()  # also drops DeepSpeed's cached groups, so that it can start again
    for key in _DEFAULTED:
        os.environ.pop(key, None)
    _DEFAULTED.clear()


def deepspeed_config(cfg: DeepSpeedTrainerConfig, dtype: torch.dtype | None) -> dict:
    """The DeepSpeed config dict for `cfg` at precision `dtype` (None: fp32)."""
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,  # bookkeeping only: the loop makes its own batches
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,  # backward() accumulates, step() is the boundary (module docstring)
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {
            "stage": cfg.zero_stage,
            "offload_optimizer": {"device": "cpu" if cfg.offload_optimizer else "none"},
        },
        "zero_allow_untested_optimizer": True,  # torch's AdamW
        "zero_force_ds_cpu_optimizer": False,  # offload with torch's AdamW, not the JIT-compiled DeepSpeedCPUAdam
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16, "loss_scale": 0},  # 0: dynamic loss scaling
        "steps_per_print": sys.maxsize,  # the loop logs
        "wall_clock_breakdown": False,
    }


class DeepSpeedTrainer:
    def __init__(self, model: torch.nn.Module, cfg: DeepSpeedTrainerConfig, total_steps: int):
        import deepspeed

        self.cfg = cfg
        if Version(deepspeed.__version__) < Version(MIN_VERSION):  # older ones lack or mis-handle the boundary mode
            raise RuntimeError(f"trainer=deepspeed needs deepspeed>={MIN_VERSION}, found {deepspeed.__version__}")
        init_distributed()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = autocast_dtype(cfg.precision, device)  # the same rule as trainer=torch
        if self.dtype == torch.float16 and device.type != "cuda":
            raise ValueError("trainer.precision=fp16 needs a CUDA device with trainer=deepspeed (use fp32 or bf16)")
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # norms, biases
            ],
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, cfg.schedule)
        )
        self.model, _, _, self.scheduler = deepspeed.initialize(
            model=model.train(), optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, self.dtype)
        )
        self.unwrapped = self.model.module
        self.device = self.model.device

    def close(self) -> None:
        """End the process group (the loop's `finally`), so that the next job in this process starts clean."""
        destroy_distributed()

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # DeepSpeed casts the module itself (bf16/fp16); fp32 needs nothing

    def backward(self, loss: torch.Tensor) -> None:
        self.model.backward(loss)  # accumulates only; no 1/gradient_accumulation_steps scaling

    def step(self) -> dict[str, float]:
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        self.model.step()  # reduce over ranks, clip, AdamW, schedule, zero the gradients
        norm = self.model.get_global_grad_norm()  # before clipping, like clip_grad_norm_
        return {"train/grad_norm": float("nan") if norm is None else float(norm), "train/lr": lr}

    def save(self, path: Path) -> None:
        """Collective: every rank calls it with the same dir; when it returns, the whole checkpoint is written."""
        import deepspeed

        path = Path(path)
        self.model.save_checkpoint(str(path), tag=TAG, save_latest=False)
        # ZeRO-3: every rank takes part in gathering the full weights, rank 0 writes them (a no-op under ZeRO-1/2)
        with deepspeed.zero.GatheredParameters(list(self.unwrapped.parameters())):
            if is_main_process():
                self.unwrapped.save_pretrained(path, max_shard_size="1000GB")  # one file, like trainer=torch
        dist.barrier()

    def load(self, path: Path) -> None:
        if not (Path(path) / TAG).is_dir():  # DeepSpeed itself fails on a bare assert
            raise FileNotFoundError(f"{path}: no DeepSpeed state in {TAG}/ (a checkpoint of another trainer?)")
        loaded, _ = self.model.load_checkpoint(
            str(path), tag=TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if loaded is None:
            raise RuntimeError(f"{path}: DeepSpeed could not load {TAG}/")
