"""The grounded cooking world: states, valid actions, transitions with special effects, goal test, observation text.

A `World` is built once per problem: every atom gets a bit, every action schema is grounded over type-correct
tuples of distinct objects (pruned by static preconditions), and every special effect gets an id. A `State` is then
two hashable values: the atoms as an int bitset, and the registered special effects with their hidden counters
(cut progress, cook timers), which Robotouille keeps in effect objects and never shows in the observation.

Special-effect semantics follow Robotouille's `backend/state.py` step, as documented in ../shared/docs/domain.md:
1. apply the action's immediate effects;
2. for each of its special effects: reuse an equal registered one (same kind, parameter object, effects, children
   and conditions; counters ignored) or register it, then give it an *active* update;
3. give every registered effect a *passive* update and drop the completed ones; as in Robotouille, which removes
   them from the list it is iterating, the effect right after a completed one misses that pass;
4. test the goal.
Repetitive effects (cut) count active updates and fire on the 3rd; delayed ones (cook, fry, fill, boil) count
passive updates and fire on the 4th (so "Cook, X, X, X" ends cooked); a conditional applies its effects and updates
its children while its conditions hold, else applies the negation of its own effects and pauses its children.
Objects that effects create (the water a pot is filled with) exist from the start as dormant meal slots with no
true atom, so the atom table never changes; a container holds one meal and meals never vanish, so one slot per
container is enough.
"""

from __future__ import annotations

import collections
import functools
import itertools
import operator
from dataclasses import dataclass
from typing import NamedTuple

from planner_rl.env.domain import KIND_TYPE, KINDS, Domain, Literal, SpecialEffect
from planner_rl.env.problem import GoalLiteral, Obj, Problem

CUT_REPETITIONS = 3  # Robotouille's `goal_repetitions` default (the file's `num_cuts` is not read by the engine)
DELAY_TICKS = 4  # Robotouille's `goal_time` default: ready at the end of the 3rd step after the trigger
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


class World:
    """Everything that does not change during an episode of one problem."""

    def __init__(self, problem: Problem, domain: Domain):
        self.problem, self.domain = problem, domain
        objects = list(problem.objects)
        # Dormant meal slots for the objects creation effects make (see module docstring).
        n_containers = sum(o.type == "container" for o in objects)
        self.dormant: dict[str, list[int]] = {}
        for kind, typ in {e.created[:2] for a in domain.actions for e in _walk(a.sfx) if e.created}:
            have = sum(o.kind == kind for o in objects)
            for i in range(max(0, n_containers - sum(o.type == typ for o in objects))):
                self.dormant.setdefault(kind, []).append(len(objects))
                objects.append(Obj(f"{kind}{have + i + 1}", kind, typ))
        self.objects = objects
        self.index = {o.name: i for i, o in enumerate(objects)}
        self.by_type: dict[str, list[int]] = {}
        for i, o in enumerate(objects):
            self.by_type.setdefault(o.type, []).append(i)

        # --- atoms ------------------------------------------------------------------------------------------
        self.atoms: list[tuple[str, tuple[int, ...]]] = []
        self.bit: dict[tuple[str, tuple[int, ...]], int] = {}
        for pred in domain.predicates.values():
            for args in itertools.product(*(self.by_type.get(t, []) for t in pred.types)):
                if len(set(args)) == len(args):
                    self.bit[(pred.name, args)] = len(self.atoms)
                    self.atoms.append((pred.name, args))
        init = 0
        for name, *args in problem.atoms:
            init |= 1 << self.bit[(name, tuple(self.index[a] for a in args))]
        self.initial_state = State(init, ())
        fluent = domain.fluent_predicates()

        # --- ground actions, pruned by static preconditions -----------------------------------------------------
        self.effects: list[GroundEffect] = []
        self._effect_ids: dict[tuple, int] = {}
        self.actions: list[GroundAction] = []
        self.by_text: dict[str, list[int]] = {}
        by_pred: dict[str, dict] = {}  # predicate -> {argument tuple, or the object for one argument: 1 << bit}
        for (name, args), b in self.bit.items():
            by_pred.setdefault(name, {})[args if len(args) != 1 else args[0]] = 1 << b
        names = [o.name for o in objects]
        self._keyed: dict[int, list[GroundAction]] = {}
        self._unkeyed: list[GroundAction] = []
        other_bits: dict[int, list[int]] = {}  # keyed action id -> its other positive precondition masks (sorted)
        for schema in domain.actions:
            slot = {p: k for k, p in enumerate(schema.params)}  # literals read `args` by parameter position
            static = [lit for lit in schema.precons if lit.predicate not in fluent]
            # Static one-parameter preconditions (`isboard(s1)`) filter each parameter's objects before the product;
            # the order of the product, hence of valid actions, is unchanged.
            unary = [lit for lit in static if len(lit.params) == 1]
            rest = [lit for lit in static if len(lit.params) != 1]
            domains = [
                [
                    o
                    for o in self.by_type.get(t, [])
                    if all(self._holds(init, lit, {p: o}) for lit in unary if lit.params[0] == p)
                ]
                for p, t in zip(schema.params, schema.param_types, strict=True)
            ]
            pre, fx, rest = (_compile(lits, slot, by_pred) for lits in (schema.precons, schema.immediate_fx, rest))
            template = schema.template.format(**{p: f"{{{k}}}" for k, p in enumerate(schema.params)})
            key_lit = next((lit for lit in schema.precons if lit.value and lit.predicate in KEY_PREDICATES), None)
            key = _compile([key_lit], slot, by_pred)[0] if key_lit else None  # the index below keys actions by it
            actions, keyed, unkeyed, by_text = self.actions, self._keyed, self._unkeyed, self.by_text
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
                    tuple(self._ground_effect(e, dict(zip(schema.params, args, strict=True))) for e in schema.sfx)
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
        self._keys = sorted(self._keyed)
        # Second level (`valid_actions` is on the expert's hot path: a station has some 200 actions, a dozen valid):
        # per key atom, the actions grouped by one more positive precondition each, the one fewest of that key's
        # actions share (an atop or has_item atom, mostly), so that only groups whose atom is true are checked.
        self._index: dict[int, tuple[int, dict[int, list[GroundAction]], list[GroundAction]]] = {}
        for key, acts in self._keyed.items():
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
            self._index[key] = (sum(1 << b for b in groups), groups, rest)

        self._goal = _GoalMatcher(problem.goal, problem.var_kinds, self)
        self._symmetry = _Symmetry(self)

    def canonical(self, state: State):
        """A key equal for states that differ only by renaming interchangeable objects (see `_Symmetry`)."""
        return self._symmetry.key(state)

    # ------------------------------------------------------------------------------------------------------------
    def _holds(self, atoms: int, lit: Literal, bind: dict[str, int]) -> bool:
        bit = self.bit.get((lit.predicate, tuple(bind[p] for p in lit.params)))
        return (bit is not None and bool(atoms >> bit & 1)) == lit.value

    def _ground_effect(self, e: SpecialEffect, bind: dict[str, int]) -> int:
        def ground(lits: tuple[Literal, ...]) -> tuple[tuple[int, bool], ...]:
            return tuple((self.bit[(lit.predicate, tuple(bind[p] for p in lit.params))], lit.value) for lit in lits)

        children = tuple(self._ground_effect(c, bind) for c in e.children)
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
        if key not in self._effect_ids:
            size = 1 + sum(self.effects[c].size for c in children)
            self._effect_ids[key] = len(self.effects)
            self.effects.append(GroundEffect(e.kind, bind[e.param], conditions, fx, children, size, created))
        return self._effect_ids[key]

    # --- queries ------------------------------------------------------------------------------------------------
    def holds(self, state: State, predicate: str, *names: str) -> bool:
        """Whether an atom is true, by object names: `world.holds(s, "item_on", "bread1", "table2")`."""
        bit = self.bit.get((predicate, tuple(self.index[n] for n in names)))
        return bit is not None and bool(state.atoms >> bit & 1)

    def true_atoms(self, state: State) -> list[tuple[str, ...]]:
        return [
            (name, *(self.objects[a].name for a in args))
            for i, (name, args) in enumerate(self.atoms)
            if state.atoms >> i & 1
        ]

    def valid_actions(self, state: State) -> list[GroundAction]:
        """Valid ground actions at `state`, in Robotouille's listing order."""
        atoms, out = state.atoms, []
        index = self._index
        for key in self._keys:
            if atoms >> key & 1:
                mask, groups, rest = index[key]
                m = atoms & mask
                while m:  # the groups whose atom is true (see `_index`)
                    low = m & -m
                    m ^= low
                    out.extend(
                        a
                        for a in groups[low.bit_length() - 1]
                        if atoms & a.pre_pos == a.pre_pos and not atoms & a.pre_neg
                    )
                out.extend(a for a in rest if atoms & a.pre_pos == a.pre_pos and not atoms & a.pre_neg)
        out.extend(a for a in self._unkeyed if atoms & a.pre_pos == a.pre_pos and not atoms & a.pre_neg)
        out.sort(key=lambda a: a.id)
        return out

    def is_valid(self, state: State, action: GroundAction) -> bool:
        return state.atoms & action.pre_pos == action.pre_pos and not state.atoms & action.pre_neg

    def is_goal(self, state: State) -> bool:
        return self._goal.match(state.atoms) is not None

    def goal_assignment(self, state: State) -> dict[str, str] | None:
        """One assignment of goal variables to object names that satisfies the goal, or None."""
        found = self._goal.match(state.atoms)
        return None if found is None else {v: self.objects[o].name for v, o in found.items()}

    def cut_progress(self, state: State) -> dict[str, int]:
        """Cuts counted so far towards the next `iscut`, per item (hidden from the observation)."""
        return {
            self.objects[self.effects[eid].obj].name: counters[0]
            for eid, counters in state.effects
            if self.effects[eid].kind == "repetitive" and counters[0] > 0
        }

    # --- transition -----------------------------------------------------------------------------------------
    def step(self, state: State, action: GroundAction) -> State:
        """The next state; the caller checks validity (`is_valid`)."""
        atoms = (state.atoms & ~action.delete) | action.add
        if not action.sfx and not state.effects:
            return State(atoms, ())
        effects = list(state.effects)
        for eid in action.sfx:
            at = next((k for k, (e, _) in enumerate(effects) if e == eid), None)
            if at is None:
                effects.append((eid, (0,) * self.effects[eid].size))
                at = len(effects) - 1
            counters = list(effects[at][1])
            atoms, _ = self._update(eid, counters, 0, atoms, active=True)
            effects[at] = (eid, tuple(counters))
        kept, skip = [], False
        for eid, counters in effects:
            if skip:  # Robotouille removes completed effects from the list it iterates: this one misses a pass
                kept.append((eid, counters))
                skip = False
                continue
            c = list(counters)
            atoms, done = self._update(eid, c, 0, atoms, active=False)
            if done:
                skip = True
            else:
                kept.append((eid, tuple(c)))
        return State(atoms, tuple(kept))

    def _apply(self, atoms: int, fx: tuple[tuple[int, bool], ...], negate: bool = False) -> int:
        for bit, value in fx:
            atoms = atoms | (1 << bit) if value != negate else atoms & ~(1 << bit)
        return atoms

    def _children(self, e: GroundEffect, counters: list[int], at: int, atoms: int, active: bool) -> tuple[int, bool]:
        done, off = True, at + 1
        for child in e.children:
            atoms, child_done = self._update(child, counters, off, atoms, active)
            done &= child_done
            off += self.effects[child].size
        return atoms, done

    def _update(self, eid: int, counters: list[int], at: int, atoms: int, active: bool) -> tuple[int, bool]:
        """One update of effect `eid`, whose counters start at `counters[at]`; returns (atoms, completed)."""
        e = self.effects[eid]
        if counters[at] == -1:
            return atoms, True
        if e.kind == "conditional":
            if not all(bool(atoms >> bit & 1) == value for bit, value in e.conditions):
                return self._apply(atoms, e.fx, negate=True), False  # paused: children not updated
            atoms = self._apply(atoms, e.fx)
            atoms, done = self._children(e, counters, at, atoms, active)
        elif e.kind in ("repetitive", "delayed"):
            goal = CUT_REPETITIONS if e.kind == "repetitive" else DELAY_TICKS
            counts = active if e.kind == "repetitive" else not active
            if counters[at] < goal:
                if not counts:
                    return atoms, False
                counters[at] += 1
                if counters[at] < goal:
                    return atoms, False
                atoms = self._apply(atoms, e.fx)
            atoms, done = self._children(e, counters, at, atoms, active)
        elif e.kind == "creation":
            kind, param, templates, bind = e.created
            slot = next((m for m in self.dormant.get(kind, []) if not atoms >> self.bit[(f"is{kind}", (m,))] & 1), None)
            if slot is None:
                raise RuntimeError(f"no free {kind} slot to create")  # cannot happen: one slot per container
            bind = {**bind, param: slot}
            for pred, params, value in templates:
                bit = self.bit[(pred, tuple(bind[p] for p in params))]
                atoms = atoms | (1 << bit) if value else atoms & ~(1 << bit)
            done = True
        else:
            raise ValueError(f"unknown special effect kind {e.kind!r}")
        if done:
            counters[at] = -1
        return atoms, done

    # --- text -------------------------------------------------------------------------------------------------
    @functools.cached_property
    def _render(self) -> tuple[list[list[tuple[tuple[int, int], str]]], list[str]]:
        """(per atom bit: its lines, each keyed by (object index, the line's place in that object's block); per
        object: its block's header), in Robotouille's order; built on the first rendering (searches never render)."""
        per_object: list[list] = [[] for _ in self.objects]
        for bit, (name, args) in enumerate(self.atoms):
            pred = self.domain.predicates[name]
            names = [self.objects[a].name for a in args]
            for pos, i in enumerate(args):
                # Robotouille lists an object's true atoms in its predicate table's order: predicates in file
                # order, each one's atoms in the product order of its arguments (so atop(a, b) by a, then b).
                per_object[i].append(((pred.order, args), bit, pred.descriptors[pos].format(*names)))
        by_bit: list[list[tuple[tuple[int, int], str]]] = [[] for _ in self.atoms]
        for i, lines in enumerate(per_object):
            for rank, (_, bit, text) in enumerate(sorted(lines, key=lambda t: t[0])):
                by_bit[bit].append(((i, rank), text))
        headers = [f"{obj.type.capitalize()} {obj.name}:" for obj in self.objects]
        return by_bit, headers

    def describe_state(self, state: State) -> str:
        """The object blocks of Robotouille's observation (true predicates only): the lines of the set bits, sorted
        into their objects' blocks (objects with no true atom, the dormant meal slots, have none)."""
        by_bit, headers = self._render
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

    def observation(self, state: State, valid: list[GroundAction] | None = None) -> str:
        """Robotouille's observation string: object blocks, `Valid Actions:`, `Goal:`."""
        valid = self.valid_actions(state) if valid is None else valid
        actions = "\n".join(a.text for a in valid)
        return f"{self.describe_state(state)}\n\nValid Actions:\n{actions}\n\nGoal: {self.problem.goal_description}"


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


def _bits(mask: int):
    while mask:
        low = mask & -mask
        mask ^= low
        yield low.bit_length() - 1


def _walk(effects: tuple[SpecialEffect, ...]):
    for e in effects:
        yield e
        yield from _walk(e.children)


def goal_candidates(
    goal: list[GoalLiteral], var_kinds: dict[str, str], world: World
) -> tuple[dict[str, list[int]], bool]:
    """The objects each goal variable may name, as Robotouille's `create_unique_and_combination_preds` finds them,
    and whether Robotouille's goal has no combination at all (then it is never met).

    A string ID names the object with that `id`. A numeric ID of kind K names an object of K's type that the file
    loaded whose name contains K (Robotouille's test is `K in name`, so `water` also takes `boiling_water1`); when
    the file has none, Robotouille names the K IDs' objects K1 .. Kn (n = the K literals' distinct IDs), names that
    objects created later (the water a pot is filled with) come to bear. A kind with fewer loaded objects than IDs
    (but some) leaves Robotouille no goal combination.
    """
    objs = world.objects
    dormant = {i for slots in world.dormant.values() for i in slots}
    ids_of: dict[str, set[str]] = {}
    for lit in goal:
        for kind, var in zip(lit.kinds, lit.args, strict=True):
            if var.startswith("#"):
                ids_of.setdefault(kind, set()).add(var)
    of_kind: dict[str, list[int]] = {}
    never = False
    for kind, ids in ids_of.items():
        typ = KIND_TYPE.get(kind, kind if kind in KINDS else None)
        found = [i for i, o in enumerate(objs) if i not in dormant and o.type == typ and kind in o.name]
        never |= 0 < len(found) < len(ids)
        if not found:
            names = {f"{kind}{j}" for j in range(1, len(ids) + 1)}
            found = [i for i, o in enumerate(objs) if o.name in names]
        of_kind[kind] = found
    out = {
        var: [i for i, o in enumerate(objs) if o.uid == var[1:]] if var.startswith("@") else of_kind[kind]
        for var, kind in var_kinds.items()
    }
    return out, never


class _GoalMatcher:
    """Is there an assignment of goal variables to objects, injective over the numeric IDs, making every literal
    true?

    Backtracking over variables (most constrained first), checking each literal as soon as its variables are bound;
    assignments are never enumerated up front (task 7's goal has 2,880 of them).
    """

    def __init__(self, goal: list[GoalLiteral], var_kinds: dict[str, str], world: World):
        self.world = world
        candidates, self.never = goal_candidates(goal, var_kinds, world)
        # Numeric IDs are injective among themselves (Robotouille's permutations per kind); a string ID names one
        # fixed object, which a numeric ID may name too.
        numeric = {v for v in var_kinds if v.startswith("#")}
        # Order: variables in the most literals first, then by fewest candidates; each literal checked at the
        # depth where its last variable is bound.
        order: list[str] = []
        remaining = set(var_kinds)
        while remaining:

            def score(v: str) -> tuple:
                bound = set(order) | {v}
                ready = sum(1 for lit in goal if v in lit.args and set(lit.args) <= bound)
                return (-ready, len(candidates[v]), v)

            best = min(remaining, key=score)
            order.append(best)
            remaining.remove(best)
        self.order = order
        self.numeric = [v in numeric for v in order]
        self.candidates = [candidates[v] for v in order]
        depth = {v: k for k, v in enumerate(order)}
        self.checks: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in order]
        for lit in goal:
            d = max(depth[a] for a in lit.args)
            self.checks[d].append((lit.predicate, tuple(depth[a] for a in lit.args)))

    def match(self, atoms: int) -> dict[str, int] | None:
        if self.never:
            return None
        bit, chosen = self.world.bit, []
        n = len(self.order)
        numeric = self.numeric

        def search(d: int) -> bool:
            if d == n:
                return True
            for obj in self.candidates[d]:
                if obj in chosen and numeric[d] and any(c == obj and numeric[k] for k, c in enumerate(chosen)):
                    continue
                chosen.append(obj)
                ok = True
                for pred, slots in self.checks[d]:
                    b = bit.get((pred, tuple(chosen[s] for s in slots)))
                    if b is None or not atoms >> b & 1:
                        ok = False
                        break
                if ok and search(d + 1):
                    return True
                chosen.pop()
            return False

        found = search(0)
        search = None  # the closure refers to itself: drop that cycle now, not at the next collection
        return dict(zip(self.order, chosen, strict=True)) if found else None


class _Symmetry:
    """Canonical keys of states up to renaming interchangeable objects, so search visits one state per class.

    The domain's rules and the goal (an existential over objects of given kinds) only look at kinds and predicates,
    never at names, so two states that differ by a renaming of same-kind objects with the same static properties
    have the same cost-to-go. With one robot and no containers or meals, a state is a set of stacks on stations plus
    the held item: the key describes each station by (kind, robot here, its stack bottom to top), each item by (kind,
    its true one-argument atoms, its special effects and their counters), and sorts the station descriptions.
    Stations that a registered effect refers to (a stove cooking an item) and objects a goal names by string id keep
    their identity. Two states with the same key are isomorphic; in other problems the key is the state itself.
    The descriptions that do not depend on the robot's place are computed once per configuration (see `key`).
    """

    def __init__(self, world: World):
        w = self.world = world
        items, stations = w.by_type.get("item", []), w.by_type.get("station", [])
        players = w.by_type.get("player", [])
        self.enabled = len(players) == 1 and not w.by_type.get("container") and not w.by_type.get("meal")
        if not self.enabled:
            return
        p = players[0]
        pinned_uids = {v[1:] for v in w.problem.var_kinds if v.startswith("@")}
        self.pinned = {i for i, o in enumerate(w.objects) if o.uid is not None and o.uid in pinned_uids}
        self.items, self.stations = items, stations
        # Where an item is: one of item_on(i, s), atop(i, j), has_item(p, i); bit -> ("s", s) / ("i", j) / ("h",).
        self.support: dict[int, tuple[str, int]] = {}
        self.where_mask: dict[int, int] = {}
        for i in items:
            m = 0
            for s in stations:
                b = w.bit[("item_on", (i, s))]
                self.support[b], m = ("s", s), m | 1 << b
            for j in items:
                if j != i:
                    b = w.bit[("atop", (i, j))]
                    self.support[b], m = ("i", j), m | 1 << b
            b = w.bit[("has_item", (p, i))]
            self.support[b], m = ("h", p), m | 1 << b
            self.where_mask[i] = m
        self.loc = [(w.bit[("loc", (p, s))], s) for s in stations]
        unary = [(name, args[0], bit) for bit, (name, args) in enumerate(w.atoms) if len(args) == 1]
        self.unary_mask = {i: sum(1 << b for name, o, b in unary if o == i) for i in items}
        self.unary_names = {i: [(b, name) for name, o, b in unary if o == i] for i in items}
        self._unary_cache: dict[tuple[int, int], tuple[str, ...]] = {}
        self.station_kind = {s: w.objects[s].kind if s not in self.pinned else (w.objects[s].kind, s) for s in stations}
        # Per effect: its shape with the parameter object abstracted, and the stations it refers to.
        self.effect_shape: dict[int, tuple] = {}
        self.effect_pins: dict[int, frozenset[int]] = {}
        station_set = set(stations)
        for eid, e in enumerate(w.effects):
            refs = set()
            for bit, _ in (*e.conditions, *e.fx):
                refs.update(w.atoms[bit][1])
            shape = (e.kind, tuple((w.atoms[b][0], v) for b, v in (*e.conditions, *e.fx)))
            shape += tuple(self.effect_shape[c] for c in e.children)  # children are registered first
            pins = frozenset(r for r in refs if r in station_set).union(*(self.effect_pins[c] for c in e.children))
            self.effect_shape[eid] = (*shape, tuple(sorted(pins)))
            self.effect_pins[eid] = pins
        # Fast path of `key` (same values): every support bit at once, and the robot's place from one mask.
        self.support_by_bit = {b: (i, *self.support[b]) for i in items for b in _bits(self.where_mask[i])}
        self.support_all = sum(self.where_mask.values())
        self.item_bits = {i: 1 << n for n, i in enumerate(items)}
        self.all_items = (1 << len(items)) - 1
        self.loc_mask = sum(1 << b for b, _ in self.loc)
        self.loc_of = {1 << b: s for b, s in self.loc}
        self.empty_desc = {s: (self.station_kind[s], ()) for s in stations}
        self._plain: dict[tuple[int, int], tuple] = {}  # (item, its unary atoms) -> description, no effects
        # The bits a configuration's description reads (where each item is, its one-argument atoms), and the
        # descriptions met so far (see `key`).
        self.config_mask = self.support_all | sum(self.unary_mask.values())
        self._configs: dict[tuple, tuple | None] = {}

    def _item(self, atoms: int, i: int, fx: dict[int, list]) -> tuple:
        u = atoms & self.unary_mask[i]
        names = self._unary_cache.get((i, u))
        if names is None:
            names = self._unary_cache[(i, u)] = tuple(n for b, n in self.unary_names[i] if u >> b & 1)
        own = tuple(sorted(fx[i])) if i in fx else ()
        return (names, own, i) if i in self.pinned else (names, own)

    def key(self, state: State):
        """The class key, computed from the set bits only.

        Equal to (the part of the state the robot's place does not change, the robot's station), re-encoded so that
        the first part is computed once per configuration: a state's configuration (its stacks, held item, item
        atoms and effects) is shared by every state that differs only by where the robot stands (all the move
        successors of a state), and the expert meets several times more states than configurations. The partition
        is the one of the plain description (kind, robot here, stack) per station with the free stations sorted:
        exactly one station has the robot, so that sorted multiset is the sorted multiset of (kind, stack) plus the
        (kind, stack) of the robot's station; a pinned station keeps its identity, so there the robot part is the
        station itself (an int, never equal to a description tuple).
        """
        if not self.enabled:
            return state
        atoms = state.atoms
        robot = self.loc_of.get(atoms & self.loc_mask)
        if robot is None:
            return state  # not exactly one robot place (not a reachable state): no reduction, still sound
        ck = (atoms & self.config_mask, state.effects)
        entry = self._configs.get(ck)
        if entry is None:
            entry = self._configs[ck] = self._config(state)
        if entry is None:
            return state  # an item out of play or in two places: no reduction, still sound
        part, robot_part = entry
        return (part, robot_part[robot])

    def _config(self, state: State):
        """(held item, sorted free station descriptions, pinned ones; per station: the robot part), or None where
        an item is out of play or in two places. Descriptions are (kind, stack bottom to top) without the robot."""
        atoms = state.atoms
        fx: dict[int, list] = {}
        pins: set[int] = set()
        for eid, counters in state.effects:
            obj = self.world.effects[eid].obj
            fx.setdefault(obj, []).append((self.effect_shape[eid], counters))
            pins |= self.effect_pins[eid]
        bottom: dict[int, int] = {}
        above: dict[int, int] = {}
        held = None
        seen = count = 0
        m = atoms & self.support_all
        support = self.support_by_bit
        while m:
            low = m & -m
            m ^= low
            i, kind, sup = support[low.bit_length() - 1]
            seen |= self.item_bits[i]
            count += 1
            if kind == "s":
                bottom[sup] = i
            elif kind == "i":
                above[sup] = i
            else:
                held = i
        if seen != self.all_items or count != len(self.items):
            return None
        plain, unary_mask = self._plain, self.unary_mask
        free, fixed = [], []
        robot_part: dict[int, object] = {}
        for s in self.stations:
            i = bottom.get(s)
            if i is None:
                desc = self.empty_desc[s]
            else:
                stack = []
                while i is not None:
                    if i in fx:
                        d = self._item(atoms, i, fx)
                    else:
                        d = plain.get((i, atoms & unary_mask[i]))
                        if d is None:
                            d = plain[(i, atoms & unary_mask[i])] = self._item(atoms, i, fx)
                    stack.append(d)
                    i = above.get(i)
                desc = (self.station_kind[s], tuple(stack))
            if s in pins or s in self.pinned:  # a station a goal names by string id keeps its identity
                fixed.append((s, desc))
                robot_part[s] = s
            else:
                free.append(desc)
                robot_part[s] = desc
        free.sort()
        held_desc = None if held is None else self._item(atoms, held, fx)
        return (held_desc, tuple(free), tuple(fixed)), robot_part
