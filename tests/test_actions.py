"""Every action's preconditions and effects, and the special-effect timing, on hand-made states."""

from kitchen import act, atoms, make_world, valid_texts

from planner_rl.env.world import CUT_REPETITIONS

ROW = [("table", 0, 0), ("table", 1, 0), ("board", 2, 0), ("stove", 3, 0), ("fryer", 4, 0), ("sink", 5, 0)]
# names: table1 (0,0), table2 (1,0), board1, stove1, fryer1, sink1; the robot starts at table1


def test_move_swaps_location_and_vacancy():
    w = make_world(ROW)
    s = w.initial_state
    texts = valid_texts(w, s)
    assert "Move robot1 from table1 to table1" not in texts  # never to the current station
    assert [t for t in texts if t.startswith("Move")] == [
        f"Move robot1 from table1 to {x}" for x in ("table2", "board1", "stove1", "fryer1", "sink1")
    ]
    t = act(w, s, "Move robot1 from table1 to stove1")
    got = atoms(w, t)
    assert ("loc", "robot1", "stove1") in got and ("loc", "robot1", "table1") not in got
    assert ("vacant", "table1") in got and ("vacant", "stove1") not in got


def test_pick_up_and_place_item():
    w = make_world(ROW, items=[("bread", 0, 0)])
    s = w.initial_state
    s = act(w, s, "Pick up bread1 from table1 using robot1")
    got = atoms(w, s)
    assert {("has_item", "robot1", "bread1"), ("station_empty", "table1")} <= got
    assert not {("nothing", "robot1"), ("item_at", "bread1", "table1"), ("item_on", "bread1", "table1"),
                ("clear", "bread1")} & got  # fmt: skip
    assert "Place bread1 on table1 using robot1" in valid_texts(w, s)
    s = act(w, s, "Move robot1 from table1 to table2")
    s = act(w, s, "Place bread1 on table2 using robot1")
    got = atoms(w, s)
    assert {("nothing", "robot1"), ("item_at", "bread1", "table2"), ("item_on", "bread1", "table2"),
            ("clear", "bread1")} <= got  # fmt: skip
    assert ("station_empty", "table2") not in got


def test_pick_up_needs_a_lone_clear_item_and_empty_hands():
    w = make_world(ROW, items=[("bread", 0, 0, 0), ("cheese", 0, 0, 1), ("tomato", 1, 0)])
    s = w.initial_state
    texts = valid_texts(w, s)
    assert not [t for t in texts if t.startswith("Pick up")]  # bread1 is under cheese1
    assert "Unstack cheese1 from bread1 using robot1" in texts
    s = act(w, s, "Unstack cheese1 from bread1 using robot1")
    got = atoms(w, s)
    assert {("has_item", "robot1", "cheese1"), ("clear", "bread1")} <= got
    assert not {("atop", "cheese1", "bread1"), ("item_at", "cheese1", "table1"), ("nothing", "robot1")} & got
    s = act(w, s, "Move robot1 from table1 to table2")
    assert "Pick up tomato1 from table2 using robot1" not in valid_texts(w, s)  # hands full
    assert "Place cheese1 on table2 using robot1" not in valid_texts(w, s)  # table2 is not empty


def test_stack_puts_the_held_item_on_the_top_of_the_stack():
    w = make_world(ROW, items=[("bread", 0, 0, 0), ("cheese", 1, 0)])
    s = act(w, w.initial_state, "Move robot1 from table1 to table2")
    s = act(w, s, "Pick up cheese1 from table2 using robot1")
    s = act(w, s, "Move robot1 from table2 to table1")
    s = act(w, s, "Stack cheese1 on top of bread1 using robot1")
    got = atoms(w, s)
    assert {("atop", "cheese1", "bread1"), ("item_at", "cheese1", "table1"), ("clear", "cheese1"),
            ("nothing", "robot1")} <= got  # fmt: skip
    assert ("clear", "bread1") not in got and ("item_on", "cheese1", "table1") not in got


def test_cut_takes_three_cuts_and_the_count_persists_per_item():
    w = make_world(ROW, items=[("lettuce", 2, 0, 0, ["iscuttable"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to board1")
    for _ in range(CUT_REPETITIONS - 1):
        s = act(w, s, "Cut lettuce1 on board1 using robot1")
        assert ("iscut", "lettuce1") not in atoms(w, s)
    assert w.cut_progress(s) == {"lettuce1": 2}
    obs_before = w.describe_state(s)
    # Take it away, wait, bring it back: the count is kept, and it never shows in the observation.
    s = act(w, s, "Pick up lettuce1 from board1 using robot1")
    s = act(w, s, "Move robot1 from board1 to table2")
    s = act(w, s, "Place lettuce1 on table2 using robot1")
    s = act(w, s, "Do nothing")
    s = act(w, s, "Pick up lettuce1 from table2 using robot1")
    s = act(w, s, "Move robot1 from table2 to board1")
    s = act(w, s, "Place lettuce1 on board1 using robot1")
    assert w.describe_state(s) == obs_before
    s = act(w, s, "Cut lettuce1 on board1 using robot1")
    assert ("iscut", "lettuce1") in atoms(w, s)
    assert "Cut lettuce1 on board1 using robot1" in valid_texts(w, s)  # still listed, pointless


def test_cut_needs_a_board_a_cuttable_lone_item_and_empty_hands():
    w = make_world(ROW, items=[("lettuce", 0, 0, 0, ["iscuttable"]), ("bread", 2, 0)])
    s = w.initial_state
    assert not [t for t in valid_texts(w, s) if t.startswith("Cut")]  # not on a board
    s = act(w, s, "Move robot1 from table1 to board1")
    assert not [t for t in valid_texts(w, s) if t.startswith("Cut")]  # bread is not cuttable


def test_cook_is_ready_three_steps_later_and_pauses_off_the_stove():
    w = make_world(ROW, items=[("patty", 3, 0, 0, ["iscookable"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to stove1")
    s = act(w, s, "Cook patty1 on stove1 using robot1")
    assert ("iscooking", "patty1") in atoms(w, s)
    assert "Cook patty1 on stove1 using robot1" not in valid_texts(w, s)  # already cooking
    s = act(w, s, "Do nothing")
    s = act(w, s, "Pick up patty1 from stove1 using robot1")  # off the stove: paused, no longer cooking
    assert ("iscooking", "patty1") not in atoms(w, s)
    s = act(w, s, "Do nothing")
    s = act(w, s, "Place patty1 on stove1 using robot1")  # back on: resumes
    assert ("iscooking", "patty1") in atoms(w, s) and ("iscooked", "patty1") not in atoms(w, s)
    s = act(w, s, "Do nothing")
    assert ("iscooked", "patty1") in atoms(w, s) and ("iscooking", "patty1") not in atoms(w, s)


def test_cook_then_three_steps_gives_cooked():
    w = make_world(ROW, items=[("patty", 3, 0, 0, ["iscookable"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to stove1")
    s = act(w, s, "Cook patty1 on stove1 using robot1")
    for _ in range(2):
        s = act(w, s, "Do nothing")
        assert ("iscooked", "patty1") not in atoms(w, s)
    s = act(w, s, "Do nothing")
    assert ("iscooked", "patty1") in atoms(w, s)


def test_fry():
    w = make_world(ROW, items=[("chicken", 4, 0, 0, ["isfryable"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to fryer1")
    s = act(w, s, "Fry chicken1 on fryer1 using robot1")
    for _ in range(2):
        s = act(w, s, "Do nothing")
    assert ("isfried", "chicken1") not in atoms(w, s)
    s = act(w, s, "Do nothing")
    assert ("isfried", "chicken1") in atoms(w, s)


def test_fryable_if_cut_becomes_fryable_when_cut():
    w = make_world(ROW, items=[("potato", 2, 0, 0, ["iscuttable", "isfryableifcut"])])
    s = act(w, w.initial_state, "Move robot1 from table1 to board1")
    for _ in range(CUT_REPETITIONS):
        assert ("isfryable", "potato1") not in atoms(w, s)
        s = act(w, s, "Cut potato1 on board1 using robot1")
    assert {("iscut", "potato1"), ("isfryable", "potato1")} <= atoms(w, s)


def test_containers_water_boil_add_and_serve():
    w = make_world(ROW, items=[("onion", 1, 0)], containers=[("pot", 5, 0), ("bowl", 0, 0)])
    s = act(w, w.initial_state, "Move robot1 from table1 to sink1")
    s = act(w, s, "Fill pot1 with water from sink1 using robot1")
    for _ in range(2):
        s = act(w, s, "Do nothing")
        assert ("container_empty", "pot1") in atoms(w, s)
    s = act(w, s, "Do nothing")
    assert {("iswater", "water1"), ("in", "water1", "pot1")} <= atoms(w, s)
    assert ("container_empty", "pot1") not in atoms(w, s)
    assert "Meal water1:\nwater1 is water\nwater1 is inside of pot1" in w.describe_state(s)
    s = act(w, s, "Pick up pot1 from sink1 using robot1")
    assert {("has_container", "robot1", "pot1"), ("station_empty", "sink1")} <= atoms(w, s)
    s = act(w, s, "Move robot1 from sink1 to stove1")
    s = act(w, s, "Place pot1 on stove1 using robot1")
    s = act(w, s, "Boil pot1's contents on stove1 using robot1")
    s = act(w, s, "Move robot1 from stove1 to table2")
    s = act(w, s, "Pick up onion1 from table2 using robot1")
    s = act(w, s, "Move robot1 from table2 to stove1")
    assert ("isboiling", "water1") in atoms(w, s)
    s = act(w, s, "Add onion1 into pot1 using robot1")
    got = atoms(w, s)
    assert {("addedto", "onion1", "water1"), ("nothing", "robot1")} <= got
    assert not [a for a in got if a[1] == "onion1" and a[0] in ("item_at", "has_item")]
    s = act(w, s, "Pick up pot1 from stove1 using robot1")
    s = act(w, s, "Move robot1 from stove1 to table1")
    s = act(w, s, "Fill bowl1 with pot1's contents using robot1")
    got = atoms(w, s)
    assert {("in", "water1", "bowl1"), ("container_empty", "pot1")} <= got
    assert ("in", "water1", "pot1") not in got and ("container_empty", "bowl1") not in got


def test_wait_changes_nothing_without_timers():
    w = make_world(ROW, items=[("bread", 0, 0)])
    s = w.initial_state
    assert valid_texts(w, s)[-1] == "Do nothing"
    assert act(w, s, "Do nothing") == s
