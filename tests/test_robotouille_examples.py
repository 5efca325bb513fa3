"""Robotouille's example files (all of `environments/env_generator/examples/`, shipped under
`planner_rl/assets/robotouille/environments/`) against Robotouille's own engine.

`tests/data/robotouille_examples.json` was recorded by running Robotouille's engine on each file
(`tests/data/record_robotouille.py`, its docstring says how): the initial observation, and seeded random walks with
a digest of every state's observation and whether the goal holds. Here every file must load, show the same initial
observation, and replay every walk with the same observation at every state (the valid actions included, in the
same order; for several robots the same set, since Robotouille's order there depends on PYTHONHASHSEED) and the
same goal test. The expert must solve or refuse every file cleanly, and be optimal where breadth-first search can
check it.
"""

import hashlib
import json
from pathlib import Path

import pytest

from planner_rl.env.domain import load_domain
from planner_rl.env.tasks import example_files, load_problem
from planner_rl.env.world import World

RECORDED = json.loads((Path(__file__).parent / "data" / "robotouille_examples.json").read_text())["files"]


def world_of(rel: str) -> World:
    return World(load_problem(rel), load_domain())


def sort_actions(observation: str) -> str:
    head, rest = observation.split("\n\nValid Actions:\n")
    actions, goal = rest.split("\n\nGoal: ")
    return f"{head}\n\nValid Actions:\n" + "\n".join(sorted(actions.split("\n"))) + f"\n\nGoal: {goal}"


def digest(observation: str) -> str:
    return hashlib.sha1(observation.encode()).hexdigest()[:16]


def test_every_example_file_is_shipped_and_recorded():
    shipped = example_files()
    assert len(shipped) == 77
    assert sorted(r.removesuffix(".json") for r in RECORDED) == shipped


@pytest.mark.parametrize("rel", sorted(RECORDED))
def test_initial_observation_and_walks_match_robotouille(rel):
    rec = RECORDED[rel]
    world = world_of(rel.removesuffix(".json"))
    several = rec["players"] > 1
    view = sort_actions if several else (lambda o: o)
    assert view(world.observation(world.initial_state)) == view(rec["initial_observation"])
    for n, walk in enumerate(rec["walks"]):
        digests = walk["sorted_sha1"] if several else walk["obs_sha1"]
        s = world.initial_state
        for t, text in enumerate(walk["actions"]):
            assert digest(view(world.observation(s))) == digests[t], f"walk {n}, state {t}: {walk['actions'][:t]}"
            action = next((a for a in world.valid_actions(s) if a.text == text), None)
            assert action is not None, f"walk {n}, state {t}: {text!r} is not valid here"
            s = world.step(s, action)
            assert world.is_goal(s) == walk["done"][t], f"walk {n}, after {walk['actions'][: t + 1]}"
        assert digest(view(world.observation(s))) == digests[len(walk["actions"])]
