"""An admissible heuristic for the cooking domain: a lower bound on the actions still needed to reach the goal.

Scope: one robot; the goal literals item_on, item_at, atop, clear, iscut, iscooked, isfried and the identity
predicates are modelled; any other goal literal counts 0 (and relaxes the end rule below). A goal stack that names no
station gets a free goal station variable (`_build_roles`). With more than one robot the bound is 0 (breadth-first
search).

Legs. A *leg* of an item is one pick (or unstack) of it up to its next put (place or stack); a put followed, with
no processing of that item in between, by a pick of the same item at the same station does not end a leg (the pick
takes the item just put: it is on top). A leg whose put is at the station of its pick leaves every stack as it was
(the hand is busy in between, so nothing else changes): such *null* legs are not counted and help nothing below.
In any plan, every counted leg costs at least 4 actions: its pick, its put, a move while holding the item, and an
empty-handed arrival at the pick's station (anything the robot brought there would lie on top), except that
- the first pick of the plan needs no arrival if the robot starts there with an empty hand (the *start*, -1);
- a pick right after processing the item where the robot put it needs no arrival (*chained*, -1). It needs a leg
  into a station of that processing class and a processing action since that put; beyond the legs and actions the
  bound counts, each further such leg costs at least 3, so one chain per counted leg into a class is all it allows;
- the held item's first leg has its pick behind it: its put, plus a move unless it is put where the robot stands.
  If it needs processing and every station of its first processing class holds something now, that put is not
  there (nothing can be picked before the hand is free, and processing needs the item alone on the station): it
  is a put elsewhere (at least 1) followed by a further counted leg;
- the plan may end holding an item (its last leg is a pick only, -2). The goal is positive, so that last pick must
  uncover an item the goal wants `clear`: it is only allowed for an item that stands, now, directly on a finished
  stack's clear top (or, with goal literals that are not modelled, for any item that is no goal role).
Processing: an unmet iscut needs 3 - (cuts so far) cut actions, an unmet iscooked / isfried one cook / fry action
unless its timer runs; the item must be alone on a station of that class (the stations of its grounded actions).

Legs needed under one goal assignment (the goal is a disjunction over injective assignments of objects to its
variables; the bound is the minimum over assignments, so it holds for the assignment the plan's final state meets):
- kept prefix: at a goal station t, the longest bottom part of its stack that can be the bottom of the final stack
  (the item_on role at the bottom, atop pairs directly on each other, only roles of t, each processed or
  processable where it lies, the clear role last and only above all other roles of t). Every item above it must be
  picked: were it never picked, nothing below it would change and the prefix up to it would be final and valid;
- a role item outside its kept prefix needs one leg into each processing class still needed (none for the first if
  it lies at the bottom of such a station: processed in place) and one leg to its goal station; one that lies at
  its goal station already needs at least 2 (a single leg would be null);
- every item above an item that must be picked, or above a kept prefix, needs a leg; so do the items on the
  cheapest station of a processing class that some item must be put on (it must be empty then);
- order: an item above another that must move is first picked before it; a role item's last put at t comes after
  the first pick of everything above t's kept prefix (else that would end below it) and after the last puts of the
  roles that must end below it, and, for a role item processed on the only station of its class, after the first
  pick of everything on that station now (it must be alone there to be processed); the held item's first put comes
  before every pick, and is a final put only if its station is ready now. An item with one leg has its first pick
  and last put at one time; if these constraints are cyclic, the fewest single-leg items whose legs must be split
  cost 4 each (an extra leg of an item that needs no processing cannot chain). The start bonus is only given where
  the robot's station's top must be picked and may be the first pick.
All these counts are of disjoint actions of any plan that reaches the goal through that assignment, so the bound is
admissible. It is not claimed consistent (the planner does not rely on it).

Computation: the part that does not depend on the robot's station is cached per configuration as (bound, stations
where the start bonus applies). The value is defined over *leaves* (complete assignments of goal stations and
roles; candidates alike in every respect the bound sees (kind, properties, alone on alike stations) are tried in
one order only, and so are goal station groups that look alike): the least leaf total, and the union of the bonus
stations of the leaves that reach it. It is found by a branch and bound whose pruning never changes it (a test
compares it with the enumeration of every leaf, `Heuristic.prune = False`), since everything it discards has a
lower bound above the best total so far, or, at a tie, bonus stations already collected:
- a leaf's total is at least the sum of its roles' costs (`iso`: a candidate's cost with the most optimistic
  kept prefix) plus the actions that no role's cost counts and that the assignment already forces (legs of items
  no role may take above a candidate that leaves, or at the bottom of a goal station with an item_on role, or
  given no role there; a processing class that must be used and whose stations all hold, at the bottom, an item
  given no role; 2 for a held item given no role), less the end slack (2 only where the end can be granted);
- inside a leaf, the terms are added cheapest first and the leaf is dropped as soon as its partial total exceeds
  the best (every later term is >= 0, but for the end, which is subtracted before the check), or equals it while
  every bonus station it could add is there already;
- roles with a single possible candidate are assigned first; the order of roles and of goal station assignments
  only changes how early leaves are pruned.
Costs of a role's candidates are alike at every station where none of them lies or is processed last (`iso`,
`special`), so the per-station work is done once per role for all such stations.
"""

from __future__ import annotations

import itertools

from planner_rl.env.world import CUT_REPETITIONS, State, World, goal_candidates

PROCESSING = {"iscut": ("isboard", "cut"), "iscooked": ("isstove", "cook"), "isfried": ("isfryer", "fry")}
PROP_ORDER = ("iscut", "iscooked", "isfried")  # cut before frying (fryable-if-cut)
INF = 10**6
LEG = 4  # arrival + pick + move holding the item + put


class _Role:
    __slots__ = ("ak", "base", "below", "cands", "clear", "deps", "group", "index", "props", "rel", "tv", "var")


class Heuristic:
    def __init__(self, world: World):
        self.world = w = world
        players = w.by_type.get("player", [])
        self.items = items = w.by_type.get("item", [])
        self.stations = stations = w.by_type.get("station", [])
        self.enabled = len(players) == 1 and bool(items)
        self.prune = True  # False: no branch and bound, every leaf evaluated (same value; for tests)
        if not self.enabled:
            return
        p = players[0]
        bit = w.bit
        self.loc_bits = [(1 << bit[("loc", (p, s))], s) for s in stations]
        self.robot_mask = sum(b for b, _ in self.loc_bits) | sum(
            1 << bit[("vacant", (s,))] for s in stations if ("vacant", (s,)) in bit
        )
        self.hand_mask = 0
        for c in w.by_type.get("container", []):
            self.hand_mask |= 1 << bit[("has_container", (p, c))]
        # support bit -> (item, kind, other): kind 0 = directly on a station, 1 = atop an item, 2 = held
        self.support: dict[int, tuple[int, int, int]] = {}
        self.support_mask = 0
        for i in items:
            for s in stations:
                b = bit[("item_on", (i, s))]
                self.support[b] = (i, 0, s)
                self.support_mask |= 1 << b
            for j in items:
                if j != i:
                    b = bit[("atop", (i, j))]
                    self.support[b] = (i, 1, j)
                    self.support_mask |= 1 << b
            b = bit[("has_item", (p, i))]
            self.support[b] = (i, 2, -1)
            self.support_mask |= 1 << b
        self.prop_bit = {(q, i): 1 << bit[(q, (i,))] for q in PROCESSING for i in items}
        # Where each item can be processed: the stations of its grounded processing actions.
        self.proc_at: dict[tuple[str, int], frozenset[int]] = {}
        for q, (_, schema) in PROCESSING.items():
            at: dict[int, set[int]] = {i: set() for i in items}
            for a in w.actions:
                if a.schema == schema:
                    types = [w.objects[o].type for o in a.args]
                    at[a.args[types.index("item")]].add(a.args[types.index("station")])
            for i in items:
                self.proc_at[(q, i)] = frozenset(at[i])
        self.timer_eids = {eid for eid, e in enumerate(w.effects) if e.kind == "conditional" and e.children}
        self.cut_eids = {eid for eid, e in enumerate(w.effects) if e.kind == "repetitive"}
        # unary atoms per item and per station, for interchangeable-candidate classes
        unary: dict[int, list[tuple[int, str]]] = {}
        for b, (name, args) in enumerate(w.atoms):
            if len(args) == 1:
                unary.setdefault(args[0], []).append((b, name))
        self.unary = unary
        self._build_roles()
        self._cache: dict = {}
        soup = _Soup(self) if self.enabled else None
        self.soup = soup if soup and (soup.added or soup.bowls or soup.boil) else None

    def _build_roles(self) -> None:
        w = self.world
        goal, kinds = w.problem.goal, w.problem.var_kinds
        cands: dict[str, list[int]] = {}
        for var, kind in kinds.items():
            if var.startswith("@"):
                cands[var] = [i for i, o in enumerate(w.objects) if o.uid == var[1:]]
            else:
                cands[var] = [i for i, o in enumerate(w.objects) if o.kind == kind or (o.type == kind != o.kind)]
        item_set, station_set = set(self.items), set(self.stations)
        item_vars = [v for v in kinds if cands[v] and all(c in item_set for c in cands[v])]
        station_vars = [v for v in kinds if cands[v] and all(c in station_set for c in cands[v])]
        self.loose = False  # some goal literal is not modelled (it counts 0)
        loc: dict[str, tuple[str, str]] = {}
        atop: dict[str, str] = {}
        props: dict[str, set[str]] = {v: set() for v in item_vars}
        clear: set[str] = set()
        for lit in goal:
            a = lit.args
            if lit.predicate in ("item_on", "item_at") and a[0] in props and a[1] in station_vars:
                rel = "on" if lit.predicate == "item_on" else "at"
                old = loc.get(a[0])
                if old is None or (old[1] == a[1] and rel == "on"):
                    loc[a[0]] = (rel, a[1])
                elif old[1] != a[1]:
                    self.loose = True
            elif lit.predicate == "atop" and a[0] in props and a[1] in props:
                if a[0] in atop and atop[a[0]] != a[1]:
                    self.loose = True
                else:
                    atop[a[0]] = a[1]
            elif lit.predicate in PROCESSING and a[0] in props:
                props[a[0]].add(lit.predicate)
            elif lit.predicate == "clear" and a[0] in props:
                clear.add(a[0])
            elif not (lit.predicate.startswith("is") and len(a) == 1):
                self.loose = True  # identity literals hold for every candidate; anything else is not modelled

        kinds = _free_stations(dict(kinds), cands, station_vars, loc, atop, self.stations)

        def station_of(v: str, seen=()) -> str | None:
            if v in loc:
                return loc[v][1]
            if v in atop and v not in seen:
                return station_of(atop[v], (*seen, v))
            return None

        self.svars = sorted({s for v in item_vars if (s := station_of(v)) is not None})
        roles: list[_Role] = []
        for v in item_vars:
            r = _Role()
            r.var, r.cands, r.index = v, cands[v], len(roles)
            tv = station_of(v)
            r.tv = self.svars.index(tv) if tv is not None else -1
            r.rel = loc[v][0] if v in loc else ("atop" if v in atop else None)
            r.props = tuple(q for q in PROP_ORDER if q in props[v])
            r.clear = v in clear
            r.base = r.rel == "on"
            roles.append(r)
        by_var = {r.var: r for r in roles}
        for r in roles:
            r.ak = by_var[atop[r.var]].index if r.var in atop else -1
            if r.clear and r.tv < 0:
                self.loose = True
            if r.ak >= 0 and roles[r.ak].tv != r.tv:
                self.loose = True
        for r in roles:
            r.group = tuple(o.index for o in roles if o.tv == r.tv) if r.tv >= 0 else (r.index,)
            below: set[int] = set()
            if r.tv >= 0:
                bases = [o for o in r.group if roles[o].base]
                if len(bases) > 1:
                    self.loose = True
                if bases and not r.base:
                    below.add(bases[0])
                if r.clear:
                    below.update(o for o in r.group if o != r.index)
                t, seen = r.ak, set()
                while t >= 0 and t not in seen:
                    seen.add(t)
                    below.add(t)
                    t = roles[t].ak
            r.below = tuple(sorted(below))
            r.deps = tuple(o.index for o in roles if o.ak == r.index)
        self.roles = roles
        self.scands = [cands[v] for v in self.svars]
        self.group_base = [next((k for k in range(len(roles)) if roles[k].tv == j and roles[k].base), -1)
                           for j in range(len(self.svars))]  # fmt: skip
        self.group_roles = [tuple(k for k in range(len(roles)) if roles[k].tv == j) for j in range(len(self.svars))]

        # Goal symmetry: station variables whose groups of roles look alike can be swapped with their roles.
        def sig(k: int, seen=()) -> tuple:
            r = roles[k]
            kind = kinds[r.var]
            return (kind, r.rel, r.props, r.clear, sig(r.ak, (*seen, k)) if r.ak >= 0 and r.ak not in seen else None)

        gsig = [(kinds[v], *sorted(sig(k) for k in self.group_roles[j])) for j, v in enumerate(self.svars)]
        self.sym_pairs = [(a, b) for a in range(len(self.svars)) for b in range(a + 1, len(self.svars))
                          if gsig[a] == gsig[b]]  # fmt: skip
        self.role_order = list(range(len(roles)))
        self.cand_items = {c for r in roles for c in r.cands}  # items that some role may be given
        # end: an item standing directly on a candidate of a clear role may be the last thing picked
        self.end_mask = 0
        self.clear_cands = clear_cands = {c for r in roles if r.clear for c in r.cands}
        # goal station assignments, injective and in station order where goal groups look alike
        self.combos = [
            combo
            for combo in itertools.product(*self.scands)
            if len(set(combo)) == len(combo) and not any(combo[a] > combo[b] for a, b in self.sym_pairs)
        ]
        for x in self.items:
            for c in clear_cands:
                if x != c:
                    self.end_mask |= 1 << w.bit[("atop", (x, c))]

    # ----------------------------------------------------------------------------------------------------------
    def __call__(self, state: State) -> int:
        if not self.enabled:
            return 0
        atoms = state.atoms
        robot = next(s for b, s in self.loc_bits if atoms & b)
        key = (atoms & ~self.robot_mask, state.effects)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = self._evaluate(state)
        base, bonus = entry
        return base - (robot in bonus)

    def _evaluate(self, state: State) -> tuple[int, frozenset]:
        ev = _Eval(self, state)
        base, bonus = ev.run()
        if self.soup is not None and base < INF:
            base += self.soup.extra(state)
        return base, bonus


def _free_stations(kinds: dict, cands: dict, station_vars: list, loc: dict, atop: dict, stations: list) -> dict:
    """A goal stack that names no station (Robotouille's high_level_* burgers, base_stack) stands on some station
    in every goal state (a held item has nothing on it), so its bottom role is given `item_at` a free station
    variable: a goal every goal state meets, hence a bound that stays a lower bound. Updates `cands`,
    `station_vars` and `loc` in place; returns the goal variables' kinds with the new variables."""
    for v in sorted(set(atop) | set(atop.values())):
        b, seen = v, set()
        while b in atop and b not in seen:
            seen.add(b)
            b = atop[b]
        if b not in loc and not any(x in loc for x in seen):
            free = f"~free{len(station_vars)}"
            kinds[free], cands[free] = "station", list(stations)
            station_vars.append(free)
            loc[b] = ("at", free)
    return kinds


class _Soup:
    """The actions a soup goal (`addedto`, `in` a bowl, `isboiling`) still forces that the item bound never counts.

    The item bound counts item picks and puts, the moves holding an item, empty-handed arrivals and the processing
    actions; a soup goal also needs, each counted once however the goal is assigned (a minimum over candidates):
    - per `addedto(i, m)` not yet met: the add-to action, and the pick of i after its last processing (no counted
      leg starts there: the item has no goal station), unless i is held now and needs no processing (1 or 2);
    - `in(m, b)` with b a bowl, not met: the fill-bowl action, and unless a pot is held now, picking up a pot and a
      move holding it (the bowl stands on another station) (1 or 3);
    - `isboiling(m)` not met and no boil timer running on m: the boil action (1), with the pot's last trip to a
      stove before it (pick up, move holding it, place: 3; only the place, 1, if a pot is held now; none if m is in
      a pot on a stove now); and if no meal that may be m exists yet and no fill timer runs: the fill-pot action
      (1), the pot's trip to a sink before it (3; 1 if a pot is held; none if a pot stands on a sink now), and the
      trip to a stove (3: after the fill the pot stands on a sink).
    Boiling needs an empty hand and m in a pot on a stove, filling an empty hand and the pot on a sink, so the trip
    to the sink ends before the fill, the trip to the stove starts after it and ends before the boil, and the pot
    picked up for the fill-bowl is picked after the boil: distinct actions. None of them is an item pick, put, move
    holding an item, empty-handed move or processing action, so they are disjoint from what the item bound counts.
    """

    def __init__(self, h: Heuristic):
        w = h.world
        p = w.by_type["player"][0]
        bit = w.bit
        meals, containers = w.by_type.get("meal", []), w.by_type.get("container", [])
        cands, _ = goal_candidates(w.problem.goal, w.problem.var_kinds, w)
        role_of = {r.var: r for r in h.roles}
        self.added: list[list[tuple[int, int, int]]] = []  # per addedto literal: (added-to-any mask, held bit, props)
        self.bowls: list[tuple[int, list[int]]] = []  # per in(m, bowl) literal: (held-pot mask, masks meeting it)
        self.boil: list[tuple[list[int], int, set[int]]] = []  # per isboiling literal: (masks, meal mask, meal objs)
        pot_objs = [c for c in containers if w.objects[c].kind == "pot"]
        pot_hand = sum(1 << bit[("has_container", (p, c))] for c in pot_objs)
        self.pot_hand = pot_hand
        stations = w.by_type.get("station", [])
        at_stove = {c: sum(1 << bit[("container_at", (c, t))] for t in stations if ("isstove", (t,)) in w.bit
                           and w.initial_state.atoms >> bit[("isstove", (t,))] & 1) for c in pot_objs}  # fmt: skip
        self.at_sink = sum(1 << bit[("container_at", (c, t))] for c in pot_objs for t in stations
                           if w.initial_state.atoms >> bit[("issink", (t,))] & 1)  # fmt: skip
        for lit in w.problem.goal:
            a = lit.args
            if lit.predicate == "addedto" and a[0] in role_of:
                r = role_of[a[0]]
                rows = []
                for c in r.cands:
                    mask = sum(1 << bit[("addedto", (c, m))] for m in meals)
                    props = sum(1 << bit[(q, (c,))] for q in r.props)
                    rows.append((mask, 1 << bit[("has_item", (p, c))], props))
                self.added.append(rows)
            elif lit.predicate == "in" and all(w.objects[b].kind == "bowl" for b in cands[a[1]]):
                masks = [1 << bit[("in", (m, b))] for m in cands[a[0]] for b in cands[a[1]]]
                self.bowls.append((pot_hand, masks))
            elif lit.predicate == "isboiling":
                ms = cands[a[0]]
                masks = [1 << bit[("isboiling", (m,))] for m in ms]
                exist = sum(1 << bit[(f"is{w.objects[m].kind}", (m,))] for m in ms)
                # m in a pot on a stove / in a held pot: (in bit, container_at bits of that pot on stoves, held bit)
                pots = [(1 << bit[("in", (m, c))], at_stove[c], 1 << bit[("has_container", (p, c))]) for m in ms
                        for c in pot_objs]  # fmt: skip
                self.boil.append((masks, exist, set(ms), pots))
        self.boil_timer = {
            eid: e.obj
            for eid, e in enumerate(w.effects)
            if e.kind == "conditional"
            and e.children
            and any(bit_name(w, b) == "isboiling" for c in e.children for b, _ in w.effects[c].fx)
        }
        self.fill_timer = {
            eid
            for eid, e in enumerate(w.effects)
            if e.kind == "conditional"
            and e.children
            and any(w.effects[g].created for c in e.children for g in w.effects[c].children)
        }

    def extra(self, state: State) -> int:
        atoms, n = state.atoms, 0
        for rows in self.added:
            n += min(0 if atoms & m else 1 if atoms & held and atoms & props == props else 2 for m, held, props in rows)
        for pot_hand, masks in self.bowls:
            if not any(atoms & m for m in masks):
                n += 1 if atoms & pot_hand else 3
        running = {self.boil_timer.get(eid) for eid, _ in state.effects}
        filling = any(eid in self.fill_timer for eid, _ in state.effects)
        held = bool(atoms & self.pot_hand)
        for masks, exist, objs, pots in self.boil:
            if any(atoms & m for m in masks) or running & objs:
                continue
            n += 1  # the boil action
            if atoms & exist:
                if not any(atoms & inb and atoms & stove for inb, stove, _ in pots):
                    n += 1 if any(atoms & inb and atoms & hold for inb, _, hold in pots) else 3
            else:
                n += 3  # the trip to a stove after the fill
                if not filling:
                    n += 1 + (0 if atoms & self.at_sink else 1 if held else 3)
        return n


def bit_name(world: World, b: int) -> str:
    return world.atoms[b][0]


class _Eval:
    """One configuration (everything but the robot's place): the bound over all goal assignments."""

    def __init__(self, h: Heuristic, state: State):
        self.h = h
        atoms = self.atoms = state.atoms
        bottom: dict[int, int] = {}
        above: dict[int, int] = {}
        held = None
        m = atoms & h.support_mask
        support = h.support
        while m:
            low = m & -m
            m ^= low
            i, kind, other = support[low.bit_length() - 1]
            if kind == 0:
                bottom[other] = i
            elif kind == 1:
                above[other] = i
            else:
                held = i
        stacks: dict[int, list[int]] = {}
        where: dict[int, tuple[int, int]] = {}
        for s, i in bottom.items():
            st = []
            while i is not None:
                where[i] = (s, len(st))
                st.append(i)
                i = above.get(i)
            stacks[s] = st
        self.stacks, self.where = stacks, where
        self.held = -2 if atoms & h.hand_mask else held
        cuts: dict[int, int] = {}
        timers: set[int] = set()
        for eid, counters in state.effects:
            if eid in h.cut_eids:
                cuts[h.world.effects[eid].obj] = counters[0]
            elif eid in h.timer_eids:
                timers.add(h.world.effects[eid].obj)
        # per role and candidate: (unmet properties, processing actions, feasible)
        self.need: list[dict[int, tuple]] = []
        for r in h.roles:
            d = {}
            for c in r.cands:
                need = tuple(q for q in r.props if not atoms & h.prop_bit[(q, c)])
                n = 0
                ok = c in where or c == held
                for q in need:
                    if not h.proc_at[(q, c)]:
                        ok = False
                    if q == "iscut":
                        n += CUT_REPETITIONS - cuts.get(c, 0)
                    elif c not in timers:
                        n += 1
                if not ok and r.tv < 0 and r.rel is None and not need:
                    ok = True  # out of play, but nothing is asked of it but its properties
                d[c] = (need, n) if ok else None
            self.need.append(d)
        self.end_slack = 2 if (h.loose or atoms & h.end_mask) else 0
        # `_leaf` only grants the end (-2) at a goal station whose stack has an item directly on a clear role's
        # candidate (or anywhere, with goal literals not modelled): the slack of an assignment of goal stations
        self.end_stations = {s for s, st in stacks.items() if any(x in h.clear_cands for x in st[:-1])}
        # Items no role can be given, charged to the nearest candidate below them (see `iso`).
        self.free_above: dict[int, int] = {}
        for st in stacks.values():
            under = None
            for x in st:
                if x in h.cand_items:
                    under = x
                elif under is not None:
                    self.free_above[under] = self.free_above.get(under, 0) + 1
        # the processing stations some role may still need (their contents matter to the bound)
        self.proc_classes = sorted(
            {h.proc_at[(q, c)] for k, d in enumerate(self.need) for c, nd in d.items() if nd for q in nd[0]},
            key=sorted,
        )
        self.proc_stations = set().union(*self.proc_classes) if self.proc_classes else set()
        self.playable = {c for d in self.need for c, nd in d.items() if nd is not None}  # candidates some role may take
        # Per role: the stations where its candidates' costs can differ from those at any other station (where a
        # candidate lies, where its last processing can happen); see `iso`.
        self.special: list[set[int]] = []
        for d in self.need:
            sp: set[int] = set()
            for c, nd in d.items():
                if nd is None:
                    continue
                if c in where:
                    sp.add(where[c][0])
                if nd[0]:
                    sp.update(h.proc_at[(nd[0][-1], c)])
            self.special.append(sp)
        self._iso: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._legs_memo: dict[tuple[int, int, int], tuple[int, int, bool]] = {}
        self._moves_memo: dict[tuple[int, int, int], tuple] = {}

    # --- optimistic per-role costs ---------------------------------------------------------------------------
    def _moves(self, k: int, c: int, t: int) -> tuple[int, int, int, bool, tuple]:
        """(processing actions, legs, processing legs, in place, processing classes it must be put into, in order)
        of role k's candidate c going to station t, when it is not in a kept prefix."""
        key = (k, c, t)
        out = self._moves_memo.get(key)
        if out is None:
            tc = t if t < 0 or t in self.special[k] else -2  # alike outside `special[k]` (see `iso`)
            out = self._moves_memo.get((k, c, tc))
            if out is None:
                need, n = self.need[k][c]
                lg, pl, ip = self._legs(k, c, tc)
                classes = tuple(self.h.proc_at[(q, c)] for j, q in enumerate(need) if not (j == 0 and ip)) if pl else ()
                out = self._moves_memo[(k, c, tc)] = (n, lg, pl, ip, classes)
            self._moves_memo[key] = out
        return out

    def _legs(self, k: int, c: int, t: int) -> tuple[int, int, bool]:
        """(legs, processing legs, in place) of role k's candidate c going to station t (-1: no station)."""
        key = (k, c, t)
        out = self._legs_memo.get(key)
        if out is None:
            out = self._legs_memo[key] = self._legs_of(k, c, t)
        return out

    def _legs_of(self, k: int, c: int, t: int) -> tuple[int, int, bool]:
        h = self.h
        need, _ = self.need[k][c]
        pos = self.where.get(c)
        pl, inplace = 0, False
        for j, q in enumerate(need):
            if j == 0 and pos is not None and pos[1] == 0 and pos[0] in h.proc_at[(q, c)]:
                inplace = True
                continue
            pl += 1
        legs = pl
        r = h.roles[k]
        if t != -1:
            if not (need and pl and t in h.proc_at[(need[-1], c)]):
                legs += 1
            if pos is not None and pos[0] == t and legs < 2:
                legs = 2
        elif r.rel == "atop":
            legs = max(legs, 1)
        return legs, pl, inplace

    def iso(self, k: int, t: int) -> list[tuple[int, int]]:
        """Role k's candidates with a cost no assignment can beat when its station variable is at t, cheapest first.

        A candidate's cost depends on t only through t == -1, t being where it lies and t being a station of its
        last processing (see `_legs`), so all stations outside `special[k]` share one list (key -2).

        A candidate that is not kept where it lies and leaves (or is processed in place) makes everything above it
        be picked (`_leaf`); that includes the items that no role can be given between it and the next candidate
        above it, each a leg that no role's cost counts. Each such item is charged to one candidate only, and the
        assignment gives each candidate at most one role, so adding them keeps the sum over roles below every
        leaf's total (but for the end slack). Not kept here implies not kept in `_leaf`: its kept prefixes only
        hold candidates that pass the `keep` test below."""
        if t >= 0 and t not in self.special[k]:
            t = -2
        key = (k, t)
        out = self._iso.get(key)
        if out is not None:
            return out
        h = self.h
        r = h.roles[k]
        out = []
        for c in r.cands:
            nd = self.need[k][c]
            if nd is None:
                continue
            need, n = nd
            if c == self.held:
                # `_leaf` charges 2 + LEG * (legs - 1) at least, but 1 + ... for a role with no station and no
                # processing leg
                legs, pl, _ = self._legs(k, c, t)
                cost = n - pl + ((2 if r.tv >= 0 or pl else 1) + LEG * (legs - 1) if legs else 0)
            elif c not in self.where:
                cost = n
            else:
                pos = self.where[c]
                keep = (
                    pos[0] == t
                    and (not need or (pos[1] == 0 and all(t in h.proc_at[(q, c)] for q in need)))
                    and (pos[1] == 0 if r.base else (pos[1] > 0 or h.group_base[r.tv] < 0))
                )
                if keep:
                    cost = n
                else:
                    legs, pl, ip = self._legs(k, c, t)
                    cost = n - pl + LEG * legs
                    if legs or ip:
                        cost += LEG * self.free_above.get(c, 0)
            out.append((cost, c))
        out.sort()
        self._iso[key] = out
        return out

    # --- search over assignments ----------------------------------------------------------------------------
    def run(self) -> tuple[int, frozenset]:
        h = self.h
        roles = h.roles
        nr = len(roles)
        self.best = INF
        self.bar = INF  # what pruning compares with: the best so far, or INF to enumerate every leaf (tests)
        self.bonus: set[int] = set()
        const = 0
        for k in range(nr):
            if roles[k].tv < 0:
                lst = self.iso(k, -1)
                if not lst:
                    return INF, frozenset()
                const += lst[0][0]
        # per goal station group and station: the least sum of its roles' costs there; a role's cost differs from
        # its cost at any other station only at its `special` stations
        gmin: list[dict[int, int]] = []
        for j, cands in enumerate(h.scands):
            group = h.group_roles[j]
            lows = [self.iso(k, -2) for k in group]
            if not all(lows):
                d = dict.fromkeys(cands, INF)
            else:
                d = dict.fromkeys(cands, sum(lst[0][0] for lst in lows))
                for k, lst in zip(group, lows, strict=True):
                    for t in self.special[k]:
                        if t in d:
                            d[t] += self.iso(k, t)[0][0] - lst[0][0]
            if h.group_base[j] >= 0:
                for t in cands:
                    st = self.stacks.get(t)
                    if st and st[0] not in self.playable:
                        d[t] += LEG  # see `bottom_extra`
            gmin.append(d)
        loose, ends = h.loose, self.end_stations
        if len(gmin) == 2 and not loose:
            g0, g1 = gmin
            if not ends:
                combos = [(const + g0[c[0]] + g1[c[1]], 0, c) for c in h.combos]
            else:
                combos = []
                for c in h.combos:
                    if c[0] in ends or c[1] in ends:
                        combos.append((const + g0[c[0]] + g1[c[1]] - 2, 2, c))
                    else:
                        combos.append((const + g0[c[0]] + g1[c[1]], 0, c))
        elif len(gmin) == 1 and not loose:
            g0 = gmin[0]
            combos = [(const + g0[c[0]] - (2 if c[0] in ends else 0), 2 if c[0] in ends else 0, c) for c in h.combos]
        else:
            combos = []
            for combo in h.combos:
                slack = 2 if loose or (ends and any(t in ends for t in combo)) else 0
                combos.append((const + sum(gmin[j][t] for j, t in enumerate(combo)) - slack, slack, combo))
        # Every leaf's total is at least its combination's bound less its slack, so the order of the combinations
        # does not matter to the result (the least total, and the union of the bonus sets of the leaves reaching
        # it); the lowest first prunes most.
        combos.sort()
        self._prepare()
        for lb, slack, combo in combos:
            if lb > self.bar:
                break
            self._assign(combo, slack)
        if self.best >= INF:
            return INF, frozenset()
        return self.best, frozenset(self.bonus)

    def _prepare(self) -> None:
        """What `_assign` needs that does not depend on the goal stations."""
        stacks, where = self.stacks, self.where
        self._last = {}  # candidate -> the last role that may take it
        self._bottoms = [(cls, [(b, stacks[b][0] if b in stacks else None) for b in cls]) for cls in self.proc_classes]
        alone: dict[int, int] = {}  # candidate alone on its station -> that station
        for k, d in enumerate(self.need):
            for c, nd in d.items():
                if nd is None:
                    continue
                self._last[c] = k
                if c in alone or c == self.held or c not in where:  # (not on a station: held, or in a soup)
                    continue
                s = where[c][0]
                if len(stacks[s]) == 1:
                    alone[c] = s
        objects = self.h.world.objects
        kinds: dict[str, int] = {}
        for c in alone:
            kinds[objects[c].kind] = kinds.get(objects[c].kind, 0) + 1
        members: dict[tuple, list[int]] = {}
        for c, s in alone.items():
            if kinds[objects[c].kind] > 1:  # the class key starts with the kind: others are alone in their class
                members.setdefault(self._class_key(c, s), []).append(c)
        # groups of candidates alone on their stations and alike in every respect the bound sees: (item, station)
        self._alike = [[(c, where[c][0]) for c in sorted(g)] for g in members.values() if len(g) > 1]
        # Roles with a single possible candidate are assigned first. This keeps the interchangeable-candidate rule
        # (`earlier`: members of a group are given to roles in role order) intact, because such a candidate is in
        # no group: a member of its group would be possible for the same roles. Checked; else the plain order.
        cands = [[c for c, nd in d.items() if nd is not None] for d in self.need]
        grouped = {c for g in self._alike for c, _ in g}
        forced = [k for k, cs in enumerate(cands) if len(cs) == 1 and cs[0] not in grouped]
        self._forced = forced
        self._free = [k for k in range(len(cands)) if k not in forced]
        self._rank = {k: i for i, k in enumerate(forced + self._free)}  # role -> place in the assignment order
        pos = {k: i for i, k in enumerate(self._free)}
        self._settles: dict[int, int] = {}  # candidate -> index in _free after which it is settled, -1: by forced
        for k, cs in enumerate(cands):
            for c in cs:
                self._settles[c] = max(self._settles.get(c, -1), pos.get(k, -1))
        # per role, its list where it has no goal station (and a place for the others); per goal station group and
        # station, its roles' lists there
        self._lists0 = [self.iso(k, -1) if r.tv < 0 else None for k, r in enumerate(self.h.roles)]
        self._glists: dict[tuple[int, int], list] = {}

    def _assign(self, tsig: tuple[int, ...], slack: int) -> None:
        """Every leaf of one assignment of goal stations, less those the bound prunes. The roles with one possible
        candidate are assigned first (see `_prepare`): the order of the roles only changes what is pruned when."""
        h = self.h
        roles = h.roles
        nr = len(roles)
        self._tk = tk = [tsig[roles[k].tv] if roles[k].tv >= 0 else -1 for k in range(nr)]  # each role's station
        self._blocked = [
            (cls, [y for _, y in bottoms])
            for cls, bottoms in self._bottoms
            if all(y is not None and b not in tsig for b, y in bottoms)
        ]
        lists = list(self._lists0)
        for j, t in enumerate(tsig):
            gl = self._glists.get((j, t))
            if gl is None:
                gl = self._glists[(j, t)] = [self.iso(k, t) for k in h.group_roles[j]]
            for k, lst in zip(h.group_roles[j], gl, strict=True):
                lists[k] = lst
        if not all(lists):
            return  # a role no candidate can play any more (e.g. its only lettuce went into a soup): no leaf
        assign = [0] * nr
        used: set[int] = set()
        partial = self.bottom_extra(tsig)
        forced, free = self._forced, self._free
        for k in forced:
            cost, c = lists[k][0]
            if c in used:
                return
            used.add(c)
            assign[k] = c
            partial += cost
        nf = len(free)
        rem = [0] * (nf + 1)
        for i in range(nf - 1, -1, -1):
            rem[i] = rem[i + 1] + lists[free[i]][0][0]
        stacks = self.stacks
        # The item at the bottom of a goal station whose group has an item_on role is picked unless it plays that
        # role (`_leaf`: the kept prefix is empty, so the whole stack must be picked); given no role, it is a leg
        # that no role's cost counts (and no `free_above` charge: nothing is below it). Known once the last role
        # that may take it is assigned.
        settled: list[list[int]] = [[] for _ in range(nf)]  # per free role: bottom items settled once it is assigned
        for j, t in enumerate(tsig):
            st = stacks.get(t)
            if st and h.group_base[j] >= 0:
                at = self._settles.get(st[0])
                if at is None:
                    continue
                if at < 0:
                    if st[0] not in used:
                        partial += LEG
                else:
                    settled[at].append(st[0])
        # A processing class into which a forced role's candidate must be put (it is not where it lies), all of whose
        # stations are outside the goal stations and have at their bottom an item that ends up with no role, needs
        # one of them emptied: such an item is not picked (it does not leave, nothing below it does), so `_leaf`'s
        # `board_extra` counts a leg for the class that nothing else here counts. Known once those items settle.
        into: set[frozenset] = set()
        where = self.where
        for k in forced:
            c, t = assign[k], tk[k]
            pos = where.get(c)
            if pos is None or pos[0] != t:
                mv = self._moves_memo.get((k, c, t)) or self._moves(k, c, t)
                if mv[2]:
                    into.update(mv[4])
        blocks: list[list[list[int]]] = [[] for _ in range(nf)]
        for cls, ys in self._blocked:
            if cls in into:
                at = max(self._settles.get(y, -1) for y in ys)
                if at >= 0:
                    blocks[at].append(ys)
                elif not any(y in used for y in ys):
                    partial += LEG
        self.slack = slack
        # A held item that ends up with no role costs 2 (`_leaf`: put down, and a move unless where it stands)
        # whenever the rest of the total is positive, which the bound so far (it counts nothing for that item)
        # shows; known once the last role that may take it is assigned.
        held, hold_at = self.held, nf
        if held is not None and held >= 0:
            hold_at = self._settles.get(held, -1)
            if hold_at < 0 and held not in used and partial + rem[0] - slack > 0:
                partial += 2
        if partial + rem[0] - slack > self.bar:
            return
        # A candidate above the bottom of its own goal station costs what `iso` charges for keeping it only if the
        # group's item_on role takes that bottom item (`_leaf`'s kept prefix starts there); else it is not kept and
        # costs its moves. Known when that role is assigned before it.
        alt: dict[tuple[int, int], tuple[int, int, int]] = {}  # (role, candidate) -> (base role, bottom, extra)
        rank = self._rank
        for k in free:
            t = tk[k]
            b = h.group_base[roles[k].tv] if t >= 0 else -1
            if b < 0 or rank[b] >= rank[k]:
                continue
            for cost, c in lists[k]:
                pos = where.get(c)
                if pos is None or pos[0] != t or pos[1] == 0:
                    continue
                n, lg, pl, ip, _ = self._moves_memo.get((k, c, t)) or self._moves(k, c, t)
                full = n - pl + LEG * lg + (LEG * self.free_above.get(c, 0) if lg or ip else 0)
                if full > cost:
                    alt[(k, c)] = (b, stacks[t][0], full - cost)
        # interchangeable candidates: alone on a station outside tsig, alike in kind, properties and station
        earlier: dict[int, list[int]] = {}
        self._classes = []
        for group in self._alike:
            group = [c for c, s in group if s not in tsig]
            for n, c in enumerate(group):
                earlier[c] = group[:n]
            if len(group) > 1:
                self._classes.append(group)

        def rec(i: int, partial: int) -> None:
            if i == nf:
                self._leaf(tsig, assign)
                return
            k = free[i]
            fin = settled[i]
            blk = blocks[i]
            for cost, c in lists[k]:
                if partial + cost + rem[i + 1] - slack > self.bar:
                    return
                if c in used:
                    continue
                e = earlier.get(c)
                if e and any(x not in used for x in e):
                    continue
                p = partial + cost
                if alt:
                    a = alt.get((k, c))
                    if a is not None and assign[a[0]] != a[1]:
                        p += a[2]
                if fin:
                    p += LEG * sum(1 for x in fin if x != c and x not in used)
                for ys in blk:
                    if not any(y == c or y in used for y in ys):
                        p += LEG
                if i == hold_at and c != held and held not in used and p + rem[i + 1] - slack > 0:
                    p += 2
                if p != partial + cost and p + rem[i + 1] - slack > self.bar:
                    continue
                used.add(c)
                assign[k] = c
                rec(i + 1, p)
                used.discard(c)

        rec(0, partial)
        rec = None  # the closure refers to itself: drop that cycle (and all it holds) now, not at the
        # next garbage collection, which would walk every live object (the search's caches too)

    def bottom_extra(self, tsig: tuple[int, ...]) -> int:
        """Legs of the items at the bottom of goal stations with an item_on role that no role may be given."""
        extra = 0
        for j, t in enumerate(tsig):
            st = self.stacks.get(t)
            if st and self.h.group_base[j] >= 0 and st[0] not in self.playable:
                extra += LEG
        return extra

    def _class_key(self, c: int, s: int) -> tuple:
        h = self.h
        atoms = self.atoms
        w = h.world
        return (
            w.objects[c].kind,
            tuple(n for b, n in h.unary.get(c, []) if atoms >> b & 1),
            tuple(sorted((k, self.need[k].get(c)) for k in range(len(h.roles)) if c in self.need[k])),
            tuple(s in cls for cls in self.proc_classes),
        )

    # --- the bound for one complete assignment ----------------------------------------------------------------
    def _leaf(self, tsig: tuple[int, ...], assign: list[int]) -> None:
        h = self.h
        roles = h.roles
        stacks, where, held = self.stacks, self.where, self.held
        proc_at = h.proc_at
        role_of = dict(zip(assign, range(len(assign)), strict=True))
        # kept prefixes: the bottom part of each target station that can stay as it is
        kept: dict[int, int] = {}
        for j, t in enumerate(tsig):
            st = stacks.get(t)
            if not st:
                kept[t] = 0
                continue
            base = h.group_base[j]
            n = 0
            for idx, x in enumerate(st):
                k = role_of.get(x)
                if idx == 0:
                    if base >= 0 and k != base:
                        break
                else:
                    ky = role_of.get(st[idx - 1])
                    if ky is not None:
                        ry = roles[ky]
                        if ry.deps and (k is None or k not in ry.deps):
                            break
                if k is not None:
                    r = roles[k]
                    if r.tv != j or (r.base and idx > 0):
                        break
                    need = self.need[k][x][0]
                    if need and not (idx == 0 and all(t in proc_at[(q, x)] for q in need)):
                        break
                    if r.ak >= 0 and (idx == 0 or st[idx - 1] != assign[r.ak]):
                        break
                    if r.clear:
                        below = st[:idx]
                        if any(assign[o] not in below for o in r.group if o != k):
                            break
                        n = idx + 1
                        break
                n = idx + 1
            kept[t] = n
        # legs of the role items
        legs: dict[int, int] = {}
        chains = proc = 0
        inplace: set[int] = set()
        first_cls: dict[int, frozenset] = {}
        into: set[frozenset] = set()
        lowest: dict[int, int] = {}  # station -> lowest level of an item that leaves it or is processed there
        moves = self._moves_memo
        leg_sum = 0
        for k, c in enumerate(assign):
            t = self._tk[k]
            mv = moves.get((k, c, t))
            n, lg, pl, ip, classes = mv if mv is not None else self._moves(k, c, t)
            proc += n
            pos = where.get(c)
            if pos is not None:
                if pos[0] == t and pos[1] < kept[t]:
                    continue
                if (lg or ip) and pos[1] < lowest.get(pos[0], INF):
                    lowest[pos[0]] = pos[1]
            if ip:
                inplace.add(c)
            if pl:
                chains += pl
                into.update(classes)
                first_cls[c] = classes[0]
            if lg:
                legs[c] = lg
                if c != held:
                    leg_sum += lg
        if proc - chains + LEG * leg_sum - self.slack > self.bar:
            return  # the terms below only add, but for `end` (at most the slack): this leaf cannot reach the best
        # everything above an item that must be picked, and above a kept prefix, must be picked too: on a station,
        # everything from its lowest leaving item, or above its lowest item processed in place, or above its kept
        # prefix, whichever is lowest
        must = dict(legs)
        for s in {*lowest, *kept}:
            st = stacks.get(s)
            if not st:
                continue
            low = kept.get(s, len(st))
            idx = lowest.get(s, INF)
            if idx < low:
                low = idx if st[idx] in legs else idx + 1
            for x in st[low:]:
                if x not in must:
                    must[x] = 1
        # a processing station must be emptied before an item is put on it to be processed
        board_extra = 0
        extra_bonus: set[int] = set()
        for cls in into:
            best_b, at = INF, []
            for b in cls:
                cnt = sum(1 for x in stacks.get(b, ()) if x not in must)
                if cnt < best_b:
                    best_b, at = cnt, [b]
                elif cnt == best_b:
                    at.append(b)
            if best_b:
                board_extra += best_b
                extra_bonus.update(at)
        total = proc - chains + LEG * board_extra
        for x, n in must.items():
            if x != held:
                total += LEG * n
        # the last action may pick an item off the top of a finished stack
        end = 0
        if h.loose:
            if any(x not in role_of for x in must if x != held):
                end = 2
        elif self.end_slack:
            for t in tsig:
                st = stacks.get(t, ())
                kp = kept[t]
                kx = role_of.get(st[kp]) if kp < len(st) else None
                if kp and kp < len(st) and (kx is None or roles[kx].rel is None):
                    ky = role_of.get(st[kp - 1])
                    if ky is not None and roles[ky].clear:
                        end = 2
        base = total - end
        if base > self.bar:
            return  # what follows only adds (order extras, the held item's terms): this leaf cannot reach the best
        # the held item's terms: they do not depend on the order constraints, but for the sign of the total (later)
        hterm, bonus, later = 0, None, False
        if held is not None and held >= 0:
            k = role_of.get(held)
            if k is not None and held in legs:
                r = roles[k]
                lg = legs[held]
                if held in first_cls:
                    bonus = {s for s in first_cls[held] if s not in stacks}
                    if bonus:
                        hterm = 2 + LEG * (lg - 1)
                    else:
                        # every station of its first processing class is taken, and nothing can be picked before
                        # the hand is free: its first put is elsewhere, and a further leg takes it there
                        hterm, bonus = 1 + LEG * lg, None
                elif r.tv >= 0:
                    t = tsig[r.tv]
                    kp = kept[t]
                    ready = len(stacks.get(t, ())) == kp and all(
                        where.get(assign[b], (-1, INF))[0] == t and where[assign[b]][1] < kp for b in r.below
                    )
                    if ready:
                        hterm = 2 + LEG * (lg - 1)
                        bonus = {t}
                    else:
                        hterm = 1 + LEG * max(1, lg)
                else:
                    hterm = 1 + LEG * (lg - 1)
            elif base > 0 or len(must) > (1 if held in must else 0):
                hterm = 2
                bonus = self._clear_stations(must)
            else:
                later = True  # 2 more only if the order constraints cost something
        if base + hterm > self.bar:
            return
        if base + hterm == self.bar and not later:
            # at best a tie, which only adds its bonus stations: skip it if they (a superset of them, for an empty
            # hand, whose bonus depends on the order constraints) are there already
            if held is None:
                bonus = {s for s, st in stacks.items() if st[-1] in must} | extra_bonus
            if not bonus or self._expand(set(bonus)) <= self.bonus:
                return
        # order constraints between picks and puts; cycles need an extra leg
        dl = self._order(tsig, assign, kept, must, first_cls, inplace)
        if dl is None:
            return
        extra, firsts = dl
        total = base + extra + hterm
        if later and total > 0:
            total += 2
            bonus = self._clear_stations(must)
        if held is None:
            bonus = {s for s, st in stacks.items() if st[-1] in must and st[-1] in firsts} | extra_bonus
        total = max(0, total)
        if total < self.best:
            self.best = total
            self.bonus = set()
            if h.prune:
                self.bar = total
        if total == self.best and bonus:
            self.bonus |= self._expand(bonus)

    def _clear_stations(self, must) -> set[int]:
        """The stations with nothing that must be picked."""
        stacks = self.stacks
        return {s for s in self.h.stations if not any(x in must for x in stacks.get(s, ()))}

    def _expand(self, bonus: set[int]) -> set[int]:
        """The bonus stations with those of interchangeable candidates added (their leaves were not enumerated)."""
        where = self.where
        for g in self._classes:
            ss = [where[c][0] for c in g]
            if any(s in bonus for s in ss):
                bonus.update(ss)
        return bonus

    def _order(self, tsig, assign, kept, must, first_cls, inplace):
        """(extra cost, items whose first pick may come first) from the order of first picks and last puts."""
        h = self.h
        roles = h.roles
        stacks, held = self.stacks, self.held
        merged = {x for x, n in must.items() if n == 1 and x != held and x not in first_cls and x not in inplace}
        edges: list[tuple[int, int, int, int]] = []  # (item, port, item, port); port 0 = first pick, 1 = last put
        where = self.where
        for s in {where[x][0] for x in must if x in where}:
            st = stacks[s]
            prev = None
            for x in st:
                if x in must and prev is not None and prev in must:
                    edges.append((x, 0, prev, 0))
                prev = x
        if held is not None and held >= 0 and held in must:
            for x in must:
                if x != held:
                    edges.append((held, 0, x, 0))
        into_l: set[int] = set()
        for k, i in enumerate(assign):
            r = roles[k]
            if r.tv < 0 or i not in must:
                continue
            t = tsig[r.tv]
            for x in stacks.get(t, ())[kept[t] :]:
                if x != i and x in must:
                    edges.append((x, 0, i, 1))
                    into_l.add(i)
            for b in r.below:
                y = assign[b]
                if y in must:
                    edges.append((y, 1, i, 1))
                    into_l.add(i)
            # i is processed alone on the one station of a class: what lies there now is picked before that, so
            # before i's last put
            mv = self._moves_memo.get((k, i, t)) or self._moves(k, i, t)
            for cls in mv[4]:
                if len(cls) == 1:
                    for x in stacks.get(next(iter(cls)), ()):
                        if x != i and x in must:
                            edges.append((x, 0, i, 1))
                            into_l.add(i)
        # a cycle needs a single-leg item with a constraint on its put and one on its pick
        out_f = {x for x, px, _, _ in edges if px == 0}
        breakable = [x for x in merged if x in into_l and x in out_f]
        if not breakable:
            return 0, {x for x in must if not (x in merged and x in into_l)}
        return _min_splits(list(must), edges, merged, breakable)


def _min_splits(nodes, edges, merged, breakable):
    """(extra cost, a superset of the items whose first pick can come first): the fewest single-leg items to split
    into a separate first pick and last put so that the order constraints are acyclic; None if none does.

    Splitting an item only helps a cycle that enters its last put and leaves its first pick (`breakable`).
    Events are numbered 2i (first pick of nodes[i]) and 2i + 1 (its last put); a merged item that is not split has
    the single event 2i. Sets of events and of items are int bitmasks."""
    pos = {x: i for i, x in enumerate(nodes)}
    n = len(nodes)
    arcs = [(2 * pos[x] + px, 2 * pos[y] + py) for x, px, y, py in edges]
    joined = 0  # items whose two events are one (merged and not split)
    for x in merged:
        joined |= 1 << pos[x]
    left = _stuck(n, arcs, joined)
    extra = 0
    if left:
        cands = [pos[x] for x in breakable if left >> 2 * pos[x] & 1]
        every = 0
        for i in cands:
            every |= 1 << i
        if not cands or _stuck(n, arcs, joined & ~every):
            return None
        extra = len(cands)
        for size in range(1, len(cands)):
            if any(not _stuck(n, arcs, joined & ~sum(1 << i for i in split))
                   for split in itertools.combinations(cands, size)):  # fmt: skip
                extra = size
                break
        joined &= ~every
    has_in = 0
    for _, v in arcs:
        if joined >> (v >> 1) & 1:
            v &= ~1
        has_in |= 1 << v
    return LEG * extra, {x for i, x in enumerate(nodes) if not has_in >> 2 * i & 1}


def _stuck(n: int, arcs: list[tuple[int, int]], joined: int) -> int:
    """The events that Kahn's algorithm cannot order (0 iff acyclic), as a bitmask: peel events with no
    predecessor left until none can go; what remains is the largest set in which every event has a predecessor."""
    pred = [0] * (2 * n)
    alive = 0
    for i in range(n):
        alive |= 1 << 2 * i
        if not joined >> i & 1:
            alive |= 1 << 2 * i + 1
            pred[2 * i + 1] |= 1 << 2 * i  # the first pick comes before the last put
    for u, v in arcs:
        if joined >> (u >> 1) & 1:
            u &= ~1
        if joined >> (v >> 1) & 1:
            v &= ~1
        pred[v] |= 1 << u
    changed = True
    while changed and alive:
        changed = False
        m = alive
        while m:
            low = m & -m
            m ^= low
            if not pred[low.bit_length() - 1] & alive:
                alive ^= low
                changed = True
    return alive
