"""Robotouille's PDDL export through the generic path (issue 20 item 5): the exported files, read by the `pddl`
family's loader and solved by its A* (LM-cut), give plans of the cooking expert's optimal length (+1: the export's
final `achieve-goal`), and those plans replay as valid World actions to the goal.

Tasks 6-9 (35-57 steps) are out of the generic expert's reach in test time: without the cooking expert's symmetry
reduction and domain heuristic its A* expands thousands of states per step of depth (docs/pddl.md)."""

from __future__ import annotations

import pytest

pytest.importorskip("pddl")
from planner_rl.env.cooking import ground_world
from planner_rl.env.pddl import GOAL_ACTION, GOAL_ACTION_OFFSET, plan_from_pddl, write_pddl
from planner_rl.env.planner import solve as cooking_solve
from planner_rl.env.strips.search import solve as strips_solve
from planner_rl.env.strips.task import load_task
from planner_rl.env.strips.world import StripsWorld


def check_generic_matches(task: str, seed: int | None, tmp_path) -> None:
    world = ground_world(task, seed)
    cost = cooking_solve(world, optimal_sets=False).cost
    generic = StripsWorld(load_task(*write_pddl(world, tmp_path)))
    sol = strips_solve(generic, optimal_sets=False)
    assert sol.cost == cost + GOAL_ACTION_OFFSET
    steps = [generic.task.operators[a.id].pddl for a in sol.plan]
    assert steps[-1].startswith(f"({GOAL_ACTION} ")
    state = world.initial_state
    for action in plan_from_pddl(world, steps):
        assert world.is_valid(state, action), action.text
        state = world.step(state, action)
    assert world.is_goal(state)


FAST = [(t, s) for t in ("cheese_sandwich", "burger", "cheeseburger") for s in (None, 42)]
FAST += [("cheese_sandwich", 84), ("burger", 84), ("lettuce_sandwich", None), ("lettuce_sandwich", 84)]


@pytest.mark.parametrize(("task", "seed"), FAST)  # well under a second each
def test_generic_expert_matches_cooking_expert(task, seed, tmp_path):
    check_generic_matches(task, seed, tmp_path)


# 10 s, 2 min (lettuce_sandwich's layout 42 has distractors the generic search cannot tell apart), ~1 min, ~1 min
@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "seed"),
    [("cheeseburger", 84), ("lettuce_sandwich", 42), ("lettuce_tomato_sandwich", None), ("double_cheeseburger", None)],
)
def test_generic_expert_matches_on_longer_instances(task, seed, tmp_path):
    check_generic_matches(task, seed, tmp_path)
