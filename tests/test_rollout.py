"""The hf rollout backend: prompt order, group layout, stop tokens, and the shared-prefix prefill."""

from __future__ import annotations

import pytest
import torch

from planner_rl.env.cooking import make_world
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rollout import Sampling
from planner_rl.rollout.hf import HFRollout, encode_prompt, generate, left_pad, stop_ids


@pytest.fixture(scope="module")
def tiny():
    return load_model_and_tokenizer(ModelConfig())


def prompts_of(tokenizer, seeds=(1000, 1001, 1002)):
    out = []
    for seed in seeds:  # different layouts: different prompt lengths, so left padding is exercised
        world = make_world("cheeseburger", seed)
        out.append(encode_prompt(tokenizer, build_messages(world, world.initial_state, [], PromptConfig())))
    return out


def test_shared_prefix_greedy_equals_plain_generate(tiny):
    model, tok = tiny
    prompts = prompts_of(tok)
    assert len({len(p) for p in prompts}) > 1
    grouped = generate(model, tok, prompts, n=3, max_new_tokens=12)  # greedy: every sample the same
    ids, mask = left_pad(prompts, tok.pad_token_id)
    with torch.no_grad():
        plain = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
            eos_token_id=stop_ids(tok), pad_token_id=tok.pad_token_id,
        )[:, ids.shape[1] :].tolist()  # fmt: skip
    for k, c in enumerate(grouped):
        assert c.prompt_index == k // 3
        expect = plain[k // 3][: len(c.token_ids)]
        assert c.token_ids == expect


def test_sampled_groups_are_adjacent_and_stop_at_end_of_turn(tiny):
    model, tok = tiny
    torch.manual_seed(0)
    out = HFRollout(model, tok).generate(prompts_of(tok), 4, Sampling(temperature=1.0, top_p=0.9, max_new_tokens=8))
    assert [c.prompt_index for c in out] == [0] * 4 + [1] * 4 + [2] * 4
    stops = set(stop_ids(tok))
    for c in out:
        assert 1 <= len(c.token_ids) <= 8
        assert c.finished == (c.token_ids[-1] in stops)
        assert not any(t in stops for t in c.token_ids[:-1])  # cut right after the first end-of-turn token
    assert len({tuple(c.token_ids) for c in out}) > 1  # sampling, not greedy


def test_rollout_restores_the_training_mode(tiny):
    model, tok = tiny
    model.train()
    HFRollout(model, tok).generate(prompts_of(tok, (1000,)), 2, Sampling(max_new_tokens=2))
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="training model"):
        HFRollout(model, tok).sync_weights(torch.nn.Linear(1, 1))


def test_sampling_draws_from_the_full_softmax_not_transformers_default_top_k(tiny):
    """GRPO differentiates log-probs of the full softmax at the sampling temperature, so the samples must come from
    it: transformers fills in top_k=50 unless told otherwise (a regression: it did, so no first token outside the
    50 likeliest was ever drawn, while the untrained tiny model puts most of its mass there)."""
    model, tok = tiny
    prompt = prompts_of(tok, (1000,))
    with torch.no_grad():
        probs = model(input_ids=torch.tensor(prompt)).logits[0, -1].softmax(-1)  # [V]: the first token's
    outside = torch.ones_like(probs, dtype=torch.bool)
    outside[probs.topk(50).indices] = False
    torch.manual_seed(0)
    out = HFRollout(model, tok).generate(prompt, 200, Sampling(temperature=1.0, top_p=1.0, max_new_tokens=1))
    drawn = sum(bool(outside[c.token_ids[0]]) for c in out) / len(out)
    expected = float(probs[outside].sum())
    assert expected > 0.3  # the check has power: much of the mass is beyond the top 50
    assert abs(drawn - expected) < 0.1, (drawn, expected)
