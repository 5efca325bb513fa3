"""A grounded STRIPS task as a world with the cooking `World`'s interface, so data, rewards, prompts, evaluation and
sweeps take it as they are.

States are `planner_rl.env.world.State` (a bitset of the true facts, no hidden counters), actions
`planner_rl.env.world.GroundAction` (bit masks of preconditions and effects, and the action's text). Valid actions are
listed in operator order (schemas by name, then parameter order, objects in natural name order), transitions are
deterministic (delete, then add), the goal is a conjunction of literals.

Text: an action is shown as its `Texts.action` template for its schema (Blocksworld: `stack a on b`) or as PDDL
(`(stack a b)`); the observation lists the true facts one per line, by predicate then arguments, in the same way;
`Goal:` is the goal's facts. `domain_text` is the system prompt's description of the domain. A domain's `Texts` may
add a compact view (`prompt.observation=compact`): the true facts and the goal's in fewer lines (Blocksworld: one
line per tower); without one the compact view is the full list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from planner_rl.env.strips.task import StripsTask
from planner_rl.env.world import GroundAction, State

GENERIC_DOMAIN_TEXT = (
    "You act in a planning domain described in PDDL. Each turn you see the facts that are true, the valid actions and "
    "the goal, and you choose the next action. Reach the goal in as few actions as possible.\n"
    "Write the action exactly as it appears in the list of valid actions."
)


@dataclass(frozen=True)
class Texts:
    """How a domain's facts and actions read: templates by predicate / schema name, `{0}` the first argument; a
    name without a template reads as PDDL, `(on a b)`. `compact(facts)` and `compact_goal(goal facts)`, each given
    a list of `(predicate, args)`, write the compact view's lines and goal (None: the full text)."""

    facts: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    domain: str = GENERIC_DOMAIN_TEXT
    state_header: str = "Facts:"
    compact: Callable[[list[tuple[str, tuple[str, ...]]]], list[str]] | None = None
    compact_goal: Callable[[list[tuple[str, tuple[str, ...]]]], str | None] | None = None

    def fact(self, pred: str, args: tuple[str, ...]) -> str:
        t = self.facts.get(pred)
        return t.format(*args) if t is not None else f"({' '.join((pred, *args))})"

    def action(self, name: str, args: tuple[str, ...]) -> str:
        t = self.actions.get(name)
        return t.format(*args) if t is not None else f"({' '.join((name, *args))})"


@dataclass(frozen=True)
class StripsProblem:
    """What downstream code reads off `world.problem`: the goal (hashed into the expert cache's keys) and its text."""

    name: str
    source: str
    goal: tuple[tuple[bool, str, tuple[str, ...]], ...]
    goal_description: str


class StripsWorld:
    """Everything that does not change during an episode of one grounded STRIPS task."""

    def __init__(self, task: StripsTask, texts: Texts | None = None):
        self.task, self.texts = task, texts or Texts()
        self.atoms = list(task.facts)
        self.initial_state = State(sum(1 << b for b in task.init), ())
        self.actions: list[GroundAction] = []
        self.by_text: dict[str, list[int]] = {}
        for k, op in enumerate(task.operators):
            text = self.texts.action(op.name, op.args)
            a = GroundAction(k, op.name, op.args, text, _mask(op.pre), _mask(op.pre_neg), _mask(op.add),
                             _mask(op.delete), ())  # fmt: skip
            self.actions.append(a)
            self.by_text.setdefault(text, []).append(k)
        self._goal_pos, self._goal_neg = _mask(task.goal), _mask(task.goal_neg)
        goal = tuple((True, *task.facts[f]) for f in task.goal) + tuple((False, *task.facts[f]) for f in task.goal_neg)
        lines = [self.texts.fact(p, a) for _, p, a in goal[: len(task.goal)]]
        lines += [f"not {self.texts.fact(p, a)}" for _, p, a in goal[len(task.goal) :]]
        self.problem = StripsProblem(task.problem_name, task.source, goal, ", ".join(lines))
        # Index: each action under its precondition fact that fewest actions need (actions with none: always checked).
        need = [0] * len(self.atoms)
        for op in task.operators:
            for f in op.pre:
                need[f] += 1
        self._index: dict[int, list[GroundAction]] = {}
        self._free: list[GroundAction] = []
        for a, op in zip(self.actions, task.operators, strict=True):
            if op.pre:
                self._index.setdefault(min(op.pre, key=lambda f: (need[f], f)), []).append(a)
            else:
                self._free.append(a)

    # --- rules --------------------------------------------------------------------------------------------------
    def is_valid(self, state: State, action: GroundAction) -> bool:
        return state.atoms & action.pre_pos == action.pre_pos and not state.atoms & action.pre_neg

    def valid_actions(self, state: State) -> list[GroundAction]:
        m, out = state.atoms, list(self._free)
        for f, acts in self._index.items():
            if m >> f & 1:
                out.extend(a for a in acts if m & a.pre_pos == a.pre_pos and not m & a.pre_neg)
        out.sort(key=lambda a: a.id)
        return out

    def step(self, state: State, action: GroundAction) -> State:
        return State((state.atoms & ~action.delete) | action.add, ())

    def is_goal(self, state: State) -> bool:
        return state.atoms & self._goal_pos == self._goal_pos and not state.atoms & self._goal_neg

    def canonical(self, state: State) -> int:
        return state.atoms

    def true_atoms(self, state: State) -> list[tuple[str, tuple[str, ...]]]:
        return [self.atoms[b] for b in _bits(state.atoms)]

    # --- text ---------------------------------------------------------------------------------------------------
    @functools.cached_property
    def _lines(self) -> list[str]:
        return [self.texts.fact(p, a) for p, a in self.atoms]

    @property
    def domain_text(self) -> str:
        return self.texts.domain

    def describe_state(self, state: State) -> str:
        lines = self._lines
        return "\n".join([self.texts.state_header, *(lines[b] for b in _bits(state.atoms))])

    def compact_observation(self, state: State) -> str:
        if self.texts.compact is None:
            return self.describe_state(state)
        return "\n".join([self.texts.state_header, *self.texts.compact(self.true_atoms(state))])

    @functools.cached_property
    def compact_goal(self) -> str:
        """The goal in the compact view's words (`prompt.observation=compact`); the full text without one."""
        short = None
        if self.texts.compact_goal is not None and not self.task.goal_neg:
            short = self.texts.compact_goal([self.task.facts[f] for f in self.task.goal])
        return self.problem.goal_description if short is None else short

    def observation(self, state: State, valid: list[GroundAction] | None = None) -> str:
        valid = self.valid_actions(state) if valid is None else valid
        actions = "\n".join(a.text for a in valid)
        return f"{self.describe_state(state)}\n\nValid Actions:\n{actions}\n\nGoal: {self.problem.goal_description}"


def _mask(facts) -> int:
    m = 0
    for f in facts:
        m |= 1 << f
    return m


def _bits(mask: int):
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
