"""Hand-made problems for the environment tests."""

from collections import deque

from planner_rl.env.domain import load_domain
from planner_rl.env.problem import build_problem
from planner_rl.env.world import State, World

TRIVIAL_GOAL = [{"predicate": "isrobot", "args": ["robot"], "ids": [1]}]


def make_world(stations, items=(), containers=(), meals=(), robot=(0, 1), facing=(0, -1), goal=None) -> World:
    """stations: (kind, x, y); items: (kind, x, y[, level[, predicates]]); containers/meals: (kind, x, y)."""
    raw = {
        "width": 10,
        "height": 3,
        "stations": [{"name": k, "x": x, "y": y} for k, x, y in stations],
        "items": [
            {
                "name": it[0],
                "x": it[1],
                "y": it[2],
                "stack-level": it[3] if len(it) > 3 else 0,
                "predicates": list(it[4]) if len(it) > 4 else [],
            }
            for it in items
        ],
        "players": [{"name": "robot", "x": robot[0], "y": robot[1], "direction": list(facing)}],
        "containers": [{"name": k, "x": x, "y": y} for k, x, y in containers],
        "meals": [{"name": k, "x": x, "y": y} for k, x, y in meals],
        "goal_description": "Test kitchen",
        "goal": goal or TRIVIAL_GOAL,
    }
    return World(build_problem(raw, load_domain(), "test-kitchen"), load_domain())


def act(world: World, state: State, text: str) -> State:
    """Take the valid action with this text (fails the test if it is not valid)."""
    valid = {a.text: a for a in world.valid_actions(state)}
    assert text in valid, f"{text!r} is not valid; valid: {sorted(valid)}"
    return world.step(state, valid[text])


def valid_texts(world: World, state: State) -> list[str]:
    return [a.text for a in world.valid_actions(state)]


def atoms(world: World, state: State) -> set[tuple[str, ...]]:
    return set(world.true_atoms(state))


def distances(world: World, cap: int | None = None) -> dict:
    """Exact cost-to-go of every reachable state (breadth-first, backwards from the goal states); `cap`: the most
    states the test expects to reach (asserted)."""
    preds = {world.initial_state: []}
    queue = deque(preds)
    while queue:
        s = queue.popleft()
        for a in world.valid_actions(s):
            t = world.step(s, a)
            if t not in preds:
                preds[t] = []
                queue.append(t)
            preds[t].append(s)
        assert cap is None or len(preds) <= cap
    dist = {s: 0 for s in preds if world.is_goal(s)}
    queue = deque(dist)
    while queue:
        s = queue.popleft()
        for p in preds[s]:
            if p not in dist:
                dist[p] = dist[s] + 1
                queue.append(p)
    return dist
