"""A gym-like, text-in text-out cooking environment compatible with Robotouille's language interface.

    env = CookingEnv("cheese_sandwich")
    obs = env.reset(seed=42)            # seed None: the task file's own layout
    obs, reward, done, info = env.step("Move robot1 from table1 to table2")

Actions are matched like Robotouille matches them: the stripped string must equal one line of the observation's
`Valid Actions:` list. Anything else (a malformed string, an action of another problem, an action whose
preconditions fail, a non-string) leaves the state unchanged, counts no step, and returns `info["valid"] = False`
with Robotouille's feedback (`info["feedback"]`) and the reason (`info["reason"]`). Reward is 1 on the step that
reaches the goal, else 0; the episode is done when the goal holds, or when `max_steps` actions have been taken
(`info["truncated"]`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from planner_rl.env.domain import load_domain
from planner_rl.env.tasks import load_problem
from planner_rl.env.world import GroundAction, State, World

INVALID_FEEDBACK = "The action '{}' is not valid. Please provide a valid action."
_WORLD_CACHE_SIZE = 64
_worlds: OrderedDict[tuple[str, int | None], World] = OrderedDict()


def ground_world(task: str | int | Path, seed: int | None = None) -> World:
    """A newly grounded world of a task (name, number or file path) and layout seed, shared with nobody: its
    caches (heuristic values, symmetry keys) start empty and it is freed with its last reference."""
    return World(load_problem(task, seed), load_domain())


def make_world(task: str | int | Path, seed: int | None = None) -> World:
    """The grounded world of a task (name, number or file path) and layout seed; the last few are cached."""
    key = (str(task), seed)
    world = _worlds.get(key)
    if world is None:
        world = ground_world(task, seed)
        _worlds[key] = world
        if len(_worlds) > _WORLD_CACHE_SIZE:
            _worlds.popitem(last=False)
    _worlds.move_to_end(key)
    return world


class CookingEnv:
    world_of = staticmethod(make_world)  # (task, seed) -> world; `families.TextEnv` takes any family's

    def __init__(self, task: str | int | Path, seed: int | None = None, max_steps: int | None = None):
        self.task, self.seed, self.max_steps = task, seed, max_steps
        self.world: World = self.world_of(task, seed)
        self.state: State = self.world.initial_state
        self.steps = 0
        self.done = False

    # --- gym-like API -----------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> str:
        """Start an episode on the layout of `seed` (None: the file's own layout); returns the observation."""
        self.seed = seed
        self.world = self.world_of(self.task, seed)
        self.state = self.world.initial_state
        self.steps = 0
        self.done = self.world.is_goal(self.state)
        return self.observation

    def step(self, action: object) -> tuple[str, float, bool, dict]:
        text = action.strip() if isinstance(action, str) else None
        ground, reason = self._parse(text)
        if ground is None:
            shown = text if text is not None else repr(action)
            info = {"valid": False, "reason": reason, "feedback": INVALID_FEEDBACK.format(shown)}
            return self.observation, 0.0, self.done, self._info(info)
        self.state = self.world.step(self.state, ground)
        self.steps += 1
        success = self.world.is_goal(self.state)
        truncated = not success and self.max_steps is not None and self.steps >= self.max_steps
        self.done = success or truncated
        info = {"valid": True, "reason": None, "feedback": None, "action": ground.text, "truncated": truncated}
        return self.observation, float(success), self.done, self._info(info)

    # --- views ------------------------------------------------------------------------------------------------
    @property
    def observation(self) -> str:
        return self.world.observation(self.state)

    @property
    def valid_actions(self) -> list[str]:
        return [a.text for a in self.world.valid_actions(self.state)]

    @property
    def goal(self) -> str:
        return self.world.problem.goal_description

    @property
    def success(self) -> bool:
        return self.world.is_goal(self.state)

    def set_state(self, state: State, steps: int = 0) -> None:
        """Continue from any state of this world (the expert's prompts start mid-plan)."""
        self.state, self.steps, self.done = state, steps, self.world.is_goal(state)

    # --- helpers ----------------------------------------------------------------------------------------------
    def _info(self, extra: dict) -> dict:
        return {"steps": self.steps, "success": self.world.is_goal(self.state), **extra}

    def _parse(self, text: str | None) -> tuple[GroundAction | None, str]:
        if text is None:
            return None, "the action is not a string"
        if self.done:
            return None, "the episode is over"
        if not text:
            return None, "the action is empty"
        ids = self.world.by_text.get(text)
        if ids is None:
            return None, "no such action in this problem"
        for i in ids:
            a = self.world.actions[i]
            if self.world.is_valid(self.state, a):
                return a, ""
        return None, "its preconditions do not hold in the current state"
