"""The soup goals' forced actions (`addedto`, `in` a bowl, `isboiling`), added to the item bound of
`heuristic.py`."""

from __future__ import annotations

from planner_rl.env.world import State, World, goal_candidates


class Soup:
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

    def __init__(self, h):  # h: the Heuristic
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
