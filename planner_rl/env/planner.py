"""Optimal planning in the cooking world: A* for the optimal cost, then bounded searches for the optimal actions.

Canonical expert plan (the method needs a unique one): among all minimal-length plans, the lexicographically
smallest sequence of actions in Robotouille's valid-action order (move < pick-up < place < ... < stack < unstack <
wait, then object order). It depends only on the problem and the state, never on search internals.

How it is computed, exactly:
1. A* from the start over symmetry classes of states (`World.canonical`: members of a class have the same
   cost-to-go) with the admissible heuristic of `heuristic.py` finds the optimal cost L = d(start).
2. Walking from the start with d = d(s) known exactly, an action a begins an optimal plan iff its successor t has
   d(t) = d - 1; since d(t) >= d - 1 always holds, that is the yes/no question "is the goal reachable from t within
   d - 1 steps?", answered by a depth-first search bounded by d - 1 that prunes every node whose lower bound exceeds
   its remaining budget. Every valid action of s is tested, which gives the set of optimal actions; the first one
   in valid-action order is the canonical step. The walk then continues from its successor, whose cost-to-go is
   d - 1. For the plan alone (`solve(..., optimal_sets=False)`) the test stops at the first action that passes.
The bounded searches share what they learn: upper bounds (a goal was reached within so many steps, by a search or
along the path A* found), lower bounds (a search with budget b from a node failed, so its cost-to-go exceeds b; and
d(n) >= L - g(n) for every node A* saw at depth g(n)), the successor lists and the class of every state seen.
Lower bounds only ever prune, and upper bounds only ever confirm, so the answers are exact whatever the heuristic's
slack; only the work depends on it.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from planner_rl.env.heuristic import Heuristic
from planner_rl.env.world import GroundAction, State, World


class NoPlanError(RuntimeError):
    """The goal cannot be reached from the state (within the search limit)."""


@dataclass
class Solution:
    cost: int  # optimal number of steps from the start state
    plan: list[GroundAction]  # the canonical optimal plan
    states: list[State]  # states along the plan, start first, goal last (len = cost + 1)
    # per plan state (goal excluded): every action starting an optimal plan; None when solved with optimal_sets=False
    optimal_actions: list[list[GroundAction]] | None
    expanded: int  # states expanded (successors generated) by all searches
    generated: int  # distinct states (symmetry classes) seen
    stats: dict = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [a.text for a in self.plan]


# One heuristic per world (its cache of configuration values serves every search on that world), freed with it.
_heuristics: weakref.WeakKeyDictionary[World, Heuristic] = weakref.WeakKeyDictionary()


def heuristic_for(world: World) -> Heuristic:
    h = _heuristics.get(world)
    if h is None:
        h = _heuristics[world] = Heuristic(world)
    return h


INF = 1 << 30
FEW_COLLECTIONS = 50_000  # gen-0 threshold during a search (Python's default: 700)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's gen-0 threshold for the duration (restored after). A search allocates millions of
    small objects that live on in its tables and makes no reference cycles, so the collector's passes find nothing
    and only walk them again and again: a quarter of a task-9 solve's time at the default threshold."""
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], FEW_COLLECTIONS), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class _Oracle:
    """Exact questions about cost-to-go, with memory shared between searches (keys are symmetry classes)."""

    def __init__(self, world: World, max_expansions: int):
        self.world = world
        self.heuristic = heuristic_for(world)
        self.keys: dict[State, object] = {}  # state -> its class (many states are reached from several parents)
        self.max_expansions = max_expansions
        self.hval: dict = {}  # class -> heuristic value of its representative
        self.lb: dict = {}  # class -> proven lower bound on its cost-to-go
        self.ub: dict = {}  # class -> proven upper bound (a goal was reached within it)
        self.succ: dict = {}  # class -> [(action, successor class, successor state)], self-loops left out
        self.expanded_state: dict = {}  # class -> the state whose successors `succ` lists (its representative)
        self.expanded = 0
        self.checks = 0

    def key(self, s: State):
        k = self.keys.get(s)
        if k is None:
            k = self.keys[s] = self.world.canonical(s)
        return k

    def bound(self, k, s: State) -> int:
        """A lower bound on the cost-to-go of class k (representative s)."""
        v = self.hval.get(k)
        if v is None:
            v = self.hval[k] = self.heuristic(s)
        lb = self.lb.get(k, 0)
        return lb if lb > v else v

    def successors(self, k, s: State) -> list[tuple[GroundAction, object, State]]:
        out = self.succ.get(k)
        if out is None:
            self.expanded += 1
            if self.expanded > self.max_expansions:
                raise NoPlanError(f"search gave up after {self.max_expansions} expansions")
            out = []
            world, key = self.world, self.key
            for a in world.valid_actions(s):
                t = world.step(s, a)
                if t == s:
                    continue  # e.g. "Do nothing" with no timer running: never part of a shortest plan
                kt = key(t)
                if kt != k:
                    out.append((a, kt, t))
            self.succ[k] = out
            self.expanded_state[k] = s
        return out

    def is_goal(self, k, s: State) -> bool:
        return self.bound(k, s) == 0 and self.world.is_goal(s)

    # --- A*: the optimal cost from a state ---------------------------------------------------------------------
    def astar(self, start: State) -> int:
        """d(start), by A* with ties broken towards deeper nodes; records the bounds it proves."""
        k0 = self.key(start)
        g: dict = {k0: 0}
        rep: dict = {k0: start}
        parent: dict = {k0: None}
        tie = itertools.count()
        heap = [(self.bound(k0, start), 0, next(tie), k0)]
        while heap:
            _, neg_g, _, k = heapq.heappop(heap)
            if -neg_g != g[k]:
                continue  # stale entry
            s = rep[k]
            if self.is_goal(k, s):
                cost = g[k]
                for n, gn in g.items():  # d(start) <= g(n) + d(n)
                    if cost - gn > self.lb.get(n, 0):
                        self.lb[n] = cost - gn
                n, up = k, 0
                while n is not None:  # the path found: each of its classes reaches the goal in what it has left
                    if up < self.ub.get(n, INF):
                        self.ub[n] = up
                    n, up = parent[n], up + 1
                return cost
            gs = g[k] + 1
            for _, kt, t in self.successors(k, s):
                if gs < g.get(kt, INF):
                    g[kt] = gs
                    parent[kt] = k
                    rep.setdefault(kt, t)
                    heapq.heappush(heap, (gs + self.bound(kt, rep[kt]), -gs, next(tie), kt))
        raise NoPlanError("the goal is unreachable from this state")

    # --- bounded depth-first search ---------------------------------------------------------------------------
    def within(self, k, s: State, budget: int) -> bool:
        """Whether the goal can be reached from class k (representative s) in at most `budget` steps."""
        self.checks += 1
        return self._dfs(k, s, budget)

    def _dfs(self, k, s: State, budget: int) -> bool:
        if self.ub.get(k, INF) <= budget:
            return True
        if self.lb.get(k, 0) > budget or self.bound(k, s) > budget:
            return False
        if self.is_goal(k, s):
            self.ub[k] = 0
            return True
        children = self.successors(k, s)
        ub = self.ub
        for _, kt, _t in children:
            # A child already known to reach the goal within budget - 1 is the one the ranking below would try
            # first (the first such in order): confirm with it, without evaluating the heuristic on its siblings.
            if ub.get(kt, INF) <= budget - 1:
                up = ub[kt] + 1
                if up < ub.get(k, INF):
                    ub[k] = up
                return True
        # A child whose proven lower bound already exceeds budget - 1 is pruned without evaluating the heuristic.
        lb = self.lb
        ranked = sorted(
            (b if b > budget - 1 else self.bound(kt, t), n)
            for n, (_, kt, t) in enumerate(children)
            for b in (lb.get(kt, 0),)
        )
        for b, n in ranked:
            if b > budget - 1:
                break
            _, kt, t = children[n]
            if self._dfs(kt, t, budget - 1):
                up = self.ub[kt] + 1
                if up < self.ub.get(k, INF):
                    self.ub[k] = up
                return True
        if budget + 1 > self.lb.get(k, 0):
            self.lb[k] = budget + 1
        return False

    def optimal_successors(self, s: State, d: int, first: bool = False) -> list[tuple[GroundAction, State]]:
        """The valid actions at s (whose cost-to-go is exactly d > 0) that begin an optimal plan, in valid order;
        with `first`, only the first of them (the canonical step), and the actions after it are not tested."""
        world, key = self.world, self.key
        good = []
        k = key(s)
        if self.expanded_state.get(k) == s:
            # s was expanded itself: its successor list is at hand, in valid order. What it leaves out (self-loops
            # and successors of s's own class, whose cost-to-go is d) never begins an optimal plan.
            steps = self.succ[k]
        else:
            steps = [(a, key(t), t) for a in world.valid_actions(s) for t in (world.step(s, a),)]
        for a, kt, t in steps:
            if d - 1 > self.lb.get(kt, 0):
                self.lb[kt] = d - 1  # d(t) >= d(s) - 1
            if self.within(kt, t, d - 1):
                good.append((a, t))
                if first:
                    break
        return good


def solve(
    world: World, start: State | None = None, max_expansions: int = 2_000_000, optimal_sets: bool = True
) -> Solution:
    """The optimal cost, the canonical optimal plan and the optimal action sets along it.

    With `optimal_sets=False` only the plan is found (the same canonical plan: at each state the first action in
    valid order that begins an optimal plan) and `optimal_actions` is None. The sets are what the single-turn data
    needs; proving the alternative optimal actions is most of a full solve's time on the long tasks (the witness
    paths, docs/environment.md), so planning alone is several times faster there."""
    with fewer_collections():
        return _solve(world, world.initial_state if start is None else start, max_expansions, optimal_sets)


def _solve(world: World, start: State, max_expansions: int, optimal_sets: bool) -> Solution:
    oracle = _Oracle(world, max_expansions)
    cost = oracle.astar(start)
    astar_expanded = oracle.expanded
    plan, states, optimal = [], [start], [] if optimal_sets else None
    s = start
    for d in range(cost, 0, -1):
        good = oracle.optimal_successors(s, d, first=not optimal_sets)
        if not good:
            raise AssertionError("an optimal action must exist at every state of an optimal plan")
        if optimal is not None:
            optimal.append([a for a, _ in good])
        a, s = good[0]
        plan.append(a)
        states.append(s)
    assert world.is_goal(s), "the canonical plan must end in a goal state"
    stats = {"astar_expanded": astar_expanded, "checks": oracle.checks}
    return Solution(cost, plan, states, optimal, oracle.expanded, len(oracle.hval), stats)


def cost_to_go(world: World, state: State, max_expansions: int = 2_000_000) -> int:
    """The optimal number of steps from `state` to the goal (plain A*, no plan enumeration)."""
    with fewer_collections():
        return _Oracle(world, max_expansions).astar(state)


def optimal_actions(world: World, state: State, max_expansions: int = 2_000_000) -> list[GroundAction]:
    """Every valid action at `state` that begins some optimal plan."""
    with fewer_collections():
        oracle = _Oracle(world, max_expansions)
        d = oracle.astar(state)
        return [a for a, _ in oracle.optimal_successors(state, d)] if d else []
