"""An admissible heuristic for the cooking domain: a lower bound on the actions still needed to reach the goal.

Why it is a lower bound (one robot; every count below is of distinct actions):
- picks/puts: an item whose goal position (item_on / item_at / atop) does not hold yet must be put there at least
  once, so picked first unless already held. An item that must be cut (cooked, fried) and is not directly on a board
  (stove, fryer) must first be put on one and, if its goal station is not of that class, picked and put again.
- processing: an item needs 3 - (cuts so far) more cuts; an uncooked (unfried) item with no running timer needs one
  cook (fry) action.
- moves while holding the item: the item only changes station while held, so each leg of its route that changes
  station needs a move while holding it; the hand holds one item, so these moves are not shared between items.
- moves with an empty hand: the first pick (or cut) of an item not in hand happens at its current station, which
  the robot must reach with an empty hand (anything it put there would sit on top of the item), so each such item
  needs its own empty-handed arrival, except one if the robot already stands, empty-handed, at a loaded station.
- the top of a stack: an item the goal wants `clear` at station F, sitting there already, while another item must
  still be put at F, has to leave F (the put would bury it) and come back last: out and back in costs 2 picks,
  2 puts, 2 moves holding it and 2 empty-handed arrivals (it cannot be in hand while the other item is put).
- blockers: an item the goal wants `item_on` a station must be placed there, so the station must be emptied first;
  the single board must be emptied before an item is placed on it to be cut. Items there that no goal variable
  could use each need a pick and an empty-handed arrival.
The goal is a disjunction over injective assignments of objects to variables. The bound takes, for every assignment
of station variables, each item variable's cheapest candidate object independently (dropping injectivity only makes
the bound smaller), then the cheapest station assignment. Goal literals it does not model (containers, meals) count 0.
With more than one robot it returns 0 (breadth-first search).
"""

from __future__ import annotations

import itertools

from planner_rl.env.world import State, World

PROCESSING = {"iscut": "isboard", "iscooked": "isstove", "isfried": "isfryer"}  # goal property -> station class
INF = 10**6
DETOUR = 8  # 2 picks + 2 puts + 2 moves holding the item + 2 empty-handed arrivals


class Heuristic:
    def __init__(self, world: World):
        self.world = w = world
        self.players = w.by_type.get("player", [])
        self.items = w.by_type.get("item", [])
        self.stations = w.by_type.get("station", [])
        self.enabled = len(self.players) == 1 and bool(self.items)
        if not self.enabled:
            return
        p = self.players[0]
        bit = w.bit

        def mask(pairs) -> int:
            out = 0
            for key in pairs:
                if key in bit:
                    out |= 1 << bit[key]
            return out

        self.loc_bits = [(1 << bit[("loc", (p, s))], s) for s in self.stations]
        self.hold_bits = [(1 << bit[("has_item", (p, i))], i) for i in self.items]
        self.hold_mask = mask(("has_item", (p, i)) for i in self.items) | mask(
            ("has_container", (p, c)) for c in w.by_type.get("container", [])
        )
        self.at_mask = {i: mask(("item_at", (i, s)) for s in self.stations) for i in self.items}
        self.station_of_bit = {bit[("item_at", (i, s))]: s for i in self.items for s in self.stations}
        self.on_bit = {(i, s): 1 << bit[("item_on", (i, s))] for i in self.items for s in self.stations}
        self.class_of: dict[str, set[int]] = {}
        for pred, cls in PROCESSING.items():
            self.class_of[pred] = {
                s for s in self.stations if (cls, (s,)) in bit and w.initial_state.atoms >> bit[(cls, (s,))] & 1
            }
        self.prop_bit = {(pred, i): 1 << bit[(pred, (i,))] for pred in PROCESSING for i in self.items}

        # --- goal roles -----------------------------------------------------------------------------------------
        goal, kinds = w.problem.goal, w.problem.var_kinds
        cands = {}
        for var, kind in kinds.items():
            if var.startswith("@"):
                cands[var] = [i for i, o in enumerate(w.objects) if o.uid == var[1:]]
            else:
                cands[var] = [i for i, o in enumerate(w.objects) if o.kind == kind or o.type == kind]
        item_vars = [v for v in kinds if cands[v] and all(w.objects[c].type == "item" for c in cands[v])]
        loc: dict[str, tuple[str, str]] = {}
        props: dict[str, list[str]] = {v: [] for v in item_vars}
        for lit in goal:
            a = lit.args
            if lit.predicate in ("item_on", "item_at") and a[0] in props:
                loc[a[0]] = ("on" if lit.predicate == "item_on" else "at", a[1])
            elif lit.predicate == "atop" and a[0] in props:
                loc.setdefault(a[0], ("atop", a[1]))
            elif lit.predicate in PROCESSING and a[0] in props:
                props[a[0]].append(lit.predicate)
        clear = {lit.args[0] for lit in goal if lit.predicate == "clear"}

        def station_var(v: str, seen=()) -> str | None:
            if v not in loc or v in seen:
                return None
            kind, target = loc[v]
            return target if kind in ("on", "at") else station_var(target, (*seen, v))

        self.roles = []
        for v in item_vars:
            kind, target = loc.get(v, (None, None))
            atop_mask = 0
            if kind == "atop":
                atop_mask = {o: mask(("atop", (o, o2)) for o2 in cands.get(target, [])) for o in cands[v]}
            order = sorted(props[v], key=lambda q: 0 if q == "iscut" else 1)  # cut before frying (fryable-if-cut)
            self.roles.append((v, cands[v], kind, target, atop_mask, order, station_var(v), v in clear))
        self.candidate_set = {o for v in item_vars for o in cands[v]}
        self.station_vars = sorted({r[6] for r in self.roles if r[6] is not None})
        # Per station variable: for each of its roles, the roles that must end below it (clear tops lie above all
        # others at that station; an atop chain lies above its targets).
        self.below: dict[str, list[list[int]]] = {}
        for sv in self.station_vars:
            group = [r for r in self.roles if r[6] == sv]
            pos = {r[0]: k for k, r in enumerate(group)}
            self.below[sv] = []
            for k, r in enumerate(group):
                under = {j for j in range(len(group)) if j != k} if r[7] else set()
                target, seen = r[3] if r[2] == "atop" else None, set()
                while target in pos and target not in seen:
                    seen.add(target)
                    under.add(pos[target])
                    t = group[pos[target]]
                    target = t[3] if t[2] == "atop" else None
                self.below[sv].append(sorted(under))
        self.station_cands = {v: cands[v] for v in self.station_vars}
        boards = self.class_of["iscut"]
        self.single_board = next(iter(boards)) if len(boards) == 1 else None
        self.cut_roles = [r for r in self.roles if "iscut" in r[5]]

    # ----------------------------------------------------------------------------------------------------------
    def __call__(self, state: State) -> int:
        if not self.enabled:
            return 0
        atoms = state.atoms
        robot = next(s for b, s in self.loc_bits if atoms & b)
        held = next((i for b, i in self.hold_bits if atoms & b), None)
        hand_full = bool(atoms & self.hold_mask)
        where: dict[int, int] = {}
        for i in self.items:
            x = atoms & self.at_mask[i]
            if x:
                where[i] = self.station_of_bit[x.bit_length() - 1]
        cuts = {}
        timers = set()
        for eid, counters in state.effects:
            e = self.world.effects[eid]
            if e.kind == "repetitive" and counters[0] > 0:
                cuts[e.obj] = counters[0]
            elif e.kind == "conditional" and e.children:
                timers.add(e.obj)

        def role_cost(role, o: int, f: int | None, busy: bool = False) -> int:
            _, _, kind, _, atop_mask, props, _, _ = role
            is_held = o == held
            src = robot if is_held else where.get(o)
            if src is None:
                return INF  # in no station and not in hand (e.g. added to a pot): cannot be moved any more
            if busy and not is_held and src == f and all(atoms & self.prop_bit[(q, o)] for q in props):
                return DETOUR  # at f, but f must be emptied or filled beneath it first
            on_here = not is_held and bool(atoms & self.on_bit[(o, src)])
            proc, legs = 0, []
            for q in props:
                if atoms & self.prop_bit[(q, o)]:
                    continue
                if q == "iscut":
                    proc += 3 - cuts.get(o, 0)
                elif o not in timers:
                    proc += 1
                cls = self.class_of[q]
                if not cls:
                    return INF
                if not (on_here and src in cls and not legs):
                    legs.append(cls)
            if kind is not None:
                if kind == "on":
                    sat = f is not None and bool(atoms & self.on_bit[(o, f)])
                elif kind == "at":
                    sat = f is not None and where.get(o) == f
                else:
                    sat = bool(atoms & atop_mask[o])
                last = legs[-1] if legs else ({src} if proc else None)
                if (proc and not (f is not None and last is not None and f in last)) or (not proc and not sat):
                    legs.append({f} if f is not None else None)
            n = len(legs)
            picks = max(0, n - (1 if is_held else 0))
            moves, at = 0, {src}
            for dest in legs:
                if dest is not None and at is not None and not at <= dest:
                    moves += 1
                at = dest
            arrival = 1 if not is_held and (n or proc) else 0
            return picks + n + moves + proc + arrival

        # Per station variable and candidate station: the cheapest candidate per role, plus blockers there.
        free_roles = 0
        by_var: dict[str, list] = {v: [] for v in self.station_vars}
        for role in self.roles:
            if role[6] is None:
                free_roles += min(role_cost(role, o, None) for o in role[1])
            else:
                by_var[role[6]].append(role)
        arrivals_possible = not hand_full and any(where.get(i) == robot for i in self.items)

        def blockers_at(f: int) -> set[int]:
            return {i for i, s in where.items() if s == f and i not in self.candidate_set}

        board_block: set[int] = set()
        b = self.single_board
        if b is not None:
            for role in self.cut_roles:
                if any(not atoms & self.prop_bit[("iscut", o)] for o in role[1]) and not any(
                    atoms & self.on_bit[(o, b)] for o in role[1]
                ):
                    board_block = blockers_at(b)
                    break

        table: dict[str, dict[int, tuple[int, set[int]]]] = {}
        for v in self.station_vars:
            table[v] = {}
            for f in self.station_cands[v]:
                group = by_var[v]
                # f must be emptied if no candidate of an item_on role already sits directly on it.
                empty = any(r[2] == "on" and not any(atoms & self.on_bit[(o, f)] for o in r[1]) for r in group)
                costs = [min(role_cost(r, o, f, empty) for o in r[1]) for r in group]
                if not empty:  # an item that must end above one still to be put at f must leave f and come back
                    for _ in group:
                        again = [
                            min(role_cost(r, o, f, True) for o in r[1])
                            if costs[k] < DETOUR and any(costs[b] > 0 for b in self.below[v][k])
                            else costs[k]
                            for k, r in enumerate(group)
                        ]
                        if again == costs:
                            break
                        costs = again
                table[v][f] = (sum(costs), blockers_at(f) if empty else set())
        best = INF
        for combo in itertools.product(*(self.station_cands[v] for v in self.station_vars)):
            if len(set(combo)) != len(combo):
                continue
            cost, block = free_roles, set(board_block)
            for v, f in zip(self.station_vars, combo, strict=True):
                c, bl = table[v][f]
                cost += c
                block |= bl
            cost += 2 * len(block)
            if cost > 0 and arrivals_possible:
                cost -= 1
            if held is not None and held not in self.candidate_set and cost > 0:
                cost += 1  # a held distractor must be put down before anything else is picked or cut
            best = min(best, cost)
        return max(0, best)
