"""The fault-injection suite: crafted and damaged files, a second job on a run dir, SIGKILL at five points, a full
disk, fuzzed model outputs and task files. docs/reliability.md lists each promise with the test that proves it."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load, load_file, save_file

from planner_rl.checkpoint import find_resume, rng_state, save_checkpoint, set_rng_state, usable, write_atomically
from planner_rl.integrity import MANIFEST, CheckpointError, check_manifest, load_loop, save_loop, write_manifest
from planner_rl.logger import Records
from planner_rl.runlock import LOCK_FILE, RunDirBusy, acquire, release

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ("debug=smoke", "grpo.steps=6", "grpo.eval_every=3", "trainer.keep_checkpoints=5")


def job_env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), **extra}


def train_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "planner_rl.train", f"hydra.run.dir={run_dir}", *overrides]


def run(cmd: list[str], ok: bool = True, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=ROOT, env=job_env(**env), capture_output=True, text=True, timeout=600)
    if ok:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without timings (perf/), which differ between runs."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


class RunsCode:
    """Unpickling this runs `touch <marker>`: what a crafted checkpoint file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def loop_state(step: int = 2) -> dict:
    return {"step": step, "position": 4, "generated": 40, "offsets": {"metrics.jsonl": 0}, "eval": {},
            "rng": rng_state()}  # fmt: skip


def fake_checkpoint(run_dir: Path, step: int, keep: int = 5) -> Path:
    def write(d: Path) -> None:
        save_loop(d, loop_state(step))
        (d / "weights.bin").write_bytes(os.urandom(4096))

    return save_checkpoint(run_dir, step, write, keep)


# --- 1. nothing read from disk runs code -------------------------------------------------------------------------
def test_a_crafted_pickle_in_a_checkpoint_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    (RunsCode(marker).__reduce__()[0])("true")  # the payload itself works when called
    ckpt = fake_checkpoint(tmp_path / "run", 2)
    (ckpt / "loop.json").unlink()
    (ckpt / "loop.pt").write_bytes(pickle.dumps({"step": 2, "x": RunsCode(marker)}))  # an old-format loop file
    write_manifest(ckpt)  # whoever crafts a folder can rewrite its manifest: the manifest is no defence here
    assert find_resume(tmp_path / "run", "auto") == ckpt
    with pytest.raises(CheckpointError, match=r"no loop\.json \(loop\.pt is the old pickle format.*not loaded"):
        load_loop(ckpt)
    assert not marker.exists()

    # a crafted loop.pt slipped beside a real loop.json, manifest left alone: refused before anything is read
    ckpt = fake_checkpoint(tmp_path / "run2", 2)
    (ckpt / "loop.pt").write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(CheckpointError, match=r"every complete checkpoint is damaged"):
        find_resume(tmp_path / "run2", "auto")
    with pytest.raises(CheckpointError, match=r"files not in its MANIFEST\.json: loop\.pt"):
        check_manifest(ckpt)
    assert not marker.exists()


def test_a_crafted_optimizer_file_is_refused_and_runs_no_code(tmp_path):
    from planner_rl.trainer.torch import TorchTrainer, TorchTrainerConfig

    marker = tmp_path / "pwned"
    model = torch.nn.Linear(2, 2)
    trainer = TorchTrainer(model, TorchTrainerConfig(), total_steps=1)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    torch.save({"optimizer": RunsCode(marker), "scheduler": {}, "scaler": {}}, tmp_path / "optimizer.pt")
    refused = r"optimizer\.pt: refused, .*could run code on load \(.*GLOBAL posix\.system"
    with pytest.raises(CheckpointError, match=refused):
        trainer.load(tmp_path)
    assert not marker.exists()


def test_the_main_job_refuses_a_crafted_checkpoint(tmp_path, trained):
    """End to end: a real run's newest checkpoint given a code-running loop.pt (and a matching manifest)."""
    run_dir, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(trained, run_dir)
    ckpt = run_dir / "checkpoints" / "step_000002"
    (ckpt / "loop.json").unlink()
    (ckpt / "loop.pt").write_bytes(pickle.dumps({"step": 2, "x": RunsCode(marker)}))
    write_manifest(ckpt)
    out = run(train_cmd(run_dir, *TRAINED, "grpo.steps=3"), ok=False)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"error: {ckpt}: no loop.json (loop.pt is the old pickle format" in out.stderr
    assert "Traceback" not in out.stderr and not marker.exists()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(step=-1), "'step' must be an integer >= 0"),
        (lambda d: d.update(position="4"), "'position'"),
        (lambda d: d["offsets"].update({"metrics.jsonl": 1.5}), "'offsets'"),
        (lambda d: d["rng"]["python"][1].pop(), "'rng.python'"),
        (lambda d: d["rng"]["numpy"].__setitem__(0, "PCG64"), "'rng.numpy'"),
        (lambda d: d["rng"]["numpy"].__setitem__(4, "nan"), r"'rng\.numpy\[4\]'"),
        (lambda d: d.update(eval={"eval/sr": "high"}), "'eval'"),
        (lambda d: d.pop("rng"), "'rng' must be an object"),
    ],
)
def test_a_damaged_loop_file_names_the_field(tmp_path, edit, field):
    save_loop(tmp_path, loop_state())
    doc = json.loads((tmp_path / "loop.json").read_text())
    edit(doc)
    (tmp_path / "loop.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=rf"loop\.json: field {field}"):
        load_loop(tmp_path)
    (tmp_path / "loop.json").write_text('{"step": 1,')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_loop(tmp_path)


def test_the_loop_state_restores_every_generator_exactly(tmp_path):
    import random

    import numpy as np

    random.gauss(0, 1), np.random.randn()  # cached Gaussians: the states' rarely set fields
    save_loop(tmp_path, loop_state())
    draw = lambda: (random.random(), random.gauss(0, 1), np.random.randn(), torch.rand(3).tolist())  # noqa: E731
    first = draw()
    set_rng_state(load_loop(tmp_path)["rng"])
    assert draw() == first


# --- 3. damaged or partial state never passes silently -------------------------------------------------------------
def test_a_damaged_checkpoint_is_skipped_for_the_one_before(tmp_path, capsys):
    run_dir = tmp_path / "run"
    one, two, three = (fake_checkpoint(run_dir, s) for s in (1, 2, 3))
    assert find_resume(run_dir, "auto") == three
    with open(three / "weights.bin", "r+b") as fh:  # truncated
        fh.truncate(100)
    assert find_resume(run_dir, "auto") == two
    assert "skipping checkpoint step_000003" in capsys.readouterr().err
    data = bytearray((two / "weights.bin").read_bytes())
    data[2000] ^= 1  # one flipped bit, same size
    (two / "weights.bin").write_bytes(bytes(data))
    assert find_resume(run_dir, "auto") == one
    assert "weights.bin does not match its sha256" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="has 100 bytes"):
        find_resume(run_dir, str(three))  # asked for by name: an error, not a fallback
    (one / MANIFEST).write_text("{")
    with pytest.raises(CheckpointError, match="every complete checkpoint is damaged"):
        find_resume(run_dir, "auto")
    (one / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=r"no MANIFEST\.json"):
        check_manifest(one)
    four = fake_checkpoint(run_dir, 4)
    (four / "weights.bin").unlink()
    (four / "weights.bin").symlink_to("/etc/hostname")
    with pytest.raises(CheckpointError, match="symbolic link"):
        check_manifest(four)
    (four / "weights.bin").unlink()
    with pytest.raises(CheckpointError, match=r"weights\.bin is missing"):
        check_manifest(four)


def test_a_damaged_stage_or_cache_folder_is_removed_and_made_again(tmp_path, capsys):
    stage = write_atomically(tmp_path / "sft_model", lambda d: (d / "model.safetensors").write_bytes(b"x" * 64))
    assert usable(stage)
    (stage / "model.safetensors").write_bytes(b"y" * 64)
    assert not usable(stage) and not stage.exists()
    assert "does not match its sha256" in capsys.readouterr().err
    assert not usable(tmp_path / "nothing")


def test_a_full_disk_during_a_checkpoint_leaves_nothing_complete(tmp_path):
    run_dir = tmp_path / "run"
    fake_checkpoint(run_dir, 1)

    def fill_disk(d: Path) -> None:
        (d / "weights.bin").write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match=r"disk full while writing .*step_000002.*nothing was marked complete"):
        save_checkpoint(run_dir, 2, fill_disk, keep=5)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step_000001"]
    assert find_resume(run_dir, "auto").name == "step_000001"
    with pytest.raises(ZeroDivisionError):  # any other failure is not dressed up as a full disk
        save_checkpoint(run_dir, 2, lambda d: 1 / 0, keep=5)


def test_a_damaged_last_jsonl_line_is_cut_on_resume(tmp_path, capsys):
    rec = Records(tmp_path, logger=None)
    rec._write("metrics.jsonl", {"train/step": 1})
    at = rec.offsets()
    rec._write("metrics.jsonl", {"train/step": 2})
    rec.files["metrics.jsonl"].write('{"train/step": 3, "rew')  # a kill in the middle of a line
    rec.files["metrics.jsonl"].flush()
    rec.truncate(at)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"train/step": 1}\n'
    assert capsys.readouterr().err == ""  # cut back to the checkpoint's offset: nothing unusual
    rec._write("metrics.jsonl", {"train/step": 2})
    size = rec.offsets()["metrics.jsonl"]
    with open(tmp_path / "metrics.jsonl", "r+b") as fh:  # damaged inside what the checkpoint counted
        fh.seek(size - 5)
        fh.write(b"\x00\x00\x00\x00\n")
    rec.truncate({"metrics.jsonl": size + 100})  # ... and shorter than it says
    assert (tmp_path / "metrics.jsonl").read_text() == '{"train/step": 1}\n'
    assert "cut back to its last whole record" in capsys.readouterr().err
    rec.close()


def test_a_damaged_expert_cache_entry_is_solved_again(tmp_path):
    from planner_rl.data import _instance_job, expert_trajectory
    from planner_rl.prompts import PromptConfig

    cache = tmp_path / "expert"
    job = ("cheese_sandwich", 3, PromptConfig(), {"expert_cache": str(cache)})
    good = _instance_job(job)
    (entry,) = cache.iterdir()
    plan = json.loads(entry.read_text())
    for damage in ["{garbage", '{"plan": 3}', json.dumps({"plan": [1, 2], "optimal": [[1], [2]]}),
                   json.dumps({**plan, "plan": plan["plan"][::-1]})]:  # fmt: skip
        entry.write_text(damage)
        assert _instance_job(job) == good, damage
        if damage.startswith('{"plan"') and "optimal" in damage and "[1, 2]" not in damage:
            assert json.loads(entry.read_text()) == plan  # the plan that did not replay was rewritten
    assert expert_trajectory("cheese_sandwich", 3, str(cache)).plan == tuple(plan["plan"])


def test_a_damaged_tiny_model_build_is_rebuilt(tmp_path, capsys):
    from planner_rl.model import build_tiny, model_config

    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip
    cfg = model_config({"name": "tiny", "cache_dir": str(tmp_path), **sizes})
    path = build_tiny(cfg)
    before = load((path / "model.safetensors").read_bytes())  # a copy: load_file maps the file it is cut below
    with open(path / "model.safetensors", "r+b") as fh:
        fh.truncate(1000)
    assert build_tiny(cfg) == path
    assert "has 1000 bytes" in capsys.readouterr().err
    assert_same_weights(before, load((path / "model.safetensors").read_bytes()))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the damaged build is gone


def test_a_dataset_dir_that_is_not_ours_is_refused_naming_it(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict(
        {"train": Dataset.from_list([{"prompt": "x"}]), "test": Dataset.from_list([{"prompt": "y"}])}
    ).save_to_disk(str(tmp_path / "data"))
    cmd = [sys.executable, "-m", "planner_rl.sft", f"data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"]
    out = run(cmd, ok=False)
    assert (
        out.returncode == 2 and f"error: data_dir={tmp_path / 'data'}: not a `python -m planner_rl.data`" in out.stderr
    )


# --- 2. one job per run dir ----------------------------------------------------------------------------------------
def test_the_run_dir_lock_is_exclusive_reentrant_and_detects_a_stale_one(tmp_path, capsys):
    held = "from planner_rl.runlock import acquire; import sys, time; acquire(sys.argv[1]); print('held', flush=True)"
    other = subprocess.Popen([sys.executable, "-c", held + "; time.sleep(60)", str(tmp_path)], env=job_env(),
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=rf"run dir {tmp_path} is in use by another job \(pid {other.pid} on"):
            acquire(tmp_path)
    finally:
        other.kill()  # SIGKILL: no release; the kernel drops the flock, the record stays
        other.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == other.pid
    acquire(tmp_path)
    assert f"the previous job (pid {other.pid}" in capsys.readouterr().err  # the stale lock is noticed
    acquire(tmp_path)  # re-entrant within one process (the Hydra callback, then `train`)
    release(tmp_path)
    probe = [sys.executable, "-c", held, str(tmp_path)]
    assert "in use by another job" in run(probe, ok=False).stderr  # still held: one release of two
    release(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text() == ""  # a clean release leaves an empty record
    assert run(probe).stdout.strip() == "held"


def test_a_second_job_on_a_run_dir_stops_at_once_naming_it_and_the_pid(tmp_path):
    run_dir = tmp_path / "run"
    acquire(run_dir)  # this process stands for the first job
    try:
        t0 = time.perf_counter()
        out = run(train_cmd(run_dir, "debug=smoke"), ok=False)
        seconds = time.perf_counter() - t0
    finally:
        release(run_dir)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"error: run dir {run_dir} is in use by another job (pid {os.getpid()} on host" in out.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # nothing written: no .hydra/, no status.json
    assert seconds < 60  # at once: before any data, model or SFT work


# --- 4. SIGKILL at five points, then the same command again ---------------------------------------------------
TRAINED = ("debug=smoke", "grpo.steps=2", "trainer.checkpoint_every=1", "grpo.eval_every=0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A short real run with checkpoints at steps 1 and 2 (copied by the tests that tamper with it)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run(train_cmd(run_dir, *TRAINED))
    return run_dir


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted reference run of the kill and full-disk tests."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    run(train_cmd(run_dir, *SMOKE))
    return run_dir


@pytest.mark.parametrize(
    "point",
    [pytest.param("sft", marks=pytest.mark.slow), pytest.param("sft_write", marks=pytest.mark.slow), "grpo",
     pytest.param("checkpoint_write", marks=pytest.mark.slow), pytest.param("after_last", marks=pytest.mark.slow)],
)  # fmt: skip
def test_sigkill_at_any_point_then_resume_matches_an_uninterrupted_run(tmp_path, whole, point):
    killed = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "tests" / "kill_at.py"), point, f"hydra.run.dir={killed}", *SMOKE]
    out = run(cmd, ok=False, KILL_AFTER_CHECKPOINT="step_000006")
    assert out.returncode == -9, out.stdout[-2000:] + out.stderr[-2000:]  # killed where asked, not ended
    assert not (killed / "results.json").exists()
    if point in ("sft", "sft_write"):
        assert not (killed / "sft_model").exists()
    if point == "checkpoint_write":
        assert (killed / "checkpoints" / ".tmp-step_000004" / "model.safetensors").exists()
        assert not (killed / "checkpoints" / "step_000004").exists()
    out = run(train_cmd(killed, *SMOKE)).stdout  # trainer.resume=auto: the same command continues the run
    assert ("resumed from" in out) == (point not in ("sft", "sft_write"))
    assert_same_weights(weights(whole, 6), weights(killed, 6))
    assert records(whole) == records(killed)
    untimed = lambda d: {k: v for k, v in d.items() if not k.startswith("perf/")}  # noqa: E731
    a, b = (json.loads((r / "results.json").read_text()) for r in (whole, killed))
    assert untimed(a["final"]) == untimed(b["final"]) and untimed(a["sft_only"]) == untimed(b["sft_only"])
    assert a["steps"] == b["steps"] == 6
    init = load_file(whole / "sft_model" / "model.safetensors")
    assert any(not torch.equal(init[k], v) for k, v in weights(whole, 6).items()), "GRPO changed the weights"


@pytest.mark.parametrize("states", ["policy", "expert"])
def test_a_resume_between_refreshes_of_the_pool_matches_an_uninterrupted_run(tmp_path, states):
    """grpo.refresh_states_every=2: killed after step 3, resumed from step 2's checkpoint, the pool is rebuilt from
    the step-2 weights, as the unbroken run rebuilt it before step 3, and refreshed once more after step 4; with the
    policy's states collected again (states=policy) or the SFT model's pool filtered again (states=expert; on the
    layouts the SFT model fails, grpo.layouts=failed, played again from the SFT model on resume)."""
    layouts = "failed" if states == "expert" else "all"
    refresh = (*SMOKE, f"grpo.states={states}", "grpo.refresh_states_every=2", "grpo.max_sft_p=0.99",
               f"grpo.layouts={layouts}")  # fmt: skip
    filtered = r"(\d+) of (\d+) prompts kept, the label's probability under the policy at GRPO step (\d+)"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    out = whole_out = run(train_cmd(whole, *refresh)).stdout
    pools = re.findall(filtered, out)
    assert [int(step) for _, _, step in pools] == [2, 4]
    # each pool's figures with the step after it was built: the SFT model's, then the refreshes'
    figures = [r for r in records(whole) if "pool/label_p" in r]
    assert [r["train/step"] for r in figures] == [1, 3, 5]
    first = re.search(r"(\d+) of \d+ prompts kept, the label's probability under the SFT model", out).group(1)
    assert figures[0]["pool/prompts"] == int(first) and figures[0]["pool/label_p"] <= 0.99  # the kept ones' mean
    assert [r["pool/prompts"] for r in figures[1:]] == [int(kept) for kept, _, _ in pools]
    if states == "expert":  # each refresh filters the SFT model's pool, not every expert state again
        assert all(total == first and int(kept) <= int(total) for kept, total, _ in pools)
    else:
        assert [int(n) for n in re.findall(r"off-plan states of the policy at GRPO step (\d+)", out)] == [2, 4]
    cmd = [sys.executable, str(ROOT / "tests" / "kill_at.py"), "grpo", f"hydra.run.dir={killed}", *refresh]
    assert run(cmd, ok=False).returncode == -9
    out = run(train_cmd(killed, *refresh)).stdout
    assert "resumed from" in out
    assert re.findall(filtered, out) == pools
    if layouts == "failed":  # played once per run, before the pool: the same layouts after the resume
        played = [re.findall(r"the SFT model fails (\d+ of \d+) GRPO layouts", o) for o in (whole_out, out)]
        assert len(played[0]) == 1 and played[0] == played[1]
    assert_same_weights(weights(whole, 6), weights(killed, 6))
    assert records(whole) == records(killed)


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(tmp_path, trained):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    with open(run_dir / "checkpoints" / "step_000002" / "optimizer.pt", "r+b") as fh:
        fh.truncate(10)
    out = run(train_cmd(run_dir, *TRAINED))
    assert "skipping checkpoint step_000002" in out.stderr and "resumed from" in out.stdout
    assert_same_weights(weights(trained, 2), weights(run_dir, 2))
    assert records(trained) == records(run_dir)


# --- a full disk ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs: needs root")
def test_a_full_disk_during_a_checkpoint_exits_with_the_path_and_resumes_once_freed(tmp_path, whole):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run_dir = disk / "run"
        proc = subprocess.Popen(train_cmd(run_dir, *SMOKE), cwd=ROOT, env=job_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        target = run_dir / "checkpoints" / "step_000002" / "COMPLETE"
        deadline = time.monotonic() + 300
        while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert target.exists(), "the run ended before its first checkpoint"
        st = os.statvfs(disk)  # fill the disk but for 256 KiB: records fit, the next checkpoint (MiBs) does not
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - (256 << 10), 0))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, out[-2000:] + err[-2000:]
        assert "error: disk full" in err and str(run_dir / "checkpoints") in err, err[-2000:]
        assert "Traceback" not in err
        complete = sorted(p.parent.name for p in (run_dir / "checkpoints").glob("*/COMPLETE"))
        assert complete == ["step_000002"] and not list((run_dir / "checkpoints").glob(".tmp-*"))
        ballast.unlink()  # space freed: the same command continues the run
        out = run(train_cmd(run_dir, *SMOKE)).stdout
        assert "resumed from" in out
        assert_same_weights(weights(whole, 6), weights(run_dir, 6))
        assert records(whole) == records(run_dir)
    finally:
        subprocess.run(["umount", "-l", str(disk)])


# --- fuzzed model outputs through parsing, rewards and the environment -------------------------------------------
_ENV = None


def _env_and_example():
    global _ENV
    if _ENV is None:
        from planner_rl.data import expert_trajectory, trajectory_examples
        from planner_rl.env.cooking import CookingEnv
        from planner_rl.prompts import PromptConfig

        env = CookingEnv("cheese_sandwich")
        env.reset(seed=5)
        traj = expert_trajectory("cheese_sandwich", 5)
        examples = trajectory_examples(traj, PromptConfig())
        _ENV = env, examples
    return _ENV


def _near_misses():
    env, examples = _env_and_example()
    actions = sorted({a for ex in examples for a in ex["valid_actions"]})
    action = st.sampled_from(actions)
    noise = st.text(alphabet=st.characters(), max_size=8)
    prefix = st.sampled_from(["Action: ", "action:", "<think>", "</think>", "", "Action:\n"])
    return st.one_of(
        st.tuples(prefix, action, noise).map("".join),
        action.map(lambda a: a.replace(" ", "  ").upper()),
        action.map(lambda a: f"<think>{a}</think>\nAction: {a}"),
        action.map(lambda a: a[: len(a) // 2]),
    )


FUZZ = st.one_of(
    st.text(alphabet=st.characters(), max_size=200),  # random, unicode (surrogates excluded by hypothesis)
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"]), max_size=50),  # control
    st.integers(0, 12).map(lambda n: "Action: Move robot1 " * (2**n)),  # very long: up to ~80,000 characters
    st.deferred(_near_misses),
)


def _through_everything(text: str) -> None:
    from planner_rl.parsing import OUTPUT_FORMATS, parse_completion
    from planner_rl.rewards import RewardConfig, compute_reward

    env, examples = _env_and_example()
    example = examples[len(text) % len(examples)]
    for fmt in OUTPUT_FORMATS:
        parsed = parse_completion(text, fmt, example["valid_actions"])
        assert (parsed.action is None) == (parsed.error is not None)
        for name in ("expert_match", "optimal_set", "noisy_expert"):
            cfg = RewardConfig(name=name, format_weight=0.25, valid_weight=0.5, noise_p=0.5)
            score, info = compute_reward(cfg, text, example, fmt)
            assert info["valid"] == parsed.valid and 0.0 <= score <= 1.75
        state, steps = env.state, env.steps
        _, reward, _, info = env.step(parsed.action if parsed.valid else text)  # the env reads raw text too
        if not info["valid"]:
            assert env.state == state and reward == 0.0
        env.set_state(state, steps)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(FUZZ)
def test_ten_thousand_fuzzed_model_outputs_never_raise(text):  # about 12 s on one core
    _through_everything(text)


# --- malformed Robotouille task files ------------------------------------------------------------------------------
def _mutate(raw, path: list, how: str, value):
    node = raw
    for key in path[:-1]:
        node = node[key]
    key = path[-1]
    if how == "delete":
        del node[key]
    else:
        node[key] = value


def _paths(node, prefix=()):
    yield list(prefix)
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


_LEAVES = st.none() | st.booleans() | st.integers(-3, 12) | st.text(max_size=6)
_SHALLOW = _LEAVES | st.lists(_LEAVES, max_size=3) | st.dictionaries(st.text(max_size=4), _LEAVES, max_size=3)
JSON_VALUES = _SHALLOW | st.lists(_SHALLOW, max_size=2) | st.dictionaries(st.text(max_size=4), _SHALLOW, max_size=2)


@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(task=st.sampled_from(["cheese_sandwich", "double_cheeseburger"]), data=st.data())
def test_malformed_task_files_are_rejected_naming_the_file_and_field(task, data):
    from planner_rl.env.domain import load_domain
    from planner_rl.env.problem import ProblemError, build_problem, read_problem_json
    from planner_rl.env.tasks import SYNCHRONOUS_DIR, get_task

    raw = read_problem_json(SYNCHRONOUS_DIR / f"{get_task(task).number}_{task}.json")
    broken = copy.deepcopy(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(broken) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        _mutate(broken, path, data.draw(st.sampled_from(["delete", "replace"])), data.draw(JSON_VALUES))
    try:
        build_problem(broken, load_domain(), "kitchen.json")
    except ProblemError as e:
        assert str(e).startswith("kitchen.json: "), e
        assert "field '" in str(e) or "must hold a JSON object" in str(e), e
