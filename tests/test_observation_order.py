"""Observation text: an object's lines in Robotouille's order (its state's predicate dictionary), issue 20 item 6."""

from planner_rl.env.cooking import CookingEnv

# Issue 20's double-cheeseburger sequence on the task file's own layout.
ACTIONS = [
    "Unstack topbun1 from bottombun1 using robot1",
    "Move robot1 from table1 to table4",
    "Place topbun1 on table4 using robot1",
    "Move robot1 from table4 to table3",
    "Unstack patty2 from patty1 using robot1",
    "Move robot1 from table3 to table1",
    "Stack patty2 on top of bottombun1 using robot1",
    "Move robot1 from table1 to table2",
    "Unstack cheese2 from cheese1 using robot1",
    "Move robot1 from table2 to table1",
    "Stack cheese2 on top of patty2 using robot1",
]


def _block(obs: str, header: str) -> list[str]:
    return next(b for b in obs.split("\n\n") if b.startswith(header)).split("\n")


def test_double_cheeseburger_block_order_matches_robotouille():
    env = CookingEnv("double_cheeseburger")
    obs = env.reset()
    for a in ACTIONS:
        obs, _, _, info = env.step(a)
        assert info["valid"], (a, info)
    # Robotouille: predicates in domain-file order, each predicate's atoms in the product order of its argument
    # types' object lists; so atop(cheese2, patty2) comes before atop(patty2, bottombun1).
    assert _block(obs, "Item patty2:") == [
        "Item patty2:",
        "patty2 is a hamburger patty",
        "patty2 is cooked",
        "patty2 is at table1",
        "patty2 is directly under cheese2",
        "patty2 is directly on top of bottombun1",
    ]
    assert _block(obs, "Item cheese2:") == [
        "Item cheese2:",
        "cheese2 is a cheese slice",
        "cheese2 is at table1",
        "cheese2 has nothing above it",
        "cheese2 is directly on top of patty2",
    ]
    assert _block(obs, "Station table1:")[3:6] == ["table1 has bottombun1", "table1 has cheese2", "table1 has patty2"]


def test_lines_follow_the_atom_enumeration():
    """Every block's lines are in the order of their atoms in `World.atoms` (domain predicate, then product order):
    the rule of Robotouille's predicate dictionary, checked on every state of a few steps."""
    env = CookingEnv("double_cheeseburger")
    env.reset(seed=42)
    world = env.world
    by_bit, _ = world._render
    rank = {}
    for bit, lines in enumerate(by_bit):
        for (obj, _), text in lines:
            rank[(obj, text)] = (world.domain.predicates[world.atoms[bit][0]].order, bit)
    for _ in range(6):
        text = world.describe_state(env.state)
        for block in text.split("\n\n"):
            header, *lines = block.split("\n")
            obj = world.index[header.split()[1].rstrip(":")]
            keys = [rank[(obj, line)] for line in lines]
            assert keys == sorted(keys), block
        env.step(env.valid_actions[0])
