"""The expert on the task files' own layouts: optimal lengths, and plans that execute to the goal."""

import pytest

from planner_rl.env.planner import solve
from planner_rl.env.tasks import FILE_LAYOUT_OPTIMA


@pytest.mark.parametrize("task", range(10))
def test_file_layout_optimum_and_plan(make_world, task):
    world = make_world(task)
    sol = solve(world)
    assert sol.cost == FILE_LAYOUT_OPTIMA[task]
    s = world.initial_state
    for k, action in enumerate(sol.plan):
        valid = world.valid_actions(s)
        assert action in valid
        assert action in sol.optimal_actions[k]
        assert not world.is_goal(s)
        s = world.step(s, action)
    assert world.is_goal(s)
    assert solve(world).texts == sol.texts  # reproducible
