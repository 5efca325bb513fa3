"""Read a typed STRIPS PDDL domain and problem (the `pddl` package parses them) and ground them.

    task = load_task("domain.pddl", "problem.pddl")
    task.facts, task.operators, task.init, task.goal

What is accepted: `:strips`, `:typing`, `:negative-preconditions` and `:equality` (a type hierarchy, domain
constants, conjunctions of literals in preconditions, effects and the goal; `=` and `(not (= ...))` between
parameters). Anything else (disjunctions, quantifiers, conditional or numeric effects, derived predicates) raises
`PDDLTaskError` naming the file and the field. Every order is deterministic whatever the hash seed, because the
parser keeps sets: objects in natural name order (`b2` before `b10`), action schemas by name, parameters in their
declared order, facts in predicate-name then argument order.

Grounding is by backtracking over each schema's parameters, one at a time, checking every static literal (a
predicate no action changes, `=`) as soon as its arguments are bound, so the product of the parameters' domains is
never built (the Robotouille export's `achieve-goal` has six item parameters). Operators whose static preconditions
fail in the initial state are dropped; static facts stay in the state (the observation shows them) but cost nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_REQUIREMENTS = {"strips", "typing", "negative-preconditions", "equality"}
_EXPLICIT_OBJECT = re.compile(r"\s-\s*object(?=[\s)])", re.IGNORECASE)


class PDDLTaskError(ValueError):
    """A domain or problem file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Operator:
    """One ground action: `name` is the schema's, `args` the objects in parameter order; facts as indices."""

    name: str
    args: tuple[str, ...]
    pre: tuple[int, ...]  # facts that must hold
    pre_neg: tuple[int, ...]  # facts that must not hold
    add: tuple[int, ...]
    delete: tuple[int, ...]

    @property
    def pddl(self) -> str:
        return f"({' '.join((self.name, *self.args))})"


@dataclass(frozen=True)
class StripsTask:
    domain_name: str
    problem_name: str
    source: str  # "domain.pddl + problem.pddl", for messages
    objects: tuple[tuple[str, str], ...]  # (name, type) in natural name order
    facts: tuple[tuple[str, tuple[str, ...]], ...]  # (predicate, args), sorted
    operators: tuple[Operator, ...]  # schemas by name, then backtracking order of the parameters
    init: frozenset[int]
    goal: tuple[int, ...]  # facts that must hold
    goal_neg: tuple[int, ...]  # facts that must not hold


def natural_key(name: str) -> tuple:
    """`b2` < `b10`: digit runs compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


@functools.cache
def _parser(kind: str):
    """The package's parser for `kind` (building one compiles its grammar: a third of a second)."""
    from pddl.parser.domain import DomainParser
    from pddl.parser.problem import ProblemParser

    return DomainParser() if kind == "domain" else ProblemParser()


@functools.lru_cache(maxsize=16)
def _parse(text: str, src: str, kind: str):
    from lark.exceptions import LarkError
    from pddl.exceptions import PDDLError

    # `object` is PDDL's root type, but the package refuses it where it is written out (`?x - object`) unless a
    # domain declares it; an untyped name means the same, so the explicit form is dropped first.
    text = _EXPLICIT_OBJECT.sub(" ", text)
    try:
        return _parser(kind)(text)
    except (LarkError, PDDLError, ValueError, TypeError, AssertionError) as e:
        first = str(e).strip().split("\n")[0]
        raise PDDLTaskError(f"{src}: not a valid PDDL {kind}: {first}") from None


def read_text(path: str | Path, kind: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise PDDLTaskError(f"{path}: no such {kind} file")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PDDLTaskError(f"{path}: cannot read the {kind} file: {e}") from None


def _literals(formula, where: str, src: Path) -> list[tuple[bool, str, tuple[str, ...]]]:
    """A conjunction of literals as (positive, predicate or '=', argument names); anything else is refused."""
    from pddl.logic.base import And, Not
    from pddl.logic.predicates import EqualTo, Predicate

    if formula is None:
        return []
    parts = formula.operands if isinstance(formula, And) else (formula,)
    out = []
    for f in parts:
        positive = not isinstance(f, Not)
        atom = f if positive else f.argument
        if isinstance(atom, EqualTo):
            out.append((positive, "=", (atom.left.name, atom.right.name)))
        elif isinstance(atom, Predicate):
            out.append((positive, atom.name, tuple(t.name for t in atom.terms)))
        else:
            raise PDDLTaskError(f"{src}: field '{where}': only a conjunction of literals is supported, got {f}")
    return out


def _check_requirements(domain, src: Path) -> None:
    names = {str(r).lstrip(":") for r in domain.requirements}
    extra = sorted(names - SUPPORTED_REQUIREMENTS)
    if extra:
        raise PDDLTaskError(
            f"{src}: field ':requirements': {', '.join(':' + r for r in extra)} not supported "
            f"(typed STRIPS only: {', '.join(':' + r for r in sorted(SUPPORTED_REQUIREMENTS))})"
        )


def _type_closure(domain) -> dict[str, set[str]]:
    """type -> itself and its ancestors (`object` included)."""
    parent = {str(t): (str(p) if p else "object") for t, p in domain.types.items()}
    out = {}
    for t in [*parent, "object"]:
        seen, cur = set(), t
        while cur not in seen:
            seen.add(cur)
            cur = parent.get(cur, "object")
        out[t] = seen
    return out


def _objects(domain, problem, closure, src: Path) -> list[tuple[str, str]]:
    out = {}
    for o in [*domain.constants, *problem.objects]:
        tags = sorted(o.type_tags) or ["object"]
        if len(tags) > 1:
            raise PDDLTaskError(f"{src}: field ':objects': {o.name} has several types ({' '.join(tags)})")
        if tags[0] not in closure:
            raise PDDLTaskError(f"{src}: field ':objects': {o.name} has undeclared type {tags[0]}")
        out[o.name] = tags[0]
    return sorted(out.items(), key=lambda kv: natural_key(kv[0]))


def load_task(domain_path: str | Path, problem_path: str | Path) -> StripsTask:
    """Parse, check and ground a domain file and a problem file (`PDDLTaskError` names the file and the field)."""
    return parse_task(read_text(domain_path, "domain"), read_text(problem_path, "problem"), domain_path, problem_path)


def parse_task(domain_text: str, problem_text: str, dpath: str | Path, ppath: str | Path) -> StripsTask:
    """`load_task` on texts; `dpath` and `ppath` name them in messages."""
    dpath, ppath = Path(dpath), Path(ppath)
    domain, problem = _parse(domain_text, str(dpath), "domain"), _parse(problem_text, str(ppath), "problem")
    _check_requirements(domain, dpath)
    if problem.domain_name != domain.name:
        raise PDDLTaskError(f"{ppath}: field ':domain': '{problem.domain_name}', but {dpath} defines '{domain.name}'")
    closure = _type_closure(domain)
    objects = _objects(domain, problem, closure, ppath)
    of_type: dict[str, list[str]] = {}
    for name, typ in objects:
        for t in closure[typ]:
            of_type.setdefault(t, []).append(name)
    arity = {p.name: len(p.terms) for p in domain.predicates}
    known = {name for name, _ in objects}

    def checked(lits, where: str, src: Path, params: set[str] | None = None):
        for _, pred, args in lits:
            if pred != "=" and arity.get(pred) != len(args):
                raise PDDLTaskError(f"{src}: field '{where}': unknown predicate or wrong arity: ({pred} ...)")
            for a in args:
                if a not in known and (params is None or a not in params):
                    raise PDDLTaskError(f"{src}: field '{where}': unknown object or parameter '{a}'")
        return lits

    init = checked([(True, a.name, tuple(t.name for t in a.terms)) for a in problem.init], ":init", ppath)
    goal = checked(_literals(problem.goal, ":goal", ppath), ":goal", ppath)
    schemas = []
    for act in sorted(domain.actions, key=lambda a: a.name):
        params = [(v.name, (sorted(v.type_tags) or ["object"])[0]) for v in act.parameters]
        names = {p for p, _ in params}
        pre = checked(_literals(act.precondition, f"{act.name}.precondition", dpath), f"{act.name}", dpath, names)
        eff = checked(_literals(act.effect, f"{act.name}.effect", dpath), f"{act.name}.effect", dpath, names)
        if any(pred == "=" for _, pred, _ in eff):
            raise PDDLTaskError(f"{dpath}: field '{act.name}.effect': '=' cannot be an effect")
        schemas.append((act.name, params, pre, eff))
    return _ground(domain.name, problem.name, f"{dpath} + {ppath}", objects, of_type, init, goal, schemas)


def _ground(dname, pname, source, objects, of_type, init, goal, schemas) -> StripsTask:
    fluent = {pred for _, _, _, eff in schemas for _, pred, _ in eff}
    init_atoms = {(p, a) for _, p, a in init}
    operators_raw = []
    for name, params, pre, eff in schemas:
        static = [lit for lit in pre if lit[1] == "=" or lit[1] not in fluent]
        dynamic = [lit for lit in pre if lit not in static]
        index = {p: k for k, (p, _) in enumerate(params)}
        # a static literal is checked at the first parameter position where all its arguments are bound
        at: dict[int, list] = {}
        for lit in static:
            at.setdefault(max((index[a] for a in lit[2] if a in index), default=-1), []).append(lit)
        if any(not _static_holds(lit, {}, init_atoms) for lit in at.get(-1, [])):
            continue
        for bind in _bindings(params, of_type, at, init_atoms):
            operators_raw.append((name, tuple(bind[p] for p, _ in params), dynamic, eff, bind))
    atoms = set(init_atoms)
    for _, _, dyn, eff, bind in operators_raw:
        atoms.update((p, tuple(bind.get(a, a) for a in args)) for _, p, args in [*dyn, *eff] if p != "=")
    atoms.update((p, a) for _, p, a in goal)
    facts = sorted(atoms, key=lambda f: (f[0], tuple(map(natural_key, f[1]))))
    fid = {f: k for k, f in enumerate(facts)}
    operators = []
    for name, args, dyn, eff, bind in operators_raw:

        def ids(lits, positive, bind=bind):
            return tuple(sorted({fid[(p, tuple(bind.get(a, a) for a in xs))] for v, p, xs in lits if v == positive}))

        add, delete = ids(eff, True), ids(eff, False)
        operators.append(
            Operator(name, args, ids(dyn, True), ids(dyn, False), add, tuple(sorted(set(delete) - set(add))))
        )
    return StripsTask(
        dname, pname, source, tuple(objects), tuple(facts), tuple(operators), frozenset(fid[a] for a in init_atoms),
        tuple(sorted(fid[(p, a)] for v, p, a in goal if v)), tuple(sorted(fid[(p, a)] for v, p, a in goal if not v)),
    )  # fmt: skip


def _static_holds(lit, bind: dict[str, str], init_atoms: set) -> bool:
    positive, pred, args = lit
    vals = tuple(bind.get(a, a) for a in args)
    holds = (vals[0] == vals[1]) if pred == "=" else (pred, vals) in init_atoms
    return holds == positive


def _bindings(params, of_type, at, init_atoms):
    """Every binding of the parameters whose static literals hold, in declared-parameter, natural-object order."""
    bind: dict[str, str] = {}

    def rec(k: int):
        if k == len(params):
            yield dict(bind)
            return
        name, typ = params[k]
        for obj in of_type.get(typ, []):
            bind[name] = obj
            if all(_static_holds(lit, bind, init_atoms) for lit in at.get(k, [])):
                yield from rec(k + 1)
        bind.pop(name, None)

    yield from rec(0)
