"""The Robotouille synchronous task set: names, files, budgets, known optima and subtask relations.

Task names are the file stems without their number (`0_cheese_sandwich.json` -> `cheese_sandwich`). Two step
counts are kept per task: Robotouille's configured `optimal_steps` (hand-set budgets, the horizon its evaluation
multiplies by 1.5) and the true optimum of the file's own layout, as our expert finds it (docs/environment.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from planner_rl.env.domain import load_domain
from planner_rl.env.problem import Problem, build_problem, read_problem_json

ASSETS = Path(str(resources.files("planner_rl") / "assets" / "robotouille"))
SYNCHRONOUS_DIR = ASSETS / "environments" / "synchronous"
BUDGET_MULTIPLIER = 1.5  # Robotouille's `max_step_multiplier`

# Robotouille's `optimal_steps` for synchronous tasks 0-9 (conf/experiments/*/synchronous/*.yaml).
ROBOTOUILLE_HORIZONS = (10, 14, 24, 10, 15, 23, 36, 44, 63, 57)
# True optima of the files' own layouts (seed None), found by our expert and checked on Robotouille for 0-5.
FILE_LAYOUT_OPTIMA = (8, 14, 24, 8, 15, 23, 35, 40, 43, 52)
# Robotouille's evaluation seeds.
EVAL_SEEDS = (42, 84, 126, 168, 210, 252, 294, 336, 378, 420)


class TaskError(KeyError):
    """An unknown task name or a missing task file."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Task:
    number: int
    name: str  # e.g. "cheese_sandwich"
    path: Path
    robotouille_horizon: int
    optimum: int  # of the file's own layout

    @property
    def budget(self) -> int:
        """Robotouille's episode budget: actions allowed while steps < 1.5 x horizon."""
        return math.ceil(BUDGET_MULTIPLIER * self.robotouille_horizon)


@cache
def synchronous_tasks() -> tuple[Task, ...]:
    out = []
    for path in sorted(SYNCHRONOUS_DIR.glob("*.json"), key=lambda p: int(p.stem.split("_", 1)[0])):
        number, name = path.stem.split("_", 1)
        n = int(number)
        out.append(Task(n, name, path, ROBOTOUILLE_HORIZONS[n], FILE_LAYOUT_OPTIMA[n]))
    return tuple(out)


def task_names() -> list[str]:
    return [t.name for t in synchronous_tasks()]


def get_task(name: str | int) -> Task:
    """A task by name (`cheese_sandwich`), file stem (`0_cheese_sandwich`) or number."""
    for t in synchronous_tasks():
        if name in (t.name, t.number, str(t.number), t.path.stem):
            return t
    raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")


def load_problem(task: str | int | Path, seed: int | None = None) -> Problem:
    """The problem of a task name or a problem-file path; `seed` randomises the layout (None = the file's own)."""
    path = Path(task) if isinstance(task, Path) or str(task).endswith(".json") else get_task(task).path
    raw = read_problem_json(path)
    if seed is not None:
        from planner_rl.env.layout import randomize_layout

        raw = randomize_layout(raw, seed, source=str(path))
    return build_problem(raw, load_domain(), source=str(path) if seed is None else f"{path} (seed {seed})")
