"""Decoding restricted to the valid actions: scores against a brute-force forward per (prompt, answer), greedy and
sampled choices, and completions that the parser and the GRPO update read as the chosen action."""

from __future__ import annotations

import pytest
import torch

from planner_rl.data import expert_trajectory, trajectory_examples
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.packing import group_log_probs
from planner_rl.parsing import format_target, parse_completion
from planner_rl.prompts import PromptConfig
from planner_rl.rollout import Sampling, restricted
from planner_rl.rollout.hf import HFRollout, encode_prompt
from planner_rl.rollout.restricted import answer_choices, check_decoding, choice_log_probs, choose, packed_row


@pytest.fixture(scope="module")
def tiny():
    return load_model_and_tokenizer(ModelConfig())


def examples(fmt: str = "action") -> list[dict]:
    """States of two tasks (6 and 9 valid actions) from three layouts: ragged prompts and ragged choice lists."""
    cfg = PromptConfig(output_format=fmt)
    rows = []
    for task, seed in (("cheeseburger", 42), ("double_cheeseburger", 84), ("cheeseburger", 126)):
        rows += trajectory_examples(expert_trajectory(task, seed), cfg)[:2]
    rows[1] = rows[1] | {"valid_actions": rows[1]["valid_actions"][:2]}  # and one state cut to two choices
    return rows


def brute_force(model, tokenizer, prompt: list[int], answers: list[str], temperatures=(1.0,)) -> list[torch.Tensor]:
    """Per temperature, [K]: one plain forward of each prompt + answer + end of turn (no padding, no cache), its
    answer tokens' log-softmax at that temperature summed."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = [[] for _ in temperatures]
    for a in answers:
        ids = [*tokenizer.encode(a, add_special_tokens=False), end]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1].double()  # [L, V]
        for scores, t in zip(out, temperatures, strict=True):
            scores.append(float(torch.log_softmax(logits / t, dim=-1)[torch.arange(len(ids)), torch.tensor(ids)].sum()))
    return [torch.tensor(x, dtype=torch.float64) for x in out]


@pytest.mark.parametrize(("fmt", "packed"), [("action", True), ("think", True), ("action", False)])
def test_scores_equal_a_brute_force_forward_per_answer(tiny, fmt, packed, monkeypatch):
    """Both ways of sharing the prompt: one packed row per prompt (sdpa), its KV cache repeated (flash attention);
    the packed head in uneven slices of 7 answer positions."""
    monkeypatch.setattr(restricted, "HEAD_ROWS", 7)
    model, tok = tiny
    model.eval()
    rows = examples(fmt)
    prompts = [encode_prompt(tok, ex["prompt"]) for ex in rows]
    choices = [answer_choices(ex["valid_actions"], fmt) for ex in rows]
    assert len({len(p) for p in prompts}) > 1 and len({len(c) for c in choices}) > 2  # ragged both ways
    temperatures = (1.0, 0.7)
    wants = [brute_force(model, tok, p, cs, temperatures) for p, cs in zip(prompts, choices, strict=True)]
    for i, temperature in enumerate(temperatures):
        got = choice_log_probs(model, tok, prompts, choices, temperature, 20, packed)  # 2 ragged prompts a batch
        for g, want in zip(got, wants, strict=True):
            assert g.shape == want[i].shape and torch.allclose(g.double(), want[i], atol=2e-4), (g, want[i])
            assert len(set(g.tolist())) > 1  # the answers really differ in likelihood


def test_greedy_picks_the_most_likely_valid_answer_and_the_update_reads_it_back(tiny):
    model, tok = tiny
    model.train()
    rows = examples()[:4]
    prompts = [encode_prompt(tok, ex["prompt"]) for ex in rows]
    choices = [answer_choices(ex["valid_actions"], "action") for ex in rows]
    comps = choose(model, tok, prompts, choices, n=2)
    assert model.training  # restored
    model.eval()
    pad = tok.pad_token_id
    for k, (ex, p, cs) in enumerate(zip(rows, prompts, choices, strict=True)):
        (want,) = brute_force(model, tok, p, cs)
        best = int(want.argmax())
        for c in comps[2 * k : 2 * k + 2]:
            assert c.prompt_index == k and c.finished and c.text == cs[best]
            parsed = parse_completion(c.text, "action", ex["valid_actions"])
            assert parsed.action == ex["valid_actions"][best]
            end = tok.convert_tokens_to_ids("<|im_end|>")
            assert c.token_ids == [*tok.encode(cs[best], add_special_tokens=False), end]
        # the GRPO update's log-probs of the completion's tokens sum to the score that chose it
        logp, mask = group_log_probs(model, [p], [comps[2 * k].token_ids], pad, 1.0)
        assert float((logp * mask).sum().detach()) == pytest.approx(float(want[best]), abs=2e-4)


def test_sampling_follows_the_renormalised_distribution_and_its_seed(tiny):
    model, tok = tiny
    model.eval()
    rows = examples()[:3]
    prompts = [encode_prompt(tok, ex["prompt"]) for ex in rows]
    # the moves only: answers of one length, so the untrained model's scores are close (a short `Do nothing` takes
    # nearly all the mass otherwise)
    choices = [answer_choices([a for a in ex["valid_actions"] if a.startswith("Move")], "action") for ex in rows]
    assert min(len(c) for c in choices) >= 2
    T, n = 2.0, 4000
    comps = choose(model, tok, prompts, choices, n=n, temperature=T, seeds=[5, 6, 7])
    for k, (p, cs) in enumerate(zip(prompts, choices, strict=True)):
        probs = torch.softmax(brute_force(model, tok, p, cs, (T,))[0], dim=0)
        freq = torch.tensor([sum(c.text == a for c in comps[k * n : (k + 1) * n]) / n for a in cs])
        assert (freq - probs).abs().max() < 0.03, (freq, probs)  # 4000 draws: std <= 0.008
        assert len({c.text for c in comps[k * n : (k + 1) * n]}) > 1
    alone = choose(model, tok, prompts[1:2], choices[1:2], n=50, temperature=T, seeds=[6])
    assert [c.text for c in alone] == [c.text for c in comps[n : n + 50]]  # a prompt's samples: its seed only


def test_a_state_without_choices_gets_an_empty_refused_answer(tiny):
    model, tok = tiny
    ex = examples()[0]
    comps = choose(model, tok, [encode_prompt(tok, ex["prompt"])] * 2, [[], ["Action: Do nothing"]])
    assert comps[0].token_ids == [] and not comps[0].finished and comps[1].text == "Action: Do nothing"
    assert not parse_completion(comps[0].text, "action", ex["valid_actions"]).well_formed


def test_hf_rollout_restricted_groups(tiny):
    model, tok = tiny
    rows = examples()[:2]
    prompts = [encode_prompt(tok, ex["prompt"]) for ex in rows]
    choices = [answer_choices(ex["valid_actions"], "action") for ex in rows]
    out = HFRollout(model, tok).generate(prompts, 3, Sampling(1.0, 1.0, 4), seeds=[1, 2], choices=choices)
    assert [c.prompt_index for c in out] == [0, 0, 0, 1, 1, 1]
    assert all(c.text in choices[c.prompt_index] for c in out)  # whole answers although max_new_tokens is 4
    with pytest.raises(ValueError, match="top_p"):
        HFRollout(model, tok).generate(prompts, 1, Sampling(1.0, 0.9, 4), choices=choices)


def test_packed_row_by_hand():
    ids, positions, allowed, reads = packed_row([7, 8, 9], [[1, 2], [3]])
    assert ids == [7, 8, 9, 1, 2, 3] and positions == [0, 1, 2, 3, 4, 3] and reads == [2, 3, 2]
    assert allowed.int().tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],  # the first answer: the prompt and itself
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],  # the second: the prompt and itself, not the first answer
    ]


def test_answer_choices_and_check_decoding():
    assert answer_choices(["Do nothing", "Stack a", "Do nothing"], "action") == [
        "Action: Do nothing",
        "Action: Stack a",
    ]
    assert answer_choices(["Do nothing"], "think") == [format_target("Do nothing", "think")]
    assert check_decoding("free", "eval.decoding", top_p=0.5) == "free"
    with pytest.raises(ValueError, match=r"eval\.decoding must be one of"):
        check_decoding("valid", "eval.decoding")
    with pytest.raises(ValueError, match=r"top_p must be 1\.0"):
        check_decoding("valid_actions", "rollout.decoding", top_p=0.9)
