"""Sweeps: Hydra multirun over a conf/sweep/*.yaml, one job per point; a failed job is recorded, not fatal.

    python -m planner_rl.train -m +sweep=generalization                         # the jobs one after another
    python -m planner_rl.train -m +sweep=generalization hydra/launcher=slurm    # the same jobs on a SLURM cluster
    python -m planner_rl.report multirun/generalization/<time>                  # tables and plots

Every job runs through `run_job`: it writes `status.json` in its run dir (`ok` or `failed` with the error and the
traceback, the overrides, the seconds) and, in a multirun, turns any exception into that record, so the sweep goes
on to the next job. When the multirun ends, `SweepSummary` (a Hydra callback, conf/hydra/default.yaml) collects the
jobs' records into <sweep dir>/sweep.json and prints the failed ones. It reads the files, not in-process state, so
it sees jobs that ran elsewhere (submitit) as well.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from planner_rl.progress import format_duration
from planner_rl.runlock import RunDirBusy


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(fn: Callable[[DictConfig], Any], cfg: DictConfig, known: tuple[type[BaseException], ...]) -> Any:
    """fn(cfg) with a status.json in the run dir. A single run: a `known` error (or a full disk) prints
    `error: ...` and exits 2, anything else raises. A multirun: every exception is recorded and printed, and the
    job returns None. A job refused because another holds the run dir writes nothing there."""
    run_dir = Path(cfg.paths.output_dir)
    hc = HydraConfig.get()
    status = {"job": hc.job.num if is_multirun() else None, "overrides": list(hc.overrides.task)}
    status["run_dir"] = str(run_dir)
    start = time.perf_counter()

    def record(**fields) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        status.update(fields, seconds=round(time.perf_counter() - start, 1))
        (run_dir / "status.json").write_text(json.dumps(status, indent=1))

    try:
        result = fn(cfg)
        record(status="ok")
        return result
    except Exception as e:
        if isinstance(e, RunDirBusy):  # the dir is another job's: leave its status.json alone
            print(f"error: {e}", file=sys.stderr)
            if is_multirun():
                return None
            sys.exit(2)
        with contextlib.suppress(OSError):  # a full disk may refuse the record too; the error is still printed
            record(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        if is_multirun():
            print(f"job {status['job']} failed ({' '.join(status['overrides'])}): {e}", file=sys.stderr)
            return None
        if isinstance(e, known) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        raise
    finally:
        gc.collect()  # the next job of a sweep runs in this process: free the models now
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def job_name(cfg: DictConfig) -> str:
    """The run's name for loggers: `name`, plus the job's overrides in a multirun (W&B groups a sweep by `name`)."""
    if not is_multirun():
        return cfg.name
    return f"{cfg.name}/{HydraConfig.get().job.override_dirname or HydraConfig.get().job.num}"


def collect(sweep_dir: Path) -> list[dict]:
    """The jobs' status records of a sweep dir, in job order."""
    found = [(p, json.loads(p.read_text())) for p in Path(sweep_dir).glob("*/status.json")]
    return [s for _, s in sorted(found, key=lambda x: (x[1].get("job") is None, x[1].get("job") or 0, str(x[0])))]


def sweep_size(params: dict[str, str], overrides: list[str]) -> int | None:
    """How many jobs the basic sweeper makes of `hydra.sweeper.params` and the command line's overrides (the
    command line wins); None when Hydra cannot say (another sweeper's syntax)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + list(overrides))
        return len(BasicSweeper.split_arguments(parsed, None)[0])
    except Exception:  # a progress count is never worth failing a sweep over
        return None


class SweepSummary(Callback):
    """Prints a line as each job of a multirun starts and ends (job i of n, its status and time); writes
    <sweep dir>/sweep.json (every job's status) when the multirun ends and prints the failed jobs."""

    total: int | None = None
    started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total = sweep_size(dict(config.hydra.sweeper.get("params") or {}), list(config.hydra.overrides.task))
        self.started = time.perf_counter()

    def _job(self, config: DictConfig) -> str:
        return f"sweep job {config.hydra.job.num + 1}/{self.total or '?'}"

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            print(f"{self._job(config)}: started ({' '.join(config.hydra.overrides.task)})", flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        status_file = Path(config.hydra.runtime.output_dir) / "status.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else {"status": "failed"}
        line = f"{self._job(config)}: {status['status']} in {status.get('seconds', 0):.0f} s"
        done = config.hydra.job.num + 1
        if self.total and self.started is not None and done < self.total:  # jobs one after another: mean job time
            line += f", eta {format_duration((time.perf_counter() - self.started) / done * (self.total - done))}"
        print(line, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = collect(sweep_dir)
        if not jobs:
            return
        failed = [j for j in jobs if j["status"] != "ok"]
        summary = {"jobs": len(jobs), "ok": len(jobs) - len(failed), "failed": len(failed), "records": jobs}
        (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=1))
        print(f"sweep {sweep_dir}: {summary['ok']}/{len(jobs)} jobs ok")
        for j in failed:
            print(f"  failed: job {j['job']} ({' '.join(j['overrides'])}): {j.get('error', '?')}")
