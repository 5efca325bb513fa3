"""States the policy itself reaches, labelled by the expert replanned there (DAgger's data, the method's labels).

The method's prompts are the states of the expert's own plan; the closed loop, after the policy's first wrong move,
visits states no such prompt shows (a wrong station, cheese on the wrong bun), and a tiny model then moves back and
forth until its budget ends (docs/scaling.md). This module plays the policy in closed loop on training layouts
(`planner_rl.evaluate.play`, the evaluation's own protocol), records every state it meets, and turns each into a
single-turn example whose target is the optimal expert's next action *from that state* (`solve(world, state)`, the
same planner as the expert's plans): the same 0/1 "matches the expert" reward, on the states the policy needs.

    examples = policy_examples(model, tokenizer, ["cheeseburger"], range(5000, 5200), prompt, eval_cfg)

The examples have the columns of `planner_rl.data.trajectory_examples`; `detour` holds `policy` (their origin), `step`
the turn at which the policy reached the state, `history` the actions it took, and a state the policy reached after
a refused answer keeps its `Feedback:` section. A state met twice in one episode (a loop) is kept once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from planner_rl.data import expert_trajectory
from planner_rl.env.families import solve
from planner_rl.env.planner import NoPlanError
from planner_rl.eval_protocol import EvalConfig
from planner_rl.evaluate import Episode, Instance, play, rollout_decider
from planner_rl.parsing import format_target
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rollout.hf import HFRollout

ORIGIN = "policy"  # the `detour` column of a policy-state example


def visited_states(
    rollout, tokenizer, tasks: Sequence[str], seeds: Sequence[int], prompt: PromptConfig, cfg: EvalConfig,
    expert_cache: str | None = None,
) -> list[tuple[Episode, object, list[str], str | None, int]]:  # fmt: skip
    """Play one episode per (task, seed) with `rollout`'s policy under protocol `cfg`; every state met before the
    episode ends, as (episode, state, history, feedback, turn), the first visit of each state per episode only."""
    instances = [
        Instance(t, s, len(expert_trajectory(t, s, expert_cache).plan)) for t in tasks for s in seeds
    ]  # fmt: skip
    decide = rollout_decider(rollout, tokenizer, cfg, prompt.output_format)
    seen: set[tuple[int, object, str | None]] = set()
    visits: list = []

    def record(episodes: list[Episode], messages: list) -> list[str]:
        for ep in episodes:
            key = (ep.index, ep.state, ep.feedback)
            if key not in seen:
                seen.add(key)
                visits.append((ep, ep.state, list(ep.history), ep.feedback, ep.steps))
        return decide(episodes, messages)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        play(instances, prompt, replace(cfg, transcripts=0, also_valid_actions=False), record)
    return visits


def label_visits(visits: list, prompt: PromptConfig) -> list[dict]:
    """One example per visited state: the expert replanned from it is the target (states with no plan left out)."""
    out = []
    for ep, state, history, feedback, turn in visits:
        world = ep.world
        if world.is_goal(state):
            continue
        try:
            sol = solve(world, state)
        except NoPlanError:  # a dead end (e.g. an item thrown where it cannot be taken back)
            continue
        action = sol.texts[0]
        out.append({
            "prompt": build_messages(world, state, history, prompt, feedback),
            "expert_action": action,
            "optimal_actions": [a.text for a in sol.optimal_actions[0]],
            "valid_actions": [a.text for a in world.valid_actions(state)],
            "history": history,
            "task": ep.task,
            "seed": ep.seed,
            "step": turn,
            "t_gt": ep.t_gt,
            "detour": ORIGIN,
            "label": action,
            "label_corrupted": False,
            "target": format_target(action, prompt.output_format),
        })  # fmt: skip
    return out


def policy_examples(
    model, tokenizer, tasks: Sequence[str], seeds: Sequence[int], prompt: PromptConfig, cfg: EvalConfig,
    expert_cache: str | None = None, off_plan_only: bool = False,
) -> list[dict]:  # fmt: skip
    """`label_visits(visited_states(...))` with `model` decoding as `cfg` says (greedy by default: the states the
    evaluation will meet). `off_plan_only`: only the states the expert's own plan never shows (the policy's errors
    and what follows them), i.e. those whose turn differs from the expert's step or whose state left the plan."""
    was_training = model.training
    model.eval()
    try:
        visits = visited_states(HFRollout(model, tokenizer), tokenizer, tasks, seeds, prompt, cfg, expert_cache)
    finally:
        model.train(was_training)
    if off_plan_only:  # on the plan: no refusal yet and the plan's own actions, one a turn
        plans = {(t, s): list(expert_trajectory(t, s, expert_cache).plan) for t in tasks for s in seeds}
        on_plan = [fb is None and turn == len(h) and plans[ep.task, ep.seed][: len(h)] == h
                   for ep, _, h, fb, turn in visits]  # fmt: skip
        visits = [v for v, on in zip(visits, on_plan, strict=True) if not on]
    return label_visits(visits, prompt)
