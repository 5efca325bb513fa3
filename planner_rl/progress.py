"""Progress a person sees in any log: tqdm bars on a terminal, plain lines when stdout is not one.

    bar = Progress("sft", total=1104)        # in a loop: bar.update(1, loss=0.41); at the end: bar.close()

On a terminal (stderr) the bar is tqdm's, as before. When stdout is not a terminal (a file, a pipe, CI) a line like

    sft 320/1104 (29%) 9.1 step/s eta 1m26s | loss 0.412

is printed, and flushed, at most every `PLANNER_RL_PROGRESS_EVERY` seconds (15 by default) while work goes on, so a
log never stays silent for minutes. The formatting and the throttle are pure (`format_line`, `Throttle`; the clock
is injected) and unit-tested; `Progress` only wires them to tqdm and stdout.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

DEFAULT_EVERY = 15.0  # seconds between two lines in a log


def format_duration(seconds: float) -> str:
    """42s, 3m05s, 1h02m: short and sortable by eye."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_line(stage: str, done: int, total: int | None, elapsed: float, unit: str, metrics: dict, start: int = 0):
    """One progress line: stage, done/total (percent), rate since `start` (units done before this process began,
    e.g. a resumed run's steps), ETA, then the stage's key metrics."""
    rate = (done - start) / elapsed if elapsed > 0 else 0.0
    head = f"{stage} {done}/{total} ({done / total:.0%})" if total else f"{stage} {done}"
    parts = [head, f"{rate:.3g} {unit}/s" if rate >= 0.1 or rate == 0 else f"{1 / rate:.3g} s/{unit}"]
    if total and rate > 0:
        parts.append(f"eta {format_duration((total - done) / rate)}")
    line = " ".join(parts)
    if metrics:
        line += " | " + " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    return line


class Throttle:
    """due(now) is True at most once per `every` seconds, the first time `every` seconds after `start`."""

    def __init__(self, every: float, start: float):
        self.every, self.last = every, start

    def due(self, now: float) -> bool:
        if now - self.last < self.every:
            return False
        self.last = now
        return True


def every_seconds() -> float:
    value = os.environ.get("PLANNER_RL_PROGRESS_EVERY", "")
    try:
        return float(value) if value else DEFAULT_EVERY
    except ValueError:
        raise ValueError(f"PLANNER_RL_PROGRESS_EVERY must be a number of seconds, got {value!r}") from None


def say(text: str) -> None:
    """A line that does not break a bar on the terminal, and reaches a piped log at once."""
    tqdm.write(text)
    sys.stdout.flush()


class Progress:
    """A stage's progress: a tqdm bar on a terminal, throttled lines when stdout is not a terminal."""

    def __init__(
        self,
        stage: str,
        total: int | None,
        *,
        initial: int = 0,
        unit: str = "step",
        enabled: bool = True,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        lines: bool | None = None,  # None: when stdout is not a terminal
        write: Callable[[str], None] = say,
    ):
        self.stage, self.total, self.unit, self.done, self.start = stage, total, unit, initial, initial
        self.clock, self.write, self.metrics = clock, write, {}
        self.t0 = clock()
        self.throttle = Throttle(every_seconds() if every is None else every, self.t0)
        self.lines = enabled and (not sys.stdout.isatty() if lines is None else lines)
        self.bar = tqdm(
            total=total, initial=initial, desc=stage, unit=unit, dynamic_ncols=True, disable=None if enabled else True
        )  # fmt: skip  (None: off when stderr is not a terminal)

    def update(self, n: int = 1, **metrics) -> None:
        """`n` more units done; `metrics` (the stage's key figures) replace the ones shown so far."""
        self.done += n
        self.metrics.update(metrics)
        self.bar.update(n)
        if metrics:
            self.bar.set_postfix(metrics, refresh=False)
        now = self.clock()
        if self.lines and self.throttle.due(now):
            self.write(format_line(self.stage, self.done, self.total, now - self.t0, self.unit, self.metrics,
                                   self.start))  # fmt: skip

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
