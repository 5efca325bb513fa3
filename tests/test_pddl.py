"""PDDL export: a classical planner (pyperplan, breadth-first search) finds plans of our expert's optimal length + 1
(the final `achieve-goal`), whose steps are valid `World` actions reaching the goal; the exported operators match
`World`'s transitions state by state; unsupported problems raise `PDDLExportError`."""

from __future__ import annotations

import copy
import random

import pytest

pytest.importorskip("pyperplan")
from pyperplan.grounding import ground
from pyperplan.pddl.parser import Parser
from pyperplan.planner import SEARCHES, search_plan

from planner_rl.env.pddl import (
    GOAL_ACTION,
    GOAL_ACTION_OFFSET,
    PDDLExportError,
    action_from_pddl,
    domain_pddl,
    plan_from_pddl,
    problem_pddl,
    write_pddl,
)
from planner_rl.env.planner import solve
from planner_rl.env.problem import build_problem, read_problem_json
from planner_rl.env.tasks import get_task
from planner_rl.env.world import State, World

LEFT_OUT = {"cook", "fry", "fill-pot", "boil-water", "wait"}  # schemas the export leaves out (delayed / no effect)


def _world(domain, task: str, stations=(), items=(), containers=()) -> World:
    """A task's world, optionally with extra stations / items / containers (like a seeded variant's distractors)."""
    raw = copy.deepcopy(read_problem_json(get_task(task).path))
    raw["stations"] += [{"name": n, "x": x, "y": y} for n, x, y in stations]
    raw["items"] += [{"name": n, "x": x, "y": y, "stack-level": 0, "predicates": list(p)} for n, x, y, p in items]
    if containers:
        raw["containers"] = [{"name": n, "x": x, "y": y} for n, x, y in containers]
    return World(build_problem(raw, domain, source=f"{task}+extras"), domain)


def _pyperplan(world: World, tmp_path, state: State | None = None) -> list[str]:
    domain_file, problem_file = write_pddl(world, tmp_path, state)
    plan = search_plan(str(domain_file), str(problem_file), SEARCHES["bfs"], None)
    assert plan is not None, "pyperplan found no plan"
    return [op.name for op in plan]


def _check_plan(world: World, state: State, steps: list[str]) -> None:
    """pyperplan's plan has our optimal length + 1, and replays as valid World actions to a goal state."""
    assert steps[-1].startswith(f"({GOAL_ACTION} ")
    assert len(steps) - GOAL_ACTION_OFFSET == solve(world, state).cost
    plan = plan_from_pddl(world, steps)
    assert len(plan) == len(steps) - 1
    for step, action in zip(steps, plan, strict=False):
        valid = world.valid_actions(state)
        assert action in valid, f"{step} -> {action.text!r} is not valid"
        assert action.text in {a.text for a in valid}
        assert action.schema == step.strip("()").split()[0].split("-stroke")[0]
        state = world.step(state, action)
    assert world.is_goal(state)


# pyperplan's BFS takes ~0.01-0.05 s on tasks 0, 1, 3, 4, ~1.3 s on 5 and ~3 s on 2.
@pytest.mark.parametrize(
    "task",
    ["cheese_sandwich", "lettuce_sandwich", "lettuce_tomato_sandwich", "burger", "cheeseburger", "double_cheeseburger"],
)
def test_pyperplan_bfs_matches_expert(make_world, task, tmp_path):
    world = make_world(task)
    _check_plan(world, world.initial_state, _pyperplan(world, tmp_path))


def test_mid_plan_states_with_cut_progress(make_world, tmp_path):
    """States along the expert's plan for lettuce_sandwich, including partly cut lettuce, and a re-cut lettuce."""
    world = make_world("lettuce_sandwich")
    sol = solve(world)
    picks = [*[k for k, s in enumerate(sol.states) if world.cut_progress(s)][:2], len(sol.states) - 3]
    assert [world.cut_progress(sol.states[k]) for k in picks[:2]] == [{"lettuce1": 1}, {"lettuce1": 2}]
    for k in picks:
        state = sol.states[k]
        steps = _pyperplan(world, tmp_path / str(k), state)
        _check_plan(world, state, steps)
        assert len(steps) - 1 == sol.cost - k

    # Cut once more when the lettuce is already cut: a fresh hidden count (1) next to `iscut`.
    cut_state = next(s for s in sol.states if world.holds(s, "iscut", "lettuce1"))
    cut = next(a for a in world.valid_actions(cut_state) if a.schema == "cut")
    again = world.step(cut_state, cut)
    assert world.cut_progress(again) == {"lettuce1": 1} and world.holds(again, "iscut", "lettuce1")
    text = problem_pddl(world, again)
    assert "(cuts1 lettuce1)" in text and "(iscut lettuce1)" in text and "(cuts0 lettuce1)" not in text
    _check_plan(world, again, _pyperplan(world, tmp_path / "again", again))


def test_distractor_stations_and_items(domain, tmp_path):
    """Like a seeded variant: a stove, a fryer and a sink, a cookable raw chicken and a fryable potato nobody needs,
    and a second patty that is cooked but also cookable; cook/fry are left out and the optimum is unchanged."""
    world = _world(
        domain,
        "burger",
        stations=[("stove", 4, 1), ("fryer", 4, 3), ("sink", 1, 3)],
        items=[("chicken", 4, 1, ["iscookable"]), ("potato", 1, 3, ["isfryable", "iscuttable"]),
               ("patty", 4, 3, ["iscooked", "iscookable"])],
    )  # fmt: skip
    assert {"cook", "fry"} <= {a.schema for a in world.actions}
    text = domain_pddl(world)
    assert "(:action cook" not in text and "(:action fry" not in text and "(:action wait" not in text
    _check_plan(world, world.initial_state, _pyperplan(world, tmp_path))


def _grounded(world: World, state: State, tmp_path):
    """pyperplan's grounded task for the exported problem at `state` (no relevance pruning)."""
    domain_file, problem_file = write_pddl(world, tmp_path, state)
    parser = Parser(str(domain_file), str(problem_file))
    return ground(parser.parse_problem(parser.parse_domain()), remove_irrelevant_operators=False)


def _walk(world: World, rng: random.Random, n: int):
    """States of a walk mixing expert steps, cuts (so partial counts and re-cuts of cut items occur) and random
    actions; the left-out schemas are never taken."""
    state = world.initial_state
    for _ in range(n):
        yield state
        valid = [a for a in world.valid_actions(state) if a.schema not in LEFT_OUT]
        cuts = [a for a in valid if a.schema == "cut"]
        busy = [a for a in valid if a.schema != "move"]
        r = rng.random()
        if cuts and r < 0.5:
            action = rng.choice(cuts)
        elif r < 0.7 and not world.is_goal(state):
            action = solve(world, state).plan[0]
        else:
            action = rng.choice(busy if busy and rng.random() < 0.6 else valid)
        state = world.step(state, action)


@pytest.mark.parametrize("seed", [0, 1])
def test_operators_match_world_transitions(domain, tmp_path, seed):
    """Along a walk: pyperplan's applicable operators are World's valid actions (minus the left-out schemas), each
    successor is the export of World's successor, and `achieve-goal` applies exactly at goal states."""
    onion = ("onion", 4, 1, ["iscuttable", "iscookable"])  # a distractor that could be cut and cooked
    world = _world(domain, "lettuce_sandwich", stations=[("stove", 4, 1)], items=[onion])
    rng = random.Random(seed)
    seen = set()
    for k, state in enumerate(_walk(world, random.Random(seed), 30)):
        seen.add((tuple(sorted(world.cut_progress(state).items())), world.holds(state, "iscut", "lettuce1")))
        task = _grounded(world, state, tmp_path / f"{k}")
        valid = [a for a in world.valid_actions(state) if a.schema not in LEFT_OUT]
        ops = [op for op in task.operators if op.applicable(task.initial_state)]
        goal_ops = [op for op in ops if op.name.startswith(f"({GOAL_ACTION} ")]
        assert bool(goal_ops) == world.is_goal(state)
        ops = [op for op in ops if op not in goal_ops]
        assert sorted(action_from_pddl(world, op.name).id for op in ops) == sorted(a.id for a in valid)
        for op in rng.sample(ops, min(3, len(ops))):
            nxt = world.step(state, action_from_pddl(world, op.name))
            assert op.apply(task.initial_state) == _grounded(world, nxt, tmp_path / f"{k}n").initial_state
    # The walk saw partly cut lettuce, and a fresh count on already-cut lettuce.
    assert {((("lettuce1", 1),), False), ((("lettuce1", 2),), False), ((("lettuce1", 1),), True)} <= seen


def test_goal_needing_a_cookable_raw_item_is_refused(domain):
    world = _world(domain, "burger", stations=[("stove", 4, 1)], items=[("patty", 4, 1, ["iscookable"])])
    expected = r"goal needs iscooked\(#3\): iscooked\(patty2\) is false now and the delayed effects of cook could"
    with pytest.raises(PDDLExportError, match=expected):
        problem_pddl(world)
    with pytest.raises(PDDLExportError, match="iscooked"):
        domain_pddl(world)
    # Without a stove the raw patty can never be cooked: the goal's `iscooked` atoms are fixed, export is fine.
    world = _world(domain, "burger", stations=[("table", 4, 1)], items=[("patty", 4, 1, ["iscookable"])])
    assert "(:goal (goal-reached))" in problem_pddl(world)


def test_containers_are_refused(domain, tmp_path):
    world = _world(domain, "cheese_sandwich", stations=[("sink", 4, 1)], containers=[("pot", 4, 1)])
    with pytest.raises(PDDLExportError, match=r"containers and meals \(pot1\)"):
        write_pddl(world, tmp_path)
    assert not (tmp_path / "domain.pddl").exists()


def test_running_delayed_effect_is_refused(domain):
    # A raw chicken on a stove at the robot's station: cook it, then export mid-timer.
    raw = copy.deepcopy(read_problem_json(get_task("cheese_sandwich").path))
    raw["stations"][0]["name"] = "stove"  # the robot's station (0, 1), with bread1 ...
    raw["items"][0] = {"name": "chicken", "x": 0, "y": 1, "stack-level": 0, "predicates": ["iscookable"]}
    raw["items"].append({"name": "bread", "x": 3, "y": 3, "stack-level": 0})
    world = World(build_problem(raw, domain, source="cook"), domain)
    problem_pddl(world)  # fine before cooking: the goal needs no cooked item
    cook = next(a for a in world.valid_actions(world.initial_state) if a.schema == "cook")
    state = world.step(world.initial_state, cook)
    with pytest.raises(PDDLExportError, match="running delayed effect on chicken1"):
        problem_pddl(world, state)


def test_plan_translation_errors(make_world):
    world = make_world("cheese_sandwich")
    assert action_from_pddl(world, "(achieve-goal bread1 table2 cheese1 bread2)") is None
    assert action_from_pddl(world, "(MOVE robot1 table1 table2)").text == "Move robot1 from table1 to table2"
    with pytest.raises(ValueError, match="unknown action"):
        action_from_pddl(world, "(fly robot1 table1)")
    with pytest.raises(ValueError, match="unknown object"):
        action_from_pddl(world, "(move robot1 table1 table9)")
    with pytest.raises(ValueError, match="after achieve-goal"):
        plan_from_pddl(world, ["(achieve-goal bread1 table2 cheese1 bread2)", "(move robot1 table1 table2)"])


@pytest.mark.parametrize(("task", "seed"), [("cheese_sandwich", 0), ("burger", 2), ("lettuce_sandwich", 2)])
def test_seeded_layouts(make_world, task, seed, tmp_path):
    """Seeded variants (extra stations and moved items) export and solve to the expert's optimum too."""
    world = make_world(task, seed)
    assert world.problem.objects != make_world(task).problem.objects
    _check_plan(world, world.initial_state, _pyperplan(world, tmp_path))
