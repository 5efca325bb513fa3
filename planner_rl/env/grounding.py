"""Grounding of one cooking problem (`world.py`): objects with dormant meal slots, atoms as bits, action schemas
grounded over type-correct tuples of distinct objects (pruned by static preconditions), their special effects
registered once each, and the two-level index `World.valid_actions` walks. Each function fills in its part of
the `World` being built."""

from __future__ import annotations

import collections
import itertools
import operator
from dataclasses import dataclass
from typing import NamedTuple

from planner_rl.env.domain import Domain, Literal, SpecialEffect
from planner_rl.env.problem import Obj, Problem

KEY_PREDICATES = ("loc",)  # valid actions are indexed by the robot's location: one robot stands at one station


class State(NamedTuple):
    atoms: int  # bit i set <=> atom i true
    effects: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (effect id, per-node counters; -1 = done), in order


class GroundAction(NamedTuple):  # a named tuple: a world builds thousands, and a tuple is the cheapest to build
    id: int  # position in the canonical order (schema order, then object order): the valid-action list order
    schema: str
    args: tuple[int, ...]  # object indices, in the schema's parameter order
    text: str
    pre_pos: int
    pre_neg: int
    add: int
    delete: int
    sfx: tuple[int, ...]  # ids of the grounded special effects it triggers


@dataclass(frozen=True)
class GroundEffect:
    kind: str
    obj: int  # the object bound to the effect's parameter
    conditions: tuple[tuple[int, bool], ...]  # (atom bit, value)
    fx: tuple[tuple[int, bool], ...]
    children: tuple[int, ...]  # ids of child effects
    size: int  # nodes in this subtree (the length of its counter tuple)
    # creation only: (kind, parameter the new object binds, effect templates, action bindings)
    created: tuple[str, str, tuple[tuple[str, tuple[str, ...], bool], ...], dict[str, int]] | None = None


def ground_objects(world, problem: Problem, domain: Domain) -> None:
    """The objects, dormant meal slots included, their index by name and their lists by type."""
    objects = list(problem.objects)
    # Dormant meal slots for the objects creation effects make (see module docstring).
    n_containers = sum(o.type == "container" for o in objects)
    world.dormant: dict[str, list[int]] = {}
    for kind, typ in {e.created[:2] for a in domain.actions for e in _walk(a.sfx) if e.created}:
        have = sum(o.kind == kind for o in objects)
        for i in range(max(0, n_containers - sum(o.type == typ for o in objects))):
            world.dormant.setdefault(kind, []).append(len(objects))
            objects.append(Obj(f"{kind}{have + i + 1}", kind, typ))
    world.objects = objects
    world.index = {o.name: i for i, o in enumerate(objects)}
    world.by_type: dict[str, list[int]] = {}
    for i, o in enumerate(objects):
        world.by_type.setdefault(o.type, []).append(i)


def ground_atoms(world, problem: Problem, domain: Domain) -> int:
    """Every atom a bit; returns the initial atoms."""
    world.atoms: list[tuple[str, tuple[int, ...]]] = []
    world.bit: dict[tuple[str, tuple[int, ...]], int] = {}
    for pred in domain.predicates.values():
        for args in itertools.product(*(world.by_type.get(t, []) for t in pred.types)):
            if len(set(args)) == len(args):
                world.bit[(pred.name, args)] = len(world.atoms)
                world.atoms.append((pred.name, args))
    init = 0
    for name, *args in problem.atoms:
        init |= 1 << world.bit[(name, tuple(world.index[a] for a in args))]
    return init


def ground_actions(world, domain: Domain, init: int) -> None:
    """The ground actions in canonical order, their effects, texts and the valid-action index."""
    fluent = domain.fluent_predicates()
    world.effects: list[GroundEffect] = []
    world._effect_ids: dict[tuple, int] = {}
    world.actions: list[GroundAction] = []
    world.by_text: dict[str, list[int]] = {}
    by_pred: dict[str, dict] = {}  # predicate -> {argument tuple, or the object for one argument: 1 << bit}
    for (name, args), b in world.bit.items():
        by_pred.setdefault(name, {})[args if len(args) != 1 else args[0]] = 1 << b
    names = [o.name for o in world.objects]
    world._keyed: dict[int, list[GroundAction]] = {}
    world._unkeyed: list[GroundAction] = []
    other_bits: dict[int, list[int]] = {}  # keyed action id -> its other positive precondition masks (sorted)
    for schema in domain.actions:
        ground_schema(world, schema, fluent, by_pred, names, init, other_bits)
    world._keys = sorted(world._keyed)
    # Second level (`valid_actions` is on the expert's hot path: a station has some 200 actions, a dozen valid):
    # per key atom, the actions grouped by one more positive precondition each, the one fewest of that key's
    # actions share (an atop or has_item atom, mostly), so that only groups whose atom is true are checked.
    world._index: dict[int, tuple[int, dict[int, list[GroundAction]], list[GroundAction]]] = {}
    for key, acts in world._keyed.items():
        share = collections.Counter(itertools.chain.from_iterable(other_bits[a.id] for a in acts))
        groups: dict[int, list[GroundAction]] = {}
        rest: list[GroundAction] = []
        for a in acts:
            masks = other_bits[a.id]
            if masks:
                m = min(masks, key=share.__getitem__)  # masks ascend: ties go to the lowest atom
                groups.setdefault(m.bit_length() - 1, []).append(a)
            else:
                rest.append(a)
        world._index[key] = (sum(1 << b for b in groups), groups, rest)


def ground_schema(world, schema, fluent, by_pred: dict, names: list[str], init: int, other_bits: dict) -> None:
    """One schema's ground actions, appended to the world's tables (see `ground_actions`)."""
    slot = {p: k for k, p in enumerate(schema.params)}  # literals read `args` by parameter position
    static = [lit for lit in schema.precons if lit.predicate not in fluent]
    # Static one-parameter preconditions (`isboard(s1)`) filter each parameter's objects before the product;
    # the order of the product, hence of valid actions, is unchanged.
    unary = [lit for lit in static if len(lit.params) == 1]
    rest = [lit for lit in static if len(lit.params) != 1]
    domains = [
        [
            o
            for o in world.by_type.get(t, [])
            if all(holds(world, init, lit, {p: o}) for lit in unary if lit.params[0] == p)
        ]
        for p, t in zip(schema.params, schema.param_types, strict=True)
    ]
    pre, fx, rest = (_compile(lits, slot, by_pred) for lits in (schema.precons, schema.immediate_fx, rest))
    template = schema.template.format(**{p: f"{{{k}}}" for k, p in enumerate(schema.params)})
    key_lit = next((lit for lit in schema.precons if lit.value and lit.predicate in KEY_PREDICATES), None)
    key = _compile([key_lit], slot, by_pred)[0] if key_lit else None  # the index below keys actions by it
    actions, keyed, unkeyed, by_text = world.actions, world._keyed, world._unkeyed, world.by_text
    if len(set(schema.param_types)) == len(schema.param_types):  # distinct types: distinct objects
        arglist = list(itertools.product(*domains))
    else:
        arglist = [args for args in itertools.product(*domains) if len(set(args)) == len(args)]
    if rest:
        arglist = [
            args
            for args in arglist
            if all((get(args) in masks and bool(init & masks[get(args)])) == v for masks, get, v in rest)
        ]
    n = len(arglist)
    # Column by column (one list per literal over all the schema's tuples), combined with C-level maps.
    needs = [[masks[k] for k in map(get, arglist)] for masks, get, v in pre if v]
    pos = _union(needs, n)
    neg = _union([[masks[k] for k in map(get, arglist)] for masks, get, v in pre if not v], n)
    add = _union([[masks[k] for k in map(get, arglist)] for masks, get, v in fx if v], n)
    delete = _union([[masks[k] for k in map(get, arglist)] for masks, get, v in fx if not v], n)
    if schema.sfx:
        sfx = [
            tuple(ground_effect(world, e, dict(zip(schema.params, args, strict=True))) for e in schema.sfx)
            for args in arglist
        ]
    else:
        sfx = itertools.repeat(())
    fmt, name_of = template.format, names.__getitem__
    texts = [fmt(*map(name_of, args)) for args in arglist]
    new = list(
        map(GroundAction, range(len(actions), len(actions) + n), itertools.repeat(schema.name), arglist,
            texts, pos, neg, add, delete, sfx)
    )  # fmt: skip
    actions.extend(new)
    for a in new:
        by_text.setdefault(a.text, []).append(a.id)
    # Index: key atom -> actions that need it; actions with no key atom are always checked.
    if key is None:
        unkeyed.extend(new)
    else:
        key_of = map(key[0].__getitem__, map(key[1], arglist))
        for a, km, ms in zip(new, key_of, zip(*needs, strict=True), strict=True):
            keyed.setdefault(km.bit_length() - 1, []).append(a)
            other_bits[a.id] = sorted(m for m in ms if m != km)


def holds(world, atoms: int, lit: Literal, bind: dict[str, int]) -> bool:
    bit = world.bit.get((lit.predicate, tuple(bind[p] for p in lit.params)))
    return (bit is not None and bool(atoms >> bit & 1)) == lit.value


def ground_effect(world, e: SpecialEffect, bind: dict[str, int]) -> int:
    def ground(lits: tuple[Literal, ...]) -> tuple[tuple[int, bool], ...]:
        return tuple((world.bit[(lit.predicate, tuple(bind[p] for p in lit.params))], lit.value) for lit in lits)

    children = tuple(ground_effect(world, c, bind) for c in e.children)
    created = None
    if e.created:
        fx_templates = tuple((lit.predicate, lit.params, lit.value) for lit in e.fx)
        created = (e.created[0], e.created[2], fx_templates, {**bind})
        fx: tuple = ()
    else:
        fx = ground(e.fx)
    # Robotouille's equality (its effects' `__eq__`): kind, parameter object, effects, children and a
    # conditional's conditions; counters are ignored ("cook patty1 on stove2" is not "... on stove1").
    conditions = ground(e.conditions)
    key = (e.kind, bind[e.param], fx, conditions, children, e.created)
    if key not in world._effect_ids:
        size = 1 + sum(world.effects[c].size for c in children)
        world._effect_ids[key] = len(world.effects)
        world.effects.append(GroundEffect(e.kind, bind[e.param], conditions, fx, children, size, created))
    return world._effect_ids[key]


def _compile(lits, slot: dict[str, int], by_pred: dict[str, dict]) -> list[tuple[dict, object, bool]]:
    """Per literal of a schema: (the masks, 1 << bit, of its predicate's atoms by argument key, a getter of that key
    from the action's argument tuple, its value); the key is the object itself for one argument, else the tuple."""
    out = []
    for lit in lits:
        get = operator.itemgetter(*(slot[p] for p in lit.params)) if lit.params else (lambda args: ())
        out.append((by_pred.get(lit.predicate, {}), get, lit.value))
    return out


def _union(columns: list[list[int]], n: int) -> list[int]:
    """Element-wise OR of equally long columns of masks (n zeros for none)."""
    if not columns:
        return [0] * n
    out = columns[0]
    for col in columns[1:]:
        out = list(map(operator.or_, out, col))
    return out


def _walk(effects: tuple[SpecialEffect, ...]):
    for e in effects:
        yield e
        yield from _walk(e.children)
