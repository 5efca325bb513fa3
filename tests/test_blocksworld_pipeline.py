"""The whole pipeline on Blocksworld by config alone (issue 20 item 4): data -> SFT -> GRPO -> closed-loop
evaluation -> results, `python -m planner_rl.train debug=smoke_blocksworld` (~20 s of CPU); the experiment and
sweep files compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

pytest.importorskip("pddl")
from planner_rl.config import register_configs
from planner_rl.data import build_dataset
from planner_rl.train import typed

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "conf")


def compose_cfg(name: str, overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(name, overrides=overrides)


def test_blocksworld_configs_compose():
    cfg = compose_cfg("train", ["+experiment=blocksworld"])
    assert all(t.startswith("blocks") for t in cfg.env.tasks) and typed(cfg, "grpo").steps >= 1
    cfg = compose_cfg("train", ["+sweep=blocksworld_generalization"])
    assert list(cfg.eval.tasks) == ["blocks3", "blocks4", "blocks5", "blocks6"]
    assert compose_cfg("train", ["env=blocksworld"]).env.tasks[-1] == "blocks8"


def test_blocksworld_dataset(tmp_path):
    cfg = compose_cfg(
        "data", ["env=blocksworld", "env.tasks=[blocks4]", "env.train_seeds=0-5", "env.test_seeds=[9]", "num_proc=1",
                 f"expert_cache={tmp_path}"]
    )  # fmt: skip
    data, report = build_dataset(cfg)
    assert report["ambiguity"]["ambiguous"] == 0 and report["examples"]["train"] == len(data["train"]) > 0
    for ex in data["train"]:
        assert ex["expert_action"] in ex["optimal_actions"] and set(ex["optimal_actions"]) <= set(ex["valid_actions"])
        assert "Blocks:" in ex["prompt"][1]["content"] and "robot chef" not in ex["prompt"][0]["content"]
    again, _ = build_dataset(cfg)  # from the expert cache
    assert again["train"]["expert_action"] == data["train"]["expert_action"]


def test_blocksworld_smoke_run(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "planner_rl.train", "debug=smoke_blocksworld", f"hydra.run.dir={run}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SFT-only" in out.stdout and "SFT+GRPO" in out.stdout
    results = json.loads((run / "results.json").read_text())
    assert {"eval/blocks3/sr", "eval/blocks4/sr", "eval/sr"} <= set(results["final"])
    assert results["final"]["eval/episodes"] == 4  # test_seeds "100-101" is two seeds (not the string's characters)


def test_user_pddl_directory_dataset(tmp_path):
    """env=pddl on a directory of user files: seeds pick problem files, the data builds with no special case."""
    from pddl_files import GRIPPER, gripper_problem

    (tmp_path / "domain.pddl").write_text(GRIPPER)
    for k in range(3):
        (tmp_path / f"p{k + 1}.pddl").write_text(gripper_problem(k + 1, k + 1))
    cfg = compose_cfg("data", ["env=pddl", f"env.tasks=[{tmp_path}]", "env.train_seeds=0-1", "env.test_seeds=[2]",
                               "num_proc=1", "expert_cache=null"])  # fmt: skip
    data, report = build_dataset(cfg)
    assert report["examples"] == {"train": 3 + 5, "test": 9}  # gripper optima: 1, 2, 3 balls
    assert data["test"][0]["expert_action"].startswith("(")  # no templates: actions read as PDDL
