"""Training checkpoints that a kill at any moment cannot break, and the choice of one to resume from.

    <run dir>/checkpoints/step_000010/   model weights (+ tokenizer), optimizer.pt, loop.pt, then a COMPLETE marker
    <run dir>/checkpoints/latest         the newest complete checkpoint's name

A checkpoint is written into `.tmp-step_N/`, marked COMPLETE, then renamed (atomic on one file system); `latest` is
replaced atomically after that. A kill leaves at worst a `.tmp-*` folder, which the next save removes; resuming only
ever considers renamed folders holding the marker, so it never reads half a checkpoint.

A training checkpoint holds the update backend's state (`backend.save`) and the loop's (`loop.pt`: step, data-order
position, tokens generated, every RNG, the records' byte offsets), which is all a resumed run needs to continue
bit for bit (`save_training_checkpoint`, `resume_training`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

MARKER = "COMPLETE"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / MARKER).exists()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step_")))


def find_resume(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint to continue from: `auto` the newest complete one of this run (None if there is none), `none`
    nothing, anything else a checkpoint directory (an error if it is not a complete one)."""
    if resume == "none":
        return None
    if resume == "auto":
        done = complete_checkpoints(run_dir)
        return done[-1] if done else None
    path = Path(resume).expanduser()
    if not (path / MARKER).exists():
        raise FileNotFoundError(f"trainer.resume={resume!r}: not a complete checkpoint directory (no {MARKER} in it)")
    return path


def write_atomically(
    final: Path, write: Callable[[Path], None], main: bool = True, sync: Callable[[], None] = lambda: None
) -> Path:
    """Fill a folder through `write(tmp_dir)`, mark it COMPLETE and rename it to `final` (replacing an old one).

    Under data parallelism every rank calls this with the same shared `final` (`sync` a barrier, `main` true on
    rank 0): rank 0 prepares and finishes the folder, every rank writes its part in between.
    """
    tmp = final.parent / f".tmp-{final.name}"
    if main:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed write
        tmp.mkdir()
    sync()
    write(tmp)
    sync()
    if main:
        (tmp / MARKER).write_text("")
        _fsync_tree(tmp)
        if final.exists():  # a re-run of the same step after a resume from an older checkpoint
            shutil.rmtree(final)
        tmp.rename(final)
    sync()
    return final


def is_complete(path: Path) -> bool:
    return (Path(path) / MARKER).exists()


def save_checkpoint(
    run_dir: Path,
    step: int,
    write: Callable[[Path], None],
    keep: int,
    main: bool = True,
    sync: Callable[[], None] = lambda: None,
) -> Path:
    """Write checkpoint `step` through `write(tmp_dir)`, atomically; keep the newest `keep` complete ones."""
    root = checkpoint_dir(run_dir)
    final = write_atomically(root / f"step_{step:06d}", write, main, sync)
    if main:
        pointer = root / ".latest.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / "latest")
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    sync()
    return final


# --- the GRPO loop's state: what a resumed run continues from ----------------------------------------------------
@dataclass
class LoopState:
    step: int = 0  # optimizer steps taken
    position: int = 0  # global data-order position of the next draw
    generated: int = 0  # completion tokens sampled so far, all ranks


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_training_checkpoint(tmp: Path, backend, tokenizer, state: LoopState, records, main: bool) -> None:
    backend.save(tmp)  # collective
    if main:
        tokenizer.save_pretrained(tmp)
        loop = asdict(state) | {"rng": rng_state(), "offsets": records.offsets()}
        torch.save(loop, tmp / "loop.pt")


def save_training_checkpoint(
    run_dir: Path, state: LoopState, backend, tokenizer, records, keep: int, main: bool, sync: Callable[[], None]
) -> Path:
    """Checkpoint `state.step`: the backend's state on every rank, rank 0 the tokenizer and the loop's state."""
    write = functools.partial(
        _write_training_checkpoint, backend=backend, tokenizer=tokenizer, state=replace(state), records=records,
        main=main,
    )  # fmt: skip
    return save_checkpoint(run_dir, state.step, write, keep, main, sync)


def resume_training(run_dir: Path, resume: str, backend, records, stage_offsets: dict[str, int]) -> tuple:
    """(LoopState, checkpoint or None): load the checkpoint `resume` names into the backend and restore the RNGs,
    cutting the records back to it; with none, cut them back to the end of the SFT stage (`stage_offsets`)."""
    ckpt = find_resume(run_dir, resume)
    if ckpt is None:
        records.truncate(stage_offsets)
        return LoopState(), None
    backend.load(ckpt)
    loop = torch.load(ckpt / "loop.pt", weights_only=False)
    set_rng_state(loop["rng"])
    records.truncate(loop["offsets"])
    return LoopState(loop["step"], loop["position"], loop.get("generated", 0)), ckpt


def _fsync_tree(path: Path) -> None:
    """Flush a folder's files to disk before it is renamed into place (a power cut, not only a kill)."""
    for f in path.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())


# --- the SFT stage cache: sweep jobs that differ only after SFT share one SFT run ------------------------------------
# what the SFT stage and its evaluation run: data, environment, prompts, model, SFT, evaluation, sampling
STAGE_SOURCES = ("data.py", "prompts.py", "parsing.py", "rewards.py", "model.py", "sft.py", "evaluate.py",
                 "eval_protocol.py", "env/*.py", "rollout/hf.py", "rollout/__init__.py")  # fmt: skip


def source_hash() -> str:
    """A hash of the source the stage runs: a cached stage is reused only by the code that made it."""
    h = hashlib.sha256()
    root = Path(__file__).parent
    for f in sorted({f for pattern in STAGE_SOURCES for f in root.glob(pattern)}):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stage_key(parts: dict) -> str:
    """Content address of a stage: its inputs (resolved config sections, JSON-able) and the source."""
    text = json.dumps(parts, sort_keys=True, default=str) + source_hash()
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def store_stage(stage_dir: Path, cache: Path, records: dict[str, str]) -> None:
    """Copy a complete stage folder, and the run's records up to it, into `cache` (atomic; first writer wins)."""
    if is_complete(cache):
        return
    tmp = cache.parent / f".tmp-{cache.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(stage_dir, tmp)
    (tmp / "records.json").write_text(json.dumps(records))
    try:
        tmp.rename(cache)
    except OSError:  # another job stored it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def restore_stage(cache: Path, stage_dir: Path) -> dict[str, str]:
    """Copy a cached stage into a run as `stage_dir` (atomic); returns the records that led to it."""
    tmp = stage_dir.parent / f".tmp-{stage_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cache, tmp, ignore=shutil.ignore_patterns("records.json"))
    tmp.rename(stage_dir)
    return json.loads((cache / "records.json").read_text())
