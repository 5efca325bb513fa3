"""The cooking heuristic's search over goal assignments for one configuration: candidates' costs per goal
station (`iso`), and a branch and bound over goal station and role assignments whose leaves `heuristic_leaf.py`
bounds (see `heuristic.py`)."""

from __future__ import annotations

from planner_rl.env.heuristic_leaf import leaf
from planner_rl.env.heuristic_roles import INF, LEG
from planner_rl.env.world import CUT_REPETITIONS, State


class Eval:
    """One configuration (everything but the robot's place): the bound over all goal assignments."""

    def __init__(self, h, state: State):  # h: the Heuristic
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
        lists = self._role_lists(tsig)
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
        settled, extra = self._settled_bottoms(tsig, used, nf)
        partial += extra
        blocks, extra = self._blocked_classes(forced, assign, tk, used, nf)
        partial += extra
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
        alt = self._kept_alternatives(free, tk, lists)
        earlier = self._alike_earlier(tsig)

        def rec(i: int, partial: int) -> None:
            if i == nf:
                leaf(self, tsig, assign)
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

    def _role_lists(self, tsig: tuple[int, ...]) -> list:
        """Per role, its candidates' (cost, candidate) list, cheapest first, under these goal stations."""
        h = self.h
        lists = list(self._lists0)
        for j, t in enumerate(tsig):
            gl = self._glists.get((j, t))
            if gl is None:
                gl = self._glists[(j, t)] = [self.iso(k, t) for k in h.group_roles[j]]
            for k, lst in zip(h.group_roles[j], gl, strict=True):
                lists[k] = lst
        return lists

    def _settled_bottoms(self, tsig: tuple[int, ...], used: set[int], nf: int) -> tuple[list[list[int]], int]:
        """(per free role, the bottom items settled once it is assigned; the legs known already)."""
        h = self.h
        partial = 0
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
        return settled, partial

    def _blocked_classes(self, forced, assign, tk, used: set[int], nf: int) -> tuple[list, int]:
        """(per free role, the blocked processing classes settled once it is assigned; the legs known
        already)."""
        partial = 0
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
        return blocks, partial

    def _kept_alternatives(self, free, tk, lists) -> dict[tuple[int, int], tuple[int, int, int]]:
        """(role, candidate) -> (base role, bottom item, extra cost unless the base role takes that item)."""
        h = self.h
        roles = h.roles
        stacks, where = self.stacks, self.where
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
        return alt

    def _alike_earlier(self, tsig: tuple[int, ...]) -> dict[int, list[int]]:
        """Candidate -> the interchangeable candidates tried before it (and `_classes`, those groups)."""
        # interchangeable candidates: alone on a station outside tsig, alike in kind, properties and station
        earlier: dict[int, list[int]] = {}
        self._classes = []
        for group in self._alike:
            group = [c for c, s in group if s not in tsig]
            for n, c in enumerate(group):
                earlier[c] = group[:n]
            if len(group) > 1:
                self._classes.append(group)

        return earlier

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
