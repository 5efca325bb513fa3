"""Prompts: the chat messages an agent sees at one state, the same for the data, training and evaluation.

    system: what the kitchen is, how actions are written, and the output format (`Action: <action>` or a
            `<think>` block first, see `planner_rl.parsing`)
    user:   Robotouille's observation word for word (or, with `observation=compact`, one line per station:
            `planner_rl.env.compact`) (object blocks, then `Valid Actions:` when `valid_actions`
            is on, then `Goal:`), followed by the parts Robotouille's text does not show:
            `Progress:`          the hidden counters (cuts so far, cook/fry timers), when `progress` is on
            `Previous actions:`  the last `history` actions taken (-1: all), when `history` != 0
            `Feedback:`          why the last action was refused, when the caller passes it (re-query protocol)

Robotouille's observation does not show how often an item has been cut or how long it has cooked, so two states
with the same observation text can need different actions ("cut again" or "pick it up"). `progress` makes the
prompt a function of the whole state, so the expert's action is a function of the prompt (ambiguity rate 0, which
`planner_rl.data` measures); `history` also helps, but only as far back as it reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner_rl.env.compact import compact_observation
from planner_rl.env.world import CUT_REPETITIONS, DELAY_TICKS, State, World
from planner_rl.parsing import check_format

SYSTEM_DOMAIN = (
    "You control a robot chef in a kitchen. The kitchen has stations (tables, cutting boards, stoves, fryers, sinks) "
    "and items (bread, lettuce, tomato, patty, cheese, chicken, onion, potato, ...), and may have containers (pots, "
    "bowls). The robot stands at one station and holds at most one thing. It can move between stations, pick up the "
    "item on top of a stack, place or stack what it holds, cut an item on a cutting board (it is cut after three cut "
    "actions), and start cooking on a stove or frying in a fryer (the item is done three steps later; the timer "
    "pauses while the item is off the station). Each turn you see the state of the kitchen, the valid actions and "
    "the goal, and you choose the next action. Reach the goal in as few actions as possible."
)
SYSTEM_ACTIONS = (
    "Write the action exactly as it appears in the list of valid actions, e.g. `Move robot1 from table1 to table2`."
)
SYSTEM_FORMAT = {
    "action": "Answer with one line and nothing else: `Action: <action>`.",
    "think": "First think inside <think> and </think>, then answer with one line: `Action: <action>`.",
}
QUESTION = "What is the next action?"
OBSERVATIONS = ("robotouille", "compact")
SYSTEMS = ("full", "brief", "none")
GOALS = ("full", "name")


@dataclass  # not frozen: it is also the structured-config schema of its conf/ group
class PromptConfig:
    """What the user message shows (conf/prompt/*.yaml)."""

    output_format: str = "action"  # "action" | "think" (planner_rl.parsing.OUTPUT_FORMATS)
    valid_actions: bool = True  # list the valid actions (Robotouille's `Valid Actions:` block)
    progress: bool = True  # show the hidden counters (cut counts, cook/fry timers)
    history: int = 5  # how many previous actions to show; 0 none, -1 all
    system: str = "full"  # "full": domain, action syntax and format | "brief": the format line only | "none"
    goal: str = "full"  # "full": the task file's goal description | "name": the task's name (`double cheeseburger`)
    observation: str = "robotouille"  # "robotouille": its text word for word | "compact": one line per station
    feedback_examples: float = 0.0  # [0, 1]: share of training states also given after a refused answer (data.py)
    feedback_self_moves: float = 0.0  # [0, 1]: share of those whose refused answer is a move to the robot's own station
    detours: float = 0.0  # [0, 1]: share of training states also left by one off-plan action, the expert replanned
    move_contents: bool = False  # each listed move shows what its destination holds: `... to table3 (patty1 cooked)`
    question: bool = True  # end with `What is the next action?` (false: the assistant turn alone asks it)

    def __post_init__(self) -> None:
        check_format(self.output_format)
        if self.system not in SYSTEMS:
            raise ValueError(f"prompt.system must be one of {', '.join(SYSTEMS)}, got {self.system!r}")
        if self.goal not in GOALS:
            raise ValueError(f"prompt.goal must be one of {', '.join(GOALS)}, got {self.goal!r}")
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"prompt.observation must be one of {', '.join(OBSERVATIONS)}, got {self.observation!r}")
        if not 0.0 <= self.feedback_examples <= 1.0:
            raise ValueError(f"prompt.feedback_examples must be in [0, 1], got {self.feedback_examples!r}")
        if not 0.0 <= self.feedback_self_moves <= 1.0:
            raise ValueError(f"prompt.feedback_self_moves must be in [0, 1], got {self.feedback_self_moves!r}")
        if not 0.0 <= self.detours <= 1.0:
            raise ValueError(f"prompt.detours must be in [0, 1], got {self.detours!r}")
        if not isinstance(self.history, int) or self.history < -1:
            raise ValueError(f"prompt.history must be an integer >= -1 (-1 shows all), got {self.history!r}")


DEFAULT_PROMPT = PromptConfig()
# the keys that change what a model is shown at a state (the rest choose which training states the data has)
VIEW_KEYS = ("output_format", "valid_actions", "progress", "history", "system", "goal", "observation",
             "move_contents", "question")  # fmt: skip


def trained_prompt_differences(model_path: str | None, cfg: PromptConfig) -> list[str]:
    """`prompt.<key>=<value>` overrides that would give `cfg` the prompt view a run of this project trained the model
    at `model_path` with (its `<run>/sft_model`, `average_model` or `checkpoints/step_*`, found by the run's
    `.hydra/config.yaml` one or two folders up); [] when they agree or no such run is found. Read with
    yaml.safe_load: plain data, no code."""
    import yaml

    if not model_path:
        return []
    here = Path(model_path)
    found = [d / ".hydra" / "config.yaml" for d in (here.parent, here.parent.parent)]
    found = [f for f in found if f.is_file()]
    if not found:
        return []
    try:
        trained = (yaml.safe_load(found[0].read_text()) or {}).get("prompt")
    except (yaml.YAMLError, OSError, AttributeError):
        return []
    if not isinstance(trained, dict):
        return []
    return [
        f"prompt.{k}={str(trained[k]).lower() if isinstance(trained[k], bool) else trained[k]}"
        for k in VIEW_KEYS
        if k in trained and trained[k] != getattr(cfg, k)
    ]


def system_message(cfg: PromptConfig, world: object = None) -> str | None:
    """The system message; `brief` keeps only the output format (a fifth of a tiny-model prompt's tokens is the
    domain text, which a model trained from scratch cannot read anyway); `none`: no system message (None), for a
    model trained on the answer format alone. A world of another family (PDDL) brings its own domain text
    (`world.domain_text`); the kitchen's is the default."""
    if cfg.system == "none":
        return None
    if cfg.system == "brief":
        return SYSTEM_FORMAT[cfg.output_format]
    domain = getattr(world, "domain_text", None) or f"{SYSTEM_DOMAIN}\n{SYSTEM_ACTIONS}"
    return f"{domain}\n{SYSTEM_FORMAT[cfg.output_format]}"


def _schema_of_effects(world: World) -> dict[int, str]:
    """Top-level effect id -> the name of the action that starts it (e.g. `cut`, `cook`)."""
    cached = getattr(world, "_prompt_effect_schemas", None)
    if cached is None:
        cached = {eid: a.schema for a in world.actions for eid in a.sfx}
        world._prompt_effect_schemas = cached
    return cached


def _achieves(world: World, eid: int) -> str:
    """The sentence the effect makes true when it completes, in Robotouille's wording, e.g. `lettuce1 is cut`."""
    for bit, value in world.effects[eid].fx:
        name, args = world.atoms[bit]
        if value and name != "iscooking" and name != "isfrying":  # the finished state, not the running one
            return world.domain.predicates[name].descriptors[0].format(*(world.objects[a].name for a in args))
    return f"{world.objects[world.effects[eid].obj].name} is done"


def progress_lines(world: World, state: State) -> list[str]:
    """The hidden counters of `state` as sentences, e.g. `lettuce1 is cut after 1 more cut action`."""
    schemas = _schema_of_effects(world)
    lines: list[str] = []
    for eid, counters in state.effects:
        _describe_effect(world, state, eid, counters, 0, schemas.get(eid, "special"), False, lines)
    return lines


def _describe_effect(
    world: World, state: State, eid: int, counters: tuple, at: int, schema: str, paused: bool, lines: list[str]
) -> None:
    """Append the sentence of effect `eid` (counter at `counters[at]`) and of its children, depth first."""
    e = world.effects[eid]
    count = counters[at]
    if count == -1:  # completed
        return
    if e.kind == "repetitive" and 0 < count < CUT_REPETITIONS:
        left = CUT_REPETITIONS - count
        lines.append(f"{_achieves(world, eid)} after {left} more {schema} action{'s' if left > 1 else ''}")
    elif e.kind == "delayed" and count < DELAY_TICKS:
        left = DELAY_TICKS - count  # steps in which the timer still has to run
        note = " (paused: it is off its station)" if paused else ""
        lines.append(f"{_achieves(world, eid)} after {left} more step{'s' if left > 1 else ''}{note}")
    if e.kind == "conditional":
        paused = not all(bool(state.atoms >> b & 1) == v for b, v in e.conditions)
    off = at + 1
    for child in e.children:
        _describe_effect(world, state, child, counters, off, schema, paused, lines)
        off += world.effects[child].size


def user_message(
    world: World,
    state: State,
    history: list[str] | tuple[str, ...] = (),
    cfg: PromptConfig = DEFAULT_PROMPT,
    feedback: str | None = None,
) -> str:
    """Robotouille's observation of `state`, then the progress, previous-action and feedback sections."""
    compact = cfg.observation == "compact"
    # a PDDL world has no hidden counters (progress: "nothing in progress") and its own compact view
    own_compact = getattr(world, "compact_observation", None)
    view = (own_compact(state) if own_compact else compact_observation(world, state)) if compact else None
    parts = [view if compact else world.describe_state(state)]
    if cfg.valid_actions:
        listed = [a.text for a in world.valid_actions(state)]
        if cfg.move_contents and not own_compact:
            listed = annotate_moves(listed, view or compact_observation(world, state))
        parts.append("Valid Actions:\n" + "\n".join(listed))
    parts.append(f"Goal: {goal_text(world, cfg)}")
    if cfg.progress:
        lines = progress_lines(world, state)
        parts.append("Progress:\n" + ("\n".join(lines) if lines else "nothing in progress"))
    if cfg.history != 0:
        shown = list(history) if cfg.history < 0 else list(history)[-cfg.history :]
        first = len(history) - len(shown) + 1
        listed = "\n".join(f"{first + k}. {a}" for k, a in enumerate(shown)) if shown else "none"
        parts.append(f"Previous actions:\n{listed}")
    if feedback:
        parts.append(f"Feedback: {feedback}")
    if cfg.question:
        parts.append(QUESTION)
    return "\n\n".join(parts)


def goal_text(world: World, cfg: PromptConfig = DEFAULT_PROMPT) -> str:
    """What follows `Goal:`: the task file's description (Robotouille's text), or with `prompt.goal=name` the task's
    name in words (`double_cheeseburger` -> `double cheeseburger`): the same fact in ~4 tokens instead of ~25 for a
    model that learns the task from its examples. Only a kitchen task has a name whose goal is the same on every
    layout; another family's problems (PDDL) each state their own goal, so they need `full`, which with
    `observation=compact` is the domain's compact goal where it has one (Blocksworld: its chains of blocks)."""
    if cfg.goal == "full":
        short = getattr(world, "compact_goal", None) if cfg.observation == "compact" else None
        return short or world.problem.goal_description
    name = getattr(world.problem, "task", "")
    if not name:
        raise ValueError(
            f"prompt.goal=name needs a kitchen task (its name states the goal on every layout); {world.problem.source}"
            " has no task name: use prompt.goal=full"
        )
    return name.replace("_", " ")


def annotate_moves(actions: list[str], compact_view: str) -> list[str]:
    """`prompt.move_contents`: each `Move ... to <station>` followed by what the compact view's line of that station
    holds, in brackets (`(nothing)` when empty). The same facts as the observation, beside the choice they decide,
    so a small model need not look the station up across the prompt; the action to answer stays the bare text."""
    holds = dict(line.split(": ", 1) for line in compact_view.split("\n") if ": " in line)
    out = []
    for text in actions:
        station = text.rsplit(" ", 1)[-1]
        out.append(f"{text} ({holds[station]})" if text.startswith("Move ") and station in holds else text)
    return out


def build_messages(
    world: World,
    state: State,
    history: list[str] | tuple[str, ...] = (),
    cfg: PromptConfig = DEFAULT_PROMPT,
    feedback: str | None = None,
) -> list[dict[str, str]]:
    """The chat messages (system, user; the user message alone with `prompt.system=none`) for one decision."""
    system = system_message(cfg, world)
    user = {"role": "user", "content": user_message(world, state, history, cfg, feedback)}
    return [user] if system is None else [{"role": "system", "content": system}, user]
