"""One job per run dir: an exclusive lock on `<run dir>/.lock`, held by the job's rank 0 until it ends.

    python -m planner_rl.train hydra.run.dir=outputs/x      # a second one on outputs/x stops at once:
    error: run dir outputs/x is in use by another job (pid 4242 on host node1, since 2026-01-01 10:00:00 UTC) ...

The lock is an `fcntl.flock` on the file, so the kernel releases it when the holder exits in any way (a SIGKILL
too); the file records the holder's pid and host. A job that takes the lock and finds a record left in it learns
that the previous holder died without releasing it (a stale lock) and says so. On a file system without flock
(some network mounts refuse it) the record alone decides: a live pid on this host holds the run dir, a dead one is
stale. Within one process the lock is re-entrant (the Hydra callback and `train` both take it), and it is per run
dir, so the jobs of a sweep, each in its own dir, run as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

LOCK_FILE = ".lock"
_HELD: dict[str, list] = {}  # resolved run dir -> [fd, depth]


class RunDirBusy(RuntimeError):
    """Another live job holds the run dir; the message names the dir and the holder's pid."""


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {holder.get('since', '?')}"


def acquire(run_dir: Path) -> None:
    """Take `run_dir` for this process, or raise RunDirBusy naming the dir and the pid that holds it."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        holder, host = _read(fd), socket.gethostname()
        busy = f"run dir {run_dir} is in use by another job ({_describe(holder)}); wait for it to end or use another"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(busy + " hydra.run.dir") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            # no flock here: trust the record, as far as it can be checked
            if holder.get("pid") and (holder.get("host") != host or _alive(int(holder["pid"]))):
                gone = f"no file locks on this file system: remove {run_dir / LOCK_FILE} if that job is gone"
                raise RunDirBusy(f"{busy} hydra.run.dir ({gone})") from None
        holder = _read(fd)  # again: the job seen before may have released it meanwhile
        if holder.get("pid"):
            print(f"note: {run_dir}: the previous job ({_describe(holder)}) ended without releasing it (killed?); "
                  "taking it over", file=sys.stderr)  # fmt: skip
        record = {"pid": os.getpid(), "host": host, "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]


def release(run_dir: Path) -> None:
    """Give `run_dir` back (the last of nested `acquire`s); an empty lock file marks a clean release."""
    key = str(Path(run_dir).resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    fd = _HELD.pop(key)[0]
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)  # closing drops the flock


class RunDirLock:
    """`with RunDirLock(run_dir, enabled=rank == 0):` holds the run dir for the block."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled

    def __enter__(self) -> RunDirLock:
        if self.enabled:
            acquire(self.run_dir)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            release(self.run_dir)


class RunDirLockCallback(Callback):
    """conf/hydra/default.yaml: a single run takes its run dir before Hydra writes .hydra/ into it, so a second job
    stops before it touches anything (a multirun's jobs each take theirs in `train`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if int(os.environ.get("RANK", "0")) != 0:  # rank 0 holds it for the job
            return
        try:
            acquire(Path(config.hydra.run.dir))
        except RunDirBusy as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if int(os.environ.get("RANK", "0")) == 0:
            release(Path(config.hydra.run.dir))
