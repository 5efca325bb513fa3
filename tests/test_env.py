"""The gym-like text environment: observation text, feedback on bad actions, layouts, task table, file errors."""

import json
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner_rl.env.cooking import INVALID_FEEDBACK, CookingEnv
from planner_rl.env.domain import load_domain
from planner_rl.env.problem import ProblemError, build_problem, read_problem_json
from planner_rl.env.tasks import (
    ROBOTOUILLE_HORIZONS,
    SYNCHRONOUS_DIR,
    TaskError,
    family,
    get_task,
    load_problem,
    subtask_pairs,
    synchronous_tasks,
    task_names,
)

CHEESE_SANDWICH_OBS_START = """Station table1:
table1 is a table
table1 is occupied by robot1
table1 has bread1
table1 has bread1 directly on top of it

Station table2:"""

CHEESE_SANDWICH_OBS_END = """Player robot1:
robot1 is a robot
robot1 is at table1
robot1 is holding nothing

Valid Actions:
Move robot1 from table1 to table2
Move robot1 from table1 to table3
Move robot1 from table1 to table4
Pick up bread1 from table1 using robot1
Do nothing

Goal: Prepare a cheese sandwich on a table"""


def test_observation_matches_robotouille_wording():
    obs = CookingEnv("cheese_sandwich").reset()
    assert obs.startswith(CHEESE_SANDWICH_OBS_START)
    assert obs.endswith(CHEESE_SANDWICH_OBS_END)
    assert "Station table4:\ntable4 is a table\ntable4 has nothing on it\ntable4 has no players at it\n\n" in obs
    assert "Item bread1:\nbread1 is a bread slice\nbread1 is at table1\nbread1 is directly on top of table1\n" in obs


def test_step_reward_done_and_info():
    env = CookingEnv("cheese_sandwich")
    env.reset()
    plan = [
        "Move robot1 from table1 to table3", "Pick up cheese1 from table3 using robot1",
        "Move robot1 from table3 to table1", "Stack cheese1 on top of bread1 using robot1",
        "Move robot1 from table1 to table2", "Pick up bread2 from table2 using robot1",
        "Move robot1 from table2 to table1", "Stack bread2 on top of cheese1 using robot1",
    ]  # fmt: skip
    for k, action in enumerate(plan):
        assert action in env.valid_actions
        obs, reward, done, info = env.step(f"  {action}\n")  # surrounding whitespace is stripped, as Robotouille does
        assert info["valid"] and info["steps"] == k + 1
        assert (reward, done) == ((1.0, True) if k == len(plan) - 1 else (0.0, False))
    assert env.success and info["success"]
    _, reward, done, info = env.step("Do nothing")  # after the end: refused, nothing changes
    assert not info["valid"] and info["reason"] == "the episode is over" and done and reward == 0.0


def test_invalid_actions_give_feedback_and_change_nothing():
    env = CookingEnv("cheese_sandwich")
    obs = env.reset()
    state = env.state
    for bad, reason in [
        ("Move robot1 from table1 to table1", "no such action"),
        ("Pick up cheese1 from table3 using robot1", "preconditions"),
        ("", "empty"),
        ("move robot1 from table1 to table2", "no such action"),
        (None, "not a string"),
        (42, "not a string"),
    ]:
        obs2, reward, done, info = env.step(bad)
        assert obs2 == obs and env.state == state and env.steps == 0
        assert (reward, done, info["valid"]) == (0.0, False, False)
        assert reason in info["reason"]
        if isinstance(bad, str):
            assert info["feedback"] == INVALID_FEEDBACK.format(bad)


def test_max_steps_truncates():
    env = CookingEnv("burger", max_steps=2)
    env.reset()
    env.step("Do nothing")
    _, _, done, info = env.step("Do nothing")
    assert done and info["truncated"] and not info["success"]


_env = CookingEnv("lettuce_tomato_sandwich")
_env.reset(seed=3)
_TEXTS = sorted({a.text for a in _env.world.actions})
_WORDS = sorted({w for t in _TEXTS for w in t.split()} | {"robot2", "table9", "from", "the", "Action:"})


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(), max_size=80))
def test_random_strings_never_raise_or_change_state(text):
    state, steps = _env.state, _env.steps
    obs, reward, done, info = _env.step(text)
    if not info["valid"]:
        assert _env.state == state and _env.steps == steps and reward == 0.0
    else:  # a random string that happens to be a valid action: put the state back
        _env.set_state(state, steps)


@settings(max_examples=5_000, deadline=None)
@given(st.one_of(
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=9).map(" ".join),
    st.sampled_from(_TEXTS).map(lambda t: t.replace("1", "2")),
    st.sampled_from(_TEXTS).map(str.upper),
    st.tuples(st.sampled_from(_TEXTS), st.text(string.printable, max_size=3)).map("".join),
))  # fmt: skip
def test_valid_looking_actions_never_raise(text):
    state, steps = _env.state, _env.steps
    valid = set(_env.valid_actions)
    obs, reward, done, info = _env.step(text)
    assert info["valid"] == (text.strip() in valid)
    if not info["valid"]:
        assert _env.state == state and _env.steps == steps
    _env.set_state(state, steps)


def test_layout_seeds_are_deterministic_and_vary():
    a, b = load_problem("burger", seed=7), load_problem("burger", seed=7)
    assert a.atoms == b.atoms and [o.name for o in a.objects] == [o.name for o in b.objects]
    layouts = {frozenset(load_problem("burger", seed=s).atoms) for s in range(10)}
    assert len(layouts) > 5
    assert load_problem("burger", seed=None).atoms == load_problem("burger").atoms


@pytest.mark.parametrize("task", task_names())
def test_seeded_layouts_follow_the_generator_rules(task):
    base = load_problem(task)
    base_items = sorted(o.kind for o in base.objects if o.type == "item")
    for seed in range(20):
        p = load_problem(task, seed=seed)
        stations = [o for o in p.objects if o.type == "station"]
        items = [o for o in p.objects if o.type == "item"]
        assert len(stations) > sum(o.type == "station" for o in base.objects)  # extra stations
        kinds = [o.kind for o in items]
        assert all(kinds.count(k) >= base_items.count(k) for k in base_items)  # originals kept
        assert not [a for a in p.atoms if a[0] == "atop"]  # stacks broken up
        assert sum(a[0] == "has_item" for a in p.atoms) <= 1
        assert sum(a[0] == "loc" for a in p.atoms) == 1
        assert p.goal == base.goal and p.goal_description == base.goal_description
        for o in base.objects:  # original predicates (iscooked, iscuttable) kept
            if o.type == "item" and ("iscooked", o.name) in base.atoms:
                assert any(("iscooked", x.name) in p.atoms for x in items if x.kind == o.kind)


def test_task_table():
    tasks = synchronous_tasks()
    assert [t.name for t in tasks][:4] == ["cheese_sandwich", "lettuce_sandwich", "lettuce_tomato_sandwich", "burger"]
    assert tuple(t.robotouille_horizon for t in tasks) == ROBOTOUILLE_HORIZONS
    assert [t.budget for t in tasks] == [15, 21, 36, 15, 23, 35, 54, 66, 95, 86]
    assert get_task("0_cheese_sandwich") is get_task(0) is get_task("cheese_sandwich")
    with pytest.raises(TaskError, match="unknown task 'pizza'; known tasks: cheese_sandwich"):
        get_task("pizza")
    # a loaded problem knows its task's name (prompt.goal=name), whichever way it was asked for
    assert load_problem("double_cheeseburger", 3).task == load_problem(5).task == "double_cheeseburger"
    assert load_problem("asynchronous/5_potato_soup").task == "potato_soup"
    assert build_problem(read_problem_json(get_task(0).path), load_domain()).task == ""  # a bare file: no task name


def test_subtask_relations():
    pairs = set(subtask_pairs())
    for small, big in [
        ("burger", "cheeseburger"), ("cheeseburger", "double_cheeseburger"),
        ("cheeseburger", "lettuce_tomato_cheeseburger"), ("lettuce_sandwich", "lettuce_tomato_sandwich"),
        ("lettuce_sandwich", "two_lettuce_chicken_sandwich"),
    ]:  # fmt: skip
        assert (small, big) in pairs
    for small, big in [
        ("cheese_sandwich", "lettuce_sandwich"),
        ("cheeseburger", "burger"),
        ("burger", "cheese_sandwich"),
    ]:
        assert (small, big) not in pairs
    assert family("cheese_sandwich") == family("lettuce_tomato_sandwich") == ("bread",)
    assert family("double_cheeseburger") == ("bottombun",)
    assert family("onion_cheese_burger_and_lettuce_tomato_chicken_sandwich") == ("bottombun", "bread")


def _raw(task="cheese_sandwich"):
    return read_problem_json(SYNCHRONOUS_DIR / f"{get_task(task).number}_{task}.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("goal"), "missing field 'goal'"),
        (lambda r: r["items"][0].update(name="pizza"), "'items[0].name': 'pizza' is not a item kind"),
        (lambda r: r["stations"][0].update(x="0"), "'stations[0].x' has type str, expected int"),
        (lambda r: r["goal"][0].update(predicate="on"), "unknown predicate 'on'"),
        (lambda r: r["goal"][0].update(ids=[1]), "'goal[0]': 'item_on' takes 2 args"),
        (lambda r: r["players"][0].update(direction=[1, 1]), "not a station"),
        (lambda r: r["items"][0].update(x=4, y=4), "on neither a station nor a player"),
        (lambda r: r["items"][0].update(predicates=["isboard"]), "not a one-argument item predicate"),
        (lambda r: r.update(goal=[]), "field 'goal' is empty"),
    ],
)
def test_malformed_problem_files_name_the_field(tmp_path, edit, message):
    raw, pattern = _raw(), re.escape(message)
    edit(raw)
    with pytest.raises(ProblemError, match=pattern) as err:
        build_problem(raw, load_domain(), "broken.json")
    assert str(err.value).startswith("broken.json: ")
    path = tmp_path / "broken_kitchen.json"  # the same file read from disk: the message names its path
    path.write_text(json.dumps(raw))
    with pytest.raises(ProblemError, match=pattern) as err:
        load_problem(path)
    assert str(err.value).startswith(f"{path}: ") and "broken_kitchen.json" in str(err.value)


def test_unreadable_problem_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProblemError, match=r"bad\.json: not valid JSON"):
        load_problem(bad)
    with pytest.raises(ProblemError, match="no such problem file"):
        load_problem(tmp_path / "missing.json")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ProblemError, match="must hold a JSON object"):
        load_problem(bad)
