"""The `pddl` environment family (planner_rl/env/strips/, planner_rl/env/families.py): loading, grounding, the text
environment, the optimal expert checked against pyperplan (an independent parser, grounder and breadth-first
search), Blocksworld by seed, user-supplied files by path, clear errors."""

from __future__ import annotations

import pytest

pytest.importorskip("pddl")
pytest.importorskip("pyperplan")
from pddl_files import GRIPPER, gripper_problem
from pyperplan.grounding import ground
from pyperplan.pddl.parser import Parser
from pyperplan.search import breadth_first_search

from planner_rl.env.cooking import INVALID_FEEDBACK
from planner_rl.env.families import TextEnv, ground_world, make_world, resolve_task, solve, task_budget
from planner_rl.env.strips.blocksworld import DOMAIN_FILE, problem_pddl
from planner_rl.env.strips.search import solve as strips_solve
from planner_rl.env.strips.task import PDDLTaskError, load_task
from planner_rl.env.tasks import TaskError


@pytest.fixture
def gripper_dir(tmp_path):
    (tmp_path / "domain.pddl").write_text(GRIPPER)
    for k, balls in enumerate([1, 2, 3], start=1):
        (tmp_path / f"p{k}.pddl").write_text(gripper_problem(k, balls))
    return tmp_path


def pyperplan_task(domain_file, problem_file, init_facts=None):
    parser = Parser(str(domain_file), str(problem_file))
    task = ground(parser.parse_problem(parser.parse_domain()), remove_statics_from_initial_state=False)
    if init_facts is not None:
        task.initial_state = frozenset(init_facts)
    return task


def validate(task, steps: list[str]) -> bool:
    """VAL-style check with pyperplan's own grounding: every step applicable in turn, the goal reached."""
    ops = {op.name: op for op in task.operators}
    state = task.initial_state
    for step in steps:
        op = ops.get(step)
        if op is None or not op.applicable(state):
            return False
        state = op.apply(state)
    return task.goal_reached(state)


def facts_of(world, state) -> set[str]:
    return {f"({' '.join((p, *a))})" for p, a in world.true_atoms(state)}


def write_blocks(tmp_path, n: int, seed: int):
    path = tmp_path / f"blocks{n}-{seed}.pddl"
    path.write_text(problem_pddl(n, seed))
    return path


# --- loading, text environment --------------------------------------------------------------------------------
def test_blocksworld_world_and_text_env():
    env = TextEnv("blocks4", seed=1)
    obs = env.reset(seed=1)
    assert obs.startswith("Blocks:\n") and "\n\nValid Actions:\n" in obs and "\n\nGoal: " in obs
    assert env.goal == env.world.problem.goal_description and " is directly on top of " in env.goal
    before, valid = env.state, env.valid_actions
    assert valid and all(v.startswith(("Pick up", "Unstack")) for v in valid)
    for bad in ["fly away", "", None, 3, "Stack b1 on top of b1", valid[0].upper()]:
        obs2, reward, done, info = env.step(bad)
        assert not info["valid"] and env.state == before and env.steps == 0 and obs2 == obs and reward == 0.0
        assert info["feedback"].startswith(INVALID_FEEDBACK.split("'")[0])
    obs3, _, _, info = env.step(valid[0])
    assert info["valid"] and env.steps == 1 and obs3 != obs
    assert env.world.step(before, env.world.actions[env.world.by_text[valid[0]][0]]) == env.state  # deterministic


def test_same_problem_from_seed_and_from_files(tmp_path):
    """A generated problem read by path (domain file beside it) is the same world as `blocks<n>` under its seed."""
    (tmp_path / "domain.pddl").write_text(DOMAIN_FILE.read_text())
    path = write_blocks(tmp_path, 5, 7)
    a, b = make_world("blocks5", 7), ground_world(str(path), 123)
    assert a.atoms == b.atoms and a.initial_state == b.initial_state and a.problem.goal == b.problem.goal
    assert [x.text for x in a.valid_actions(a.initial_state)] != []
    assert problem_pddl(5, 7) == problem_pddl(5, 7) != problem_pddl(5, 8)


def test_budget_and_task_names(gripper_dir):
    assert resolve_task("blocks6") == "blocks6" and task_budget("blocks6") is None
    assert resolve_task(str(gripper_dir)) == str(gripper_dir)
    assert task_budget("burger") == 15  # Robotouille's tasks keep their configured budgets
    for bad in ["blocks1", "blocks99", "pizza", str(gripper_dir / "nope.pddl")]:
        with pytest.raises(TaskError):
            resolve_task(bad)


# --- the expert vs pyperplan ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "seed"), [(3, 0), (4, 1), (5, 0), (5, 2), (6, 1)])
def test_blocksworld_plans_optimal_and_valid(tmp_path, n, seed):
    path = write_blocks(tmp_path, n, seed)
    world = make_world(f"blocks{n}", seed)
    sol = solve(world)
    steps = [world.task.operators[a.id].pddl for a in sol.plan]
    task = pyperplan_task(DOMAIN_FILE, path)
    assert validate(task, steps)
    assert sol.cost == len(breadth_first_search(task))  # optimal: breadth-first search finds no shorter plan
    # every listed optimal action (and only those) leads to a state one step closer, by pyperplan's BFS
    for state, optimal in zip(sol.states, sol.optimal_actions, strict=False):
        d = len(breadth_first_search(pyperplan_task(DOMAIN_FILE, path, facts_of(world, state))))
        for a in world.valid_actions(state):
            t = world.step(state, a)
            dt = len(breadth_first_search(pyperplan_task(DOMAIN_FILE, path, facts_of(world, t))))
            assert (dt == d - 1) == (a in optimal), a.text
    assert sol.plan[0] == sol.optimal_actions[0][0]  # canonical: the first optimal action in valid-action order


@pytest.mark.parametrize("heuristic", ["hmax", "blind"])
def test_heuristics_agree(heuristic):
    world = make_world("blocks5", 0)
    ref = strips_solve(world)
    other = strips_solve(world, heuristic=heuristic)
    assert other.cost == ref.cost and other.texts == ref.texts and other.optimal_actions == ref.optimal_actions


def test_user_domain_directory(gripper_dir):
    """A directory of user files: seed k is the k-th problem; the expert's plans pass pyperplan's check."""
    for seed in range(3):
        world = make_world(str(gripper_dir), seed)
        sol = solve(world)
        task = pyperplan_task(gripper_dir / "domain.pddl", gripper_dir / f"p{seed + 1}.pddl")
        assert validate(task, [a.text for a in sol.plan])  # generic text is the PDDL form
        assert sol.cost == len(breadth_first_search(task)) == [3, 5, 9][seed]
    with pytest.raises(TaskError, match="seed 3 names no problem file"):
        make_world(str(gripper_dir), 3)


# --- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("domain", "problem", "match"),
    [
        (GRIPPER.replace(":strips :typing", ":strips :typing :conditional-effects"), None, "requirements"),
        (GRIPPER, gripper_problem(1, 1).replace("(:domain gripper-typed)", "(:domain other)"), "field ':domain'"),
        (GRIPPER, gripper_problem(1, 1).replace("(free right)", "(fre right)"), "field ':init'"),
        (GRIPPER.replace("(define", "(defin"), None, "not a valid PDDL domain"),
        (GRIPPER, gripper_problem(1, 1)[:-3], "not a valid PDDL problem"),
    ],
)
def test_bad_files_name_file_and_field(tmp_path, domain, problem, match):
    (tmp_path / "domain.pddl").write_text(domain)
    (tmp_path / "p.pddl").write_text(problem or gripper_problem(1, 1))
    with pytest.raises(PDDLTaskError, match=match) as e:
        load_task(tmp_path / "domain.pddl", tmp_path / "p.pddl")
    assert str(tmp_path) in str(e.value)
    with pytest.raises(PDDLTaskError, match="no such domain file"):
        load_task(tmp_path / "missing.pddl", tmp_path / "p.pddl")


def test_expert_command_on_blocksworld():
    from omegaconf import OmegaConf

    from planner_rl.expert import run

    lines = run(OmegaConf.create({"task": "blocks6", "seed": 3, "pddl_dir": None, "max_expansions": 100_000}))
    assert lines[-1] == f"steps: {len(lines) - 1}" == f"steps: {solve(make_world('blocks6', 3)).cost}"
