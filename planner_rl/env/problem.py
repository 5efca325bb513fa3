"""Robotouille problem (environment) files: validation, object naming and the initial state.

A problem file lists stations, items, players and optionally containers and meals on a grid, a goal over entity
kinds with numeric IDs, and a goal description. The rules for turning it into objects and true atoms are
Robotouille's (`builder.py`, `env.py`): each entity list sorted by (x, y); names are kind + 1-based index per kind;
object order is stations, items, players, containers, meals; a player is at the station it faces; items on a
station's tile form a stack ordered by `stack-level`; an item or container on a player's tile is held.

A *wildcard* entity, named by its type (`"station"`, `"item"`, ...) instead of a kind, gets a random kind of that
type, as Robotouille's `builder.load_environment` gives it: one `random.choice` over the type's kinds (in
`KINDS` order, Robotouille's enum order) per wildcard, type by type (stations, items, players, containers, meals),
each list sorted by (x, y). Robotouille draws from Python's unseeded global generator, so its kinds change from
run to run; we draw from `random.Random(0)`, which gives what Robotouille gives after `random.seed(0)`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from planner_rl.env.domain import KIND_TYPE, KINDS, Domain

ENTITY_LISTS = (("stations", "station"), ("items", "item"), ("players", "player"), ("containers", "container"),
                ("meals", "meal"))  # fmt: skip
OPTIONAL_LISTS = ("items", "containers", "meals")  # Robotouille reads these with .get(): absent = none
WILDCARD_SEED = 0  # the draw of wildcard kinds (module docstring)


class ProblemError(ValueError):
    """A problem file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Obj:
    name: str  # e.g. "table1"
    kind: str  # e.g. "table"
    type: str  # station / item / player / container / meal
    uid: str | None = None  # the file's optional string "id", which goal literals may name


@dataclass(frozen=True)
class GoalLiteral:
    predicate: str
    args: tuple[str, ...]  # goal variables: "#3" for numeric ID 3, "@name" for a string ID
    kinds: tuple[str, ...]


@dataclass
class Problem:
    source: str
    objects: list[Obj]
    atoms: set[tuple[str, ...]]  # true atoms, e.g. ("item_on", "bread1", "table2")
    goal: list[GoalLiteral]
    var_kinds: dict[str, str]  # goal variable -> the kind its objects are drawn from
    goal_description: str
    width: int = 0
    height: int = 0
    raw: dict = field(default_factory=dict, repr=False)
    task: str = ""  # the task's name (`double_cheeseburger`) when loaded from a task file (env/tasks.py), else ""


def read_problem_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ProblemError(f"{path}: no such problem file") from None
    except json.JSONDecodeError as e:
        raise ProblemError(f"{path}: not valid JSON ({e})") from None


def _get(obj, key: str, where: str, src: str, typ, optional: bool = False, default=None):
    if not isinstance(obj, dict):
        raise ProblemError(f"{src}: field '{where}' must be an object")
    if key not in obj:
        if optional:
            return default
        raise ProblemError(f"{src}: missing field '{where}.{key}'" if where else f"{src}: missing field '{key}'")
    value = obj[key]
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        label = f"{where}.{key}" if where else key
        raise ProblemError(f"{src}: field '{label}' has type {type(value).__name__}, expected {typ.__name__}")
    return value


def build_problem(raw: dict, domain: Domain, source: str = "<problem>") -> Problem:
    """Validate a problem dict and build its objects, initial atoms and goal."""
    src = source
    if not isinstance(raw, dict):
        raise ProblemError(f"{src}: a problem file must hold a JSON object")
    width = _get(raw, "width", "", src, int, optional=True, default=0)
    height = _get(raw, "height", "", src, int, optional=True, default=0)

    # --- entities: sort by (x, y), name kind + index, object order = type order ---------------------------
    entities: dict[str, list[tuple[Obj, dict]]] = {}
    wildcards = random.Random(WILDCARD_SEED)
    for key, typ in ENTITY_LISTS:
        rows = _get(raw, key, "", src, list, optional=key in OPTIONAL_LISTS, default=[])
        checked = []
        for k, row in enumerate(rows):
            w = f"{key}[{k}]"
            kind = _get(row, "name", w, src, str)
            if kind not in KINDS[typ] and kind != typ:
                raise ProblemError(
                    f"{src}: field '{w}.name': '{kind}' is not a {typ} kind ({', '.join(KINDS[typ])}) nor the"
                    f" wildcard '{typ}'"
                )
            _get(row, "x", w, src, int)
            _get(row, "y", w, src, int)
            if typ == "item":
                _get(row, "stack-level", w, src, int, optional=True, default=0)
            if typ == "player":
                d = _get(row, "direction", w, src, list)
                if len(d) != 2 or not all(isinstance(v, int) for v in d):
                    raise ProblemError(f"{src}: field '{w}.direction' must be [dx, dy] integers")
            for p in _get(row, "predicates", w, src, list, optional=True, default=[]):
                if not isinstance(p, str) or p not in domain.predicates or domain.predicates[p].types != (typ,):
                    raise ProblemError(f"{src}: field '{w}.predicates': '{p}' is not a one-argument {typ} predicate")
            checked.append((k, row))
        checked.sort(key=lambda kr: (kr[1]["x"], kr[1]["y"]))  # stable: file order breaks ties
        checked = [(k, {**r, "name": wildcards.choice(KINDS[typ])} if r["name"] == typ else r) for k, r in checked]
        counts: dict[str, int] = {}
        entities[typ] = []
        for k, row in checked:
            counts[row["name"]] = counts.get(row["name"], 0) + 1
            uid = row.get("id")
            obj = Obj(f"{row['name']}{counts[row['name']]}", row["name"], typ, None if uid is None else str(uid))
            entities[typ].append((obj, {**row, "_where": f"{key}[{k}]"}))
    objects = [obj for typ in ("station", "item", "player", "container", "meal") for obj, _ in entities[typ]]

    # --- initial atoms ----------------------------------------------------------------------------------------
    atoms: set[tuple[str, ...]] = set()
    for obj, row in (pair for typ in entities for pair in entities[typ]):
        if f"is{obj.kind}" in domain.predicates:
            atoms.add((f"is{obj.kind}", obj.name))
        atoms.update((p, obj.name) for p in row.get("predicates", []))

    station_at = {}
    for obj, row in entities["station"]:
        pos = (row["x"], row["y"])
        if pos in station_at:
            raise ProblemError(f"{src}: field '{row['_where']}': two stations on tile {pos}")
        station_at[pos] = obj
    player_at = {}
    for obj, row in entities["player"]:
        pos = (row["x"], row["y"])
        if pos in station_at:
            raise ProblemError(f"{src}: field '{row['_where']}': player stands on a station tile {pos}")
        facing = (row["x"] + row["direction"][0], row["y"] + row["direction"][1])
        if facing not in station_at:
            raise ProblemError(f"{src}: field '{row['_where']}.direction': player faces {facing}, not a station")
        atoms.add(("loc", obj.name, station_at[facing].name))
        player_at[pos] = obj
    occupied = {a[2] for a in atoms if a[0] == "loc"}
    atoms.update(("vacant", s.name) for s, _ in entities["station"] if s.name not in occupied)

    stacks: dict[tuple[int, int], list[tuple[int, Obj]]] = {}
    held: dict[str, Obj] = {}
    for obj, row in entities["item"]:
        pos = (row["x"], row["y"])
        if pos in player_at:
            if player_at[pos].name in held:
                raise ProblemError(f"{src}: field '{row['_where']}': player already holds an item at {pos}")
            held[player_at[pos].name] = obj
            atoms.add(("has_item", player_at[pos].name, obj.name))
        elif pos in station_at:
            stacks.setdefault(pos, []).append((row.get("stack-level", 0), obj))
        else:
            raise ProblemError(f"{src}: field '{row['_where']}': item at {pos} is on neither a station nor a player")
    for pos, stack in stacks.items():
        stack.sort(key=lambda lo: lo[0])
        levels = [lv for lv, _ in stack]
        if len(set(levels)) != len(levels):
            raise ProblemError(f"{src}: field 'items': two items share stack-level on tile {pos}")
        station = station_at[pos].name
        for i, (_, item) in enumerate(stack):
            atoms.add(("item_at", item.name, station))
            atoms.add(("item_on", item.name, station) if i == 0 else ("atop", item.name, stack[i - 1][1].name))
        atoms.add(("clear", stack[-1][1].name))

    container_pos = {}
    for obj, row in entities["container"]:
        pos = (row["x"], row["y"])
        container_pos[pos] = obj
        if pos in player_at:
            if player_at[pos].name in held:
                raise ProblemError(f"{src}: field '{row['_where']}': player already holds something at {pos}")
            held[player_at[pos].name] = obj
            atoms.add(("has_container", player_at[pos].name, obj.name))
        elif pos in station_at:
            if pos in stacks:
                raise ProblemError(f"{src}: field '{row['_where']}': container and items share station tile {pos}")
            atoms.add(("container_at", obj.name, station_at[pos].name))
        else:
            raise ProblemError(
                f"{src}: field '{row['_where']}': container at {pos} is on neither a station nor a player"
            )
    filled = set()
    for obj, row in entities["meal"]:
        pos = (row["x"], row["y"])
        if pos not in container_pos:
            raise ProblemError(f"{src}: field '{row['_where']}': meal at {pos} is not in a container")
        if container_pos[pos].name in filled:
            raise ProblemError(f"{src}: field '{row['_where']}': two meals in one container at {pos}")
        filled.add(container_pos[pos].name)
        atoms.add(("in", obj.name, container_pos[pos].name))
    atoms.update(("container_empty", c.name) for c, _ in entities["container"] if c.name not in filled)
    atoms.update(("nothing", p.name) for p, _ in entities["player"] if p.name not in held)
    busy = {station_at[pos].name for pos in stacks} | {
        station_at[pos].name for pos in container_pos if pos in station_at
    }
    atoms.update(("station_empty", s.name) for s, _ in entities["station"] if s.name not in busy)
    atoms = {a for a in atoms if a[0] in domain.predicates}

    # --- goal: literals over kinds; numeric IDs are variables shared across kinds ------------------------------
    goal, var_kinds = [], {}
    uids = {o.uid for o in objects if o.uid is not None}
    for k, lit in enumerate(_get(raw, "goal", "", src, list)):
        w = f"goal[{k}]"
        pred = _get(lit, "predicate", w, src, str)
        if pred not in domain.predicates:
            raise ProblemError(f"{src}: field '{w}.predicate': unknown predicate '{pred}'")
        kinds = tuple(_get(lit, "args", w, src, list))
        ids = _get(lit, "ids", w, src, list)
        if len(kinds) != len(domain.predicates[pred].types) or len(ids) != len(kinds):
            raise ProblemError(f"{src}: field '{w}': '{pred}' takes {len(domain.predicates[pred].types)} args and ids")
        args = []
        for kind, typ, ident in zip(kinds, domain.predicates[pred].types, ids, strict=True):
            if not isinstance(kind, str):
                raise ProblemError(f"{src}: field '{w}.args': {kind!r} is not a kind name")
            kind_type = KIND_TYPE.get(kind, kind if kind in KINDS else None)
            if kind_type != typ:
                raise ProblemError(f"{src}: field '{w}.args': '{kind}' is not a {typ} kind for '{pred}'")
            if (isinstance(ident, int) and not isinstance(ident, bool)) or (isinstance(ident, str) and ident.isdigit()):
                if kind in KINDS:
                    raise ProblemError(
                        f"{src}: field '{w}.ids': the wildcard kind '{kind}' takes a string ID (an entity's 'id');"
                        f" with the number {ident!r} Robotouille's goal names no object and can never hold"
                    )
                var = f"#{int(ident)}"
                var_kinds.setdefault(var, kind)  # Robotouille looks IDs up by the ID alone: the first kind wins
            elif isinstance(ident, str) and ident in uids:
                var = f"@{ident}"
                var_kinds[var] = kind
            else:
                raise ProblemError(f"{src}: field '{w}.ids': {ident!r} is neither a number nor an entity id")
            args.append(var)
        goal.append(GoalLiteral(pred, tuple(args), kinds))
    if not goal:
        raise ProblemError(f"{src}: field 'goal' is empty")
    description = _get(raw, "goal_description", "", src, str)
    return Problem(src, objects, atoms, goal, var_kinds, description, width, height, raw)
