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

from planner_rl.env.heuristic_roles import INF, PROCESSING, build_roles
from planner_rl.env.heuristic_search import Eval
from planner_rl.env.heuristic_soup import Soup
from planner_rl.env.world import State, World


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
        build_roles(self)
        self._cache: dict = {}
        soup = Soup(self) if self.enabled else None
        self.soup = soup if soup and (soup.added or soup.bowls or soup.boil) else None

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
        ev = Eval(self, state)
        base, bonus = ev.run()
        if self.soup is not None and base < INF:
            base += self.soup.extra(state)
        return base, bonus
