"""Goal roles of the cooking heuristic (`heuristic.py`): the goal's variables as roles with their candidates,
goal station groups and end rule, built once per world onto the `Heuristic` (`build_roles`)."""

from __future__ import annotations

import itertools

PROCESSING = {"iscut": ("isboard", "cut"), "iscooked": ("isstove", "cook"), "isfried": ("isfryer", "fry")}
PROP_ORDER = ("iscut", "iscooked", "isfried")  # cut before frying (fryable-if-cut)
INF = 10**6
LEG = 4  # arrival + pick + move holding the item + put


class Role:
    __slots__ = ("ak", "base", "below", "cands", "clear", "deps", "group", "index", "props", "rel", "tv", "var")


def build_roles(h) -> None:
    w = h.world
    goal, kinds = w.problem.goal, w.problem.var_kinds
    cands: dict[str, list[int]] = {}
    for var, kind in kinds.items():
        if var.startswith("@"):
            cands[var] = [i for i, o in enumerate(w.objects) if o.uid == var[1:]]
        else:
            cands[var] = [i for i, o in enumerate(w.objects) if o.kind == kind or (o.type == kind != o.kind)]
    item_set, station_set = set(h.items), set(h.stations)
    item_vars = [v for v in kinds if cands[v] and all(c in item_set for c in cands[v])]
    station_vars = [v for v in kinds if cands[v] and all(c in station_set for c in cands[v])]
    h.loose = False  # some goal literal is not modelled (it counts 0)
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
                h.loose = True
        elif lit.predicate == "atop" and a[0] in props and a[1] in props:
            if a[0] in atop and atop[a[0]] != a[1]:
                h.loose = True
            else:
                atop[a[0]] = a[1]
        elif lit.predicate in PROCESSING and a[0] in props:
            props[a[0]].add(lit.predicate)
        elif lit.predicate == "clear" and a[0] in props:
            clear.add(a[0])
        elif not (lit.predicate.startswith("is") and len(a) == 1):
            h.loose = True  # identity literals hold for every candidate; anything else is not modelled

    kinds = free_stations(dict(kinds), cands, station_vars, loc, atop, h.stations)

    def station_of(v: str, seen=()) -> str | None:
        if v in loc:
            return loc[v][1]
        if v in atop and v not in seen:
            return station_of(atop[v], (*seen, v))
        return None

    h.svars = sorted({s for v in item_vars if (s := station_of(v)) is not None})
    roles: list[Role] = []
    for v in item_vars:
        r = Role()
        r.var, r.cands, r.index = v, cands[v], len(roles)
        tv = station_of(v)
        r.tv = h.svars.index(tv) if tv is not None else -1
        r.rel = loc[v][0] if v in loc else ("atop" if v in atop else None)
        r.props = tuple(q for q in PROP_ORDER if q in props[v])
        r.clear = v in clear
        r.base = r.rel == "on"
        roles.append(r)
    by_var = {r.var: r for r in roles}
    for r in roles:
        r.ak = by_var[atop[r.var]].index if r.var in atop else -1
        if r.clear and r.tv < 0:
            h.loose = True
        if r.ak >= 0 and roles[r.ak].tv != r.tv:
            h.loose = True
    for r in roles:
        r.group = tuple(o.index for o in roles if o.tv == r.tv) if r.tv >= 0 else (r.index,)
        below: set[int] = set()
        if r.tv >= 0:
            bases = [o for o in r.group if roles[o].base]
            if len(bases) > 1:
                h.loose = True
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
    h.roles = roles
    h.scands = [cands[v] for v in h.svars]
    h.group_base = [next((k for k in range(len(roles)) if roles[k].tv == j and roles[k].base), -1)
                       for j in range(len(h.svars))]  # fmt: skip
    h.group_roles = [tuple(k for k in range(len(roles)) if roles[k].tv == j) for j in range(len(h.svars))]

    # Goal symmetry: station variables whose groups of roles look alike can be swapped with their roles.
    def sig(k: int, seen=()) -> tuple:
        r = roles[k]
        kind = kinds[r.var]
        return (kind, r.rel, r.props, r.clear, sig(r.ak, (*seen, k)) if r.ak >= 0 and r.ak not in seen else None)

    gsig = [(kinds[v], *sorted(sig(k) for k in h.group_roles[j])) for j, v in enumerate(h.svars)]
    h.sym_pairs = [(a, b) for a in range(len(h.svars)) for b in range(a + 1, len(h.svars))
                      if gsig[a] == gsig[b]]  # fmt: skip
    h.role_order = list(range(len(roles)))
    h.cand_items = {c for r in roles for c in r.cands}  # items that some role may be given
    # end: an item standing directly on a candidate of a clear role may be the last thing picked
    h.end_mask = 0
    h.clear_cands = clear_cands = {c for r in roles if r.clear for c in r.cands}
    # goal station assignments, injective and in station order where goal groups look alike
    h.combos = [
        combo
        for combo in itertools.product(*h.scands)
        if len(set(combo)) == len(combo) and not any(combo[a] > combo[b] for a, b in h.sym_pairs)
    ]
    for x in h.items:
        for c in clear_cands:
            if x != c:
                h.end_mask |= 1 << w.bit[("atop", (x, c))]


def free_stations(kinds: dict, cands: dict, station_vars: list, loc: dict, atop: dict, stations: list) -> dict:
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
