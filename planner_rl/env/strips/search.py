"""The optimal expert of a STRIPS world: A* with an admissible heuristic, then bounded searches for the optimal actions.

Same contract as the cooking expert (`planner_rl.env.planner`): the canonical plan is the lexicographically smallest
minimal-length plan in valid-action order, and at each of its states every valid action that begins some optimal
plan is listed (the `optimal_set` reward).

1. A* (with re-opening: LM-cut is admissible but not consistent) finds the optimal cost L = d(start).
2. From a state with d known, an action is optimal iff its successor t has d(t) = d - 1, i.e. iff "is the goal
   reachable from t within d - 1 steps?", a depth-first search bounded by d - 1 that prunes every node whose lower
   bound exceeds its remaining budget. The searches share upper bounds (a goal was reached within so many steps) and
   lower bounds (a search with budget b failed, so d > b), so no (state, budget) is searched twice.

Heuristics (unit costs; negative preconditions are ignored, which only lowers them):
- `lmcut` (default): the landmark-cut heuristic (Helmert & Domshlak 2009); admissible, usually close to the optimum.
- `hmax`: the cost of the most expensive goal fact in the relaxation; admissible and consistent, weaker.
- `blind`: 0 (breadth-first order), for checks.
"""

from __future__ import annotations

import heapq
import itertools

from planner_rl.env.planner import NoPlanError, Solution
from planner_rl.env.strips.world import StripsWorld
from planner_rl.env.world import GroundAction, State

INF = 1 << 30
HEURISTICS = ("lmcut", "hmax", "blind")


class RelaxedTask:
    """The delete relaxation of a world, with an artificial start fact (for actions without preconditions) and an
    artificial goal fact reached by a zero-cost goal action, in plain lists for the heuristics' inner loops."""

    def __init__(self, world: StripsWorld):
        task = world.task
        n = len(task.facts)
        self.start, self.goal_fact, self.n_facts = n, n + 1, n + 2
        self.pre = [list(op.pre) or [self.start] for op in task.operators] + [list(task.goal) or [self.start]]
        self.add = [list(op.add) for op in task.operators] + [[self.goal_fact]]
        self.cost = [1] * len(task.operators) + [0]
        self.pre_of: list[list[int]] = [[] for _ in range(self.n_facts)]
        for k, pre in enumerate(self.pre):
            for f in pre:
                self.pre_of[f].append(k)

    def hmax(self, facts: list[int], cost: list[int]) -> tuple[list[int], list[int]]:
        """(h_max of every fact, each action's precondition choice: a precondition of maximal h_max)."""
        hm = [INF] * self.n_facts
        pcf = [-1] * len(self.pre)
        unsat = [len(p) for p in self.pre]
        heap = [(0, f) for f in (*facts, self.start)]
        for f in (*facts, self.start):
            hm[f] = 0
        pre_of, add = self.pre_of, self.add
        while heap:
            c, f = heapq.heappop(heap)
            if c > hm[f]:
                continue
            for k in pre_of[f]:
                unsat[k] -= 1
                if unsat[k] == 0:  # f is the last precondition to be reached, so a maximal one
                    pcf[k] = f
                    c2 = c + cost[k]
                    for g in add[k]:
                        if c2 < hm[g]:
                            hm[g] = c2
                            heapq.heappush(heap, (c2, g))
        return hm, pcf

    def lmcut(self, facts: list[int]) -> int:
        cost, h = list(self.cost), 0
        while True:
            hm, pcf = self.hmax(facts, cost)
            if hm[self.goal_fact] >= INF:
                return INF
            if hm[self.goal_fact] == 0:
                return h
            # goal zone: facts from which the goal fact is reached along zero-cost justification edges
            zone, stack = {self.goal_fact}, [self.goal_fact]
            producers: list[list[int]] = [[] for _ in range(self.n_facts)]
            for k, p in enumerate(pcf):
                if p >= 0:
                    for g in self.add[k]:
                        producers[g].append(k)
            while stack:
                g = stack.pop()
                for k in producers[g]:
                    if cost[k] == 0 and pcf[k] not in zone:
                        zone.add(pcf[k])
                        stack.append(pcf[k])
            # facts reached from the state without entering the zone; the cut: their actions into the zone
            seen = set(facts) | {self.start}
            stack, cut = list(seen), set()
            while stack:
                f = stack.pop()
                for k in self.pre_of[f]:
                    if pcf[k] != f:
                        continue
                    for g in self.add[k]:
                        if g in zone:
                            cut.add(k)
                        elif g not in seen:
                            seen.add(g)
                            stack.append(g)
            m = min(cost[k] for k in cut)
            h += m
            for k in cut:
                cost[k] -= m


class _Oracle:
    def __init__(self, world: StripsWorld, heuristic: str, max_expansions: int):
        if heuristic not in HEURISTICS:
            raise ValueError(f"unknown heuristic {heuristic!r}; expected one of {HEURISTICS}")
        self.world, self.kind, self.max_expansions = world, heuristic, max_expansions
        self.relaxed = RelaxedTask(world) if heuristic != "blind" else None
        self.h: dict[int, int] = {}
        self.lb: dict[int, int] = {}  # d(s) >= lb
        self.ub: dict[int, int] = {}  # d(s) <= ub
        self.succ: dict[int, list[tuple[GroundAction, State]]] = {}
        self.expanded = 0

    def heuristic(self, s: State) -> int:
        v = self.h.get(s.atoms)
        if v is None:
            if self.relaxed is None:
                v = 0
            else:
                facts = [b for b in range(len(self.world.atoms)) if s.atoms >> b & 1]
                v = self.relaxed.lmcut(facts) if self.kind == "lmcut" else self._hmax(facts)
            self.h[s.atoms] = v
        return v

    def _hmax(self, facts: list[int]) -> int:
        hm, _ = self.relaxed.hmax(facts, self.relaxed.cost)
        return hm[self.relaxed.goal_fact]

    def bound(self, s: State) -> int:
        return max(self.heuristic(s), self.lb.get(s.atoms, 0))

    def successors(self, s: State) -> list[tuple[GroundAction, State]]:
        out = self.succ.get(s.atoms)
        if out is None:
            self.expanded += 1
            if self.expanded > self.max_expansions:
                raise NoPlanError(f"search limit of {self.max_expansions} expansions reached")
            w = self.world
            out = self.succ[s.atoms] = [(a, w.step(s, a)) for a in w.valid_actions(s)]
        return out

    def astar(self, start: State) -> int:
        if self.heuristic(start) >= INF:
            raise NoPlanError("the goal is unreachable even with delete effects ignored")
        g = {start.atoms: 0}
        tie = itertools.count()
        heap = [(self.heuristic(start), 0, next(tie), start)]
        while heap:
            _, neg_g, _, s = heapq.heappop(heap)
            gs = -neg_g
            if gs > g.get(s.atoms, INF):
                continue
            if self.world.is_goal(s):
                return gs
            for _, t in self.successors(s):
                if gs + 1 < g.get(t.atoms, INF):
                    h = self.heuristic(t)
                    if h < INF:
                        g[t.atoms] = gs + 1
                        heapq.heappush(heap, (gs + 1 + h, -(gs + 1), next(tie), t))
        raise NoPlanError("the goal is unreachable from the state")

    def within(self, s: State, budget: int) -> bool:
        """Whether d(s) <= budget."""
        if self.ub.get(s.atoms, INF) <= budget:
            return True
        if self.bound(s) > budget:
            return False
        if self.world.is_goal(s):
            self.ub[s.atoms] = 0
            return True
        for _, t in sorted(self.successors(s), key=lambda at: self.bound(at[1])):
            if self.within(t, budget - 1):
                self.ub[s.atoms] = min(self.ub.get(s.atoms, INF), self.ub[t.atoms] + 1)
                return True
        self.lb[s.atoms] = budget + 1
        return False


def solve(
    world: StripsWorld,
    start: State | None = None,
    heuristic: str = "lmcut",
    optimal_sets: bool = True,
    max_expansions: int = 2_000_000,
) -> Solution:
    """The canonical optimal plan from `start` (default: the initial state) and, with `optimal_sets`, every optimal
    action at each of its states. Raises NoPlanError when the goal cannot be reached (within the limit)."""
    oracle = _Oracle(world, heuristic, max_expansions)
    s = world.initial_state if start is None else start
    d = oracle.astar(s)
    oracle.ub[s.atoms], oracle.lb[s.atoms] = d, d
    plan, states, optimal = [], [s], []
    while d > 0:
        good = []
        for a, t in oracle.successors(s):
            if oracle.within(t, d - 1):
                good.append((a, t))
                if not optimal_sets:
                    break
        if not good:  # cannot happen with an admissible heuristic: d(s) = d means some successor has d - 1
            raise NoPlanError("internal error: no optimal successor")
        optimal.append([a for a, _ in good])
        a, s = good[0]
        plan.append(a)
        states.append(s)
        d -= 1
        oracle.lb[s.atoms] = d
    stats = {"heuristic": heuristic, "evaluated": len(oracle.h)}
    return Solution(len(plan), plan, states, optimal if optimal_sets else None, oracle.expanded, len(oracle.h), stats)
