"""The GRPO loop's phases one at a time (planner_rl/sampler.py, packing.py, update.py, checkpoint.py), each with
tiny hand-made inputs; tests/test_train.py runs them together through the whole job."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from planner_rl.checkpoint import LoopState, resume_training, save_training_checkpoint
from planner_rl.evaluate import EvalConfig
from planner_rl.grpo import GRPOConfig, group_advantages
from planner_rl.packing import MicroBatch, group_micro_batches, kept_advantages, turn_micro_batches
from planner_rl.prompts import PromptConfig
from planner_rl.rewards import RewardConfig
from planner_rl.rollout import Completion, Sampling
from planner_rl.sampler import EpisodeSampler, Groups, SingleTurnSampler, draw_groups
from planner_rl.train import on_schedule, sample_table, single_turn_batch
from planner_rl.update import Policy, balance_micro_batches, policy_update


class ScriptedRollout:
    """A rollout backend that answers from a script and records its calls."""

    def __init__(self, answer=lambda prompt, k: "Action: wait"):
        self.answer, self.calls = answer, []

    def generate(self, prompts, n, sampling, seeds=None):
        self.calls.append((prompts, n, seeds))
        return [
            Completion(p, [7] * (1 + k), self.answer(prompt, k), True)
            for p, prompt in enumerate(prompts)
            for k in range(n)
        ]


def comp(text: str = "", tokens: int = 1) -> Completion:
    return Completion(0, [5] * tokens, text, True)


# --- sample and score --------------------------------------------------------------------------------------------
ROWS = [
    {"prompt": [{"role": "user", "content": f"state {i}"}], "expert_action": "go left",
     "valid_actions": ["go left", "go right"], "optimal_actions": ["go left"], "task": "t", "seed": i, "step": 0}
    for i in range(6)
]  # fmt: skip


def test_single_turn_draw_seeds_each_group_by_its_position_and_scores_every_sample(monkeypatch):
    monkeypatch.setattr("planner_rl.sampler.encode_prompt", lambda tok, messages: [len(messages[0]["content"])])
    answers = lambda prompt, k: "Action: go left" if k == 0 else "Action: go right"  # noqa: E731
    rollout = ScriptedRollout(answers)
    sampler = SingleTurnSampler(rollout, None, ROWS, 2, Sampling(), RewardConfig(), "action", seed=3, rank=1, world=2)
    groups = sampler.draw(position=4, count=4)  # rank 1's share: global positions 6 and 7
    assert len(groups.idx) == 2 and len(groups.completions) == 4
    assert rollout.calls[0][1:] == (2, [3 * 1_000_003 + 6, 3 * 1_000_003 + 7])
    assert groups.scores == [1.0, 0.0, 1.0, 0.0]  # expert_match: each group's first sample is the expert's action
    assert all(i["valid"] and i["well_formed"] for i in groups.infos)
    assert set(sampler.encoded) == set(groups.idx)  # prompts tokenised once, on first use


class ScriptedSampler:
    """draw() returns the next scripted scores as groups of G = 2."""

    G = 2

    def __init__(self, *draws):
        self.draws, self.positions = list(draws), []

    def draw(self, position, count):
        self.positions.append(position)
        scores = self.draws.pop(0)
        return Groups(list(range(len(scores) // 2)), [comp()] * len(scores), scores, [{}] * len(scores), 0.5)


@pytest.mark.parametrize(
    ("mode", "keep", "rounds", "position"),
    [("keep", [0, 1], 0, 12), ("drop", [1], 0, 12), ("resample", [1, 2], 1, 14)],  # resample: stops at N informative
)
def test_draw_groups_keeps_drops_or_resamples_zero_variance_groups(mode, keep, rounds, position):
    sampler = ScriptedSampler([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0])  # group 0 of the first draw: zero variance
    grpo = GRPOConfig(prompts_per_step=2, group_size=2, zero_variance=mode)
    draw = draw_groups(sampler, 10, grpo)
    assert (draw.keep, draw.rounds, draw.position) == (keep, rounds, position)
    assert draw.zero.tolist() == [True, False]  # the first draw's flags (rollout/zero_variance_frac)
    assert len(draw.groups.scores) == 4 * (rounds + 1) and draw.groups.score_s == 0.5 * (rounds + 1)
    assert sampler.positions == [10, 12][: rounds + 1]


def test_resampling_gives_up_after_max_rounds():
    sampler = ScriptedSampler(*[[1.0, 1.0, 0.0, 0.0]] * 3)
    draw = draw_groups(sampler, 0, GRPOConfig(prompts_per_step=2, group_size=2, zero_variance="resample",
                                               max_resample_rounds=2))  # fmt: skip
    assert (draw.keep, draw.rounds, draw.position) == ([], 2, 6)


def test_episode_sampler_records_every_turn_of_every_episode():
    rows = [{"task": "cheese_sandwich", "seed": 1000, "t_gt": 6}]
    rollout = ScriptedRollout(lambda prompt, k: "no action here")  # malformed: every answer refused, budget ends it
    sampler = EpisodeSampler(rollout, _ChatTokenizer(), rows, 3, Sampling(), PromptConfig(), EvalConfig(), seed=0)
    episodes = sampler.draw(0, 1)
    assert len(episodes.played) == 3 and episodes.scores == [0.0, 0.0, 0.0]
    turns = [len(t) for t in episodes.turns]
    assert turns == [r.answers for r in episodes.played] and sum(turns) == len(episodes.completions)
    assert len(rollout.calls) == max(turns) and all(n == 1 for _, n, _ in rollout.calls)  # one call per turn


class _ChatTokenizer:
    def apply_chat_template(self, messages, **kw):
        return [len(m["content"]) for m in messages]


# --- advantages and micro-batches --------------------------------------------------------------------------------
def test_kept_advantages_are_the_kept_groups_own():
    scores = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]  # three groups of 2; group 1 has zero variance
    adv = kept_advantages(scores, [0, 2], 2, "none")
    assert adv.tolist() == [0.5, -0.5, -0.5, 0.5]  # each reward minus its group's mean 0.5
    torch.testing.assert_close(kept_advantages(scores, [0, 2], 2, "std"), group_advantages(adv + 0.5, 2, "std"))
    assert kept_advantages(scores, [], 2, "std").numel() == 0
    assert kept_advantages(scores, [0, 2], 2, "none", negative_weight=0.25).tolist() == [0.5, -0.125, -0.125, 0.5]


def test_the_step_batch_carries_the_configured_advantages():
    class Sampler(ScriptedSampler):
        def draw(self, position, count):
            groups = super().draw(position, count)
            return replace(groups, infos=[{"main": r, "valid": True, "well_formed": True} for r in groups.scores])

        def prompt(self, i):
            return [3, i]

    sampler = Sampler([1.0, 0.0, 0.0, 1.0])  # two groups of 2, one right and one wrong answer each
    grpo = GRPOConfig(prompts_per_step=2, group_size=2, advantage_scale="none", negative_weight=0.25)
    batch = single_turn_batch(draw_groups(sampler, 0, grpo), sampler, grpo, micro_batch_size=4)
    assert torch.cat([mb.advantages for mb in batch.micro_batches]).tolist() == [0.5, -0.125, -0.125, 0.5]


def test_group_micro_batches_hold_whole_groups():
    prompts, comps = [[1], [2], [3]], [[10], [11], [20], [21], [30], [31]]
    adv = torch.arange(6.0)
    mbs = group_micro_batches(prompts, comps, adv, group_size=2, size=4)  # 4 completions: two groups
    assert [mb.prompts for mb in mbs] == [[[1], [2]], [[3]]]
    assert [mb.completions for mb in mbs] == [comps[:4], comps[4:]]
    assert [mb.advantages.tolist() for mb in mbs] == [[0, 1, 2, 3], [4, 5]] and all(mb.weight == 1 for mb in mbs)
    assert len(group_micro_batches(prompts, comps, adv, group_size=2, size=1)) == 3  # at least one group each


def test_turn_micro_batches_are_plain_rows():
    turns = [([1], [10], 0.5), ([2], [20], 0.5), ([3], [30], -1.0)]
    mbs = turn_micro_batches(turns, 2)
    assert [(mb.prompts, mb.completions, mb.advantages.tolist()) for mb in mbs] == [
        ([[1], [2]], [[10], [20]], [0.5, 0.5]), ([[3]], [[30]], [-1.0])
    ]  # fmt: skip


def test_balance_in_one_process_counts_tokens_and_drops_an_empty_batch():
    mbs = [MicroBatch([[1]], [[5, 6], [7]], torch.zeros(2)), MicroBatch([[2]], [[8, 9, 9]], torch.zeros(1))]
    out, tokens, rows, mine = balance_micro_batches(mbs, kept=2, filler=None)
    assert (out, tokens, rows, mine) == (mbs, 6, 3, 6)
    assert balance_micro_batches([], kept=0, filler=None)[0] == []


# --- the update --------------------------------------------------------------------------------------------------
def tiny_policy(seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from planner_rl.trainer.torch import TorchTrainer, TorchTrainerConfig

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(
        Qwen3Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=8, max_position_embeddings=32)
    )  # fmt: skip
    backend = TorchTrainer(model, TorchTrainerConfig(lr=1e-2, precision="fp32"), total_steps=2)
    return Policy(backend, None, pad_id=0, temperature=1.0)


def test_policy_update_is_the_same_in_one_micro_batch_or_several():
    prompts, comps = [[1, 2, 3], [4, 5]], [[6, 7], [8], [9, 10, 11], [12]]
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    grpo = GRPOConfig(group_size=2, loss_agg="token_mean")
    weights = []
    for size in (4, 2):  # both groups in one micro-batch, or a group each
        policy = tiny_policy()
        mbs = group_micro_batches(prompts, comps, adv, 2, size)
        stats, _ = policy_update(policy, mbs, [None] * len(mbs), [None] * len(mbs), grpo, 7, 4, world=1)
        assert stats["train/grad_norm"] > 0 and "loss/total" in stats
        weights.append([p.detach().clone() for p in policy.backend.unwrapped.parameters()])
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_a_filler_micro_batch_changes_nothing():
    mb = MicroBatch([[1, 2]], [[3], [4]], torch.tensor([1.0, -1.0]))
    grpo = GRPOConfig(group_size=2)
    filler = mb._replace(advantages=torch.tensor([5.0, 5.0]), weight=0.0)  # what a rank short of groups adds
    a, b = tiny_policy(), tiny_policy()
    policy_update(a, [mb], [None], [None], grpo, 2, 2, world=1)
    policy_update(b, [mb, filler], [None] * 2, [None] * 2, grpo, 2, 2, world=1)
    for p, q in zip(a.backend.unwrapped.parameters(), b.backend.unwrapped.parameters(), strict=True):
        torch.testing.assert_close(p, q)


# --- log, checkpoint, resume -------------------------------------------------------------------------------------
def test_sample_table_shows_each_groups_first_sample():
    groups = Groups([2, 0], [comp("a"), comp("b"), comp("c"), comp("d")], [1.0, 0.0, 0.0, 1.0], [{}] * 4)
    cols, table = sample_table(ROWS, groups, 2)
    assert cols[-2:] == ["completion", "reward"]
    assert [(r[1], r[-2], r[-1]) for r in table] == [(2, "a", 1.0), (0, "c", 0.0)]


def test_on_schedule():
    assert [s for s in range(1, 8) if on_schedule(s, 3, s == 7)] == [3, 6, 7]
    assert [s for s in range(1, 8) if on_schedule(s, 0, s == 7)] == [7]


class FileBackend:
    def __init__(self, value: float = 0.0):
        self.value = value

    def save(self, path):
        (path / "w.txt").write_text(str(self.value))

    def load(self, path):
        self.value = float((path / "w.txt").read_text())


class FakeRecords:
    def __init__(self, offsets):
        self.now, self.cut = offsets, None

    def offsets(self):
        return dict(self.now)

    def truncate(self, offsets):
        self.cut = offsets


class NoTokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{}")


def test_a_training_checkpoint_resumes_the_loop_state_and_every_rng(tmp_path):
    state = LoopState(step=4, position=32, generated=900)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_training_checkpoint(tmp_path, state, FileBackend(2.5), NoTokenizer(), FakeRecords({"metrics.jsonl": 77}),
                             keep=2, main=True, sync=lambda: None)  # fmt: skip
    state.step += 1  # the loop goes on after the save; the checkpoint holds the state as it was
    after = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    backend, records = FileBackend(), FakeRecords({})
    resumed, ckpt = resume_training(tmp_path, "auto", backend, records, stage_offsets={"metrics.jsonl": 5})
    assert resumed == replace(state, step=4) and ckpt.name == "step_000004" and backend.value == 2.5
    assert records.cut == {"metrics.jsonl": 77}
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == after


def test_without_a_checkpoint_the_records_go_back_to_the_sft_stage(tmp_path):
    records = FakeRecords({})
    state, ckpt = resume_training(tmp_path, "auto", FileBackend(), records, stage_offsets={"metrics.jsonl": 5})
    assert (state, ckpt, records.cut) == (LoopState(), None, {"metrics.jsonl": 5})
