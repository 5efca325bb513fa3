"""The hf rollout backend: prompt order, group layout, stop tokens, and the shared-prefix prefill."""

from __future__ import annotations

import pytest
import torch

from planner_rl.env.cooking import make_world
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rollout import Sampling
from planner_rl.rollout.hf import (
    GroupNoise,
    HFRollout,
    encode_prompt,
    generate,
    gumbel,
    left_pad,
    nucleus,
    stop_ids,
)


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


def test_nucleus_keeps_the_fewest_likeliest_tokens_reaching_top_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]).log()
    kept = nucleus(logits, 0.8).isfinite().tolist()
    assert kept == [[True, True, False, False], [False, False, True, True]]  # 0.5 + 0.3 reaches 0.8
    assert nucleus(logits, 0.85).isfinite().sum(dim=1).tolist() == [3, 3]
    assert nucleus(logits, 0.1).isfinite().sum(dim=1).tolist() == [1, 1]  # at least the likeliest
    assert nucleus(logits, 1.0) is logits


def test_gumbel_noise_is_the_inverse_of_its_cdf():
    g = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # the noise wanted; u = exp(-exp(-g)) makes it
    assert torch.allclose(gumbel(torch.exp(-torch.exp(-g))), g, atol=1e-6)
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert (logits + gumbel(torch.exp(-torch.exp(-g)))).argmax(dim=-1).tolist() == [1, 0]  # 0 < 1; 2 > 1


def test_seeded_groups_depend_on_their_seed_only(tiny):
    """The GRPO loop's groups: one batched `generate`, each group sampled from its own seeded stream. A prompt's
    samples are the same alone, in another batch or batch size, and another seed draws others (that the draws follow
    the tempered softmax: test_group_noise_draws_from_the_tempered_nucleus_softmax)."""
    model, tok = tiny
    prompts = prompts_of(tok)
    together = generate(model, tok, prompts, n=4, max_new_tokens=6, temperature=1.0, seeds=[5, 6, 7], batch_size=3)
    alone = generate(model, tok, prompts[1:2], n=4, max_new_tokens=6, temperature=1.0, seeds=[6])
    split = generate(model, tok, prompts[::-1], n=4, max_new_tokens=6, temperature=1.0, seeds=[7, 6, 5], batch_size=2)
    assert [c.token_ids for c in alone] == [c.token_ids for c in together[4:8]] == [c.token_ids for c in split[4:8]]
    assert [c.token_ids for c in together[:4]] != [c.token_ids for c in together[4:8]]
    again = generate(model, tok, prompts, n=4, max_new_tokens=6, temperature=1.0, seeds=[8, 6, 7], batch_size=3)
    assert [c.token_ids for c in again[:4]] != [c.token_ids for c in together[:4]]  # another seed, other samples
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        generate(model, tok, prompts, n=2, temperature=1.0, seeds=[1, 2])


def test_group_noise_draws_from_the_tempered_nucleus_softmax():
    """generate's argmax over `GroupNoise`'s scores is a draw from softmax(scores / T) cut to the top_p nucleus."""
    scores = torch.tensor([0.6, 0.3, 0.1]).log().expand(4000, 3)  # one group of 4000 samples
    cases = {  # (temperature, top_p): hand-worked probabilities
        (1.0, 1.0): [0.6, 0.3, 0.1],
        (2.0, 1.0): [x / (0.6**0.5 + 0.3**0.5 + 0.1**0.5) for x in (0.6**0.5, 0.3**0.5, 0.1**0.5)],  # ~ sqrt(p)
        (1.0, 0.8): [2 / 3, 1 / 3, 0.0],
    }
    for (T, top_p), expected in cases.items():
        picks = GroupNoise([11], 4000, T, top_p)(None, scores.clone()).argmax(dim=-1)
        drawn = torch.bincount(picks, minlength=3).float() / 4000
        assert torch.allclose(drawn, torch.tensor(expected), atol=0.03), (T, top_p, drawn.tolist(), expected)
    a = GroupNoise([11, 12], 2000, 1.0, 1.0)(None, scores.clone())
    b = GroupNoise([12], 2000, 1.0, 1.0)(None, scores[:2000].clone())
    assert torch.equal(a[2000:], b)  # group 1's noise: its own seed's stream


def test_the_seeded_rollout_is_greedy_at_temperature_zero(tiny):
    model, tok = tiny
    prompts = prompts_of(tok)
    greedy = generate(model, tok, prompts, n=2, max_new_tokens=8)
    seeded = HFRollout(model, tok).generate(prompts, 2, Sampling(0.0, 1.0, 8), seeds=[1, 2, 3])
    assert [c.token_ids for c in seeded] == [c.token_ids for c in greedy]
