"""A run's records: metrics and sample completions as JSONL in the run dir, mirrored to the configured logger.

    logger=none    only the JSONL files (conf/logger/none.yaml)
    logger=wandb   also Weights & Biases: online when an API key is set, offline otherwise (conf/logger/wandb.yaml)

Metric names carry one of the prefixes of docs/metrics.md (`train/ rollout/ reward/ loss/ eval/ perf/`, and `sft/`
for the warm start). The files are append-only and can be cut back to a checkpoint's offsets on resume, so a
resumed run's records equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NoLoggerConfig:
    _target_: str = "planner_rl.logger.NoLogger"


@dataclass
class WandbConfig:
    _target_: str = "planner_rl.logger.WandbLogger"
    project: str = "planner_rl"
    entity: str | None = None
    group: str | None = None  # e.g. a sweep's name
    tags: list[str] = field(default_factory=list)
    mode: str = "auto"  # auto: online with an API key (WANDB_API_KEY or `wandb login`), else offline | online | offline


class NoLogger:
    def __init__(self, cfg: NoLoggerConfig, run_dir: Path, config: dict, name: str):
        pass

    def log(self, metrics: dict) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self) -> None:
        pass


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class WandbLogger:
    def __init__(self, cfg: WandbConfig, run_dir: Path, config: dict, name: str):
        import wandb

        if cfg.mode not in ("auto", "online", "offline"):
            raise ValueError(f"logger.mode must be auto, online or offline, got {cfg.mode!r}")
        mode = ("online" if _has_wandb_key() else "offline") if cfg.mode == "auto" else cfg.mode
        id_file = Path(run_dir) / "wandb_id.txt"  # a resumed run continues the same W&B run
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags), name=name, config=config,
            dir=str(run_dir), id=run_id, resume="allow", mode=mode,
        )  # fmt: skip
        self.run.define_metric("train/step")
        self.run.define_metric("sft/step")
        self.run.define_metric("sft/*", step_metric="sft/step")
        for prefix in ("train", "rollout", "reward", "loss", "eval", "perf"):
            self.run.define_metric(f"{prefix}/*", step_metric="train/step")

    def log(self, metrics: dict) -> None:
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})

    def table(self, key: str, columns: list[str], rows: list[list]) -> None:
        import wandb

        self.run.log({key: wandb.Table(columns=columns, data=rows)})

    def summary(self, metrics: dict) -> None:
        self.run.summary.update(metrics)

    def finish(self) -> None:
        self.run.finish()


def json_safe(value):
    """JSON-safe: NaN and inf become None (json.dumps would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sound_prefix(path: Path, limit: int) -> int:
    """The longest prefix of the JSONL file `path`, at most `limit` bytes, that ends in a whole, parseable line."""
    with open(path, "rb") as fh:
        data = fh.read(limit)
    end = data.rfind(b"\n") + 1  # a line cut off by a kill has no newline yet
    while end > 0:
        start = data.rfind(b"\n", 0, end - 1) + 1
        try:
            json.loads(data[start:end])
            return end
        except ValueError:  # garbage (a torn write, a disk error): drop it and look at the line before
            end = start
    return 0


class Records:
    """metrics.jsonl and samples.jsonl of a run dir, plus the logger they are mirrored to."""

    FILES = ("metrics.jsonl", "samples.jsonl")

    def __init__(self, run_dir: Path, logger, enabled: bool = True):
        self.run_dir, self.logger, self.enabled = Path(run_dir), logger, enabled  # disabled on ranks other than 0
        self.files = {name: (self.run_dir / name).open("a") for name in self.FILES} if enabled else {}

    def log(self, metrics: dict) -> None:
        if not self.enabled:
            return
        self._write("metrics.jsonl", metrics)
        self.logger.log(metrics)

    def samples(self, step: int, columns: list[str], rows: list[list]) -> None:
        if not self.enabled:
            return
        for row in rows:
            self._write("samples.jsonl", {"train/step": step, **dict(zip(columns, row, strict=True))})
        self.logger.table("rollout/samples", columns, rows)

    def _write(self, name: str, record: dict) -> None:
        fh = self.files[name]
        try:
            fh.write(json.dumps({k: json_safe(v) for k, v in record.items()}) + "\n")
            fh.flush()
        except OSError as e:  # a full disk: say which file (a torn last line is cut on resume)
            raise OSError(e.errno, e.strerror, str(self.run_dir / name)) from e

    def offsets(self) -> dict[str, int]:
        """Byte sizes of the files now, to store with a checkpoint."""
        return {name: fh.tell() for name, fh in self.files.items()}

    def truncate(self, offsets: dict[str, int]) -> None:
        """Cut the files back to `offsets` (missing names: to empty): records after a checkpoint are redone. A file
        that ends in a damaged line there, or is shorter than the offset, is cut back to its last whole record,
        with a warning."""
        for name, fh in self.files.items():
            fh.flush()
            want = offsets.get(name, 0)
            keep = sound_prefix(self.run_dir / name, want)
            if keep < want:
                print(f"warning: {self.run_dir / name}: damaged or short before byte {want} (the checkpoint's "
                      f"offset); cut back to its last whole record, byte {keep}", file=sys.stderr)  # fmt: skip
            fh.truncate(keep)
            fh.seek(0, os.SEEK_END)

    def text(self) -> dict[str, str]:
        """The files' contents so far (a cached stage keeps the records that led to it)."""
        return {name: (self.run_dir / name).read_text() for name in self.files}

    def restore(self, texts: dict[str, str]) -> None:
        """Start the files over from `texts` (a cached stage's records), mirroring their metrics to the logger."""
        self.truncate({})
        for name, text in texts.items():
            if name in self.files:
                self.files[name].write(text)
                self.files[name].flush()
        for line in texts.get("metrics.jsonl", "").splitlines():
            self.logger.log(json.loads(line))

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
