"""Seeded procedural layouts: the same distribution as Robotouille's `randomize_environment`, not its instances.

Given a problem file and a seed, `randomize_layout` returns a new problem dict in which:
- 1 to `MAX_EXTRA_STATIONS` extra stations of random kind (table, board, stove, fryer, sink) are added (more if the
  items would not fit one per station), and up to as many extra distractor items of random kind as there are
  stations left (a random patty or chicken `iscookable`, a random lettuce, onion or tomato `iscuttable`, as
  Robotouille's generator does);
- every station, item and the robot get random positions: stations on distinct tiles, every item alone on a station
  at stack-level 0 (original stacks are broken up) or, at most one, in the robot's hand;
- the robot stands on a floor tile next to a station and faces it;
- every station can be reached: some floor tile next to it is connected to the robot's tile over free floor tiles.
A draw that breaks a rule is redrawn (Robotouille retries with seed + 1; we draw retries from the string seed
"<seed>/<attempt>" so that neighbouring seeds never collapse onto one layout); the grid grows by one row and column
when a problem does not fit. The goal, goal description and the items' own `predicates` (e.g. `iscooked`) are kept.
A seed always gives the same layout.
"""

from __future__ import annotations

import copy
import random
from collections import deque

from planner_rl.env.problem import ProblemError

MAX_EXTRA_STATIONS = 5
EXTRA_STATION_KINDS = ("table", "board", "stove", "fryer", "sink")
EXTRA_ITEM_KINDS = ("bottombun", "lettuce", "patty", "topbun", "bread", "cheese", "tomato", "onion", "chicken")
EXTRA_ITEM_PREDICATES = {"patty": ["iscookable"], "chicken": ["iscookable"], "lettuce": ["iscuttable"],
                         "onion": ["iscuttable"], "tomato": ["iscuttable"]}  # fmt: skip
HELD_PROBABILITY = 0.1  # chance that one item starts in the robot's hand
ATTEMPTS_PER_GRID = 50
NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def randomize_layout(raw: dict, seed: int, source: str = "<problem>") -> dict:
    """A randomised copy of the problem dict `raw` (see the module docstring)."""
    for key in ("stations", "items", "players"):
        if not isinstance(raw.get(key), list):
            raise ProblemError(f"{source}: field '{key}' must be a list to randomise the layout")
    if len(raw["players"]) != 1:
        raise ProblemError(f"{source}: layouts are randomised for one player, found {len(raw['players'])}")
    if raw.get("containers") or raw.get("meals"):
        raise ProblemError(f"{source}: layouts with containers or meals are not randomised (synchronous set only)")
    width, height = int(raw.get("width", 5)), int(raw.get("height", 5))
    attempt = 0
    while True:
        for _ in range(ATTEMPTS_PER_GRID):
            out = _draw(raw, random.Random(seed if attempt == 0 else f"{seed}/{attempt}"), width, height)
            attempt += 1
            if out is not None:
                return out
        width, height = width + 1, height + 1


def _draw(raw: dict, rng: random.Random, width: int, height: int) -> dict | None:
    stations = [{k: v for k, v in s.items() if k not in ("x", "y")} for s in raw["stations"]]
    items = [{k: v for k, v in i.items() if k not in ("x", "y", "stack-level")} for i in raw["items"]]
    # Enough extra stations for every original item to stand alone, then distractors only where stations are left.
    n_extra = rng.randint(max(1, len(items) - len(stations)), max(MAX_EXTRA_STATIONS, len(items) - len(stations)))
    stations += [{"name": rng.choice(EXTRA_STATION_KINDS)} for _ in range(n_extra)]
    for _ in range(rng.randint(0, min(n_extra, len(stations) - len(items)))):
        kind = rng.choice(EXTRA_ITEM_KINDS)
        items.append({"name": kind, **({"predicates": list(p)} if (p := EXTRA_ITEM_PREDICATES.get(kind)) else {})})
    held = rng.random() < HELD_PROBABILITY
    if len(items) - held > len(stations) or len(stations) + 1 > width * height:
        return None

    tiles = [(x, y) for x in range(width) for y in range(height)]
    rng.shuffle(tiles)
    station_tiles, floor = tiles[: len(stations)], set(tiles[len(stations) :])
    # The robot: a floor tile next to a station, facing it.
    spots = [(f, (dx, dy)) for f in sorted(floor) for dx, dy in NEIGHBOURS if (f[0] + dx, f[1] + dy) in station_tiles]
    if not spots:
        return None
    robot, facing = rng.choice(spots)
    # Every station reachable: BFS over floor tiles from the robot.
    seen, todo = {robot}, deque([robot])
    while todo:
        x, y = todo.popleft()
        for dx, dy in NEIGHBOURS:
            nxt = (x + dx, y + dy)
            if nxt in floor and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for sx, sy in station_tiles:
        if not any((sx + dx, sy + dy) in seen for dx, dy in NEIGHBOURS):
            return None

    for s, (x, y) in zip(stations, station_tiles, strict=True):
        s["x"], s["y"] = x, y
    order = list(range(len(items)))
    rng.shuffle(order)
    slots = rng.sample(station_tiles, len(items) - held)
    if held:
        slots.append(robot)
    for k, (x, y) in zip(order, slots, strict=True):
        items[k].update(x=x, y=y)
        items[k]["stack-level"] = 0
    player = {**raw["players"][0], "x": robot[0], "y": robot[1], "direction": list(facing)}
    out = copy.deepcopy({k: v for k, v in raw.items() if k not in ("stations", "items", "players")})
    out.update(width=width, height=height, stations=stations, items=items, players=[player])
    return out
