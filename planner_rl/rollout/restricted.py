"""Decoding restricted to the valid actions: the answer is one of a listed set of texts, never free text.

    choices = [answer_choices(ex["valid_actions"], "action") for ex in examples]
    comps = choose(model, tokenizer, prompts, choices)                      # greedy: the most likely valid answer
    comps = choose(model, tokenizer, prompts, choices, n=8, temperature=1.0, seeds=[...])   # a GRPO group each

A choice's answer is the exact SFT target text (`parsing.format_target`: `Action: <action>`, or the empty think
block then that line) and the end-of-turn token, tokenised as SFT tokenises it (`rollout.hf.answer_ids`). Its score
is the total log-likelihood of those tokens at temperature T (1 when greedy), the sum the GRPO update computes for
the same tokens. Greedy picks the highest score (ties: the first listed); sampling draws from softmax(scores), which
is free sampling at temperature T (top_p 1) conditioned on the answer being one of the choices. The completion is the
choice's token ids, so the update's log-probs are the policy's log-probs of exactly these tokens (not renormalised
over the choices: within a group the normaliser is one constant per prompt, which mean-centred advantages cancel).

Each prompt runs through the model once and its KV cache is repeated for its choices (`packing.group_log_probs`):
a ~750-token prompt and ~9 answers of ~12 tokens cost about one prompt's forward, not nine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from planner_rl.packing import group_log_probs
from planner_rl.parsing import format_target
from planner_rl.rollout import Completion, check_decoding
from planner_rl.rollout.hf import answer_ids, stop_ids

__all__ = ["answer_choices", "check_decoding", "choice_log_probs", "choose"]


def answer_choices(valid_actions: Sequence[str], fmt: str) -> list[str]:
    """The answer text of each distinct valid action, in listed order: the SFT target of that action."""
    return [format_target(a, fmt) for a in dict.fromkeys(valid_actions)]


@torch.no_grad()
def choice_log_probs(
    model, tokenizer, prompts: Sequence[list[int]], choices: Sequence[Sequence[str]], temperature: float = 1.0,
    batch_size: int = 64,
) -> list[torch.Tensor]:  # fmt: skip
    """Per prompt, a float32 [K] tensor: each choice's total log-likelihood (its tokens and end of turn) at
    `temperature` (0 means 1). Prompts are batched so that a batch holds about `batch_size` (prompt, choice) rows;
    within a batch every prompt's choices are padded to the most any has (repeats of its first, not read)."""
    if len(prompts) != len(choices):
        raise ValueError(f"{len(choices)} choice lists for {len(prompts)} prompts")
    temp = temperature if temperature > 0 else 1.0
    stop = stop_ids(tokenizer)[0]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop
    encoded = [[answer_ids(tokenizer, c) for c in cs] for cs in choices]
    out: list[torch.Tensor] = [torch.zeros(0)] * len(prompts)
    todo = [k for k in range(len(prompts)) if encoded[k]]  # a prompt without choices has no scores
    widest = max((len(encoded[k]) for k in todo), default=1)
    per = max(1, batch_size // widest)
    was_training = model.training
    model.eval()  # no dropout while scoring; the caller's mode is restored
    try:
        for start in range(0, len(todo), per):
            chunk = todo[start : start + per]
            K = max(len(encoded[k]) for k in chunk)
            rows = [c for k in chunk for c in encoded[k] + [encoded[k][0]] * (K - len(encoded[k]))]  # [len(chunk)*K]
            logp, mask = group_log_probs(model, [prompts[k] for k in chunk], rows, pad, temp)  # [len(chunk)*K, C] x2
            totals = (logp * mask).sum(dim=1).float().view(len(chunk), K).cpu()  # [len(chunk), K]
            for r, k in enumerate(chunk):
                out[k] = totals[r, : len(encoded[k])]
    finally:
        model.train(was_training)
    return out


def choose(
    model, tokenizer, prompts: Sequence[list[int]], choices: Sequence[Sequence[str]], *, n: int = 1,
    temperature: float = 0.0, seeds: Sequence[int] | None = None, batch_size: int = 64,
) -> list[Completion]:  # fmt: skip
    """n completions per prompt, each one of that prompt's `choices`, in the rollout layout (row p*n + k is sample k
    of prompt p; a choice listed twice counts twice: `answer_choices` lists each once). Greedy (temperature 0): the
    highest-scoring choice, n times. Sampled: n independent draws from softmax(scores at the temperature), from a
    `torch.Generator` seeded by the prompt's seed when `seeds` are given (batch-independent), else from torch's
    global generator. A prompt without choices gets n empty, unfinished completions (refused as malformed)."""
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    scores = choice_log_probs(model, tokenizer, prompts, choices, temperature, batch_size)
    out: list[Completion] = []
    for p, (texts, s) in enumerate(zip(choices, scores, strict=True)):
        if not len(s):
            out += [Completion(p, [], "", False)] * n
            continue
        if temperature == 0:
            picks = [int(s.argmax())] * n
        else:
            gen = torch.Generator().manual_seed(int(seeds[p])) if seeds is not None else None
            picks = torch.multinomial(torch.softmax(s, dim=0), n, replacement=True, generator=gen).tolist()
        for i in picks:
            ids = answer_ids(tokenizer, texts[i])
            out.append(Completion(p, ids, tokenizer.decode(ids, skip_special_tokens=True), True))
    return out
