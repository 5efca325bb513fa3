"""Single-turn rewards: pure functions of (completion, example, output format) -> (score, info).

An example is a mapping with `expert_action` (str), `optimal_actions` (list[str], contains the expert action),
`valid_actions` (list[str], contains every optimal action), `task` (str), `seed` (int | None: the layout seed) and
`step` (int: the state's index on the expert plan). The completion is parsed by `planner_rl.parsing` (format rules,
normalised matching against the valid actions); a malformed completion has no action.

Main rewards, each 0 or 1 (`REWARD_NAMES`):

- `expert_match`: 1{parsed action == expert action}, the paper's reward.
- `optimal_set`:  1{parsed action in optimal_actions}: any action that begins some optimal plan.
- `noisy_expert`: 1{parsed action == label}, where `corrupt_label` replaces the expert action, with probability
  `noise_p`, by a seeded uniform choice among the valid non-expert actions (the label-noise experiment).

`compute_reward(cfg, completion, example, fmt)` adds two shaping components with non-negative weights:

    score = main + format_weight * well_formed + valid_weight * valid

where well_formed is 1 if the completion has the format's structure and valid is 1 if its action is one of the
state's valid actions (valid implies well_formed, and main = 1 implies valid). The four outcomes score
malformed 0, well-formed but invalid fw, valid but wrong fw + vw, correct 1 + fw + vw; so
score is always in [0, 1 + format_weight + valid_weight]. With both weights 0 (the default) it is the main reward.

Every info dict has `parsed_action` (str | None), `well_formed`, `valid`, `matched` (bool), `error` (str | None:
why there is no action) and `label` (the action that would have scored, None for `optimal_set`);
`noisy_expert` adds `corrupted`; `compute_reward` adds `main` (the main score) and `score`.
Rewards never raise on a completion; a malformed example (an expert action that is not valid) raises ValueError.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from planner_rl.parsing import Parsed, parse_completion

REWARD_NAMES = ("expert_match", "optimal_set", "noisy_expert")


@dataclass  # not frozen: it is also the structured-config schema of its conf/ group
class RewardConfig:
    """Which main reward, and the weights of the shaping components (conf/reward/*.yaml)."""

    name: str = "expert_match"  # one of REWARD_NAMES
    format_weight: float = 0.0  # >= 0, added when the completion is well-formed
    valid_weight: float = 0.0  # >= 0, added when the action is valid
    noise_p: float = 0.0  # in [0, 1]; noisy_expert only: the probability a label is corrupted
    noise_seed: int = 0  # noisy_expert only: the global label-noise seed

    def __post_init__(self) -> None:
        if self.name not in REWARD_NAMES:
            raise ValueError(f"reward.name: unknown reward {self.name!r}; expected one of {REWARD_NAMES}")
        for key in ("format_weight", "valid_weight"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"reward.{key} must be a finite number >= 0, got {value!r}")
        _check_probability(self.noise_p)


def _check_probability(p: float) -> None:
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise ValueError(f"reward.noise_p must be in [0, 1], got {p!r}")


def _check_example(example: Mapping) -> None:
    """Fail loudly on a data bug: the labels must be among the valid actions, or no completion could ever score."""
    valid = set(example["valid_actions"])
    if example["expert_action"] not in valid:
        raise ValueError(f"example: expert_action {example['expert_action']!r} is not among its valid_actions")
    if not set(example["optimal_actions"]) <= valid:
        raise ValueError("example: optimal_actions must be a subset of valid_actions")


def _parse(completion: object, example: Mapping, fmt: str) -> Parsed:
    _check_example(example)
    return parse_completion(completion, fmt, example["valid_actions"])


def _result(parsed: Parsed, matched: bool, label: str | None, **extra: object) -> tuple[float, dict]:
    info = {
        "parsed_action": parsed.action,
        "well_formed": parsed.well_formed,
        "valid": parsed.valid,
        "matched": matched,
        "error": parsed.error,
        "label": label,
        **extra,
    }
    return float(matched), info


def expert_match(completion: object, example: Mapping, fmt: str) -> tuple[float, dict]:
    """1.0 if the completion's action is the expert's next action, else 0.0."""
    parsed = _parse(completion, example, fmt)
    label = example["expert_action"]
    return _result(parsed, parsed.action is not None and parsed.action == label, label)


def optimal_set(completion: object, example: Mapping, fmt: str) -> tuple[float, dict]:
    """1.0 if the completion's action begins some optimal plan (is in `optimal_actions`), else 0.0."""
    parsed = _parse(completion, example, fmt)
    return _result(parsed, parsed.action is not None and parsed.action in set(example["optimal_actions"]), None)


def corrupt_label(example: Mapping, p: float, seed: int) -> tuple[str, bool]:
    """(label, corrupted): the expert action, or with probability `p` a uniform choice among the valid non-expert
    actions. Deterministic in (seed, task, layout seed, step); the valid list's order does not matter. The same
    examples are corrupted at a larger p (corrupted iff u < p for one draw u), each to the same action. With no
    valid non-expert action the label stays the expert's (corrupted=False). Usable for rewards and SFT targets."""
    _check_probability(p)
    expert = example["expert_action"]
    rng = random.Random(f"{seed}/{example['task']}/{example['seed']}/{example['step']}")
    u = rng.random()
    others = sorted(set(example["valid_actions"]) - {expert})
    if u >= p or not others:
        return expert, False
    return others[rng.randrange(len(others))], True


def noisy_expert(completion: object, example: Mapping, fmt: str, p: float, seed: int) -> tuple[float, dict]:
    """1.0 if the completion's action is the (possibly corrupted) label of `corrupt_label(example, p, seed)`."""
    parsed = _parse(completion, example, fmt)
    label, corrupted = corrupt_label(example, p, seed)
    return _result(parsed, parsed.action is not None and parsed.action == label, label, corrupted=corrupted)


def compute_reward(cfg: RewardConfig, completion: object, example: Mapping, fmt: str) -> tuple[float, dict]:
    """score = main + format_weight * well_formed + valid_weight * valid (see the module docstring)."""
    if cfg.name == "expert_match":
        main, info = expert_match(completion, example, fmt)
    elif cfg.name == "optimal_set":
        main, info = optimal_set(completion, example, fmt)
    elif cfg.name == "noisy_expert":
        main, info = noisy_expert(completion, example, fmt, cfg.noise_p, cfg.noise_seed)
    else:  # unreachable through RewardConfig's own check; kept for configs built around it
        raise ValueError(f"reward.name: unknown reward {cfg.name!r}; expected one of {REWARD_NAMES}")
    score = main + cfg.format_weight * float(info["well_formed"]) + cfg.valid_weight * float(info["valid"])
    info["main"], info["score"] = main, score
    return score, info
