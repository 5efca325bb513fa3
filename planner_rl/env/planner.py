"""Optimal planning in the cooking world: A* with an admissible heuristic, and the DAG of all optimal plans.

`solve` runs A* (ties broken towards deeper nodes), and once the first goal is popped at cost L keeps expanding
every node with f <= L. A state is on an optimal plan iff it reaches, through successors one step deeper, a goal at
depth L; marking those backwards gives, for every state on any optimal plan, its exact cost-to-go and the set of
actions that begin an optimal plan from it.

Canonical expert plan (the method needs a unique one): among all minimal-length plans, the lexicographically
smallest sequence of actions in Robotouille's valid-action order (move < pick-up < place < ... < stack < unstack <
wait, then object order). It is read off the DAG greedily: at each state take the first valid action whose successor
is still on an optimal plan. It depends only on the problem and the state, never on search internals.
"""

from __future__ import annotations

import heapq
import itertools
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
    optimal_actions: list[list[GroundAction]]  # per plan state (goal excluded): every action starting an optimal plan
    expanded: int  # states expanded by the search
    generated: int  # distinct states seen
    stats: dict = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [a.text for a in self.plan]


_heuristics: dict[int, Heuristic] = {}


def heuristic_for(world: World) -> Heuristic:
    h = _heuristics.get(id(world))
    if h is None or h.world is not world:
        h = _heuristics[id(world)] = Heuristic(world)
    return h


def _search(world: World, start: State, full: bool, max_expansions: int):
    """A* from `start` over symmetry classes of states (`World.canonical`).

    Returns (L, g, succ, expanded): g maps class keys to their depth, succ maps each expanded key to its
    (action, successor key) edges; with `full`, every class with f <= L is expanded.
    """
    h = heuristic_for(world)
    key = world.canonical
    k0 = key(start)
    g: dict = {k0: 0}
    rep: dict = {k0: start}  # one state per class
    hval: dict = {k0: h(start)}
    succ: dict = {}
    goals: set = set()
    tie = itertools.count()
    heap = [(hval[k0], 0, next(tie), k0)]
    best = None
    expanded = 0
    while heap:
        f, neg_g, _, k = heapq.heappop(heap)
        if -neg_g != g[k]:
            continue  # stale entry
        if best is not None and f > best:
            break
        s = rep[k]
        if world.is_goal(s):
            goals.add(k)
            if best is None:
                best = -neg_g
                if not full:
                    break
            continue
        expanded += 1
        if expanded > max_expansions:
            raise NoPlanError(f"search gave up after {max_expansions} expansions")
        edges = []
        gs = g[k] + 1
        for a in world.valid_actions(s):
            t = world.step(s, a)
            kt = key(t)
            edges.append((a, kt))
            if gs < g.get(kt, 1 << 30):
                g[kt] = gs
                if kt not in hval:
                    rep[kt] = t
                    hval[kt] = h(t)
                ft = gs + hval[kt]
                if best is None or ft <= best:
                    heapq.heappush(heap, (ft, -gs, next(tie), kt))
        succ[k] = edges
    if best is None:
        raise NoPlanError("the goal is unreachable from this state")
    return best, g, succ, expanded, goals


def solve(world: World, start: State | None = None, max_expansions: int = 2_000_000) -> Solution:
    """The optimal cost, the canonical optimal plan and the optimal action sets along it."""
    start = world.initial_state if start is None else start
    cost, g, succ, expanded, goals = _search(world, start, full=True, max_expansions=max_expansions)
    # Mark classes on optimal plans, deepest first.
    on_plan = {k for k in goals if g[k] == cost}
    for k in sorted(succ, key=lambda k: -g[k]):
        if any(g.get(t) == g[k] + 1 and t in on_plan for _, t in succ[k]):
            on_plan.add(k)
    # Read the canonical plan off the real states: the optimal successors of a state are those whose class is on an
    # optimal plan one step deeper (distances are the same for every member of a class).
    plan, states, optimal = [], [start], []
    s, depth = start, 0
    while depth < cost:
        good = []
        for a in world.valid_actions(s):
            kt = world.canonical(world.step(s, a))
            if kt in on_plan and g[kt] == depth + 1:
                good.append(a)
        optimal.append(good)
        s = world.step(s, good[0])
        plan.append(good[0])
        states.append(s)
        depth += 1
    assert world.is_goal(s), "the canonical plan must end in a goal state"
    return Solution(cost, plan, states, optimal, expanded, len(g), {"on_optimal_plans": len(on_plan)})


def cost_to_go(world: World, state: State, max_expansions: int = 2_000_000) -> int:
    """The optimal number of steps from `state` to the goal (plain A*, no plan enumeration)."""
    return _search(world, state, full=False, max_expansions=max_expansions)[0]


def optimal_actions(world: World, state: State) -> list[GroundAction]:
    """Every valid action at `state` that begins some optimal plan."""
    sol = solve(world, state)
    return sol.optimal_actions[0] if sol.optimal_actions else []
