"""Prompts: Robotouille's observation word for word, then the hidden progress, the previous actions, feedback."""

import pytest
from kitchen import act, make_world

from planner_rl.env.planner import solve
from planner_rl.prompts import PromptConfig, build_messages, progress_lines, system_message, user_message

ROW = [("table", 0, 0), ("table", 1, 0), ("board", 2, 0), ("stove", 3, 0), ("fryer", 4, 0), ("sink", 5, 0)]


def test_user_message_starts_with_robotouille_observation(make_world):
    world = make_world("lettuce_sandwich", 3)
    sol = solve(world)
    for k in (0, 5, len(sol.plan) - 1):
        state = sol.states[k]
        text = user_message(world, state, sol.texts[:k])
        assert text.startswith(world.observation(state) + "\n\nProgress:\n")
        assert text.endswith("\n\nWhat is the next action?")


def test_sections_follow_the_config(make_world):
    world = make_world("burger")
    s = world.initial_state
    bare = user_message(world, s, [], PromptConfig(valid_actions=False, progress=False, history=0))
    assert "Valid Actions:" not in bare and "Progress:" not in bare and "Previous actions:" not in bare
    assert bare == f"{world.describe_state(s)}\n\nGoal: {world.problem.goal_description}\n\nWhat is the next action?"
    history = [f"a{k}" for k in range(1, 8)]
    text = user_message(world, s, history, PromptConfig(history=3), feedback="The action 'x' is not valid.")
    assert "Previous actions:\n5. a5\n6. a6\n7. a7\n\nFeedback: The action 'x' is not valid.\n\nWhat" in text
    assert "Previous actions:\n1. a1\n" in user_message(world, s, history, PromptConfig(history=-1))
    assert "Previous actions:\nnone" in user_message(world, s, [], PromptConfig())
    assert "Progress:\nnothing in progress" in user_message(world, s, [], PromptConfig())


def test_system_message_names_the_output_format():
    assert "`Action: <action>`" in system_message(PromptConfig())
    assert "<think>" in system_message(PromptConfig(output_format="think"))
    brief = system_message(PromptConfig(system="brief"))
    assert "`Action: <action>`" in brief and "kitchen" not in brief
    with pytest.raises(ValueError, match=r"prompt\.system"):
        PromptConfig(system="short")
    with pytest.raises(ValueError, match="output format"):
        PromptConfig(output_format="json")
    with pytest.raises(ValueError, match=r"prompt\.history"):
        PromptConfig(history=-2)


def test_progress_lines_count_cuts_and_cook_timers():
    w = make_world(ROW, items=[("patty", 3, 0, 0, ["iscookable"]), ("lettuce", 2, 0, 0, ["iscuttable"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to stove1")
    expected = [
        ("Cook patty1 on stove1 using robot1", ["patty1 is cooked after 3 more steps"]),
        (
            "Pick up patty1 from stove1 using robot1",
            ["patty1 is cooked after 3 more steps (paused: it is off its station)"],
        ),
        ("Place patty1 on stove1 using robot1", ["patty1 is cooked after 2 more steps"]),
        ("Move robot1 from stove1 to board1", ["patty1 is cooked after 1 more step"]),
        ("Cut lettuce1 on board1 using robot1", ["lettuce1 is cut after 2 more cut actions"]),  # patty done
        ("Cut lettuce1 on board1 using robot1", ["lettuce1 is cut after 1 more cut action"]),
        ("Cut lettuce1 on board1 using robot1", []),
    ]
    for action, lines in expected:
        s = act(w, s, action)
        assert progress_lines(w, s) == lines, action
    assert w.holds(s, "iscooked", "patty1") and w.holds(s, "iscut", "lettuce1")


def test_messages_are_system_then_user(make_world):
    world = make_world("cheese_sandwich")
    msgs = build_messages(world, world.initial_state)
    assert [m["role"] for m in msgs] == ["system", "user"]


def test_shorter_prompts_drop_only_the_constant_text(make_world):
    """system=none, goal=name, question=false: the user message alone, the goal as the task's name and no closing
    question; every other line as in the full prompt."""
    world = make_world("double_cheeseburger", 7)
    s = world.initial_state
    base = PromptConfig(observation="compact", history=0)
    full = build_messages(world, s, [], base)
    short = build_messages(world, s, [], PromptConfig(observation="compact", history=0, system="none", goal="name",
                                                      question=False))  # fmt: skip
    assert [m["role"] for m in short] == ["user"]
    assert system_message(PromptConfig(system="none")) is None
    text = short[0]["content"]
    assert "\n\nGoal: double cheeseburger\n\n" in text and "What is the next action?" not in text
    expected = full[1]["content"].replace(world.problem.goal_description, "double cheeseburger")
    assert text == expected.removesuffix("\n\nWhat is the next action?")
    goal = user_message(make_world("lettuce_tomato_cheeseburger"), s, [], PromptConfig(goal="name"))
    assert "\n\nGoal: lettuce tomato cheeseburger\n\n" in goal
    with pytest.raises(ValueError, match=r"prompt\.goal"):
        PromptConfig(goal="short")


def test_goal_name_needs_a_kitchen_task():
    """A world built from a bare layout, or a PDDL problem (its goal differs from problem to problem), has no task
    name to stand for its goal: a clear error, not a wrong prompt."""
    from planner_rl.env.families import make_world as family_world

    bare = make_world(ROW, items=[("patty", 3, 0)])
    for world in (bare, family_world("blocks4", 0)):
        with pytest.raises(ValueError, match=r"prompt\.goal=name needs a kitchen task"):
            user_message(world, world.initial_state, [], PromptConfig(goal="name"))


def test_default_prompt_tells_apart_states_robotouille_text_does_not():
    """States with equal observation text (hidden cut counts, cook timers) get different default prompts, so any
    function of the state, like the expert's action, is a function of the prompt."""
    import random

    w = make_world(ROW, items=[("patty", 3, 0, 0, ["iscookable"]), ("lettuce", 2, 0, 0, ["iscuttable"])])
    rng, by_text = random.Random(0), {}
    for _ in range(30):
        s = w.initial_state
        for _ in range(25):
            by_text.setdefault(w.observation(s), set()).add(s)
            s = w.step(s, rng.choice(w.valid_actions(s)))
    shared = [states for states in by_text.values() if len(states) > 1]
    assert shared  # the observation text does hide state
    for states in shared:
        prompts = {user_message(w, s, [], PromptConfig(history=0)) for s in states}
        assert len(prompts) == len(states)


def test_compact_observation_lines():
    """One line per station, the stack bottom first with each item's status, then the robot."""
    w = make_world(ROW, items=[("patty", 3, 0, 0, ["iscookable"]), ("lettuce", 2, 0, 0, ["iscuttable"])])
    from planner_rl.env.compact import compact_observation

    s = w.initial_state
    assert compact_observation(w, s).splitlines() == [
        "table1: nothing", "table2: nothing", "board1: lettuce1", "stove1: patty1", "fryer1: nothing",
        "sink1: nothing", "robot1 at table1 holding nothing",
    ]  # fmt: skip
    s = act(w, s, "Move robot1 from table1 to stove1")
    s = act(w, s, "Cook patty1 on stove1 using robot1")
    s = act(w, s, "Move robot1 from stove1 to board1")
    s = act(w, s, "Pick up lettuce1 from board1 using robot1")
    text = compact_observation(w, s)
    assert "stove1: patty1 cooking" in text and "robot1 at board1 holding lettuce1" in text
    s = act(w, s, "Move robot1 from board1 to stove1")
    for _ in range(2):  # the patty is done after its timer; stacking the lettuce on it shows the stack
        s = act(w, s, "Do nothing")
    s = act(w, s, "Stack lettuce1 on top of patty1 using robot1")
    assert "stove1: patty1 cooked, lettuce1" in compact_observation(w, s)


@pytest.mark.parametrize("task", ["lettuce_tomato_cheeseburger", "two_lettuce_chicken_sandwich"])
def test_compact_observation_is_a_function_of_the_atoms_alone(task):
    """No fact is lost: along random walks, two states with the same compact text have the same true atoms, and
    the compact prompt (with progress) tells apart every state the default prompt does."""
    import random

    from planner_rl.env.compact import compact_observation
    from planner_rl.env.cooking import make_world as task_world

    w, rng = task_world(task, 7), random.Random(0)
    atoms_of, prompts = {}, {}
    for _ in range(20):
        s = w.initial_state
        for _ in range(40):
            atoms_of.setdefault(compact_observation(w, s), set()).add(s.atoms)
            full = user_message(w, s, [], PromptConfig(history=0))
            prompts.setdefault(user_message(w, s, [], PromptConfig(history=0, observation="compact")), set()).add(full)
            s = w.step(s, rng.choice(w.valid_actions(s)))
    assert all(len(v) == 1 for v in atoms_of.values())
    assert all(len(v) == 1 for v in prompts.values())
    assert len(prompts) > 100


def test_observation_option_is_checked():
    with pytest.raises(ValueError, match=r"prompt\.observation"):
        PromptConfig(observation="short")


@pytest.mark.parametrize("observation", ["compact", "robotouille"])
def test_move_contents_annotate_each_listed_move_with_its_destination(observation):
    """prompt.move_contents: `Move ... to stove1 (patty1 cooking)`; other actions and the answer unchanged."""
    w = make_world(ROW, items=[("patty", 3, 0, 0, ["iscookable"]), ("lettuce", 2, 0, 0, ["iscuttable"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to stove1")
    s = act(w, s, "Cook patty1 on stove1 using robot1")
    s = act(w, s, "Move robot1 from stove1 to table2")
    cfg = PromptConfig(observation=observation, move_contents=True, history=0)
    listed = user_message(w, s, (), cfg).split("Valid Actions:\n")[1].split("\n\n")[0].splitlines()
    assert "Move robot1 from table2 to stove1 (patty1 cooking)" in listed
    more = {"Move robot1 from table2 to board1 (lettuce1)", "Move robot1 from table2 to table1 (nothing)"}
    assert more <= set(listed)
    assert "Do nothing" in listed and len(listed) == len(w.valid_actions(s))
    plain = user_message(w, s, (), PromptConfig(observation=observation, history=0))
    assert "(patty1" not in plain


def test_trained_prompt_differences_name_the_overrides_a_runs_model_needs(tmp_path):
    """evaluate warns when a run's model is evaluated on another prompt view than it was trained on: the run's
    .hydra/config.yaml, one folder up (sft_model) or two (checkpoints/step_*); data-only keys do not count."""
    from planner_rl.prompts import trained_prompt_differences

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "prompt:\n  system: none\n  goal: name\n  question: false\n  history: 0\n  detours: 0.5\n"
    )
    shown = PromptConfig(system="none", goal="name", question=False, history=0)
    for model in (run / "sft_model", run / "checkpoints" / "step_000100"):
        assert trained_prompt_differences(str(model), PromptConfig()) == [
            "prompt.history=0", "prompt.system=none", "prompt.goal=name", "prompt.question=false"
        ]  # fmt: skip
        assert trained_prompt_differences(str(model), shown) == []  # detours differ: training data only
    assert trained_prompt_differences(str(tmp_path / "elsewhere" / "model"), PromptConfig()) == []
    assert trained_prompt_differences(None, PromptConfig()) == []
    (run / ".hydra" / "config.yaml").write_text("prompt: [unclosed\n")  # unreadable: no warning, no crash
    assert trained_prompt_differences(str(run / "sft_model"), PromptConfig()) == []
