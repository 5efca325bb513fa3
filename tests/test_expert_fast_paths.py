"""The expert's fast paths against plain references, on random walks:
- `World.canonical`: two states get the same key iff their plain descriptions (per station: kind, robot here, its
  stack; free stations sorted; pinned ones kept) are equal. The key is re-encoded for speed (see `_Symmetry.key`);
  the partition of states into classes must stay exactly this one.
- `World.valid_actions` (two-level index): every action whose preconditions hold, in id order."""

import random

import pytest


def _reference_key(sym, state):
    """The plain description of a state (the key before it was cached per configuration)."""
    atoms = state.atoms
    robot = sym.loc_of.get(atoms & sym.loc_mask)
    if robot is None:
        return state
    fx: dict = {}
    pins: set = set()
    for eid, counters in state.effects:
        fx.setdefault(sym.world.effects[eid].obj, []).append((sym.effect_shape[eid], counters))
        pins |= sym.effect_pins[eid]
    bottom, above, held, placed = {}, {}, None, []
    for b, (i, kind, sup) in sym.support_by_bit.items():
        if atoms >> b & 1:
            placed.append(i)
            if kind == "s":
                bottom[sup] = i
            elif kind == "i":
                above[sup] = i
            else:
                held = i
    if sorted(placed) != sorted(sym.items):
        return state
    free, fixed = [], []
    for s in sym.stations:
        stack, i = [], bottom.get(s)
        while i is not None:
            stack.append(sym._item(atoms, i, fx))
            i = above.get(i)
        desc = (sym.station_kind[s], s == robot, tuple(stack))
        (fixed.append((s, desc)) if s in pins else free.append(desc))
    return (None if held is None else sym._item(atoms, held, fx), tuple(sorted(free)), tuple(fixed))


@pytest.mark.parametrize("task,seed", [(2, None), (6, 3), (7, 1001), (9, None), (9, 1005), (8, 42)])
def test_key_partition_equals_reference(make_world, task, seed):
    world = make_world(task, seed)
    sym = world._symmetry
    rng = random.Random(task * 1000 + (seed or 0))
    to_new: dict = {}
    to_ref: dict = {}
    for _ in range(20):
        s = world.initial_state
        for _ in range(150):
            new, ref = world.canonical(s), _reference_key(sym, s)
            assert to_new.setdefault(ref, new) == new
            assert to_ref.setdefault(new, ref) == ref
            s = world.step(s, rng.choice(world.valid_actions(s)))
    assert len(to_new) > 100


@pytest.mark.parametrize("task,seed", [(0, None), (2, 3), (6, 1000), (9, None), (9, 42)])
def test_valid_actions_equal_plain_filter(make_world, task, seed):
    world = make_world(task, seed)
    rng = random.Random(task)
    for _ in range(10):
        s = world.initial_state
        for _ in range(100):
            valid = world.valid_actions(s)
            assert valid == [a for a in world.actions if world.is_valid(s, a)]
            s = world.step(s, rng.choice(valid))
