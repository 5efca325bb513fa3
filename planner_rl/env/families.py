"""Environment families behind one seam: a task's name (or path) picks its family, and every caller (data,
evaluation, the expert command, reports) goes through the functions here, never through a family's own modules.

    robotouille  a synchronous task name (`burger`), number, file stem, or a Robotouille problem file `*.json`
                 (planner_rl/env/tasks.py); seeds randomise the layout
    blocksworld  `blocks<n>`, n blocks (3-8 in conf/env/blocksworld.yaml); seed s generates problem s
                 (planner_rl/env/strips/blocksworld.py)
    pddl         a typed STRIPS problem file `*.pddl` with `domain.pddl` beside it (every seed is that problem), or a
                 directory holding `domain.pddl` and problem files (seed k: the k-th problem file in natural name
                 order, so disjoint seeds are disjoint problems)

A world of either kind has the same interface (`initial_state`, `valid_actions`, `is_valid`, `step`, `is_goal`,
`actions`, `by_text`, `observation`, `describe_state`, `problem.goal`, `problem.goal_description`), and `solve`
returns the same `Solution` (canonical plan, optimal action sets).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import cache
from pathlib import Path

from planner_rl.env.cooking import CookingEnv
from planner_rl.env.cooking import ground_world as cooking_world
from planner_rl.env.strips.blocksworld import MAX_BLOCKS, MIN_BLOCKS, blocks_of
from planner_rl.env.tasks import EXAMPLES_DIR, TaskError, get_task

_WORLD_CACHE_SIZE = 64
_worlds: OrderedDict = OrderedDict()
_ROBOTOUILLE_SOURCES = (
    "domain.py",
    "problem.py",
    "layout.py",
    "world.py",
    "grounding.py",
    "rendering.py",
    "heuristic.py",
    "heuristic_roles.py",
    "heuristic_search.py",
    "heuristic_leaf.py",
    "heuristic_soup.py",
    "planner.py",
)
_STRIPS_SOURCES = ("strips/task.py", "strips/world.py", "strips/search.py", "strips/blocksworld.py")


def family(task: str) -> str:
    """`robotouille`, `blocksworld` or `pddl` for a resolved task name (see `resolve_task`)."""
    if blocks_of(task) is not None:
        return "blocksworld"
    return "pddl" if task.endswith(".pddl") or Path(task).is_dir() else "robotouille"


def resolve_task(spec: str | int) -> str:
    """The canonical name of a task spec (Robotouille names become their file stem's name); `TaskError` if none."""
    text = str(spec)
    n = blocks_of(text)
    if n is not None:
        if not MIN_BLOCKS <= n <= MAX_BLOCKS:
            raise TaskError(f"unknown task {text!r}: Blocksworld takes {MIN_BLOCKS}..{MAX_BLOCKS} blocks")
        return text
    if text.endswith(".json"):
        return text
    if text.endswith(".pddl") or Path(text).is_dir():
        _pddl_files(text, None)  # checks the paths now, with a clear message
        return text
    try:
        return get_task(spec).name
    except TaskError as e:
        if (EXAMPLES_DIR / f"{text}.json").is_file():  # a Robotouille example file: `asynchronous/5_potato_soup`
            return text
        raise TaskError(f"{e}; or blocks<n> (Blocksworld), or a PDDL problem file / directory") from None


def _pddl_files(task: str, seed: int | None) -> tuple[Path, Path]:
    """(domain file, problem file) of a `pddl` task under `seed`."""
    from planner_rl.env.strips.task import natural_key

    path = Path(task)
    folder = path if path.is_dir() else path.parent
    domain = folder / "domain.pddl"
    if not domain.is_file():
        raise TaskError(f"{task}: no domain file {domain} (a PDDL task needs domain.pddl in its directory)")
    if not path.is_dir():
        if not path.is_file():
            raise TaskError(f"{task}: no such problem file")
        return domain, path
    problems = sorted((p for p in path.glob("*.pddl") if p.name != "domain.pddl"), key=lambda p: natural_key(p.name))
    if not problems:
        raise TaskError(f"{task}: no problem files (*.pddl besides domain.pddl)")
    k = 0 if seed is None else seed
    if not 0 <= k < len(problems):
        raise TaskError(
            f"{task}: seed {seed} names no problem file (it holds {len(problems)}: seeds 0-{len(problems) - 1})"
        )
    return domain, problems[k]


def ground_world(task: str | int | Path, seed: int | None = None):
    """A newly grounded world of a task and seed, shared with nobody."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TaskError(f"{task}: a seed is an int or None, got {seed!r}")
    name = resolve_task(task)
    kind = family(name)
    if kind == "robotouille":
        return cooking_world(task if isinstance(task, Path) else name, seed)
    from planner_rl.env.strips.task import load_task, parse_task
    from planner_rl.env.strips.world import StripsWorld

    if kind == "blocksworld":
        from planner_rl.env.strips.blocksworld import DOMAIN_FILE, TEXTS, problem_pddl

        n = blocks_of(name)
        text = problem_pddl(n, 0 if seed is None else seed)
        return StripsWorld(parse_task(DOMAIN_FILE.read_text(), text, DOMAIN_FILE, f"{name} (seed {seed})"), TEXTS)
    return StripsWorld(load_task(*_pddl_files(name, seed)))


def make_world(task: str | int | Path, seed: int | None = None):
    """The grounded world of a task and seed; the last few are cached."""
    key = (str(task), seed)
    world = _worlds.get(key)
    if world is None:
        world = _worlds[key] = ground_world(task, seed)
        if len(_worlds) > _WORLD_CACHE_SIZE:
            _worlds.popitem(last=False)
    _worlds.move_to_end(key)
    return world


def is_strips(world) -> bool:
    from planner_rl.env.strips.world import StripsWorld

    return isinstance(world, StripsWorld)


def solve(world, start=None, max_expansions: int = 2_000_000, optimal_sets: bool = True):
    """The family's optimal expert: `planner_rl.env.planner.solve` or `planner_rl.env.strips.search.solve`."""
    if is_strips(world):
        from planner_rl.env.strips.search import solve as strips_solve

        return strips_solve(world, start, max_expansions=max_expansions, optimal_sets=optimal_sets)
    from planner_rl.env.planner import solve as cooking_solve

    return cooking_solve(world, start, max_expansions=max_expansions, optimal_sets=optimal_sets)


@cache
def planner_version(strips: bool) -> str:
    """A hash of the sources a family's expert answers depend on (the expert cache's key)."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for name in _STRIPS_SOURCES if strips else _ROBOTOUILLE_SOURCES:
        h.update((root / name).read_bytes())
    return h.hexdigest()[:16]


def task_budget(task: str) -> int | None:
    """Robotouille's episode budget of a task (1.5 x its configured horizon); None where a family has none (the
    evaluation then allows 1.5 x the instance's optimum)."""
    return get_task(task).budget if family(task) == "robotouille" and not task.endswith(".json") else None


@cache
def task_rank(task: str) -> tuple:
    """A sort key for tables: Robotouille's task order, then Blocksworld by blocks, then paths by name."""
    from planner_rl.env.tasks import task_names

    names = task_names()
    if task in names:
        return (0, names.index(task), "")
    n = blocks_of(task)
    return (1, n, "") if n is not None else (2, 0, task)


class TextEnv(CookingEnv):
    """`CookingEnv`'s gym-like text interface (reset / step / valid actions / goal; invalid text leaves the state
    unchanged, counts no step and returns Robotouille's feedback) over a world of any family:
    `TextEnv("blocks5", seed=3).step("Pick up b1")`."""

    world_of = staticmethod(make_world)
