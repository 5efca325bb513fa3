"""Multi-turn (closed-loop) evaluation: the agent plays whole episodes in the environment, one action per turn.

    ev = evaluate(rollout, tokenizer, ["burger"], [42, 84], PromptConfig(), EvalConfig(), model=model)
    write_evaluation("outputs/eval/results.json", ev, EvalConfig())   # ev.summary, ev.episodes, ev.paths

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch

from planner_rl.config import ConfigError, register_configs, typed
from planner_rl.data import Trajectory, expert_trajectory, seed_list, task_list, trajectory_examples
from planner_rl.env.families import make_world, task_budget
from planner_rl.env.tasks import BUDGET_MULTIPLIER
from planner_rl.env.world import GroundAction, State, World
from planner_rl.eval_protocol import EvalConfig
from planner_rl.parsing import parse_completion, refusal
from planner_rl.progress import Progress
from planner_rl.prompts import PromptConfig, build_messages, trained_prompt_differences
from planner_rl.rollout import RolloutBackend, Sampling
from planner_rl.rollout.hf import HFRollout, answer_ids, encode_prompt, stop_ids
from planner_rl.rollout.restricted import answer_choices, choice_log_probs
from planner_rl.sft import IGNORE, collate


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
    index: int = 0  # its instance's position in `play`'s list (the order of the results)


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
    budget = None if mode == "optimal" else task_budget(task)  # None: a family with no configured horizon (PDDL)
    return math.ceil(BUDGET_MULTIPLIER * t_gt) if budget is None else budget


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
    """Play one episode per instance. Lockstep (the default): one `decide` call per turn with every active episode;
    `cfg.lockstep=False`: each episode alone, start to end, in instance order (the same episodes, more calls)."""
    episodes = []
    for k, (task, seed, t_gt) in enumerate(instances):
        world = make_world(task, seed)
        ep = Episode(task, seed, world, world.initial_state, episode_budget(task, t_gt, cfg.budget), t_gt, index=k)
        ep.transcript = [] if k < cfg.transcripts else None
        if world.is_goal(ep.state):
            ep.end = "success"
        episodes.append(ep)
    for group in [episodes] if cfg.lockstep else [[ep] for ep in episodes]:
        while active := [ep for ep in group if ep.end is None]:
            valid = [[a.text for a in ep.world.valid_actions(ep.state)] for ep in active]
            messages = [build_messages(ep.world, ep.state, ep.history, prompt_cfg, ep.feedback) for ep in active]
            completions = decide(active, messages)
            if len(completions) != len(active):
                raise ValueError(f"decide returned {len(completions)} completions for {len(active)} episodes")
            for ep, completion, actions in zip(active, completions, valid, strict=True):
                _apply(ep, completion, actions, prompt_cfg.output_format, cfg)
    return [_result(ep) for ep in episodes]


def episode_choices(episodes: Sequence[Episode], fmt: str) -> list[list[str]]:
    """Per episode, the answer text of each valid action of its state (decoding restricted to the valid actions)."""
    return [answer_choices([a.text for a in ep.world.valid_actions(ep.state)], fmt) for ep in episodes]


def rollout_decider(rollout: RolloutBackend, tokenizer, cfg: EvalConfig, fmt: str = "action") -> Decider:
    """A `decide` that samples one completion per prompt from `rollout`, `cfg.batch_size` prompts per call; with
    `cfg.decoding=valid_actions`, one of the state's valid actions in output format `fmt`.

    Greedy decoding answers a prompt it has seen before (in any episode of this evaluation) from memory: the answer
    is a function of the prompt (and of the state's valid actions). An agent stuck on one state repeats a handful of
    prompts until its budget runs out (most closed-loop turns of a weak policy), and those turns then cost nothing."""
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    restricted = cfg.decoding == "valid_actions"
    seen: dict[tuple, str] = {}

    def decide(episodes: list[Episode], messages: list[list[dict[str, str]]]) -> list[str]:
        choices = [tuple(c) for c in episode_choices(episodes, fmt)] if restricted else [()] * len(episodes)
        keys = [(tuple(encode_prompt(tokenizer, m)), c) for m, c in zip(messages, choices, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in seen)) if cfg.temperature == 0 else keys
        texts: list[str] = []
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start : start + cfg.batch_size]
            kw = {"choices": [list(c) for _, c in chunk]} if restricted else {}  # a backend need not know `choices`
            texts += [c.text for c in rollout.generate([list(p) for p, _ in chunk], 1, sampling, **kw)]
        if cfg.temperature > 0:
            return texts
        seen.update(zip(todo, texts, strict=True))
        return [seen[k] for k in keys]

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


# --- the theory check: predicted minimal-step success -----------------------------------------------------------
@dataclass(frozen=True)
class PathProbability:
    """How likely the policy is to replay the expert's plan on one instance (the paper's P_0, which it never checks).

    Along the expert trajectory s_0 a_0 ... s_T, each prompt is exactly the one the closed-loop episode sees while it
    follows the expert (same history, no refusal), so P_0 = prod_t pi(answer_t | prompt_t) is the probability that an
    episode replays the plan, hence succeeds in exactly T_GT steps. The answer is the exact target text
    (`parsing.format_target`) and its end-of-turn token: a lower bound on min-step success, tight when the optimal
    plan is unique and the policy writes actions one way. Under `requery` a refused answer costs no step, so there
    measured min-step success may exceed it by more."""

    task: str
    seed: int | None
    t_gt: int
    log_p0: float  # sum over the plan of log pi_T(answer | prompt) at the evaluation's temperature (1 when greedy)
    greedy: bool  # every answer token is the argmax: greedy decoding replays the plan (the greedy P_0, 0 or 1)
    step_probs: tuple[float, ...]  # pi_T(answer_t | prompt_t) per step

    @property
    def p0(self) -> float:
        return math.exp(self.log_p0)


@torch.no_grad()
def answer_log_probs(
    model, rows: Sequence[tuple[list[int], list[int]]], temperature: float, pad_id: int, batch_size: int = 32
) -> list[tuple[float, bool]]:
    """Per (prompt ids, answer ids): log pi_T(answer | prompt) at temperature T (1 when 0), and whether every answer
    token is the argmax (greedy decoding would write exactly this answer). Teacher-forced, batched by length."""
    temp = temperature if temperature > 0 else 1.0
    out: list[tuple[float, bool]] = [(0.0, True)] * len(rows)
    was_training = model.training
    model.eval()
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][0]) + len(rows[r][1]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = [(p + a, [IGNORE] * len(p) + a) for p, a in (rows[r] for r in chunk)]
        batch = {k: v.to(model.device) for k, v in collate(encoded, pad_id).items()}
        labels = batch.pop("labels")[:, 1:]  # [b, T-1]: the token each position predicts
        where = (labels != IGNORE).nonzero(as_tuple=True)  # the answer positions, row-major
        # the head only where an answer token is predicted: prompts are ~98% of the positions
        hidden = model.get_decoder()(**batch).last_hidden_state[:, :-1]  # [b, T-1, H]
        logits = model.get_output_embeddings()(hidden[where]).float()  # [n, V]
        target = labels[where]  # [n]
        token_lp = torch.log_softmax(logits / temp, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)  # [n]
        hit = logits.argmax(-1) == target  # [n]
        for k, r in enumerate(chunk):
            row = where[0] == k
            out[r] = (float(token_lp[row].sum()), bool(hit[row].all()))
    model.train(was_training)
    return out


def restricted_answer_log_probs(
    model, tokenizer, rows: Sequence[tuple[list[int], str, list[str]]], temperature: float, batch_size: int = 32
) -> list[tuple[float, bool]]:
    """`answer_log_probs` under decoding restricted to the valid actions, per (prompt ids, answer text, the answer
    texts of every valid action): log of the answer's share of the choices' probability at temperature T (1 when
    0), and whether it is the highest-scoring choice (greedy restricted decoding picks it; ties: the first)."""
    prompts, choices = [p for p, _, _ in rows], [c for _, _, c in rows]
    scores = choice_log_probs(model, tokenizer, prompts, choices, temperature, batch_size * 8)  # ~8 choices a state
    out = []
    for (_, answer, options), s in zip(rows, scores, strict=True):
        i = options.index(answer)
        out.append((float(s[i] - torch.logsumexp(s, dim=0)), int(s.argmax()) == i))
    return out


def label_log_probs(
    model, tokenizer, rows: Sequence[dict], fmt: str, temperature: float, batch_size: int = 32, decoding: str = "free"
) -> list[tuple[float, bool]]:
    """`answer_log_probs` of each example row's labelled answer (its "prompt", "target" and "valid_actions"), in
    output format `fmt`; with `decoding` valid_actions, under the policy restricted decoding samples
    (`restricted_answer_log_probs`)."""
    prompts = [encode_prompt(tokenizer, r["prompt"]) for r in rows]
    if decoding == "valid_actions":
        choices = [answer_choices(r["valid_actions"], fmt) for r in rows]
        triples = list(zip(prompts, [r["target"] for r in rows], choices, strict=True))
        return restricted_answer_log_probs(model, tokenizer, triples, temperature, batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids(tokenizer)[0]
    teacher = [(p, answer_ids(tokenizer, r["target"])) for p, r in zip(prompts, rows, strict=True)]
    return answer_log_probs(model, teacher, temperature, pad, batch_size)


def expert_path_probabilities(
    model, tokenizer, trajectories: Sequence[Trajectory], prompt_cfg: PromptConfig, temperature: float,
    batch_size: int = 32, decoding: str = "free",
) -> list[PathProbability]:  # fmt: skip
    """`PathProbability` of each trajectory: one teacher-forced forward per plan state. With `decoding`
    valid_actions, the policy is the one restricted decoding samples (`restricted_answer_log_probs`)."""
    rows, owner = [], []
    plan_only = replace(prompt_cfg, detours=0.0, feedback_examples=0.0)  # the plan's own states, one each
    for i, traj in enumerate(trajectories):
        examples = trajectory_examples(traj, plan_only)
        rows += examples
        owner += [i] * len(examples)
    scored = label_log_probs(model, tokenizer, rows, prompt_cfg.output_format, temperature, batch_size, decoding)
    by_traj: list[list[tuple[float, bool]]] = [[] for _ in trajectories]
    for i, score in zip(owner, scored, strict=True):
        by_traj[i].append(score)
    out = []
    for traj, steps in zip(trajectories, by_traj, strict=True):
        out.append(
            PathProbability(
                traj.task, traj.seed, len(traj.plan), sum(lp for lp, _ in steps), all(g for _, g in steps),
                tuple(math.exp(lp) for lp, _ in steps),
            )
        )  # fmt: skip
    return out


def theory_summary(paths: Sequence[PathProbability], temperature: float) -> dict[str, float]:
    """`p0`: the mean predicted min-step success under the evaluation's decoding (greedy: the fraction of instances
    whose plan greedy decoding replays), to set beside the measured `min_step_sr`; `p0_sampled`: the same at the
    temperature (1 when greedy); per task as `<task>/p0` etc."""

    def stats(rows: Sequence[PathProbability]) -> dict[str, float]:
        sampled = sum(p.p0 for p in rows) / len(rows)
        greedy = sum(p.greedy for p in rows) / len(rows)
        return {"p0": sampled if temperature > 0 else greedy, "p0_sampled": sampled, "greedy_path": greedy}

    out = stats(paths)
    for task in dict.fromkeys(p.task for p in paths):
        out |= {f"{task}/{k}": v for k, v in stats([p for p in paths if p.task == task]).items()}
    return out


class Evaluation(NamedTuple):
    summary: dict[str, float]  # summarize() + theory_summary() + `seconds` (+ `valid_actions/<the same>`)
    episodes: list[EpisodeResult]
    paths: list[PathProbability]  # empty unless eval.theory and a model was given
    valid_actions: Evaluation | None = None  # eval.also_valid_actions: the pass restricted to the valid actions


def evaluate(
    rollout: RolloutBackend,
    tokenizer,
    tasks: Sequence[str],
    seeds: Sequence[int],
    prompt_cfg: PromptConfig,
    cfg: EvalConfig,
    expert_cache: str | None = None,
    model=None,
) -> Evaluation:
    """Play every (task, seed) `cfg.episodes` times with the rollout's policy; `cfg.tasks` / `cfg.seeds` override
    the caller's `tasks` / `seeds` (env.tasks, env.test_seeds). With `model` (the policy the rollout samples from)
    and `cfg.theory`, also the theory check. The summary adds `play_seconds` (the episodes, expert solves included)
    and `seconds` (all, the theory check's forward passes included).

    `cfg.decoding=valid_actions` scores the valid actions with `model` itself (an hf rollout on it, whatever the
    backend); `cfg.also_valid_actions` plays every episode again that way, its summary merged in under
    `valid_actions/` and the whole pass in `.valid_actions`."""
    if cfg.also_valid_actions:
        free = evaluate(rollout, tokenizer, tasks, seeds, prompt_cfg, replace(cfg, also_valid_actions=False),
                        expert_cache, model)  # fmt: skip
        cfg = replace(cfg, decoding="valid_actions", also_valid_actions=False)
        other = evaluate(rollout, tokenizer, tasks, seeds, prompt_cfg, cfg, expert_cache, model)
        summary = free.summary | {f"valid_actions/{k}": v for k, v in other.summary.items()}
        return free._replace(summary=summary, valid_actions=other)
    if cfg.decoding == "valid_actions":
        if model is None:
            raise ValueError("eval.decoding=valid_actions scores the valid actions with the policy: pass its model")
        rollout = HFRollout(model, tokenizer)
    start = time.perf_counter()
    tasks = cfg.tasks if cfg.tasks is not None else list(tasks)
    seeds = cfg.seeds if cfg.seeds is not None else list(seeds)
    trajectories = [expert_trajectory(t, s, expert_cache) for t in tasks for s in seeds]
    instances = [Instance(tr.task, tr.seed, len(tr.plan)) for tr in trajectories for _ in range(cfg.episodes)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # sampled decoding: the same episodes for the same weights and config
        decide = rollout_decider(rollout, tokenizer, cfg, prompt_cfg.output_format)
        most = sum(episode_budget(i.task, i.t_gt, cfg.budget) for i in instances)  # answers, if all fail
        with Progress("eval", most, unit="answer") as bar:

            def decide_and_count(active: list[Episode], messages: list) -> list[str]:
                bar.update(len(active), episodes_left=len(active))
                return decide(active, messages)

            episodes = play(instances, prompt_cfg, cfg, decide_and_count)
    summary = summarize(episodes)
    paths = []
    summary["play_seconds"] = time.perf_counter() - start
    if cfg.theory and model is not None:
        paths = expert_path_probabilities(model, tokenizer, trajectories, prompt_cfg, cfg.temperature, 32, cfg.decoding)
        summary |= theory_summary(paths, cfg.temperature)
    summary["seconds"] = time.perf_counter() - start
    return Evaluation(summary, episodes, paths)


def write_results(
    path: str | Path,
    summary: dict[str, float],
    results: list[EpisodeResult],
    cfg: EvalConfig,
    paths: Sequence[PathProbability] = (),
) -> None:
    """One JSON file: the protocol and config, the summary (NaN as null), one row per episode and, with the theory
    check, one row per instance."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "invalid_protocol": cfg.invalid,
        "budget": cfg.budget,
        "config": asdict(cfg),
        "summary": {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()},
        "episodes": [asdict(r) for r in results],
        "theory": [asdict(p) | {"p0": p.p0} for p in paths],
    }
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))


def write_evaluation(path: str | Path, ev: Evaluation, cfg: EvalConfig) -> None:
    """`write_results` of `ev`, and of its valid-action pass (eval.also_valid_actions) in valid_actions/<name>."""
    write_results(path, ev.summary, ev.episodes, cfg, ev.paths)
    if ev.valid_actions is not None:
        other, path = ev.valid_actions, Path(path)
        restricted = replace(cfg, decoding="valid_actions", also_valid_actions=False)
        write_results(path.parent / "valid_actions" / path.name, other.summary, other.episodes, restricted, other.paths)


# --- the command line ------------------------------------------------------------------------------------------
TABLE_KEYS = ("sr", "asat", "asst", "min_step_sr", "p0", "invalid_rate", "parse_fail_rate")


def transcript_rows(results: Sequence[EpisodeResult]) -> list[list]:
    """The kept transcripts as rows of the `eval/transcripts` table (task, seed, success, steps, transcript)."""
    return [[r.task, r.seed, r.success, r.steps, json.dumps(r.transcript)] for r in results if r.transcript]


def results_table(summary: dict[str, float], tasks: Sequence[str]) -> str:
    """A markdown table of the summary: one row per task and one for all (p0: the theory check's prediction of
    min_step_sr; blank without it)."""

    def cell(v: float | None) -> str:
        return "" if v is None else "-" if math.isnan(v) else f"{v:.3f}"

    lines = ["| task | " + " | ".join(TABLE_KEYS) + " |", "|---" * (len(TABLE_KEYS) + 1) + "|"]
    for label, prefix in [*((t, f"{t}/") for t in tasks), ("all", "")]:
        lines.append(f"| {label} | " + " | ".join(cell(summary.get(prefix + k)) for k in TABLE_KEYS) + " |")
    return "\n".join(lines)


def protocol_line(cfg: EvalConfig, n_instances: int) -> str:
    decoding = "greedy" if cfg.temperature == 0 else f"sampled at temperature {cfg.temperature} (top_p {cfg.top_p})"
    decoding += {"free": "", "valid_actions": ", restricted to the valid actions"}[cfg.decoding]
    decoding += "; and again restricted to the valid actions" if cfg.also_valid_actions else ""
    return (
        f"{n_instances} instances x {cfg.episodes} episode(s), budget {cfg.budget}, invalid actions: {cfg.invalid}"
        + (f" (<= {cfg.max_requeries} re-queries, {cfg.max_exhausted} exhausted steps end it)" if cfg.invalid ==
           "requery" else " (a refused answer costs a step)")
        + f", decoding {decoding}"
    )  # fmt: skip


def run(cfg) -> Evaluation:
    """The CLI's job: load `cfg.model`, play, write <run dir>/results.json, log a W&B summary, print the table."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from planner_rl.model import load_model_and_tokenizer, model_config
    from planner_rl.sweep import job_name

    eval_cfg, prompt_cfg, rollout_cfg = (typed(cfg, k) for k in ("eval", "prompt", "rollout"))
    if differ := trained_prompt_differences(cfg.model.get("path"), prompt_cfg):
        print(f"warning: {cfg.model.path} was trained on another prompt than this evaluation's; to evaluate it on its "
              f"own, add: {' '.join(differ)}")  # fmt: skip
    run_dir = Path(cfg.paths.output_dir)
    tasks = eval_cfg.tasks or task_list(cfg.env.tasks)
    seeds = eval_cfg.seeds or seed_list(cfg.env.test_seeds, "env.test_seeds")
    model, tokenizer = load_model_and_tokenizer(model_config(cfg.model))
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    config = OmegaConf.to_container(cfg, resolve=True)
    logger = get_class(cfg.logger._target_)(OmegaConf.to_object(cfg.logger), run_dir, config, job_name(cfg))
    rollout = get_class(rollout_cfg._target_)(model, tokenizer, rollout_cfg)
    try:
        ev = evaluate(rollout, tokenizer, tasks, seeds, prompt_cfg, eval_cfg, cfg.expert_cache, model)
        write_evaluation(run_dir / "results.json", ev, eval_cfg)
        logger.summary({f"eval/{k}": v for k, v in ev.summary.items()})
        logger.table(
            "eval/transcripts", ["task", "seed", "success", "steps", "transcript"], transcript_rows(ev.episodes)
        )
        seconds = ev.summary["seconds"]
        print(f"model {model.name_or_path}: {protocol_line(eval_cfg, len(tasks) * len(seeds))}")
        if ev.valid_actions is not None:
            print(f"free generation ({seconds:.1f} s):")
        print(results_table(ev.summary, tasks))
        if ev.valid_actions is not None:
            print(f"restricted to the valid actions ({ev.summary['valid_actions/seconds']:.1f} s):")
            print(results_table(ev.valid_actions.summary, tasks))
        play = ev.summary["play_seconds"]
        print(f"{len(ev.episodes)} episodes in {play:.1f} s ({len(ev.episodes) / play:.1f} episodes/s), theory check "
              f"{seconds - play:.1f} s; results: {run_dir / 'results.json'}")  # fmt: skip
        return ev
    finally:
        rollout.close()
        logger.finish()


def main() -> None:
    import hydra

    from planner_rl.env.planner import NoPlanError
    from planner_rl.env.problem import ProblemError
    from planner_rl.env.strips.task import PDDLTaskError
    from planner_rl.env.tasks import TaskError
    from planner_rl.model import ModelLoadError
    from planner_rl.sweep import run_job

    register_configs()
    known = (ConfigError, ModelLoadError, TaskError, ProblemError, PDDLTaskError, NoPlanError, FileNotFoundError,
             ValueError)  # fmt: skip
    hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")(
        lambda cfg: run_job(run, cfg, known)
    )()


if __name__ == "__main__":
    main()
