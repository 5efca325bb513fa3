"""Observation text of the cooking world (`world.py`): Robotouille's object blocks, one line per true atom in
its objects' blocks, built per atom once per world (`render_table`) and assembled per state (`describe_state`)."""

from __future__ import annotations

from planner_rl.env.grounding import State


def render_table(world) -> tuple[list[list[tuple[tuple[int, int], str]]], list[str]]:
    """(per atom bit: its lines, each keyed by (object index, the line's place in that object's block); per
    object: its block's header), in Robotouille's order; built on the first rendering (searches never render)."""
    per_object: list[list] = [[] for _ in world.objects]
    for bit, (name, args) in enumerate(world.atoms):
        pred = world.domain.predicates[name]
        names = [world.objects[a].name for a in args]
        for pos, i in enumerate(args):
            # Robotouille lists an object's true atoms in its predicate table's order: predicates in file
            # order, each one's atoms in the product order of its arguments (so atop(a, b) by a, then b).
            per_object[i].append(((pred.order, args), bit, pred.descriptors[pos].format(*names)))
    by_bit: list[list[tuple[tuple[int, int], str]]] = [[] for _ in world.atoms]
    for i, lines in enumerate(per_object):
        for rank, (_, bit, text) in enumerate(sorted(lines, key=lambda t: t[0])):
            by_bit[bit].append(((i, rank), text))
    headers = [f"{obj.type.capitalize()} {obj.name}:" for obj in world.objects]
    return by_bit, headers


def describe_state(world, state: State) -> str:
    """The object blocks of Robotouille's observation (true predicates only): the lines of the set bits, sorted
    into their objects' blocks (objects with no true atom, the dormant meal slots, have none)."""
    by_bit, headers = world._render  # render_table's, cached on the world
    found = []
    m = state.atoms
    while m:
        low = m & -m
        m ^= low
        found.extend(by_bit[low.bit_length() - 1])
    found.sort()
    blocks: list[list[str]] = []
    current = -1
    for (i, _), text in found:
        if i != current:
            current = i
            blocks.append([headers[i]])
        blocks[-1].append(text)
    return "\n\n".join("\n".join(block) for block in blocks)
