"""The expert on the task files' own layouts: optimal lengths, plans that replay to the goal in the text
environment, and the same plan from a second solve on a fresh world."""

import pytest
from test_expert_seeds import fresh_world, replay

from planner_rl.env.planner import solve
from planner_rl.env.tasks import FILE_LAYOUT_OPTIMA, task_names


@pytest.mark.parametrize("number", range(10))
def test_file_layout_optimum_and_plan(number):
    task = task_names()[number]
    sol = solve(fresh_world(task, None))
    assert sol.cost == FILE_LAYOUT_OPTIMA[number]
    replay(task, None, sol)
    assert solve(fresh_world(task, None)).texts == sol.texts  # reproducible, nothing shared between the solves
