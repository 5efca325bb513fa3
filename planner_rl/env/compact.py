"""A compact observation: the same state as Robotouille's text in about a fifth of the tokens.

Robotouille's observation (`World.describe_state`) spends four to six lines on every station and item ("table1 is a
table", "table1 has no players at it", ...). A model trained from scratch on a CPU pays for each of those tokens in
every prompt. The compact text keeps what changes from state to state, one line per station, bottom of the stack
first, with each item's status words after it, then the robots:

    table1: bottombun1, patty1 cooked, cheese1
    stove1: patty2 cooking
    board1: nothing
    robot1 at table2 holding nothing

Names already carry their kind (`table1`, `patty2`), so the static type facts are dropped. Any true atom this
rendering has no place for (containers, water, soups) is written in Robotouille's own words on a line of its own, so
no fact of the state is lost. It is an option of the prompt (`prompt.observation=compact`); Robotouille's exact
text stays the default and is what real checkpoints get.
"""

from __future__ import annotations

from planner_rl.env.world import State, World, _bits

# Status predicates shown as a word after their item, in this order.
STATUS_WORDS = {"iscut": "cut", "iscooked": "cooked", "isfried": "fried", "iscooking": "cooking", "isfrying": "frying"}
# Atoms the station/robot lines already say (positions, emptiness), never written on a line of their own.
PLACED = {"item_on", "atop", "item_at", "loc", "has_item", "station_empty", "vacant", "clear", "nothing"}


def _is_static(world: World, name: str) -> bool:
    """Type facts (`istable`, `iscuttable`): no action or special effect sets them, and the names say them."""
    static = getattr(world, "_compact_static", None)
    if static is None:
        changed = 0
        for a in world.actions:
            changed |= a.add | a.delete
        for e in world.effects:
            for bit, _ in e.fx:
                changed |= 1 << bit
        dynamic = {world.atoms[b][0] for b in range(len(world.atoms)) if changed >> b & 1}
        static = set(world.domain.predicates) - dynamic
        world._compact_static = static
    return name in static


def compact_observation(world: World, state: State) -> str:
    """The compact text of `state` (module docstring)."""
    name = [o.name for o in world.objects]
    atoms = [world.atoms[b] for b in _bits(state.atoms)]
    status: dict[int, list[str]] = {}
    below: dict[int, int] = {}  # item -> the item it is directly on
    bottom: dict[int, int] = {}  # station -> the item directly on it
    robots: dict[int, list[str]] = {}
    extra: list[str] = []
    for pred, args in atoms:
        if pred in STATUS_WORDS:
            status.setdefault(args[0], []).append(pred)
        elif pred == "atop":
            below[args[0]] = args[1]
        elif pred == "item_on":
            bottom[args[1]] = args[0]
        elif pred == "loc":
            robots.setdefault(args[0], []).insert(0, f"at {name[args[1]]}")
        elif pred == "has_item":
            robots.setdefault(args[0], []).append(f"holding {_item(name, status, args[1])}")
        elif pred not in PLACED and not _is_static(world, pred):
            extra.append(world.domain.predicates[pred].descriptors[0].format(*(name[a] for a in args)))
    above = {under: top for top, under in below.items()}
    lines = []
    for s in world.by_type.get("station", []):
        stack, item = [], bottom.get(s)
        while item is not None:
            stack.append(_item(name, status, item))
            item = above.get(item)
        lines.append(f"{name[s]}: {', '.join(stack) if stack else 'nothing'}")
    for r, parts in robots.items():
        if not any(p.startswith("holding") for p in parts):
            parts.append("holding nothing")
        lines.append(f"{name[r]} {' '.join(parts)}")
    return "\n".join(lines + sorted(extra))


def _item(name: list[str], status: dict[int, list[str]], i: int) -> str:
    words = sorted(status.get(i, ()), key=list(STATUS_WORDS).index)
    return " ".join([name[i], *(STATUS_WORDS[w] for w in words)])
