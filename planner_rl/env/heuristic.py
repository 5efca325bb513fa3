"""An admissible heuristic for the cooking domain: a lower bound on the actions still needed to reach the goal.

Scope: one robot; the goal literals item_on, item_at, atop, clear, iscut, iscooked, isfried and the identity
predicates are modelled; any other goal literal counts 0 (and relaxes the end rule below). With more than one robot
the bound is 0 (breadth-first search).

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
- the held item's first leg has its pick behind it: its put, plus a move unless it is put where the robot stands;
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
  roles that must end below it; the held item's first put comes before every pick, and is a final put only if its
  station is ready now. An item with one leg has its first pick and last put at one time; if these constraints are
  cyclic, the fewest single-leg items whose legs must be split cost 4 each (an extra leg of an item that needs no
  processing cannot chain). The start bonus is only given where the robot's station's top must be picked and may
  be the first pick.
All these counts are of disjoint actions of any plan that reaches the goal through that assignment, so the bound is
admissible. It is not claimed consistent (the planner does not rely on it).

Computation: the part that does not depend on the robot's station is cached per configuration as (bound, stations
where the start bonus applies). The minimum over assignments is a branch and bound: goal stations first, then
roles, each bounded below by per-role costs no assignment can beat; candidates alike in every respect the bound
sees (kind, properties, alone on alike stations) are tried once, and goal station groups that look alike are
assigned in station order only.
"""

from __future__ import annotations

import itertools

from planner_rl.env.world import CUT_REPETITIONS, State, World

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
        # end: an item standing directly on a candidate of a clear role may be the last thing picked
        self.end_mask = 0
        clear_cands = {c for r in roles if r.clear for c in r.cands}
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
        return ev.run()


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
        # the processing stations some role may still need (their contents matter to the bound)
        self.proc_classes = sorted(
            {h.proc_at[(q, c)] for k, d in enumerate(self.need) for c, nd in d.items() if nd for q in nd[0]},
            key=sorted,
        )
        self.proc_stations = set().union(*self.proc_classes) if self.proc_classes else set()
        self._iso: dict[tuple[int, int], list[tuple[int, int]]] = {}

    # --- optimistic per-role costs ---------------------------------------------------------------------------
    def _legs(self, k: int, c: int, t: int) -> tuple[int, int, bool]:
        """(legs, processing legs, in place) of role k's candidate c going to station t (-1: no station)."""
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
        """Role k's candidates with a cost no assignment can beat when its station variable is at t, cheapest first."""
        if t >= 0 and t not in self.stacks and t not in self.proc_stations:
            t = -2  # an empty station where nothing is processed: all alike
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
                legs, pl, _ = self._legs(k, c, t)
                cost = n - pl + (1 + LEG * (legs - 1) if legs else 0)
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
                    legs, pl, _ = self._legs(k, c, t)
                    cost = n - pl + LEG * legs
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
        self.bonus: set[int] = set()
        const = 0
        for k in range(nr):
            if roles[k].tv < 0:
                lst = self.iso(k, -1)
                if not lst:
                    return INF, frozenset()
                const += lst[0][0]
        gmin: list[dict[int, int]] = []
        for j, cands in enumerate(h.scands):
            d = {}
            for t in cands:
                total = 0
                for k in h.group_roles[j]:
                    lst = self.iso(k, t)
                    if not lst:
                        total = INF
                        break
                    total += lst[0][0]
                d[t] = total
            gmin.append(d)
        combos = []
        for combo in itertools.product(*h.scands):
            if len(set(combo)) != len(combo):
                continue
            if any(combo[a] > combo[b] for a, b in h.sym_pairs):
                continue
            combos.append((const + sum(gmin[j][t] for j, t in enumerate(combo)), combo))
        combos.sort()
        for lb, combo in combos:
            if lb - self.end_slack > self.best:
                break
            self._assign(combo)
        if self.best >= INF:
            return INF, frozenset()
        return self.best, frozenset(self.bonus)

    def _assign(self, tsig: tuple[int, ...]) -> None:
        h = self.h
        roles = h.roles
        nr = len(roles)
        lists = [self.iso(k, tsig[roles[k].tv] if roles[k].tv >= 0 else -1) for k in range(nr)]
        rem = [0] * (nr + 1)
        for k in range(nr - 1, -1, -1):
            rem[k] = rem[k + 1] + lists[k][0][0]
        # interchangeable candidates: alone on a station outside tsig, alike in kind, properties and station
        targets = set(tsig)
        cls: dict[int, tuple] = {}
        stacks, where = self.stacks, self.where
        for k in range(nr):
            for _, c in lists[k]:
                if c in cls or c == self.held:
                    continue
                s, _lvl = where[c]
                if s in targets or len(stacks[s]) != 1:
                    continue
                cls[c] = self._class_key(c, s)
        members: dict[tuple, list[int]] = {}
        for c, key in cls.items():
            members.setdefault(key, []).append(c)
        earlier: dict[int, list[int]] = {}
        for group in members.values():
            group.sort()
            for n, c in enumerate(group):
                earlier[c] = group[:n]
        self._classes = [g for g in members.values() if len(g) > 1]
        assign = [0] * nr
        used: set[int] = set()
        slack = self.end_slack

        def rec(k: int, partial: int) -> None:
            if k == nr:
                self._leaf(tsig, assign)
                return
            for cost, c in lists[k]:
                if partial + cost + rem[k + 1] - slack > self.best:
                    return
                if c in used:
                    continue
                e = earlier.get(c)
                if e and any(x not in used for x in e):
                    continue
                used.add(c)
                assign[k] = c
                rec(k + 1, partial + cost)
                used.discard(c)

        rec(0, 0)

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
        role_of = {c: k for k, c in enumerate(assign)}
        # kept prefixes: the bottom part of each target station that can stay as it is
        kept: dict[int, int] = {}
        for j, t in enumerate(tsig):
            st = stacks.get(t, ())
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
        for k, c in enumerate(assign):
            r = roles[k]
            need, n = self.need[k][c]
            proc += n
            t = tsig[r.tv] if r.tv >= 0 else -1
            pos = where.get(c)
            if t >= 0 and pos is not None and pos[0] == t and pos[1] < kept[t]:
                continue
            lg, pl, ip = self._legs(k, c, t)
            if ip:
                inplace.add(c)
            if pl:
                chains += pl
                for j, q in enumerate(need):
                    if j == 0 and ip:
                        continue
                    into.add(proc_at[(q, c)])
                    if c not in first_cls:
                        first_cls[c] = proc_at[(q, c)]
            if lg:
                legs[c] = lg
        # everything above an item that must be picked, and above a kept prefix, must be picked too
        must = dict(legs)
        for s, st in stacks.items():
            low = kept.get(s, len(st))
            for idx in range(low):
                x = st[idx]
                if x in legs:
                    low = idx
                    break
                if x in inplace:
                    low = idx + 1
                    break
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
        # order constraints between picks and puts; cycles need an extra leg
        dl = self._order(tsig, assign, kept, must, first_cls, inplace)
        if dl is None:
            return
        extra, firsts = dl
        total += extra - end
        bonus: set[int] = set()
        if held is not None and held >= 0:
            k = role_of.get(held)
            if k is not None and held in legs:
                r = roles[k]
                lg = legs[held]
                if held in first_cls:
                    total += 2 + LEG * (lg - 1)
                    bonus = {s for s in first_cls[held] if s not in stacks}
                elif r.tv >= 0:
                    t = tsig[r.tv]
                    kp = kept[t]
                    ready = len(stacks.get(t, ())) == kp and all(
                        where.get(assign[b], (-1, INF))[0] == t and where[assign[b]][1] < kp for b in r.below
                    )
                    if ready:
                        total += 2 + LEG * (lg - 1)
                        bonus = {t}
                    else:
                        total += 1 + LEG * max(1, lg)
                else:
                    total += 1 + LEG * (lg - 1)
            elif total > 0 or len(must) > (1 if held in must else 0):
                total += 2
                bonus = {s for s in h.stations if not any(x in must for x in stacks.get(s, ()))}
        elif held is None:
            bonus = {s for s, st in stacks.items() if st[-1] in must and st[-1] in firsts} | extra_bonus
        total = max(0, total)
        if total < self.best:
            self.best = total
            self.bonus = set()
        if total == self.best and bonus:
            for g in self._classes:
                ss = [where[c][0] for c in g]
                if any(s in bonus for s in ss):
                    bonus.update(ss)
            self.bonus |= bonus

    def _order(self, tsig, assign, kept, must, first_cls, inplace):
        """(extra cost, items whose first pick may come first) from the order of first picks and last puts."""
        h = self.h
        roles = h.roles
        stacks, held = self.stacks, self.held
        merged = {x for x, n in must.items() if n == 1 and x != held and x not in first_cls and x not in inplace}
        edges: list[tuple[int, int, int, int]] = []  # (item, port, item, port); port 0 = first pick, 1 = last put
        for st in stacks.values():
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
        # a cycle needs a single-leg item with a constraint on its put and one on its pick
        out_f = {x for x, px, _, _ in edges if px == 0}
        breakable = [x for x in merged if x in into_l and x in out_f]
        if not breakable:
            return 0, {x for x in must if not (x in merged and x in into_l)}
        return _min_splits(list(must), edges, merged, breakable)


def _graph(nodes, edges, merged, split):
    idx = {}
    for x in nodes:
        if x in merged and x not in split:
            idx[(x, 0)] = idx[(x, 1)] = len(idx)
        else:
            idx[(x, 0)] = len(idx)
            idx[(x, 1)] = len(idx)
    n = len(idx)
    adj: list[list[int]] = [[] for _ in range(n)]
    for x in nodes:
        a, b = idx[(x, 0)], idx[(x, 1)]
        if a != b:
            adj[a].append(b)
    for x, px, y, py in edges:
        adj[idx[(x, px)]].append(idx[(y, py)])
    return idx, adj


def _min_splits(nodes, edges, merged, breakable):
    """(extra cost, a superset of the items whose first pick can come first): the fewest single-leg items to split
    into a separate first pick and last put so that the order constraints are acyclic; None if none does.

    Splitting an item only helps a cycle that enters its last put and leaves its first pick (`breakable`)."""
    idx, adj = _graph(nodes, edges, merged, ())
    left = _cyclic_part(len(adj), adj)
    if not left:
        extra = 0
    else:
        cands = [x for x in breakable if idx[(x, 0)] in left]
        if not cands or _cyclic_part(*_size_adj(_graph(nodes, edges, merged, set(cands))[1])):
            return None
        extra = None
        for size in range(1, len(cands)):
            if any(
                not _cyclic_part(*_size_adj(_graph(nodes, edges, merged, set(split))[1]))
                for split in itertools.combinations(cands, size)
            ):
                extra = size
                break
        if extra is None:
            extra = len(cands)
        idx, adj = _graph(nodes, edges, merged, set(cands))
    has_in = set()
    for u in range(len(adj)):
        has_in.update(adj[u])
    return LEG * extra, {x for x in nodes if idx[(x, 0)] not in has_in}


def _size_adj(adj):
    return len(adj), adj


def _cyclic_part(n, adj) -> set[int]:
    """The nodes Kahn's algorithm cannot order (empty iff the graph is acyclic)."""
    indeg = [0] * n
    for u in range(n):
        for v in adj[u]:
            indeg[v] += 1
    stack = [u for u in range(n) if indeg[u] == 0]
    done = set(stack)
    while stack:
        u = stack.pop()
        for v in adj[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                stack.append(v)
                done.add(v)
    return set(range(n)) - done


def _acyclic(n, adj) -> bool:
    indeg = [0] * n
    for u in range(n):
        for v in adj[u]:
            indeg[v] += 1
    stack = [u for u in range(n) if indeg[u] == 0]
    seen = 0
    while stack:
        u = stack.pop()
        seen += 1
        for v in adj[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                stack.append(v)
    return seen == n
