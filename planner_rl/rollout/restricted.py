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

Each prompt runs through the model once with all its choices: packed into one sequence whose attention mask keeps
the answers apart (sdpa / eager attention), or with its KV cache repeated for them (`packing.group_log_probs`, for
flash attention). A ~750-token prompt and ~9 answers of ~12 tokens cost about one forward of 860 tokens, not nine
of 760.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from planner_rl.packing import group_log_probs
from planner_rl.parsing import format_target
from planner_rl.rollout import Completion, check_decoding
from planner_rl.rollout.tokens import answer_ids, stop_ids

__all__ = ["answer_choices", "check_decoding", "choice_log_probs", "choose"]
HEAD_ROWS = 256  # answer positions per output-head call (Qwen's 152k vocabulary: 156 MB of float32 logits)


def answer_choices(valid_actions: Sequence[str], fmt: str) -> list[str]:
    """The answer text of each distinct valid action, in listed order: the SFT target of that action."""
    return [format_target(a, fmt) for a in dict.fromkeys(valid_actions)]


@torch.no_grad()
def choice_log_probs(
    model, tokenizer, prompts: Sequence[list[int]], choices: Sequence[Sequence[str]], temperature: float = 1.0,
    batch_size: int = 64, packed: bool | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """Per prompt, a float32 [K] tensor: each choice's total log-likelihood (its tokens and end of turn) at
    `temperature` (0 means 1). Prompts are batched so that a batch holds about `batch_size` (prompt, choice) pairs.

    With sdpa or eager attention, each prompt and all its choices are one sequence whose attention mask lets every
    choice see the prompt and itself only (`packed_row`): one forward of about the prompt's length. Otherwise
    (flash attention takes no such mask) the prompt's KV cache is repeated for its choices (`group_log_probs`), the
    choices padded to the most any prompt of the batch has (repeats of its first, not read)."""
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
    if packed is None:
        packed = getattr(model.config, "_attn_implementation", "sdpa") in ("sdpa", "eager")
    was_training = model.training
    model.eval()  # no dropout while scoring; the caller's mode is restored
    try:
        for start in range(0, len(todo), per):
            chunk = todo[start : start + per]
            if packed:
                scores = _packed_scores(model, [prompts[k] for k in chunk], [encoded[k] for k in chunk], pad, temp)
                for k, sc in zip(chunk, scores, strict=True):
                    out[k] = sc
                continue
            K = max(len(encoded[k]) for k in chunk)
            rows = [c for k in chunk for c in encoded[k] + [encoded[k][0]] * (K - len(encoded[k]))]  # [len(chunk)*K]
            logp, mask = group_log_probs(model, [prompts[k] for k in chunk], rows, pad, temp)  # [len(chunk)*K, C] x2
            totals = (logp * mask).sum(dim=1).float().view(len(chunk), K).cpu()  # [len(chunk), K]
            for r, k in enumerate(chunk):
                out[k] = totals[r, : len(encoded[k])]
    finally:
        model.train(was_training)
    return out


def packed_row(prompt: list[int], answers: list[list[int]]) -> tuple[list[int], list[int], torch.Tensor, list[int]]:
    """One sequence for a prompt and its answers: (ids = prompt then every answer, position ids - each answer
    continues the prompt's, allowed [T, T] bool - row i may attend to column j: causal within the prompt, and each
    answer to the prompt and to its own earlier tokens, never to another answer, and the index of the position
    that predicts each answer token (its first: the prompt's last position))."""
    P = len(prompt)
    ids, positions, reads = list(prompt), list(range(P)), []
    T = P + sum(len(a) for a in answers)
    allowed = torch.zeros(T, T, dtype=torch.bool)
    allowed[:, :P] = torch.ones(T, P, dtype=torch.bool).tril()  # every answer row sees the whole prompt
    start = P
    for a in answers:
        L = len(a)
        allowed[start : start + L, start : start + L] = torch.ones(L, L, dtype=torch.bool).tril()
        ids += a
        positions += range(P, P + L)
        reads += [P - 1, *range(start, start + L - 1)]  # its first token follows the prompt, not the last answer
        start += L
    return ids, positions, allowed, reads


@torch.no_grad()
def _packed_scores(
    model, prompts: list[list[int]], answers: list[list[list[int]]], pad: int, temperature: float
) -> list[torch.Tensor]:
    """`choice_log_probs` of a batch, one packed row per prompt (right-padded; a padding position sees itself only)."""
    rows = [packed_row(p, a) for p, a in zip(prompts, answers, strict=True)]
    B, T = len(rows), max(len(r[0]) for r in rows)
    device = next(model.parameters()).device
    ids = torch.full((B, T), pad, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    allowed = torch.eye(T, dtype=torch.bool).repeat(B, 1, 1)  # [B, T, T]
    for b, (x, pos, allow, _) in enumerate(rows):
        n = len(x)
        ids[b, :n], positions[b, :n], allowed[b, :n, :n] = torch.tensor(x), torch.tensor(pos), allow
    hidden = model.get_decoder()(
        input_ids=ids.to(device), attention_mask=allowed[:, None].to(device), position_ids=positions.to(device)
    ).last_hidden_state  # [B, T, H]
    b_idx = torch.tensor([b for b, r in enumerate(rows) for _ in r[3]])  # one entry per answer token
    reads = torch.tensor([i for r in rows for i in r[3]])
    targets = torch.tensor([t for a in answers for ans in a for t in ans])
    picked, targets = hidden[b_idx.to(device), reads.to(device)], targets.to(device)  # [N, H], [N]
    head, logp = model.get_output_embeddings(), []
    for at in range(0, len(targets), HEAD_ROWS):  # [HEAD_ROWS, V] float32 logits at a time: a 150k vocabulary
        logits = head(picked[at : at + HEAD_ROWS]).float() / temperature
        logp.append(logits.gather(-1, targets[at : at + HEAD_ROWS, None]).squeeze(-1) - logits.logsumexp(dim=-1))
    logp = torch.cat(logp).cpu()  # [N]
    out, at = [], 0
    for a in answers:
        lengths = torch.tensor([len(x) for x in a])
        owner = torch.repeat_interleave(torch.arange(len(a)), lengths)
        out.append(torch.zeros(len(a)).index_add_(0, owner, logp[at : at + int(lengths.sum())]))
        at += int(lengths.sum())
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
