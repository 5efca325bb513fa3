"""The whole pipeline on Blocksworld by config alone (issue 20 item 4): data -> SFT -> GRPO -> closed-loop
evaluation -> results, `python -m planner_rl.train debug=smoke_blocksworld` (~20 s of CPU); the experiment and
sweep files compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

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
    assert list(cfg.env.tasks) == ["blocks4"] and typed(cfg, "grpo").steps >= 1
    cfg = compose_cfg("train", ["+sweep=blocksworld_generalization"])
    assert list(cfg.eval.tasks) == ["blocks3", "blocks4", "blocks5", "blocks6"]
    assert cfg.reward.name == "optimal_set" and cfg.prompt.observation == "compact"
    assert compose_cfg("train", ["env=blocksworld"]).env.tasks[-1] == "blocks8"


def test_blocksworld_experiment_is_the_sweeps_blocks4_cell():
    """The docs give +experiment=blocksworld's figures from the sweeps' blocks4 jobs: the configs must stay equal."""

    def resolved(overrides):  # the paths' ${hydra:...} stay as written; the reward's weights are resolved
        cfg = compose_cfg("train", overrides)
        out = {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "name"}
        return out | {"reward": OmegaConf.to_container(cfg.reward, resolve=True)}

    experiment = resolved(["+experiment=blocksworld", "seed=2"])
    assert experiment == resolved(["+sweep=blocksworld_generalization", "env.tasks=[blocks4]", "seed=2"])
    cell = ["+sweep=reward_ablation", "env.tasks=[blocks4]", "seed=2", "reward.format_weight=0.0"]
    assert experiment == resolved([*cell, "reward=optimal_set"])
    other = resolved([*cell, "reward=expert_match"])
    assert other["reward"]["name"] == "expert_match" and other["sft"] == experiment["sft"]


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


def test_blocksworld_compact_view():
    """`prompt.observation=compact`: the towers bottom first and the goal's chains, worked by hand on blocks5 seed
    1003 (b4 on b1, b3 on b2, b5 alone; goal b2 on b3, b5 on b2, b4 on b5, b1 on b4)."""
    from planner_rl.env.families import make_world
    from planner_rl.prompts import PromptConfig, user_message

    world = make_world("blocks5", 1003)
    cfg = PromptConfig(observation="compact", progress=False, history=0)
    expected = (
        "Blocks:\nb1, b4\nb2, b3\nb5\nthe robot is holding nothing\n\n"
        "Valid Actions:\nPick up b5\nUnstack b3 from b2\nUnstack b4 from b1\n\n"
        "Goal: b3, b2, b5, b4, b1\n\nWhat is the next action?"
    )
    assert user_message(world, world.initial_state, [], cfg) == expected
    held = world.step(world.initial_state, world.valid_actions(world.initial_state)[1])  # Unstack b3 from b2
    assert world.compact_observation(held) == "Blocks:\nb1, b4\nb2\nb5\nthe robot is holding b3"
    full = user_message(world, world.initial_state, [], PromptConfig(progress=False, history=0))
    assert "Goal: b1 is directly on top of b4, b2 is directly on top of b3," in full  # the full text is unchanged


def _facts_from_compact(view: str, goal: str) -> tuple[set, set]:
    """Read the facts back off a compact view and goal (the inverse the test checks)."""
    lines = view.split("\n")[1:]
    facts = set()
    for line in lines[:-1]:
        tower = line.split(", ")
        facts |= {("ontable", (tower[0],)), ("clear", (tower[-1],))}
        facts |= {("on", (up, down)) for down, up in pairwise(tower)}
    held = lines[-1].removeprefix("the robot is holding ")
    facts.add(("handempty", ()) if held == "nothing" else ("holding", (held,)))
    chains = [c.split(", ") for c in goal.split("; ")]
    return facts, {("on", (up, down)) for c in chains for down, up in pairwise(c)}


@pytest.mark.parametrize("task", ["blocks3", "blocks5", "blocks8", "blocks12"])
def test_blocksworld_compact_view_loses_no_fact(task):
    """On random walks the compact view and goal read back to exactly the state's true facts and the goal's: the
    compact prompt shows the same state as the full text (so the expert's action stays a function of the prompt)."""
    import random

    from planner_rl.env.families import make_world

    rng = random.Random(task)
    for seed in range(8):
        world = make_world(task, seed)
        goal = {world.task.facts[f] for f in world.task.goal}
        state = world.initial_state
        for _ in range(30):
            facts, goal_read = _facts_from_compact(world.compact_observation(state), world.compact_goal)
            assert facts == set(world.true_atoms(state)) and goal_read == goal
            state = world.step(state, rng.choice(world.valid_actions(state)))


def test_pddl_world_without_compact_view_shows_its_full_text(tmp_path):
    """A user domain has no compact view: `prompt.observation=compact` shows its full facts and goal."""
    from pddl_files import GRIPPER, gripper_problem

    from planner_rl.env.families import make_world
    from planner_rl.prompts import PromptConfig, user_message

    (tmp_path / "domain.pddl").write_text(GRIPPER)
    (tmp_path / "p1.pddl").write_text(gripper_problem(1, 1))
    world = make_world(str(tmp_path / "p1.pddl"), 0)
    compact = user_message(world, world.initial_state, [], PromptConfig(observation="compact", progress=False))
    assert compact == user_message(world, world.initial_state, [], PromptConfig(progress=False))
