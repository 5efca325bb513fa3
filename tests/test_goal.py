"""Goal semantics: some injective assignment of objects to goal IDs; IDs are global variables across kinds."""

from kitchen import act, make_world

TABLES = [("table", 0, 0), ("table", 1, 0), ("table", 2, 0)]


def lit(pred, args, ids):
    return {"predicate": pred, "args": args, "ids": ids}


def test_distinct_ids_of_a_kind_need_distinct_objects():
    goal = [lit("item_at", ["cheese", "table"], [1, 2]), lit("item_at", ["cheese", "table"], [3, 4])]
    stacked = make_world(TABLES, items=[("cheese", 0, 0, 0), ("cheese", 0, 0, 1)], goal=goal)
    assert not stacked.is_goal(stacked.initial_state)  # one table cannot be both #2 and #4
    apart = make_world(TABLES, items=[("cheese", 0, 0), ("cheese", 2, 0)], goal=goal)
    assert apart.is_goal(apart.initial_state)
    assert apart.goal_assignment(apart.initial_state) in (
        {"#1": "cheese1", "#2": "table1", "#3": "cheese2", "#4": "table3"},
        {"#1": "cheese2", "#2": "table3", "#3": "cheese1", "#4": "table1"},
    )


def test_extra_items_in_a_stack_do_not_break_item_at_goals():
    goal = [lit("item_on", ["bread", "table"], [1, 2]), lit("item_at", ["cheese", "table"], [3, 2])]
    w = make_world(TABLES, items=[("bread", 0, 0, 0), ("tomato", 0, 0, 1), ("cheese", 0, 0, 2)], goal=goal)
    assert w.is_goal(w.initial_state)


def test_ids_are_global_first_kind_wins():
    # As in Robotouille's lettuce_sandwich file: the last literal names "cheese" 3, but ID 3 is the lettuce.
    goal = [lit("item_on", ["bread", "table"], [1, 2]), lit("atop", ["lettuce", "bread"], [3, 1]),
            lit("atop", ["bread", "cheese"], [4, 3])]  # fmt: skip
    w = make_world(TABLES, items=[("bread", 0, 0, 0), ("lettuce", 0, 0, 1), ("bread", 0, 0, 2)], goal=goal)
    assert w.is_goal(w.initial_state)


def test_goal_turns_true_after_the_last_action():
    goal = [lit("item_on", ["bread", "table"], [1, 2]), lit("atop", ["cheese", "bread"], [3, 1])]
    w = make_world(TABLES, items=[("bread", 0, 0), ("cheese", 1, 0)], goal=goal)
    s = w.initial_state
    s = act(w, s, "Move robot1 from table1 to table2")
    s = act(w, s, "Pick up cheese1 from table2 using robot1")
    s = act(w, s, "Move robot1 from table2 to table1")
    assert not w.is_goal(s)
    s = act(w, s, "Stack cheese1 on top of bread1 using robot1")
    assert w.is_goal(s)
