"""Multi-turn (closed-loop) evaluation: the agent plays whole episodes in the environment, one action per turn.

    summary, results = evaluate(rollout, tokenizer, ["burger"], [42, 84], PromptConfig(), EvalConfig())
    write_results("outputs/eval/results.json", summary, results, EvalConfig())

Every active episode of every (task, seed) instance advances in lockstep: one turn builds the prompt of each
(`planner_rl.prompts.build_messages`: the state, the valid actions already taken, and the reason the last answer
was refused), asks for all of them in one batched generation (chunks of `batch_size` prompts), parses each answer
(`planner_rl.parsing`) and applies it. `play` takes any `decide(episodes, messages) -> completions`, so tests can
plug in scripted policies; `rollout_decider` wraps a rollout backend.

Protocol (`EvalConfig`, conf/eval/default.yaml):

- budget `robotouille`: the task's step budget, ceil(1.5 x Robotouille's horizon); `optimal`: ceil(1.5 x T_GT) of
  the instance, T_GT being the expert's optimal plan length. An episode ends on the goal or when steps reach it.
- invalid `consume`: a refused answer (unparseable, or not a valid action) costs a step, the state unchanged.
  `requery` (Robotouille's): a refused answer costs no step and is asked again, at most `max_requeries` times per
  step; a step whose answers are all refused is consumed with the state unchanged ("exhausted"), and the
  `max_exhausted`-th exhausted step ends the episode as a failure. Either way the next prompt carries Robotouille's
  feedback (`The action '<text>' is not valid. Please provide a valid action.`) and the parse error.

Metrics (`summarize`, the caller adds `eval/`): `sr`; `asat` (mean steps, a failure counted at its budget); `asst`
(mean steps of successes, NaN without one); `min_step_sr` (success in exactly T_GT steps, the paper's theory);
`invalid_rate` and `parse_fail_rate` (refused and malformed answers per answer; malformed ones are also invalid);
`episodes`; the same per task as `<task>/sr` etc.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from planner_rl.data import expert_trajectory, seed_list
from planner_rl.env.cooking import INVALID_FEEDBACK, make_world
from planner_rl.env.tasks import BUDGET_MULTIPLIER, get_task
from planner_rl.env.world import GroundAction, State, World
from planner_rl.parsing import Parsed, parse_completion
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rollout import RolloutBackend, Sampling
from planner_rl.rollout.hf import encode_prompt

BUDGETS = ("robotouille", "optimal")
INVALID_PROTOCOLS = ("consume", "requery")
SHOWN_CHARS = 120  # a refused answer is quoted in the next prompt up to this length, so prompts stay bounded


@dataclass
class EvalConfig:
    """conf/eval/default.yaml. Not frozen: it doubles as the structured-config schema of the `eval` group."""

    seeds: list[int] | None = None  # layouts; None: the caller's (env.test_seeds)
    budget: str = "robotouille"  # robotouille | optimal
    invalid: str = "consume"  # consume | requery
    max_requeries: int = 5  # requery: refused answers re-asked per step
    max_exhausted: int = 3  # requery: steps with every answer refused before the episode fails
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 24
    batch_size: int = 64  # prompts per generate call
    transcripts: int = 3  # episodes whose turns are kept in the results

    def __post_init__(self) -> None:
        if self.seeds is not None:
            self.seeds = seed_list(self.seeds, "eval.seeds")
        checks = {
            "budget": (self.budget in BUDGETS, f"one of {BUDGETS}"),
            "invalid": (self.invalid in INVALID_PROTOCOLS, f"one of {INVALID_PROTOCOLS}"),
            "max_requeries": (self.max_requeries >= 0, ">= 0"),
            "max_exhausted": (self.max_exhausted >= 1, ">= 1"),
            "temperature": (self.temperature >= 0, ">= 0"),
            "top_p": (0 < self.top_p <= 1, "in (0, 1]"),
            "max_new_tokens": (self.max_new_tokens >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "transcripts": (self.transcripts >= 0, ">= 0"),
        }
        for key, (ok, need) in checks.items():
            if not ok:
                raise ValueError(f"eval.{key} must be {need}, got {getattr(self, key)!r}")


class Instance(NamedTuple):
    task: str
    seed: int | None
    t_gt: int  # the expert's optimal plan length


@dataclass
class Episode:
    """One episode in play; a scripted `decide` may read any field (`world`, `state`, `history`, `answers`...)."""

    task: str
    seed: int | None
    world: World
    state: State
    budget: int
    t_gt: int
    history: list[str] = field(default_factory=list)  # the valid actions taken
    feedback: str | None = None  # why the last answer was refused; None after a valid one
    steps: int = 0
    requeries: int = 0  # refused answers at the current step (requery)
    exhausted: int = 0
    answers: int = 0
    invalid: int = 0
    malformed: int = 0
    end: str | None = None  # success | budget | exhausted
    transcript: list[dict] | None = None  # kept for the first `transcripts` episodes


@dataclass(frozen=True)
class EpisodeResult:
    task: str
    seed: int | None
    success: bool
    steps: int  # actions taken (valid or consumed); ASAT counts a failure at `budget` instead
    budget: int
    t_gt: int
    answers: int
    invalid: int  # refused answers, malformed ones included
    malformed: int  # answers that broke the output format
    exhausted: int  # requery: steps consumed after every answer was refused
    end: str  # success | budget | exhausted
    transcript: list[dict] | None = None  # per turn: step, completion, action (parsed, or None), valid


Decider = Callable[[list[Episode], list[list[dict[str, str]]]], list[str]]


def episode_budget(task: str, t_gt: int, mode: str) -> int:
    if mode == "optimal":
        return math.ceil(BUDGET_MULTIPLIER * t_gt)
    return get_task(task).budget


def refusal(completion: object, parsed: Parsed) -> str:
    """Robotouille's feedback for a refused answer, quoting its action text (or the whole answer when it has
    none), plus the parse error."""
    shown = parsed.text if parsed.text is not None else completion if isinstance(completion, str) else repr(completion)
    shown = " ".join(shown.split())  # one line: the feedback sits in the middle of the next prompt
    if len(shown) > SHOWN_CHARS:
        shown = shown[:SHOWN_CHARS] + "..."
    return f"{INVALID_FEEDBACK.format(shown)} Reason: {parsed.error}."


def _ground(world: World, state: State, text: str) -> GroundAction:
    """The ground action a valid action string stands for, picked as CookingEnv picks it."""
    return next(a for i in world.by_text[text] if world.is_valid(state, a := world.actions[i]))


def _apply(ep: Episode, completion: object, valid: list[str], fmt: str, cfg: EvalConfig) -> None:
    """One answer: step the world or refuse it under the invalid-action protocol; then check the end."""
    parsed = parse_completion(completion, fmt, valid)
    ep.answers += 1
    if ep.transcript is not None:
        text = completion if isinstance(completion, str) else repr(completion)
        ep.transcript.append({"step": ep.steps, "completion": text, "action": parsed.action, "valid": parsed.valid})
    if parsed.valid:
        ep.state = ep.world.step(ep.state, _ground(ep.world, ep.state, parsed.action))
        ep.history.append(parsed.action)
        ep.steps += 1
        ep.requeries, ep.feedback = 0, None
    else:
        ep.invalid += 1
        ep.malformed += not parsed.well_formed
        ep.feedback = refusal(completion, parsed)
        if cfg.invalid == "consume":
            ep.steps += 1
        else:
            ep.requeries += 1
            if ep.requeries > cfg.max_requeries:  # the first answer and every re-query refused
                ep.steps, ep.requeries, ep.exhausted = ep.steps + 1, 0, ep.exhausted + 1
                if ep.exhausted >= cfg.max_exhausted:
                    ep.end = "exhausted"
    if ep.world.is_goal(ep.state):
        ep.end = "success"
    elif ep.end is None and ep.steps >= ep.budget:
        ep.end = "budget"


def _result(ep: Episode) -> EpisodeResult:
    return EpisodeResult(
        ep.task, ep.seed, ep.end == "success", ep.steps, ep.budget, ep.t_gt, ep.answers, ep.invalid, ep.malformed,
        ep.exhausted, ep.end, ep.transcript,
    )  # fmt: skip


def play(
    instances: Sequence[Instance], prompt_cfg: PromptConfig, cfg: EvalConfig, decide: Decider
) -> list[EpisodeResult]:
    """Play one episode per instance, all in lockstep: one `decide` call per turn with every active episode."""
    episodes = []
    for k, (task, seed, t_gt) in enumerate(instances):
        world = make_world(task, seed)
        ep = Episode(task, seed, world, world.initial_state, episode_budget(task, t_gt, cfg.budget), t_gt)
        ep.transcript = [] if k < cfg.transcripts else None
        if world.is_goal(ep.state):
            ep.end = "success"
        episodes.append(ep)
    while active := [ep for ep in episodes if ep.end is None]:
        valid = [[a.text for a in ep.world.valid_actions(ep.state)] for ep in active]
        messages = [build_messages(ep.world, ep.state, ep.history, prompt_cfg, ep.feedback) for ep in active]
        completions = decide(active, messages)
        if len(completions) != len(active):
            raise ValueError(f"decide returned {len(completions)} completions for {len(active)} episodes")
        for ep, completion, actions in zip(active, completions, valid, strict=True):
            _apply(ep, completion, actions, prompt_cfg.output_format, cfg)
    return [_result(ep) for ep in episodes]


def rollout_decider(rollout: RolloutBackend, tokenizer, cfg: EvalConfig) -> Decider:
    """A `decide` that samples one completion per prompt from `rollout`, `cfg.batch_size` prompts per call."""
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens)

    def decide(episodes: list[Episode], messages: list[list[dict[str, str]]]) -> list[str]:
        prompts = [encode_prompt(tokenizer, m) for m in messages]
        texts: list[str] = []
        for start in range(0, len(prompts), cfg.batch_size):
            texts += [c.text for c in rollout.generate(prompts[start : start + cfg.batch_size], 1, sampling)]
        return texts

    return decide


def _metrics(rows: list[EpisodeResult]) -> dict[str, float]:
    wins = [r for r in rows if r.success]
    answers = sum(r.answers for r in rows)
    return {
        "sr": len(wins) / len(rows),
        "asat": sum(r.steps if r.success else r.budget for r in rows) / len(rows),
        "asst": sum(r.steps for r in wins) / len(wins) if wins else float("nan"),
        "min_step_sr": sum(r.steps == r.t_gt for r in wins) / len(rows),
        # an episode that starts at its goal makes no answers; rates over none are 0, not NaN
        "invalid_rate": sum(r.invalid for r in rows) / answers if answers else 0.0,
        "parse_fail_rate": sum(r.malformed for r in rows) / answers if answers else 0.0,
        "episodes": float(len(rows)),
    }


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    """Flat metrics: overall under plain names, per task as `<task>/<name>` (tasks in first-seen order)."""
    if not results:
        raise ValueError("no episodes to summarize")
    out = _metrics(results)
    for task in dict.fromkeys(r.task for r in results):
        out |= {f"{task}/{k}": v for k, v in _metrics([r for r in results if r.task == task]).items()}
    return out


def evaluate(
    rollout: RolloutBackend,
    tokenizer,
    tasks: Sequence[str],
    seeds: Sequence[int],
    prompt_cfg: PromptConfig,
    cfg: EvalConfig,
    expert_cache: str | None = None,
) -> tuple[dict[str, float], list[EpisodeResult]]:
    """Play every (task, seed) with the rollout's policy. `seeds` (env.test_seeds) apply when `cfg.seeds` is None.
    The summary adds `seconds` (wall time, expert solves included)."""
    start = time.perf_counter()
    seeds = cfg.seeds if cfg.seeds is not None else list(seeds)
    instances = [Instance(t, s, len(expert_trajectory(t, s, expert_cache).plan)) for t in tasks for s in seeds]
    results = play(instances, prompt_cfg, cfg, rollout_decider(rollout, tokenizer, cfg))
    summary = summarize(results)
    summary["seconds"] = time.perf_counter() - start
    return summary, results


def write_results(path: str | Path, summary: dict[str, float], results: list[EpisodeResult], cfg: EvalConfig) -> None:
    """One JSON file: the protocol and config, the summary (NaN as null) and one row per episode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "invalid_protocol": cfg.invalid,
        "budget": cfg.budget,
        "config": asdict(cfg),
        "summary": {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()},
        "episodes": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))
