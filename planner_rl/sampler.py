"""Group sampling for the GRPO loop: which training items come next, G samples of each, and their scores.

    single_turn   a group is G completions of one training prompt (one state of an expert plan), each scored by the
                  configured reward (planner_rl/rewards.py)
    multi_turn    a group is G whole episodes of one training instance (task, layout), played under `eval`'s budget
                  and invalid-action protocol; an episode scores 1.0 for success, else 0.0

The data order is a function of (seed, position) alone (`prompt_order`), and a single-turn group's samples are a
function of (seed, its position, the weights), so a resumed run draws exactly what the uninterrupted one would have.
`draw_groups` adds the zero-variance policy (keep, drop, or resample until the step has informative groups).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from planner_rl import distributed as dist
from planner_rl.evaluate import EpisodeResult, EvalConfig, Instance, episode_choices, play
from planner_rl.grpo import GRPOConfig, zero_variance_groups
from planner_rl.prompts import PromptConfig
from planner_rl.rewards import RewardConfig, compute_reward
from planner_rl.rollout import Completion, RolloutBackend, Sampling
from planner_rl.rollout.hf import encode_prompt
from planner_rl.rollout.restricted import answer_choices


def prompt_order(n: int, seed: int, position: int, count: int) -> list[int]:
    """Training-prompt indices at global positions [position, position + count): epoch e = p // n of the data is a
    permutation of range(n) seeded by (seed, e), so the order resumes from `position` alone."""
    out, perms = [], {}
    for p in range(position, position + count):
        epoch, i = divmod(p, n)
        if epoch not in perms:
            perms[epoch] = list(range(n))
            random.Random(f"{seed}/{epoch}").shuffle(perms[epoch])
        out.append(perms[epoch][i])
    return out


# --- single turn ---------------------------------------------------------------------------------------------------
@dataclass
class Groups:
    """Scored groups of one or more draws: `idx[g]` is group g's training-prompt index; `completions`, `scores` and
    `infos` have len(idx) * G rows, each group's G samples adjacent; `score_s` the seconds spent scoring."""

    idx: list[int]
    completions: list[Completion]
    scores: list[float]
    infos: list[dict]
    score_s: float = 0.0

    def __add__(self, other: Groups) -> Groups:
        return Groups(
            self.idx + other.idx, self.completions + other.completions, self.scores + other.scores,
            self.infos + other.infos, self.score_s + other.score_s,
        )  # fmt: skip


class SingleTurnSampler:
    """Draws this rank's share of the next training prompts, G samples each, scored (one state per prompt)."""

    def __init__(
        self, rollout: RolloutBackend, tokenizer, rows: Sequence[Mapping], group_size: int, sampling: Sampling,
        reward: RewardConfig, fmt: str, seed: int, rank: int = 0, world: int = 1, restricted: bool = False,
    ):  # fmt: skip
        self.rollout, self.tokenizer, self.rows, self.G, self.sampling = rollout, tokenizer, rows, group_size, sampling
        self.reward, self.fmt, self.seed, self.rank, self.world = reward, fmt, seed, rank, world
        self.restricted = restricted  # rollout.decoding=valid_actions: sample among each prompt's valid actions
        self.encoded: dict[int, list[int]] = {}  # prompt token ids by training-example index: tokenised once per run

    def __len__(self) -> int:  # items in one epoch of the data order
        return len(self.rows)

    def set_rows(self, rows: Sequence[Mapping]) -> None:
        """A new prompt pool (grpo.refresh_states_every); the data order goes on from the same position over it."""
        self.rows, self.encoded = rows, {}

    def prompt(self, i: int) -> list[int]:
        if i not in self.encoded:
            self.encoded[i] = encode_prompt(self.tokenizer, self.rows[i]["prompt"])
        return self.encoded[i]

    def draw(self, position: int, count: int) -> Groups:
        """This rank's share of the `count` prompts at data-order `position`, G samples each, and their scores."""
        share = count // self.world
        first = position + self.rank * share  # global data-order position of this rank's first prompt
        idx = prompt_order(len(self.rows), self.seed, first, share)
        prompts = [self.prompt(i) for i in idx]
        seeds = [self.seed * 1_000_003 + first + k for k in range(share)]  # a group's samples: f(seed, position)
        choices = [answer_choices(self.rows[i]["valid_actions"], self.fmt) for i in idx] if self.restricted else None
        kw = {"choices": choices} if choices is not None else {}
        comps = self.rollout.generate(prompts, self.G, self.sampling, seeds, **kw)  # [share*G], each prompt's adjacent
        t = time.perf_counter()
        scored = [
            compute_reward(self.reward, c.text, self.rows[idx[k // self.G]], self.fmt) for k, c in enumerate(comps)
        ]
        score_s = time.perf_counter() - t
        return Groups(idx, comps, [s for s, _ in scored], [i for _, i in scored], score_s)


@dataclass
class Draw:
    """A step's single-turn groups: `keep` the groups trained on, `zero` [N] the first draw's zero-variance flags,
    `rounds` the resampling rounds taken, `position` the data-order position after the step's draws."""

    groups: Groups
    keep: list[int]
    zero: torch.Tensor
    rounds: int
    position: int


def draw_groups(sampler: SingleTurnSampler, position: int, grpo: GRPOConfig) -> Draw:
    """Sample and score `grpo.prompts_per_step` groups; `grpo.zero_variance`: keep them all, drop the zero-variance
    ones, or resample (up to `max_resample_rounds` more draws) until as many informative groups as prompts."""
    N, G = grpo.prompts_per_step, sampler.G
    groups = sampler.draw(position, N)
    position += N
    zero = zero_variance_groups(torch.tensor(groups.scores), G)  # [N]
    keep = (
        [g for g in range(len(groups.idx)) if not zero[g]]
        if grpo.zero_variance != "keep"
        else list(range(len(groups.idx)))
    )
    rounds = 0
    while grpo.zero_variance == "resample" and len(keep) < N and rounds < grpo.max_resample_rounds:
        rounds += 1
        more = sampler.draw(position, N)
        position += N
        base = len(groups.idx)
        groups = groups + more
        fresh = zero_variance_groups(torch.tensor(more.scores), G)
        keep += [base + g for g in range(len(more.idx)) if not fresh[g]]
    if grpo.zero_variance == "resample":
        keep = keep[:N]
    return Draw(groups, keep, zero, rounds, position)


def group_figures(draw: Draw, sampler: SingleTurnSampler, zero_variance: str) -> dict[str, float]:
    """reward/ and rollout/ figures of a step's scored groups, over all ranks (docs/metrics.md)."""
    g = draw.groups
    sums = dist.all_sum(
        [len(g.scores), sum(g.scores), sum(i["main"] for i in g.infos), sum(i["valid"] for i in g.infos),
         sum(i["well_formed"] for i in g.infos), sum(len(c.token_ids) for c in g.completions),
         sum(not c.finished for c in g.completions), float(draw.zero.sum()), len(draw.zero), len(draw.keep)]
    )  # fmt: skip
    n = max(sums[0], 1)
    figures = {
        "reward/mean": sums[1] / n, "reward/main": sums[2] / n, "reward/valid_rate": sums[3] / n,
        "reward/format_rate": sums[4] / n, "rollout/completion_tokens": sums[5] / n,
        "rollout/truncated_frac": sums[6] / n, "rollout/zero_variance_frac": sums[7] / max(sums[8], 1),
        "rollout/groups": int(sums[9]),
        "rollout/prompt_tokens": sum(len(sampler.prompt(i)) for i in g.idx) / len(g.idx),
    }  # fmt: skip
    if zero_variance == "resample":
        figures["rollout/resample_rounds"] = draw.rounds
    return figures


# --- multi turn ----------------------------------------------------------------------------------------------------
@dataclass
class Episodes:
    """G sampled episodes per instance: `turns[e]` episode e's (prompt ids, completion) per turn, `scores[e]` its
    reward, `completions` every turn's completion, `played` the episodes' results."""

    turns: list[list[tuple[list[int], Completion]]]
    scores: list[float]
    completions: list[Completion]
    played: list[EpisodeResult]


class _TurnRecorder:
    """A `decide` for `play` that samples one completion per active episode and keeps each turn's prompt ids and
    completion by episode: one batched generate call per turn over all G*N episodes."""

    def __init__(self, rollout: RolloutBackend, tokenizer, sampling: Sampling, fmt: str | None = None):
        self.rollout, self.tokenizer, self.sampling = rollout, tokenizer, sampling
        self.fmt = fmt  # set: sample among each episode's valid actions (rollout.decoding=valid_actions)
        self.turns: dict[int, list[tuple[list[int], Completion]]] = {}

    def __call__(self, episodes, messages) -> list[str]:
        prompts = [encode_prompt(self.tokenizer, m) for m in messages]
        kw = {"choices": episode_choices(episodes, self.fmt)} if self.fmt is not None else {}
        comps = self.rollout.generate(prompts, 1, self.sampling, **kw)  # one call per turn over all G*N episodes
        for ep, p, c in zip(episodes, prompts, comps, strict=True):
            self.turns.setdefault(ep.index, []).append((p, c))
        return [c.text for c in comps]


class EpisodeSampler:
    """Draws the next training instances of the data order, G sampled episodes each (multi_turn)."""

    def __init__(
        self, rollout: RolloutBackend, tokenizer, rows: Sequence[Mapping], group_size: int, sampling: Sampling,
        prompt_cfg: PromptConfig, eval_cfg: EvalConfig, seed: int, restricted: bool = False,
    ):  # fmt: skip
        self.rollout, self.tokenizer, self.G, self.sampling = rollout, tokenizer, group_size, sampling
        self.restricted = restricted
        self.prompt_cfg, self.seed = prompt_cfg, seed
        self.instances = sorted({(r["task"], r["seed"], r["t_gt"]) for r in rows}, key=str)
        self.episode_cfg = replace(eval_cfg, transcripts=0, lockstep=True, episodes=1)

    def __len__(self) -> int:
        return len(self.instances)

    def draw(self, position: int, count: int) -> Episodes:
        """The `count` instances at data-order `position`, G episodes each; reward 1.0 for success, else 0.0 (the
        sparse episode reward the method argues against)."""
        idx = prompt_order(len(self.instances), self.seed, position, count)
        fmt = self.prompt_cfg.output_format if self.restricted else None
        decide = _TurnRecorder(self.rollout, self.tokenizer, self.sampling, fmt)
        instances = [Instance(*self.instances[i]) for i in idx for _ in range(self.G)]
        played = play(instances, self.prompt_cfg, self.episode_cfg, decide)
        turns = [decide.turns.get(k, []) for k in range(len(played))]
        return Episodes(turns, [float(r.success) for r in played], [c for u in turns for _, c in u], played)


def episode_figures(episodes: Episodes, zero: torch.Tensor, keep: list[int]) -> dict[str, float]:
    """reward/ and rollout/ figures of a step's episodes (`zero` [N] the zero-variance flags, `keep` the groups
    trained on); one rank only (multi_turn runs in one process)."""
    scores, played, comps = episodes.scores, episodes.played, episodes.completions
    answers = max(sum(r.answers for r in played), 1)
    return {
        "reward/mean": sum(scores) / len(scores), "reward/main": sum(scores) / len(scores),
        "reward/valid_rate": 1 - sum(r.invalid for r in played) / answers,
        "reward/format_rate": 1 - sum(r.malformed for r in played) / answers,
        "rollout/completion_tokens": sum(len(c.token_ids) for c in comps) / max(len(comps), 1),
        "rollout/truncated_frac": sum(not c.finished for c in comps) / max(len(comps), 1),
        "rollout/episode_turns": len(comps) / len(played),
        "rollout/prompt_tokens": sum(len(p) for u in episodes.turns for p, _ in u) / max(len(comps), 1),
        "rollout/zero_variance_frac": float(zero.float().mean()), "rollout/groups": len(keep),
    }  # fmt: skip
