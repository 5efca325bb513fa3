"""The main job under data parallelism: trainer=deepspeed in one process and on two ranks (torchrun, gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("deepspeed")
ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["debug=smoke", "trainer=deepspeed", "trainer.zero_stage=2", "grpo.eval_every=0", "grpo.steps=3",
         "trainer.checkpoint_every=2"]  # fmt: skip


def launch(run_dir: Path, ranks: int, *extra: str) -> str:
    if ranks == 1:
        cmd = [sys.executable, "-m", "planner_rl.train"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "planner_rl.train"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run(
        [*cmd, *SMOKE, f"hydra.run.dir={run_dir}", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out.stdout


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def test_zero2_two_ranks_equal_one_process_on_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    out = launch(one, 1)
    assert "SFT+GRPO" in out
    launch(two, 2)  # the loop itself checks at every checkpoint that both ranks hold the same weights
    a, b = weights(one, 3), weights(two, 3)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    init = load_file(one / "sft_model" / "model.safetensors")
    assert any(not torch.allclose(init[k], a[k]) for k in a), "GRPO changed the weights"
    assert (two / "results.json").exists() and (two / "metrics.jsonl").read_text().count("reward/mean") == 3


def test_deepspeed_checkpoint_resumes(tmp_path):
    run = tmp_path / "run"
    launch(run, 1, "grpo.steps=2")  # checkpoint at step 2
    out = launch(run, 1)  # the same run dir with 3 steps: continues from step 2's DeepSpeed checkpoint
    assert "resumed from" in out
    whole = tmp_path / "whole"
    launch(whole, 1)
    a, b = weights(whole, 3), weights(run, 3)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
