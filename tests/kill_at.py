"""Run the main job and SIGKILL it at a named point (tests/test_faults.py):

    python tests/kill_at.py POINT [overrides ...]          # = python -m planner_rl.train [overrides ...], killed

POINT is one of
    sft               mid-SFT: after the SFT stage's 3rd record
    sft_write         the SFT model written into .tmp-sft_model/, not yet marked complete
    grpo              mid-GRPO: after step 3's record, before its evaluation and checkpoint
    checkpoint_write  checkpoint step 4 written, not yet marked complete
    after_last        the last checkpoint complete, before the results are written

The process kills itself with SIGKILL (no handler, no `finally`, no flush), exactly as `kill -9` would, but at a
point that polling from outside could miss (a write takes milliseconds).
"""

import os
import runpy
import signal
import sys
from pathlib import Path

import planner_rl.checkpoint as checkpoint
import planner_rl.logger as logger

POINTS = ("sft", "sft_write", "grpo", "checkpoint_write", "after_last")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    if point in ("sft", "grpo"):
        log = logger.Records.log

        def log_then_die(self, metrics: dict) -> None:
            log(self, metrics)
            if point == "sft" and metrics.get("sft/step", 0) >= 3:
                die()
            if point == "grpo" and metrics.get("train/step") == 3 and "reward/mean" in metrics:
                die()

        logger.Records.log = log_then_die
    elif point in ("sft_write", "checkpoint_write"):
        write_manifest = checkpoint.write_manifest
        target = ".tmp-sft_model" if point == "sft_write" else ".tmp-step_000004"

        def die_before_manifest(folder: Path) -> None:
            if Path(folder).name == target:
                die()
            write_manifest(folder)

        checkpoint.write_manifest = die_before_manifest
    elif point == "after_last":
        complete = checkpoint.complete_checkpoints

        def die_after_last(run_dir: Path) -> list[Path]:
            latest = checkpoint.checkpoint_dir(run_dir) / "latest"  # save_checkpoint prunes after moving `latest`
            if latest.exists() and latest.read_text() == os.environ["KILL_AFTER_CHECKPOINT"]:
                die()
            return complete(run_dir)

        checkpoint.complete_checkpoints = die_after_last
    else:
        sys.exit(f"unknown point {point!r}; one of {', '.join(POINTS)}")


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.argv = ["planner_rl.train", *sys.argv[2:]]
    runpy.run_module("planner_rl.train", run_name="__main__", alter_sys=True)
