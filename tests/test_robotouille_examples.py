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
from kitchen import distances

from planner_rl.env.domain import load_domain
from planner_rl.env.planner import NoPlanError, solve
from planner_rl.env.problem import ProblemError, build_problem
from planner_rl.env.tasks import EXAMPLES_DIR, example_files, load_problem
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


# --- loading: what Robotouille accepts, and clear refusals ---------------------------------------------------------
def test_wildcard_kinds_are_drawn_as_robotouille_draws_them():
    # base_stack names its station and items by type; Robotouille gives each a random kind (recorded after
    # random.seed(0), like our draw): fryer1, then tomato1 and bottombun1, and the goal follows the string IDs
    world = world_of("base_stack")
    assert [o.name for o in world.objects] == ["fryer1", "tomato1", "bottombun1", "robot1"]
    assert world.valid_actions(world.initial_state)[0].text == "Stack tomato1 on top of bottombun1 using robot1"


def test_absent_optional_lists_are_empty():
    problem = load_problem("base_boil_water")  # no "items" field, as Robotouille allows
    assert not [o for o in problem.objects if o.type == "item"]


def _raw(rel: str) -> dict:
    return json.loads((EXAMPLES_DIR / f"{rel}.json").read_text())


def test_a_wildcard_with_a_numeric_goal_id_is_refused():
    raw = _raw("base_place")
    raw["goal"][0]["ids"] = [1, "A"]  # item#1: Robotouille's goal would name an object "item1" that never exists
    with pytest.raises(ProblemError, match=r"x\.json: field 'goal\[0\]\.ids': the wildcard kind 'item' takes a str"):
        build_problem(raw, load_domain(), source="x.json")


def test_an_unknown_kind_is_refused_naming_the_field():
    raw = _raw("base_cook")
    raw["stations"][0]["name"] = "oven"
    with pytest.raises(ProblemError, match=r"field 'stations\[0\]\.name': 'oven' is not a station kind .* wildcard"):
        build_problem(raw, load_domain(), source="x.json")


# --- rules where Robotouille's engine had to be read closely --------------------------------------------------------
def step(world, s, text):
    action = next(a for a in world.valid_actions(s) if a.text == text)
    return world.step(s, action)


def test_a_patty_cooks_on_the_second_stove():
    # A conditional effect is Robotouille's equal only with equal conditions: cooking on stove2 must not reuse the
    # effect of "... on stove1" (which waits for the patty to be on stove1 and never fires).
    world = world_of("cook_patties")
    s = world.initial_state
    for text in ("Pick up patty1 from table1 using robot1", "Move robot1 from table1 to stove2",
                 "Place patty1 on stove2 using robot1", "Cook patty1 on stove2 using robot1"):  # fmt: skip
        s = step(world, s, text)
    assert world.holds(s, "iscooking", "patty1")
    for _ in range(3):
        s = step(world, s, "Do nothing")
    assert world.holds(s, "iscooked", "patty1")


def test_both_pots_fill():
    world = world_of("base_fill_two_pots")
    sol = solve(world)
    assert sol.cost == 7 and world.is_goal(sol.states[-1])
    assert {a for a in world.true_atoms(sol.states[-1]) if a[0] == "in"} == {("in", "water1", "pot1"),
                                                                             ("in", "water2", "pot2")}  # fmt: skip


def test_several_robots_act_in_any_order():
    # Robotouille's text interface lists every robot's valid actions and takes one action a step, of any robot
    # (its `current_player` only drives the pygame input).
    from planner_rl.env.cooking import CookingEnv

    env = CookingEnv("multi_agent/1_lettuce_burger")
    robots = {a.split()[1] for a in env.valid_actions if a.startswith("Move")}
    assert robots == {"robot1", "robot2"}
    for _ in range(2):
        move = next(a for a in env.valid_actions if a.startswith("Move robot2"))
        assert env.step(move)[3]["valid"]


# --- the expert ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", example_files())
def test_the_expert_never_crashes(rel):
    world = world_of(rel)
    try:
        sol = solve(world, max_expansions=300, optimal_sets=False)
    except NoPlanError as e:
        assert str(e) in ("search gave up after 300 expansions", "the goal is unreachable from this state")
    else:
        assert world.is_goal(sol.states[-1]) and len(sol.plan) == sol.cost


SMALL = [r for r in example_files() if r.startswith(("base_", "composite_"))] + ["fry_chicken"]


@pytest.mark.parametrize("rel", SMALL)
def test_optimal_and_admissible_against_breadth_first_search(rel):
    from planner_rl.env.planner import heuristic_for

    world = world_of(rel)
    dist = distances(world, cap=60_000)
    h = heuristic_for(world)
    assert all(h(s) <= d for s, d in dist.items())
    assert solve(world).cost == dist[world.initial_state]


# Robotouille's configured `optimal_steps` of asynchronous tasks 0, 1, 2, 5 (budgets; here also the optima), and our
# optimum of 3.1, a file its configs do not list.
ASYNC = {"0_cheese_chicken_sandwich": 21, "1_lettuce_chicken_sandwich": 27, "5_potato_soup": 19,
         "2_lettuce_tomato_fried_chicken_sandwich": 37, "3.1_lettuce_cheeseburger": 31}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ASYNC))
def test_asynchronous_optima(name):
    world = world_of(f"asynchronous/{name}")
    sol = solve(world, optimal_sets=False)
    assert sol.cost == ASYNC[name] and world.is_goal(sol.states[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "cost"), [("3_tomato_burger_and_fries", 42),
                                            ("4_onion_cheese_burger_and_fried_onion", 46),
                                            ("7_tomato_soup_and_lettuce_chicken_sandwich", 44)])  # fmt: skip
def test_asynchronous_optima_slow(name, cost):
    world = world_of(f"asynchronous/{name}")
    assert solve(world, optimal_sets=False).cost == cost


def _small_soup(**changes) -> dict:
    """asynchronous/5_potato_soup on 5 stations (its board and a table dropped): every state can be enumerated."""
    raw = _raw("asynchronous/5_potato_soup")
    kinds = (("table", 0, 1), ("stove", 1, 1), ("table", 2, 1), ("sink", 3, 1), ("table", 0, 3))
    raw["stations"] = [{"name": k, "x": x, "y": y} for k, x, y in kinds]
    raw["items"] = [{"name": "potato", "x": 0, "y": 1, "stack-level": 0, "predicates": ["iscuttable"]}]
    raw["containers"] = [{"name": "pot", "x": 2, "y": 1}, {"name": "bowl", "x": 0, "y": 3}]
    raw.update(changes)
    return raw


def test_soup_heuristic_admissible_on_a_whole_state_space():
    from planner_rl.env.planner import heuristic_for

    world = World(build_problem(_small_soup(), load_domain(), source="small soup"), load_domain())
    dist = distances(world, cap=60_000)
    h = heuristic_for(world)
    assert len(dist) > 10_000 and all(h(s) <= d for s, d in dist.items())
    assert h(world.initial_state) >= 13 and dist[world.initial_state] == 19


def test_heuristic_admissible_on_a_stack_that_names_no_station():
    # high_level_* goals: atop(topbun, patty), atop(patty, bottombun), iscooked(patty), on no station; the bound
    # gives the bottom a free goal station variable
    from planner_rl.env.planner import heuristic_for

    raw = _raw("synchronous/3_burger")
    tiles = (("table", 0, 1), ("stove", 2, 1), ("table", 2, 3), ("table", 3, 3))
    raw["stations"] = [{"name": k, "x": x, "y": y} for k, x, y in tiles]
    raw["items"] = [{"name": "bottombun", "x": 0, "y": 1, "stack-level": 0},
                    {"name": "patty", "x": 2, "y": 3, "stack-level": 0, "predicates": ["iscookable"]},
                    {"name": "topbun", "x": 3, "y": 3, "stack-level": 0}]  # fmt: skip
    raw["goal"] = [{"predicate": "iscooked", "args": ["patty"], "ids": [1]},
                   {"predicate": "atop", "args": ["topbun", "patty"], "ids": [2, 1]},
                   {"predicate": "atop", "args": ["patty", "bottombun"], "ids": [1, 3]}]  # fmt: skip
    world = World(build_problem(raw, load_domain(), source="free stack"), load_domain())
    dist = distances(world, cap=60_000)
    h = heuristic_for(world)
    assert all(h(s) <= d for s, d in dist.items())
    assert (h(world.initial_state), dist[world.initial_state]) == (11, 15)
    assert solve(world, optimal_sets=False).cost == 15
