"""The grounded cooking world: states, valid actions, transitions with special effects, goal test, observation text.

A `World` is built once per problem (`grounding.py`): every atom gets a bit, every action schema is grounded over
type-correct tuples of distinct objects (pruned by static preconditions), and every special effect gets an id. A
`State` is then two hashable values: the atoms as an int bitset, and the registered special effects with their
hidden counters (cut progress, cook timers), which Robotouille keeps in effect objects and never shows in the
observation. The observation's lines are built in `rendering.py`.

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

import functools

from planner_rl.env import rendering
from planner_rl.env.domain import KIND_TYPE, KINDS, Domain
from planner_rl.env.grounding import (
    GroundAction,
    GroundEffect,
    State,
    ground_actions,
    ground_atoms,
    ground_objects,
)
from planner_rl.env.problem import GoalLiteral, Problem

CUT_REPETITIONS = 3  # Robotouille's `goal_repetitions` default (the file's `num_cuts` is not read by the engine)
DELAY_TICKS = 4  # Robotouille's `goal_time` default: ready at the end of the 3rd step after the trigger


class World:
    """Everything that does not change during an episode of one problem."""

    def __init__(self, problem: Problem, domain: Domain):
        self.problem, self.domain = problem, domain
        ground_objects(self, problem, domain)
        init = ground_atoms(self, problem, domain)
        self.initial_state = State(init, ())
        ground_actions(self, domain, init)
        self._goal = _GoalMatcher(problem.goal, problem.var_kinds, self)
        self._symmetry = _Symmetry(self)

    def canonical(self, state: State):
        """A key equal for states that differ only by renaming interchangeable objects (see `_Symmetry`)."""
        return self._symmetry.key(state)

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
        """`rendering.render_table`, built on the first rendering (searches never render)."""
        return rendering.render_table(self)

    def describe_state(self, state: State) -> str:
        """The object blocks of Robotouille's observation (true predicates only; `rendering.describe_state`)."""
        return rendering.describe_state(self, state)

    def observation(self, state: State, valid: list[GroundAction] | None = None) -> str:
        """Robotouille's observation string: object blocks, `Valid Actions:`, `Goal:`."""
        valid = self.valid_actions(state) if valid is None else valid
        actions = "\n".join(a.text for a in valid)
        return f"{self.describe_state(state)}\n\nValid Actions:\n{actions}\n\nGoal: {self.problem.goal_description}"


def _bits(mask: int):
    while mask:
        low = mask & -mask
        mask ^= low
        yield low.bit_length() - 1


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
