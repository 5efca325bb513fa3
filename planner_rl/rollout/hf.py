"""Batched generation with transformers' `generate` (KV cache, left padding), the CPU default rollout backend.

Prompts arrive as token ids (from `encode_prompt`, i.e. through the tokenizer's chat template); completions come
back as token ids cut after the first end-of-turn token, and as text without special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList, StaticCache

from planner_rl.packing import cache_keyword
from planner_rl.rollout import Completion, Sampling, check_decoding
from planner_rl.rollout.tokens import answer_ids, encode_prompt, stop_ids  # noqa: F401 (the module's API too)


@dataclass
class HFRolloutConfig:
    """conf/rollout/hf.yaml."""

    _target_: str = "planner_rl.rollout.hf.HFRollout"
    temperature: float = 1.0  # sampling temperature of the GRPO groups (0 = greedy)
    top_p: float = 1.0  # nucleus mass in (0, 1]
    max_new_tokens: int = 24  # per completion; an action is ~12 tokens of the tiny tokenizer
    batch_size: int = 64  # sequences per `generate` call (prompts x samples)
    decoding: str = "free"  # free | valid_actions: GRPO samples among the valid actions (rollout/restricted.py)

    def __post_init__(self) -> None:
        check_decoding(self.decoding, "rollout.decoding", self.top_p)

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both [B, max_len], padded on the left so every prompt ends at the last column."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s) :] = 1
    return ids, mask


def shared_prefix_cache(model, ids: torch.Tensor, mask: torch.Tensor, n: int, max_new_tokens: int) -> StaticCache:
    """The KV cache of every prompt token but the last ([p, ...] computed once, repeated to [p*n, ...]), in a cache
    preallocated for `max_new_tokens` more.

    `generate` given this cache and the repeated prompts only runs the last prompt token and the new ones, so a
    group's prefill costs one prompt instead of n (greedy outputs are token for token those of a plain `generate`,
    tests/test_rollout.py). Preallocated, because a growing cache copies all of itself at every new token (a
    `torch.cat` per layer), which the n-fold repeated prompt makes the larger part of sampling (docs/performance.md).
    """
    prefix = DynamicCache()
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [p, W]
    model(
        input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
        **{cache_keyword(model): prefix}, use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + max_new_tokens)
    for i, layer in enumerate(prefix.layers):  # [p, H, W-1, D] -> the first W-1 slots of [p*n, H, W+new, D]
        cache.update(layer.keys.repeat_interleave(n, dim=0), layer.values.repeat_interleave(n, dim=0), i)
    return cache


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """`logits` [B, V] with every token outside each row's nucleus set to -inf: the fewest most likely tokens whose
    probability reaches `top_p` (at least one; ties at the edge broken by sort order). top_p 1: `logits` itself."""
    if top_p >= 1.0:
        return logits
    order = logits.argsort(dim=-1, descending=True)  # [B, V]
    probs = logits.gather(-1, order).softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the likelier tokens
    cut = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order, before >= top_p)
    return logits.masked_fill(cut, float("-inf"))


def gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise from `uniform` in [0, 1): argmax(logits + gumbel(u)) over a row is one draw from
    softmax(logits) (the Gumbel-max trick), whose randomness is u alone."""
    return -torch.log(-torch.log(uniform))


class GroupNoise(LogitsProcessor):
    """Sampling as a deterministic function of per-group random streams: at each new token, scores / temperature,
    cut to the nucleus, plus Gumbel noise; `generate` then takes the argmax (greedy mode), which is a draw from the
    softmax at that temperature. Group g (rows g*n .. g*n+n-1) draws its noise from its own generator, seeded by
    `seeds[g]`, one [n, V] block per token whether or not its rows have finished, so its samples depend on its seed
    and the weights only, not on the other prompts of the batch (up to float rounding). The generators live on the
    scores' device (a GPU draws its own noise; nothing of vocabulary size crosses from the CPU per token)."""

    def __init__(self, seeds: list[int], n: int, temperature: float, top_p: float):
        self.seeds, self.gens = seeds, []
        self.n, self.temperature, self.top_p = n, temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.gens:  # the first token: the device is known now
            self.gens = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        shape = (self.n, scores.shape[-1])
        uniform = torch.cat([torch.rand(shape, generator=g, device=scores.device) for g in self.gens])  # [B, V]
        return nucleus(scores.float() / self.temperature, self.top_p) + gumbel(uniform)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    *,
    n: int = 1,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 32,
    seeds: list[int] | None = None,
) -> list[Completion]:
    """n completions per prompt (greedy when temperature == 0), in prompt order; batches of `batch_size` prompts.
    With `seeds` (one per prompt), prompt k's samples come from its own random stream seeded by seeds[k]
    (`GroupNoise`), so they do not depend on the batch; without, from torch's global generator."""
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    stops = stop_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    device = next(model.parameters()).device
    # top_k=0 explicitly: transformers otherwise fills in its default top_k=50, so the samples would come from a
    # truncated distribution while the GRPO update takes log-probs of the full softmax (and vLLM samples all of it);
    # repetition_penalty=1 likewise overrides a checkpoint's generation_config (Qwen2.5 Instruct ships 1.05-1.1)
    seeded = seeds is not None and temperature > 0  # greedy mode over each group's seeded noise: a draw per stream
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if temperature > 0 and not seeded
        else {"do_sample": False}
    )
    out: list[Completion] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        if seeded:
            noise = GroupNoise(seeds[start : start + batch_size], n, temperature, top_p)
            sampling["logits_processor"] = LogitsProcessorList([noise])
        ids, mask = left_pad(chunk, pad)
        ids, mask = ids.to(device), mask.to(device)
        prefix = {}
        if n > 1 and ids.shape[1] > 1:  # run each prompt once, not n times: its cache is repeated for the samples
            prefix = {cache_keyword(model): shared_prefix_cache(model, ids, mask, n, max_new_tokens)}
            ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
        seqs = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            num_return_sequences=1 if prefix else n,
            eos_token_id=stops,
            pad_token_id=pad,
            repetition_penalty=1.0,
            **prefix,
            **sampling,
        )  # [len(chunk) * n, width + new], each prompt's n samples adjacent
        new = seqs[:, ids.shape[1] :].tolist()
        for row, gen in enumerate(new):
            end = next((k for k, t in enumerate(gen) if t in stops), None)
            kept = gen if end is None else gen[: end + 1]
            text = tokenizer.decode(kept, skip_special_tokens=True)
            out.append(Completion(start + row // n, kept, text, end is not None))
    return out


class HFRollout:
    """`rollout=hf`: samples from the training model itself, so syncing weights costs nothing."""

    def __init__(self, model, tokenizer, cfg: HFRolloutConfig | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = (cfg or HFRolloutConfig()).batch_size

    def generate(
        self, prompts: list[list[int]], n: int, sampling: Sampling, seeds: list[int] | None = None,
        choices: list[list[str]] | None = None,
    ) -> list[Completion]:  # fmt: skip
        if choices is not None:  # rollout.decoding=valid_actions (planner_rl/rollout/restricted.py)
            from planner_rl.rollout.restricted import choose  # here: only the restricted path needs it

            check_decoding("valid_actions", "decoding", sampling.top_p)
            kw = {"n": n, "temperature": sampling.temperature, "seeds": seeds, "batch_size": self.batch_size}
            return choose(self.model, self.tokenizer, prompts, choices, **kw)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling; the caller's mode is restored
        kw = {"max_new_tokens": sampling.max_new_tokens, "temperature": sampling.temperature, "top_p": sampling.top_p}
        try:
            batch = max(1, self.batch_size // n)
            return generate(self.model, self.tokenizer, prompts, n=n, batch_size=batch, seeds=seeds, **kw)
        finally:
            self.model.train(was_training)

    def sync_weights(self, model) -> None:
        if model is not self.model:
            raise ValueError("rollout=hf samples from the training model itself; it cannot follow another model")

    def close(self) -> None:
        self.model = None
