"""Robotouille's domain file, read into typed records: predicates, action schemas, special effects.

Nothing here knows the cooking rules; they all come from the JSON (`assets/robotouille/domain/robotouille.json`,
Robotouille's own file). What the JSON does not hold (the entity kinds of each object type, Robotouille's
`object_enums.py`) is listed in `KINDS`.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

# Entity kinds per object type (Robotouille `object_enums.py`). A problem file may only name these.
KINDS: dict[str, tuple[str, ...]] = {
    "station": ("board", "stove", "table", "fryer", "sink"),
    "item": ("bottombun", "lettuce", "patty", "topbun", "bread", "cheese", "tomato", "onion", "chicken", "potato"),
    "player": ("robot",),
    "container": ("pot", "bowl"),
    "meal": ("water", "boiling_water", "soup"),
}
KIND_TYPE = {kind: typ for typ, kinds in KINDS.items() for kind in kinds}

SFX_KINDS = ("repetitive", "delayed", "conditional", "creation")


class DomainError(ValueError):
    """A domain file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Predicate:
    name: str
    types: tuple[str, ...]
    descriptors: tuple[str, ...]  # text per argument position, e.g. ("{0} is at {1}", "{1} has {0}")
    order: int  # position in the file: the order of lines in an observation block


@dataclass(frozen=True)
class Literal:
    predicate: str
    params: tuple[str, ...]  # schema parameter names (p1, s1, ...)
    value: bool


@dataclass(frozen=True)
class SpecialEffect:
    kind: str  # one of SFX_KINDS
    param: str
    conditions: tuple[Literal, ...]
    fx: tuple[Literal, ...]
    children: tuple[SpecialEffect, ...]
    created: tuple[str, str, str] | None = None  # creation only: (kind, type, parameter name), e.g. water/meal/m1


@dataclass(frozen=True)
class ActionSchema:
    name: str
    params: tuple[str, ...]  # in order of first appearance; the order valid actions are listed by
    param_types: tuple[str, ...]
    precons: tuple[Literal, ...]
    immediate_fx: tuple[Literal, ...]
    sfx: tuple[SpecialEffect, ...]
    template: str  # e.g. "Move {p1} from {s1} to {s2}"


@dataclass(frozen=True)
class Domain:
    name: str
    object_types: tuple[str, ...]
    predicates: dict[str, Predicate]
    actions: tuple[ActionSchema, ...]

    def fluent_predicates(self) -> frozenset[str]:
        """Predicates some effect can change; all others are static (fixed by the problem file)."""
        names: set[str] = set()

        def walk(effects: tuple[SpecialEffect, ...]) -> None:
            for e in effects:
                names.update(lit.predicate for lit in e.fx)
                walk(e.children)

        for a in self.actions:
            names.update(lit.predicate for lit in a.immediate_fx)
            walk(a.sfx)
        return frozenset(names)


def _field(obj: dict, key: str, where: str, src: str, typ: type | tuple[type, ...] = object):
    label = f"{where}.{key}" if where else key
    if not isinstance(obj, dict) or key not in obj:
        raise DomainError(f"{src}: missing field '{label}'")
    value = obj[key]
    if not isinstance(value, typ):
        raise DomainError(f"{src}: field '{label}' has type {type(value).__name__}")
    return value


def _literals(raw: list, where: str, src: str, predicates: dict[str, Predicate]) -> tuple[Literal, ...]:
    out = []
    for k, lit in enumerate(raw):
        w = f"{where}[{k}]"
        name = _field(lit, "predicate", w, src, str)
        if name not in predicates:
            raise DomainError(f"{src}: field '{w}.predicate': unknown predicate '{name}'")
        params = tuple(_field(lit, "params", w, src, list))
        if len(params) != len(predicates[name].types):
            raise DomainError(f"{src}: field '{w}.params': '{name}' takes {len(predicates[name].types)} arguments")
        out.append(Literal(name, params, bool(_field(lit, "is_true", w, src, bool))))
    return tuple(out)


def _special_effects(raw: list, where: str, src: str, predicates: dict[str, Predicate]) -> tuple[SpecialEffect, ...]:
    out = []
    for k, e in enumerate(raw):
        w = f"{where}[{k}]"
        kind = _field(e, "type", w, src, str)
        if kind not in SFX_KINDS:
            raise DomainError(f"{src}: field '{w}.type': unknown special effect '{kind}'")
        created = None
        if kind == "creation":
            obj = _field(e, "created_obj", w, src, dict)
            created = (
                _field(obj, "name", f"{w}.created_obj", src, str),
                _field(obj, "type", f"{w}.created_obj", src, str),
                _field(obj, "param", f"{w}.created_obj", src, str),
            )
        out.append(
            SpecialEffect(
                kind=kind,
                param=_field(e, "param", w, src, str),
                conditions=_literals(e.get("conditions", []), f"{w}.conditions", src, predicates),
                fx=_literals(e.get("fx", []), f"{w}.fx", src, predicates),
                children=_special_effects(e.get("sfx", []), f"{w}.sfx", src, predicates),
                created=created,
            )
        )
    return tuple(out)


def _param_types(
    precons: tuple[Literal, ...], fx: tuple[Literal, ...], sfx: tuple[SpecialEffect, ...], predicates, where, src
) -> dict[str, str]:
    """Each parameter's type, read off the predicate slots it fills (the file gives no parameter list)."""
    types: dict[str, str] = {}
    created: set[str] = set()

    def see(lits: tuple[Literal, ...]) -> None:
        for lit in lits:
            for name, typ in zip(lit.params, predicates[lit.predicate].types, strict=True):
                if types.setdefault(name, typ) != typ:
                    raise DomainError(f"{src}: field '{where}': parameter '{name}' used as {types[name]} and {typ}")

    def walk(effects: tuple[SpecialEffect, ...]) -> None:
        for e in effects:
            if e.created:
                created.add(e.created[2])
            see(e.conditions)
            see(e.fx)
            walk(e.children)

    see(precons)
    see(fx)
    walk(sfx)
    for name in created:
        types.pop(name, None)  # bound when the object is created, not when the action is grounded
    return types


@cache
def load_domain(path: str | Path | None = None) -> Domain:
    """Read a Robotouille domain file (default: the packaged `robotouille.json`)."""
    if path is None:
        src = "robotouille.json"
        text = resources.files("planner_rl").joinpath("assets/robotouille/domain/robotouille.json").read_text()
    else:
        src = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise DomainError(f"{src}: cannot read the domain file ({e.strerror})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise DomainError(f"{src}: not valid JSON ({e})") from None

    predicates: dict[str, Predicate] = {}
    for k, p in enumerate(_field(raw, "predicate_defs", "", src, list)):
        w = f"predicate_defs[{k}]"
        name = _field(p, "name", w, src, str)
        types = tuple(_field(p, "param_types", w, src, list))
        desc = _field(p, "language_descriptors", w, src, dict)
        try:
            descriptors = tuple(desc[str(i)] for i in range(len(types)))
        except KeyError:
            raise DomainError(f"{src}: field '{w}.language_descriptors' lacks a position") from None
        predicates[name] = Predicate(name, types, descriptors, k)

    actions = []
    for k, a in enumerate(_field(raw, "action_defs", "", src, list)):
        w = f"action_defs[{k}]"
        precons = _literals(_field(a, "precons", w, src, list), f"{w}.precons", src, predicates)
        fx = _literals(_field(a, "immediate_fx", w, src, list), f"{w}.immediate_fx", src, predicates)
        sfx = _special_effects(_field(a, "sfx", w, src, list), f"{w}.sfx", src, predicates)
        types = _param_types(precons, fx, sfx, predicates, w, src)
        params = tuple(types)  # dicts keep first-appearance order
        template = _field(a, "language_description", w, src, str)
        unknown = {f for _, f, _, _ in string.Formatter().parse(template) if f} - set(params)
        if unknown:
            raise DomainError(f"{src}: field '{w}.language_description' names unknown parameters {sorted(unknown)}")
        actions.append(
            ActionSchema(
                name=_field(a, "name", w, src, str),
                params=params,
                param_types=tuple(types[p] for p in params),
                precons=precons,
                immediate_fx=fx,
                sfx=sfx,
                template=template,
            )
        )
    object_types = tuple(_field(raw, "object_types", "", src, list))
    return Domain(str(raw.get("name", src)), object_types, predicates, tuple(actions))
