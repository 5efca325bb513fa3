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
EXAMPLES_DIR = ASSETS / "environments"  # Robotouille's `environments/env_generator/examples/`, every file (MIT)
SYNCHRONOUS_DIR = EXAMPLES_DIR / "synchronous"
BUDGET_MULTIPLIER = 1.5  # Robotouille's `max_step_multiplier`

# Robotouille's `optimal_steps` for synchronous tasks 0-9 (conf/experiments/*/synchronous/*.yaml).
ROBOTOUILLE_HORIZONS = (10, 14, 24, 10, 15, 23, 36, 44, 63, 57)
# True optima of the files' own layouts (seed None), found by our expert; 0-5 also confirmed by breadth-first search
# (pyperplan on the PDDL export, see docs/environment.md).
FILE_LAYOUT_OPTIMA = (8, 14, 24, 8, 15, 23, 35, 43, 39, 57)
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
        n = int(path.stem.split("_", 1)[0])
        out.append(Task(n, task_name(path), path, ROBOTOUILLE_HORIZONS[n], FILE_LAYOUT_OPTIMA[n]))
    return tuple(out)


def task_names() -> list[str]:
    return [t.name for t in synchronous_tasks()]


def get_task(name: str | int) -> Task:
    """A task by name (`cheese_sandwich`), file stem (`0_cheese_sandwich`) or number."""
    for t in synchronous_tasks():
        if name in (t.name, t.number, str(t.number), t.path.stem):
            return t
    raise TaskError(
        f"unknown task {name!r}; known tasks: {', '.join(task_names())}, or a Robotouille example file such as"
        " asynchronous/5_potato_soup (planner_rl.env.tasks.example_files())"
    )


def example_files() -> list[str]:
    """Every Robotouille example file shipped, as its path under `EXAMPLES_DIR` without `.json`
    (`asynchronous/5_potato_soup`, `base_cook`, ...): what `load_problem` takes besides task names."""
    return sorted(str(p.relative_to(EXAMPLES_DIR).with_suffix("")) for p in EXAMPLES_DIR.rglob("*.json"))


def task_path(task: str | int | Path) -> Path:
    """The file of a task name or number, of a Robotouille example (`asynchronous/5_potato_soup`), or a path."""
    if isinstance(task, Path) or str(task).endswith(".json"):
        return Path(task)
    example = EXAMPLES_DIR / f"{task}.json"
    if isinstance(task, str) and "/" in task and example.is_file():
        return example
    try:
        return get_task(task).path
    except TaskError:
        if isinstance(task, str) and example.is_file():
            return example
        raise


def load_problem(task: str | int | Path, seed: int | None = None) -> Problem:
    """The problem of a task name, a Robotouille example (`asynchronous/5_potato_soup`, see `example_files`) or a
    problem-file path; `seed` randomises the layout (None = the file's own)."""
    path = task_path(task)
    raw = read_problem_json(path)
    if seed is not None:
        from planner_rl.env.layout import randomize_layout

        raw = randomize_layout(raw, seed, source=str(path))
    problem = build_problem(raw, load_domain(), source=str(path) if seed is None else f"{path} (seed {seed})")
    problem.task = task_name(path)
    return problem


def task_name(path: Path) -> str:
    """A task file's task name: its stem without the number (`5_double_cheeseburger.json` -> `double_cheeseburger`)."""
    number, _, rest = path.stem.partition("_")
    return rest if number.isdigit() and rest else path.stem


# --- subtask relations ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dish:
    """One goal station's recipe: what is directly on the station, what is in between, what is on top."""

    base: str  # kind of the item directly on the station ("bread", "bottombun")
    middle: tuple[tuple[str, tuple[str, ...]], ...]  # sorted (kind, sorted required properties) of the fillings
    top: str | None  # kind of the item on top, if the goal puts one there

    def contains(self, other: Dish) -> bool:
        """Whether making this dish makes `other` on the way: same bread/buns, a superset of its fillings."""
        if (self.base, self.top) != (other.base, other.top):
            return False
        need = list(other.middle)
        for m in self.middle:
            if m in need:
                need.remove(m)
        return not need


def dishes(problem: Problem) -> tuple[Dish, ...]:
    """The dishes a goal asks for, one per goal station, read off its literals (strict chains and bags alike)."""
    kinds, goal = problem.var_kinds, problem.goal
    station_of: dict[str, str] = {}
    below: dict[str, str] = {}
    base: dict[str, str] = {}
    props: dict[str, list[str]] = {}
    clear = set()
    for lit in goal:
        a = lit.args
        if lit.predicate == "item_on":
            base[a[1]] = a[0]
            station_of[a[0]] = a[1]
        elif lit.predicate == "item_at":
            station_of[a[0]] = a[1]
        elif lit.predicate == "atop":
            below[a[0]] = a[1]
        elif lit.predicate == "clear":
            clear.add(a[0])
        elif len(a) == 1:
            props.setdefault(a[0], []).append(lit.predicate)

    def station(v: str, seen: tuple = ()) -> str | None:
        if v in station_of:
            return station_of[v]
        return station(below[v], (*seen, v)) if v in below and v not in seen else None

    out = []
    for st, b in sorted(base.items()):
        members = [v for v in kinds if v != b and station(v) == st and kinds[v] not in ("table", "station")]
        on_top = {v for v in members if v in clear} or {v for v in members if v not in below.values()}
        top = min(on_top) if on_top and len(members) > 1 else None
        middle = sorted((kinds[v], tuple(sorted(props.get(v, [])))) for v in members if v != top)
        out.append(Dish(kinds[b], tuple(middle), kinds[top] if top else None))
    return tuple(out)


def contains(big: Problem, small: Problem) -> bool:
    """Whether every dish of `small` is made on the way to `big` (distinct dishes of `big` for distinct ones)."""
    need, have = list(dishes(small)), list(dishes(big))

    def match(k: int, free: list[Dish]) -> bool:
        if k == len(need):
            return True
        return any(d.contains(need[k]) and match(k + 1, free[:j] + free[j + 1 :]) for j, d in enumerate(free))

    return match(0, have)


@cache
def subtask_pairs() -> tuple[tuple[str, str], ...]:
    """(small, big) task-name pairs of the synchronous set where `small`'s goal is made on the way to `big`'s."""
    problems = {t.name: load_problem(t.name) for t in synchronous_tasks()}
    return tuple((a, b) for a in problems for b in problems if a != b and contains(problems[b], problems[a]))


def subtasks_of(name: str) -> list[str]:
    return [a for a, b in subtask_pairs() if b == get_task(name).name]


def family(name: str) -> tuple[str, ...]:
    """The kinds of dish a task makes, by their base ("bread" = sandwiches, "bottombun" = burgers)."""
    return tuple(sorted({d.base for d in dishes(load_problem(get_task(name).name))}))
