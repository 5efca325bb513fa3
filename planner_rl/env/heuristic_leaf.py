"""The cooking heuristic's bound for one complete goal assignment (a *leaf* of the search in
`heuristic_search.py`): kept prefixes, the legs and processing each role needs, what must be picked, the end and
held-item terms, and the order constraints whose cycles cost extra legs (see `heuristic.py` for the bound)."""

from __future__ import annotations

import itertools

from planner_rl.env.heuristic_roles import INF, LEG


def leaf(ev, tsig: tuple[int, ...], assign: list[int]) -> None:
    h = ev.h
    roles = h.roles
    stacks, where, held = ev.stacks, ev.where, ev.held
    role_of = dict(zip(assign, range(len(assign)), strict=True))
    kept = kept_prefixes(ev, tsig, assign, role_of)
    # legs of the role items
    legs: dict[int, int] = {}
    chains = proc = 0
    inplace: set[int] = set()
    first_cls: dict[int, frozenset] = {}
    into: set[frozenset] = set()
    lowest: dict[int, int] = {}  # station -> lowest level of an item that leaves it or is processed there
    moves = ev._moves_memo
    leg_sum = 0
    for k, c in enumerate(assign):
        t = ev._tk[k]
        mv = moves.get((k, c, t))
        n, lg, pl, ip, classes = mv if mv is not None else ev._moves(k, c, t)
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
    if proc - chains + LEG * leg_sum - ev.slack > ev.bar:
        return  # the terms below only add, but for `end` (at most the slack): this leaf cannot reach the best
    must = must_pick(ev, legs, lowest, kept)
    board_extra, extra_bonus = emptied_stations(ev, into, must)
    total = proc - chains + LEG * board_extra
    for x, n in must.items():
        if x != held:
            total += LEG * n
    # the last action may pick an item off the top of a finished stack
    end = 0
    if h.loose:
        if any(x not in role_of for x in must if x != held):
            end = 2
    elif ev.end_slack:
        for t in tsig:
            st = stacks.get(t, ())
            kp = kept[t]
            kx = role_of.get(st[kp]) if kp < len(st) else None
            if kp and kp < len(st) and (kx is None or roles[kx].rel is None):
                ky = role_of.get(st[kp - 1])
                if ky is not None and roles[ky].clear:
                    end = 2
    base = total - end
    if base > ev.bar:
        return  # what follows only adds (order extras, the held item's terms): this leaf cannot reach the best
    hterm, bonus, later = held_terms(ev, tsig, assign, role_of, legs, first_cls, kept, must, base)
    if base + hterm > ev.bar:
        return
    if base + hterm == ev.bar and not later:
        # at best a tie, which only adds its bonus stations: skip it if they (a superset of them, for an empty
        # hand, whose bonus depends on the order constraints) are there already
        if held is None:
            bonus = {s for s, st in stacks.items() if st[-1] in must} | extra_bonus
        if not bonus or expand(ev, set(bonus)) <= ev.bonus:
            return
    # order constraints between picks and puts; cycles need an extra leg
    dl = order_extra(ev, tsig, assign, kept, must, first_cls, inplace)
    if dl is None:
        return
    extra, firsts = dl
    total = base + extra + hterm
    if later and total > 0:
        total += 2
        bonus = clear_stations(ev, must)
    if held is None:
        bonus = {s for s, st in stacks.items() if st[-1] in must and st[-1] in firsts} | extra_bonus
    total = max(0, total)
    if total < ev.best:
        ev.best = total
        ev.bonus = set()
        if h.prune:
            ev.bar = total
    if total == ev.best and bonus:
        ev.bonus |= expand(ev, bonus)


def kept_prefixes(ev, tsig: tuple[int, ...], assign: list[int], role_of: dict[int, int]) -> dict[int, int]:
    """Per goal station, its kept prefix: the bottom part of its stack that can stay as it is."""
    h = ev.h
    roles = h.roles
    stacks = ev.stacks
    proc_at = h.proc_at
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
                need = ev.need[k][x][0]
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
    return kept


def must_pick(ev, legs: dict[int, int], lowest: dict[int, int], kept: dict[int, int]) -> dict[int, int]:
    """Item -> legs it needs: the role items' legs, and one for everything that must be picked besides."""
    stacks = ev.stacks
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
    return must


def emptied_stations(ev, into: set, must: dict[int, int]) -> tuple[int, set[int]]:
    """A processing station must be emptied before an item is put on it to be processed: (legs that no other
    term counts, the stations of the cheapest choices)."""
    stacks = ev.stacks
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
    return board_extra, extra_bonus


def held_terms(ev, tsig, assign, role_of, legs, first_cls, kept, must, base) -> tuple[int, set[int] | None, bool]:
    """The held item's terms: (cost, bonus stations, whether 2 more are due if the order constraints cost
    something). They do not depend on the order constraints, but for the sign of the total (later)."""
    roles = ev.h.roles
    stacks, where, held = ev.stacks, ev.where, ev.held
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
            bonus = clear_stations(ev, must)
        else:
            later = True  # 2 more only if the order constraints cost something
    return hterm, bonus, later


def clear_stations(ev, must) -> set[int]:
    """The stations with nothing that must be picked."""
    stacks = ev.stacks
    return {s for s in ev.h.stations if not any(x in must for x in stacks.get(s, ()))}


def expand(ev, bonus: set[int]) -> set[int]:
    """The bonus stations with those of interchangeable candidates added (their leaves were not enumerated)."""
    where = ev.where
    for g in ev._classes:
        ss = [where[c][0] for c in g]
        if any(s in bonus for s in ss):
            bonus.update(ss)
    return bonus


def order_extra(ev, tsig, assign, kept, must, first_cls, inplace):
    """(extra cost, items whose first pick may come first) from the order of first picks and last puts."""
    h = ev.h
    roles = h.roles
    stacks, held = ev.stacks, ev.held
    merged = {x for x, n in must.items() if n == 1 and x != held and x not in first_cls and x not in inplace}
    edges: list[tuple[int, int, int, int]] = []  # (item, port, item, port); port 0 = first pick, 1 = last put
    where = ev.where
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
        mv = ev._moves_memo.get((k, i, t)) or ev._moves(k, i, t)
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
    return min_splits(list(must), edges, merged, breakable)


def min_splits(nodes, edges, merged, breakable):
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
    left = stuck(n, arcs, joined)
    extra = 0
    if left:
        cands = [pos[x] for x in breakable if left >> 2 * pos[x] & 1]
        every = 0
        for i in cands:
            every |= 1 << i
        if not cands or stuck(n, arcs, joined & ~every):
            return None
        extra = len(cands)
        for size in range(1, len(cands)):
            if any(not stuck(n, arcs, joined & ~sum(1 << i for i in split))
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


def stuck(n: int, arcs: list[tuple[int, int]], joined: int) -> int:
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
