"""Training checkpoints that a kill at any moment cannot break, and the choice of one to resume from.

    <run dir>/checkpoints/step_000010/   model weights (+ tokenizer), optimizer.pt, loop.json + rng.safetensors,
                                         MANIFEST.json (each file's size and sha256), then a COMPLETE marker
    <run dir>/checkpoints/latest         the newest complete checkpoint's name

A checkpoint is written into `.tmp-step_N/`, given its manifest, marked COMPLETE, then renamed (atomic on one file
system); `latest` is replaced atomically after that. A kill leaves at worst a `.tmp-*` folder, which the next save
removes; a failed write (a full disk) removes it at once and raises CheckpointError naming the folder. Resuming only
ever considers renamed folders holding the marker, and only those whose files match their manifest
(planner_rl/integrity.py): a damaged newest checkpoint is skipped with a warning for the one before it.

A training checkpoint holds the update backend's state (`backend.save`) and the loop's (loop.json + rng.safetensors:
step, data-order position, tokens generated, the newest evaluation, every RNG, the records' byte offsets), which is
all a resumed run needs to continue bit for bit (`save_training_checkpoint`, `resume_training`). Nothing in it is a
pickle: nothing read from a checkpoint can run code.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from planner_rl.integrity import CheckpointError, check_manifest, load_loop, save_loop, write_manifest

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


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def find_resume(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint to continue from: `auto` the newest complete one of this run that passes its manifest check
    (None if the run has none; damaged ones are skipped with a warning, CheckpointError if every one is damaged),
    `none` nothing, anything else a checkpoint directory (an error if it is not a complete, undamaged one)."""
    if resume == "none":
        return None
    if resume == "auto":
        done = complete_checkpoints(run_dir)
        for path in reversed(done):
            try:
                check_manifest(path)
                return path
            except CheckpointError as e:
                warn(f"skipping checkpoint {path.name}: {e}")
        if done:
            raise CheckpointError(
                f"{checkpoint_dir(run_dir)}: every complete checkpoint is damaged (see the warnings); move them away "
                "to start the run over, or resume from a copy with trainer.resume=<checkpoint dir>"
            )
        return None
    path = Path(resume).expanduser()
    if not (path / MARKER).exists():
        raise FileNotFoundError(f"trainer.resume={resume!r}: not a complete checkpoint directory (no {MARKER} in it)")
    check_manifest(path)
    return path


def usable(folder: Path) -> bool:
    """Whether a stage or cache folder is complete and passes its manifest check. A complete one that fails it is
    removed with a warning, so that it is made again (these folders are derived: nothing is lost)."""
    folder = Path(folder)
    if not is_complete(folder):
        return False
    try:
        check_manifest(folder)
        return True
    except CheckpointError as e:
        warn(f"{e}; removing it, it is made again")
        doomed = folder.parent / f".tmp-{folder.name}-damaged-{os.getpid()}"
        try:
            folder.rename(doomed)  # out of the way at once, also for another job that looks at it now
        except OSError:
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return False


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(error: BaseException, where: Path) -> bool:
    """Whether `error` (from any writer: open/write, torch.save, safetensors) is a full disk or quota at `where`."""
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    if any(getattr(e, "errno", None) in DISK_FULL for e in chain):
        return True
    text = " ".join(str(e) for e in chain)
    if "No space left" in text or "StorageFull" in text or "os error 28" in text or "Disk quota" in text:
        return True
    try:  # torch.save's writer says only "file write failed"
        st = os.statvfs(where)
        return st.f_bavail * st.f_frsize < (1 << 20)
    except OSError:
        return False


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
    try:
        write(tmp)
        sync()
        if main:
            write_manifest(tmp)
            (tmp / MARKER).write_text("")
            _fsync_tree(tmp)
    except Exception as e:
        if not disk_full(e, final.parent):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # frees the space it took; nothing is marked complete
        raise CheckpointError(
            f"disk full while writing {final} ({e}); nothing was marked complete. Free space under {final.parent} "
            "and run the same command again: the run continues from its last complete checkpoint"
        ) from e
    if main:
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
    last_eval: dict = field(default_factory=dict)  # the newest evaluation's metrics ({} before the first)


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
        loop = asdict(state)
        loop["eval"] = loop.pop("last_eval")
        save_loop(tmp, loop | {"rng": rng_state(), "offsets": records.offsets()})  # JSON + safetensors, no pickle


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
    loop = load_loop(ckpt)  # every field checked before the backend reads anything (a trust boundary: integrity.py)
    backend.load(ckpt)
    set_rng_state(loop["rng"])
    records.truncate(loop["offsets"])
    return LoopState(loop["step"], loop["position"], loop["generated"], loop["eval"]), ckpt


# --- the mean of the last checkpoints' weights (grpo.average_checkpoints) ---------------------------------------------
TRAINING_STATE = ("model.safetensors", "optimizer.pt", "loop.json", "rng.safetensors", "MANIFEST.json", MARKER)


def average_weights(folders: list[Path]) -> dict[str, torch.Tensor]:
    """The uniform mean of the checkpoints' model.safetensors (each checked against its manifest first), summed in
    float32 and cast back to each tensor's dtype; CheckpointError if their tensors' names or shapes differ."""
    from safetensors.torch import load_file

    if not folders:
        raise CheckpointError("no checkpoints to average")
    first, sums, dtypes = Path(folders[0]), {}, {}
    for folder in map(Path, folders):
        check_manifest(folder)
        weights = load_file(folder / "model.safetensors")
        if not sums:
            sums = {k: v.float().clone() for k, v in weights.items()}
            dtypes = {k: v.dtype for k, v in weights.items()}
            continue
        shapes = {k: tuple(v.shape) for k, v in weights.items()}
        if shapes != {k: tuple(v.shape) for k, v in sums.items()}:
            raise CheckpointError(f"{folder}: its weights' names or shapes differ from {first}'s: not one model's")
        for k, v in weights.items():
            sums[k] += v.float()
    return {k: (s / len(folders)).to(dtypes[k]) for k, s in sums.items()}


def write_average(out: Path, folders: list[Path], weights: dict[str, torch.Tensor]) -> Path:
    """A loadable model folder at `out` (atomically, with its manifest): `weights` (the mean of `folders`' from
    `average_weights`) with the newest folder's config and tokenizer files (no optimizer, no loop state)."""
    from safetensors.torch import save_file

    folders = [Path(f) for f in folders]

    def write(tmp: Path) -> None:
        for f in folders[-1].iterdir():
            if f.is_file() and f.name not in TRAINING_STATE:
                shutil.copy2(f, tmp / f.name)
        save_file({k: v.contiguous() for k, v in weights.items()}, tmp / "model.safetensors", {"format": "pt"})

    return write_atomically(Path(out), write)


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
    write_manifest(tmp)  # now with records.json
    try:
        tmp.rename(cache)
    except OSError:  # another job stored it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def load_stage(stage_dir: Path) -> dict:
    """stage.json of the SFT stage: whether weights were trained, the step-0 evaluation and the records' offsets."""
    path = Path(stage_dir) / "stage.json"
    try:
        stage = json.loads(path.read_text())
        ok = isinstance(stage["trained"], bool) and isinstance(stage["baseline"], dict)
        ok = ok and all(isinstance(v, int) and v >= 0 for v in stage["offsets"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if not ok:
        raise CheckpointError(f"{path}: needs trained (true/false), baseline (an object), offsets ({{file: bytes}})")
    return stage


def restore_stage(cache: Path, stage_dir: Path) -> dict[str, str]:
    """Copy a cached stage into a run as `stage_dir` (atomic; the copy keeps records.json, which its manifest
    lists); returns the records that led to it."""
    tmp = stage_dir.parent / f".tmp-{stage_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cache, tmp)
    records = json.loads((tmp / "records.json").read_text())
    if not (isinstance(records, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in records.items())):
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"{cache}/records.json: must map file names to their text")
    tmp.rename(stage_dir)
    return records
