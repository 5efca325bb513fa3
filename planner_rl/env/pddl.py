"""PDDL export of the cooking world's synchronous subset, so any classical planner can solve a problem.

`domain_pddl(world)` and `problem_pddl(world, state)` write typed STRIPS (`:strips :typing`; `:negative-preconditions`
only if a kept schema needed one, which none of Robotouille's does); `write_pddl` writes both files.
`plan_from_pddl(world, lines)` maps a planner's plan back to `World` actions.

Encoding choices (the domain's rules are those of `World`; see ../shared/docs/domain.md sections 1-3):

- Types `station`, `item`, `player`; every predicate of the domain file over these types keeps its name and argument
  order, and every exported action keeps the schema's name (except cut, below) and parameter order, so a plan step
  `(stack robot1 cheese1 bread1 table2)` is the `World` action "Stack cheese1 on top of bread1 using robot1".
- Distinct parameters. Robotouille grounds actions over pairwise-distinct objects only. Parameters of different types
  are distinct by typing; the schemas with two parameters of one type (move: s1 s2; stack, unstack: i1 i2) get a
  static precondition `(different ?x ?y)`, whose facts (every ordered pair of distinct same-type objects) are written
  in the problem's init. This is faithful without relying on state invariants (e.g. that a robot's station is never
  `vacant`) and needs no `:equality`.
- Cut is repetitive: an item becomes `iscut` on the 3rd cut action, the count persisting per item whatever happens in
  between. The count is a fluent: exactly one of `(cuts0 ?i) (cuts1 ?i) (cuts2 ?i)` holds for every cuttable item,
  and cut becomes three actions `cut-stroke1` (cuts0 -> cuts1), `cut-stroke2` (cuts1 -> cuts2) and `cut-stroke3`
  (cuts2 -> cuts0, + iscut), each with cut's preconditions. Cutting an item that is already cut starts a fresh hidden
  count with no visible effect; the cycle models this exactly (the 3rd stroke re-adds `iscut`, a no-op). All three map
  back to the `World` action "Cut {i1} on {s1} using {p1}". The init holds each item's count from the state's
  registered repetitive effects (`World.cut_progress`).
- Delayed effects (cook, fry, fill-pot, boil-water) are not modelled: their schemas have no immediate effect, so they
  are left out, as is `wait` (no precondition, no effect: never on an optimal plan without timers). So is cut's
  conditional "fryable if cut" effect. Leaving them out keeps the optimal plan length exactly when (checked, else
  `PDDLExportError`): the problem has no containers or meals; the state has no running delayed effect (cook or fry
  timer); no exported action reads a predicate those effects change; and no goal literal, over any object that may
  fill its variable, is an atom those effects could change from its current value. Then removing the left-out actions
  from any plan leaves a valid plan reaching the goal, so optimal plans never need them: distractor stoves, fryers,
  sinks and `iscookable` / `iscuttable` / `isfryable` distractor items are exported fine. A goal that needs an item
  cooked (fried) while some candidate item for it is still raw but cookable (fryable) on a stove (fryer) of the problem
  raises the error: modelling timers that tick on every step needs more than STRIPS.
- Goal. Robotouille's goal is a disjunction over injective assignments of objects to the goal's ID variables, which
  STRIPS cannot state. One extra action `achieve-goal` takes the goal variables as typed parameters (`?v3` for ID 3),
  with preconditions the kind of each (`(isbread ?v1)`, none for a wildcard type), the goal literals over them, and
  `(different ?va ?vb)` for every pair of variables that could take the same object; its effect is `(goal-reached)`,
  the problem's goal. A planner's plan is therefore one action longer than the `World` plan:
  `len(pddl_plan) == cost + GOAL_ACTION_OFFSET`. Goal variables naming an entity by string id get a static
  `(goal-object<k> ?x)` predicate true of that entity.
- Everything else is `World`'s semantics, e.g. several robots act one at a time in any order, as in `World`.

API: `domain_pddl(world, state=None)`, `problem_pddl(world, state=None)`, `write_pddl(world, out_dir, state=None)`
(`state` defaults to the initial state; the domain text does not depend on it, only the checks do),
`check_exportable(world, state=None)`, `action_from_pddl(world, step)`, `plan_from_pddl(world, steps)`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from planner_rl.env.domain import ActionSchema
from planner_rl.env.world import CUT_REPETITIONS, GroundAction, State, World, goal_candidates

GOAL_ACTION = "achieve-goal"
GOAL_PREDICATE = "goal-reached"
GOAL_ACTION_OFFSET = 1  # a PDDL plan = the World plan + the final `achieve-goal`
DIFFERENT = "different"
EXPORTED_TYPES = ("station", "item", "player")
STROKE = "{schema}-stroke{k}"  # cut-stroke1, cut-stroke2, cut-stroke3
COUNTER = "{schema}s{k}"  # cuts0, cuts1, cuts2


class PDDLExportError(ValueError):
    """The problem or state needs something the synchronous PDDL export does not model; the message says what."""


@dataclass
class _Op:
    name: str  # PDDL action name
    schema: str  # the World schema it stands for ("" for the goal action)
    params: list[tuple[str, str]]  # (PDDL variable without "?", type)
    pre: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # positive preconditions
    pre_neg: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    add: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    delete: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


@dataclass
class _Export:
    ops: list[_Op]
    predicates: dict[str, tuple[str, ...]]  # name -> argument types (PDDL "object" for `different`)
    counters: dict[str, tuple[str, str, list[str]]]  # schema -> (counted parameter's type, its name, counter preds)
    counted: dict[str, list[int]]  # schema -> objects that can be counted (cut: the cuttable items)
    touched: dict[int, set[bool]]  # atom bit -> values the left-out special effects may give it
    goal_vars: dict[str, str]  # goal variable -> PDDL variable name
    goal_fixed: dict[str, str]  # "@uid" goal variable -> its static predicate
    candidates: dict[str, list[int]]  # goal variable -> objects that may fill it


def _walk_effects(world: World, eid: int):
    yield eid
    for child in world.effects[eid].children:
        yield from _walk_effects(world, child)


def _pddl_var(var: str, k: int) -> str:
    return f"v{var[1:]}" if var.startswith("#") and var[1:].isdigit() else f"u{k}"


def _analyse(world: World) -> _Export:
    """The exported actions and predicates, and the state-independent checks."""
    domain = world.domain
    unsupported = [o.name for o in world.problem.objects if o.type not in EXPORTED_TYPES]
    if unsupported or any(o.type not in EXPORTED_TYPES for o in world.objects):
        raise PDDLExportError(
            f"{world.problem.source}: containers and meals ({', '.join(unsupported)}) need delayed effects "
            "(fill-pot, boil-water) that the synchronous PDDL export does not model"
        )
    present = {o.type for o in world.objects}

    # --- which schemas are kept, and how ----------------------------------------------------------------------------
    ops: list[_Op] = []
    counters: dict[str, tuple[str, str, list[str]]] = {}
    modelled_sfx: dict[str, int] = {}  # schema -> index of its modelled repetitive effect in schema.sfx
    for schema in domain.actions:
        if not set(schema.param_types) <= present:
            continue  # cannot be grounded in this problem
        reps = [k for k, e in enumerate(schema.sfx) if e.kind == "repetitive"]
        if len(reps) > 1 or any(schema.sfx[k].children or schema.sfx[k].conditions for k in reps):
            raise PDDLExportError(f"action schema '{schema.name}': only a plain repetitive effect can be exported")
        if not schema.immediate_fx and not reps:
            continue  # only delayed effects (cook, fry, fill-pot, boil-water) or none at all (wait)
        params = list(zip(schema.params, schema.param_types, strict=True))
        base = _Op(schema.name, schema.name, params)
        for lit in schema.precons:
            (base.pre if lit.value else base.pre_neg).append((lit.predicate, lit.params))
        by_type: dict[str, list[str]] = {}
        for p, t in params:
            by_type.setdefault(t, []).append(p)
        for same in by_type.values():
            base.pre.extend((DIFFERENT, (a, b)) for i, a in enumerate(same) for b in same[i + 1 :])
        for lit in schema.immediate_fx:
            (base.add if lit.value else base.delete).append((lit.predicate, lit.params))
        if not reps:
            ops.append(base)
            continue
        rep = schema.sfx[reps[0]]
        modelled_sfx[schema.name] = reps[0]
        names = [COUNTER.format(schema=schema.name, k=k) for k in range(CUT_REPETITIONS)]
        counters[schema.name] = (dict(params)[rep.param], rep.param, names)
        for k in range(CUT_REPETITIONS):
            nxt = (k + 1) % CUT_REPETITIONS
            op = _Op(
                STROKE.format(schema=schema.name, k=k + 1),
                schema.name,
                params,
                [*base.pre, (names[k], (rep.param,))],
                list(base.pre_neg),
                [*base.add, (names[nxt], (rep.param,))],
                [*base.delete, (names[k], (rep.param,))],
            )
            if nxt == 0:  # the count completes: the effect fires and a later cut starts a fresh count
                for lit in rep.fx:
                    (op.add if lit.value else op.delete).append((lit.predicate, lit.params))
            ops.append(op)

    # --- atoms the left-out special effects may change -------------------------------------------------------------
    touched: dict[int, set[bool]] = {}
    counted: dict[str, list[int]] = {name: [] for name in counters}
    for ga in world.actions:
        skip = modelled_sfx.get(ga.schema)
        for k, eid in enumerate(ga.sfx):
            if k == skip:
                obj = world.effects[eid].obj
                if obj not in counted[ga.schema]:
                    counted[ga.schema].append(obj)
                continue
            for sub in _walk_effects(world, eid):
                e = world.effects[sub]
                if e.created:
                    raise PDDLExportError(f"action '{ga.text}' creates objects, which the PDDL export cannot model")
                for bit, value in e.fx:
                    touched.setdefault(bit, set()).add(value)
                if e.kind == "conditional":  # a failing condition applies the negation of its effects
                    for bit, value in e.fx:
                        touched[bit].add(not value)
    touched_preds = {world.atoms[bit][0] for bit in touched}
    for op in ops:
        reads = {p for p, _ in op.pre + op.pre_neg} & touched_preds
        if reads:
            raise PDDLExportError(
                f"action '{op.name}' reads {', '.join(sorted(reads))}, which delayed effects change; "
                "the synchronous PDDL export does not model them"
            )

    # --- predicates -------------------------------------------------------------------------------------------------
    predicates: dict[str, tuple[str, ...]] = {
        p.name: p.types for p in domain.predicates.values() if set(p.types) <= set(EXPORTED_TYPES)
    }
    for typ, _, names in counters.values():
        predicates.update({n: (typ,) for n in names})
    predicates[DIFFERENT] = ("object", "object")
    predicates[GOAL_PREDICATE] = ()

    # --- goal action ------------------------------------------------------------------------------------------------
    problem = world.problem
    goal_vars, goal_fixed, candidates, var_type = {}, {}, {}, {}
    matched = goal_candidates(problem.goal, problem.var_kinds, world)[0]  # as World's goal matcher
    for k, var in enumerate(problem.var_kinds):
        goal_vars[var] = _pddl_var(var, k)
        if var.startswith("@"):
            candidates[var] = [i for i, o in enumerate(world.objects) if o.uid == var[1:]]
            goal_fixed[var] = f"goal-object{len(goal_fixed) + 1}"
            predicates[goal_fixed[var]] = ("object",)
        else:
            candidates[var] = matched[var]
    for lit in problem.goal:
        for var, typ in zip(lit.args, domain.predicates[lit.predicate].types, strict=True):
            if var_type.setdefault(var, typ) != typ:
                raise PDDLExportError(
                    f"goal variable {var} is used as a {var_type[var]} and as a {typ}: the goal can never hold"
                )
    goal = _Op(GOAL_ACTION, "", [(goal_vars[v], var_type.get(v, "object")) for v in problem.var_kinds])
    for var, kind in problem.var_kinds.items():
        if var in goal_fixed:
            goal.pre.append((goal_fixed[var], (goal_vars[var],)))
        elif kind not in EXPORTED_TYPES:
            if f"is{kind}" not in domain.predicates:
                raise PDDLExportError(f"goal variable {var} has kind '{kind}', which has no identity predicate")
            goal.pre.append((f"is{kind}", (goal_vars[var],)))
    for lit in problem.goal:
        atom = (lit.predicate, tuple(goal_vars[v] for v in lit.args))
        if atom not in goal.pre:
            goal.pre.append(atom)
    variables = list(problem.var_kinds)
    for i, a in enumerate(variables):
        for b in variables[i + 1 :]:
            if var_type.get(a) == var_type.get(b) and set(candidates[a]) & set(candidates[b]):
                goal.pre.append((DIFFERENT, (goal_vars[a], goal_vars[b])))
    goal.add.append((GOAL_PREDICATE, ()))
    ops.append(goal)
    return _Export(ops, predicates, counters, counted, touched, goal_vars, goal_fixed, candidates)


def _check_state(world: World, exp: _Export, state: State) -> None:
    """State-dependent checks: running delayed effects, goal atoms the left-out effects could change."""
    for eid, counters in state.effects:
        for k, sub in enumerate(_walk_effects(world, eid)):
            e = world.effects[sub]
            if e.kind in ("delayed", "creation") and counters[k] != -1:
                target = world.objects[e.obj].name
                raise PDDLExportError(
                    f"the state has a running delayed effect on {target} (timer {counters[k]}): delayed effects "
                    "(cook, fry, fill-pot, boil-water) are not modelled by the synchronous PDDL export"
                )
    for lit in world.problem.goal:
        pools = [exp.candidates[v] for v in lit.args]
        for args in itertools.product(*pools):
            bit = world.bit.get((lit.predicate, args))
            if bit is None or bit not in exp.touched:
                continue
            now = bool(state.atoms >> bit & 1)
            if (not now) in exp.touched[bit]:
                names = ", ".join(world.objects[a].name for a in args)
                actions = ", ".join(sorted({a.schema for a in world.actions if _touches(world, a, bit)}))
                raise PDDLExportError(
                    f"the goal needs {lit.predicate}({', '.join(lit.args)}): {lit.predicate}({names}) is "
                    f"{str(now).lower()} now and the delayed effects of {actions} could make it "
                    f"{str(not now).lower()}; the synchronous PDDL export does not model them"
                )


def _touches(world: World, action: GroundAction, bit: int) -> bool:
    """Whether one of the action's special effects sets the atom (only called for atoms no exported effect sets)."""
    return any(b == bit for eid in action.sfx for sub in _walk_effects(world, eid) for b, _ in world.effects[sub].fx)


def _atom(pred: str, args: tuple[str, ...], var: bool) -> str:
    parts = [pred, *(f"?{a}" if var else a for a in args)]
    return f"({' '.join(parts)})"


def _domain_name(world: World) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", world.domain.name.lower()).strip("-") or "robotouille"


def _problem_name(world: World) -> str:
    stem = Path(world.problem.source.split(" ")[0]).stem
    return "p-" + (re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or "problem")


def check_exportable(world: World, state: State | None = None) -> None:
    """Raise `PDDLExportError` if `world` at `state` (default: the initial state) cannot be exported exactly."""
    _check_state(world, _analyse(world), world.initial_state if state is None else state)


def domain_pddl(world: World, state: State | None = None) -> str:
    """The PDDL domain for `world` (checked against `state`, default the initial state)."""
    exp = _analyse(world)
    _check_state(world, exp, world.initial_state if state is None else state)
    requirements = [":strips", ":typing"]
    if any(op.pre_neg for op in exp.ops):
        requirements.append(":negative-preconditions")
    lines = [f"(define (domain {_domain_name(world)})", f"  (:requirements {' '.join(requirements)})"]
    lines.append(f"  (:types {' '.join(EXPORTED_TYPES)} - object)")
    lines.append("  (:predicates")
    for name, types in exp.predicates.items():
        args = " ".join(f"?x{k} - {t}" for k, t in enumerate(types))
        lines.append(f"    ({name}{' ' + args if args else ''})")
    lines.append("  )")
    for op in exp.ops:
        lines.append(f"  (:action {op.name}")
        lines.append(f"    :parameters ({' '.join(f'?{p} - {t}' for p, t in op.params)})")
        pre = [_atom(p, a, True) for p, a in op.pre] + [f"(not {_atom(p, a, True)})" for p, a in op.pre_neg]
        lines.append(f"    :precondition (and {' '.join(pre)})")
        eff = [_atom(p, a, True) for p, a in op.add] + [f"(not {_atom(p, a, True)})" for p, a in op.delete]
        lines.append(f"    :effect (and {' '.join(eff)}))")
    lines.append(")")
    return "\n".join(lines) + "\n"


def problem_pddl(world: World, state: State | None = None) -> str:
    """The PDDL problem: `world`'s objects, `state` (default the initial state) as init, `(goal-reached)` as goal."""
    state = world.initial_state if state is None else state
    exp = _analyse(world)
    _check_state(world, exp, state)
    lines = [f"(define (problem {_problem_name(world)})", f"  (:domain {_domain_name(world)})", "  (:objects"]
    for typ in EXPORTED_TYPES:
        names = [o.name for o in world.objects if o.type == typ]
        if names:
            lines.append(f"    {' '.join(names)} - {typ}")
    lines.append("  )")
    init = [_atom(name, tuple(args), False) for name, *args in world.true_atoms(state) if name in exp.predicates]
    for typ in EXPORTED_TYPES:
        same = [o.name for o in world.objects if o.type == typ]
        init.extend(_atom(DIFFERENT, (a, b), False) for a in same for b in same if a != b)
    progress: dict[tuple[str, int], int] = {}
    for eid, counters in state.effects:
        e = world.effects[eid]
        if e.kind == "repetitive" and counters[0] != -1:
            for ga in world.actions:  # the schema whose modelled effect this is
                if eid in ga.sfx and ga.schema in exp.counters:
                    progress[(ga.schema, e.obj)] = counters[0]
                    break
    for schema, (_, _, names) in exp.counters.items():
        for obj in exp.counted[schema]:
            count = progress.get((schema, obj), 0) % CUT_REPETITIONS
            init.append(_atom(names[count], (world.objects[obj].name,), False))
    for var, pred in exp.goal_fixed.items():
        init.extend(_atom(pred, (world.objects[o].name,), False) for o in exp.candidates[var])
    lines.append("  (:init")
    lines.extend(f"    {fact}" for fact in init)
    lines.append("  )")
    lines.append(f"  (:goal ({GOAL_PREDICATE}))")
    lines.append(")")
    return "\n".join(lines) + "\n"


def write_pddl(world: World, out_dir: str | Path, state: State | None = None) -> tuple[Path, Path]:
    """Write `domain.pddl` and `problem.pddl` into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    domain_path, problem_path = out / "domain.pddl", out / "problem.pddl"
    domain_text = domain_pddl(world, state)
    problem_text = problem_pddl(world, state)
    domain_path.write_text(domain_text)
    problem_path.write_text(problem_text)
    return domain_path, problem_path


# --- plans back to World actions ------------------------------------------------------------------------------------
def _schema_of(world: World, name: str) -> ActionSchema | None:
    for schema in world.domain.actions:
        if name == schema.name or re.fullmatch(re.escape(STROKE.format(schema=schema.name, k="")) + r"\d+", name):
            return schema
    return None


def action_from_pddl(world: World, step: str) -> GroundAction | None:
    """The `World` action of one plan step like `(cut-stroke2 robot1 lettuce1 board1)`; None for `achieve-goal`."""
    parts = step.strip().strip("()").lower().split()
    if not parts:
        raise ValueError(f"empty plan step {step!r}")
    name, args = parts[0], parts[1:]
    if name == GOAL_ACTION:
        return None
    schema = _schema_of(world, name)
    if schema is None:
        raise ValueError(f"plan step {step!r}: unknown action '{name}'")
    try:
        key = tuple(world.index[a] for a in args)
    except KeyError as e:
        raise ValueError(f"plan step {step!r}: unknown object {e.args[0]}") from None
    for ga in world.actions:
        if ga.schema == schema.name and ga.args == key:
            return ga
    raise ValueError(f"plan step {step!r}: no such ground action in this world")


def plan_from_pddl(world: World, steps: list[str]) -> list[GroundAction]:
    """The `World` plan of a PDDL plan (a step a line; blank and `;` lines skipped), without the `achieve-goal`."""
    plan, done = [], False
    for step in steps:
        if not step.strip() or step.strip().startswith(";"):
            continue
        if done:
            raise ValueError(f"plan step {step!r} comes after {GOAL_ACTION}")
        ga = action_from_pddl(world, step)
        if ga is None:
            done = True
        else:
            plan.append(ga)
    return plan
