"""GRPO numerics against hand-worked numbers: advantages, zero-variance groups, log-probs and masks, k3, clipping
(values and autograd gradients), aggregation modes, the combined loss and its config."""

import dataclasses
import math

import pytest
import torch

from planner_rl import grpo
from planner_rl.grpo import (
    GRPOConfig,
    GRPOLossConfig,
    aggregate_loss,
    clipped_surrogate,
    completion_mask,
    group_advantages,
    grpo_loss,
    kl_exact,
    kl_k3,
    token_log_probs,
    zero_variance_fraction,
    zero_variance_groups,
)

LN = math.log


# --- advantages ----------------------------------------------------------------------------------------------------
def test_group_advantages_std_by_hand():
    # group 1: [1, 0, 0, 1]: mean 0.5, deviations +-0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std 0.57735
    #   -> A = +-0.5 / 0.57735 = +-0.866025 (population std 0.5 would give +-1)
    # group 2: [0, 1, 2, 3]: mean 1.5, deviations -1.5 -0.5 0.5 1.5, var = (2.25 + 0.25) * 2 / 3 = 5/3, std 1.290994
    #   -> A = -1.161895 -0.387298 0.387298 1.161895
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 1, 2, 3])
    expected = torch.tensor([0.866025, -0.866025, -0.866025, 0.866025, -1.161895, -0.387298, 0.387298, 1.161895])
    torch.testing.assert_close(group_advantages(rewards, 4), expected, atol=2e-6, rtol=0)
    torch.testing.assert_close(group_advantages(rewards.reshape(2, 4), 4), expected, atol=2e-6, rtol=0)


def test_group_advantages_mean_only_and_zero_variance():
    # [[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]: mean 0.5 -> +-0.5; the constant groups give exactly 0 (0 / eps)
    rewards = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]])  # ints are accepted
    assert group_advantages(rewards, 4, scale="none").tolist() == [0.5, -0.5, -0.5, 0.5] + [0.0] * 8
    assert group_advantages(rewards, 4, scale="std")[4:].tolist() == [0.0] * 8


@pytest.mark.parametrize("group_size", [4, 8])
def test_single_turn_advantage_formula(group_size):
    # k of G correct: A_correct = sqrt((G-1)(G-k)/(G k)), A_wrong = -sqrt((G-1) k/(G (G-k))) (module docstring).
    # By hand, G = 4, k = 1: p = 1/4, var = 4/3 * 1/4 * 3/4 = 1/4, std = 1/2 -> A = 0.75 / 0.5 = 1.5, -0.25 / 0.5 = -0.5
    g = group_size
    for k in range(1, g):
        rewards = torch.tensor([1.0] * k + [0.0] * (g - k))
        a = group_advantages(rewards, g, eps=0.0)
        correct, wrong = math.sqrt((g - 1) * (g - k) / (g * k)), -math.sqrt((g - 1) * k / (g * (g - k)))
        torch.testing.assert_close(a, torch.tensor([correct] * k + [wrong] * (g - k)))
        assert abs(float(a.sum())) < 1e-5
    a = group_advantages(torch.tensor([1.0, 0, 0, 0]), 4, eps=0.0)
    torch.testing.assert_close(a, torch.tensor([1.5, -0.5, -0.5, -0.5]))


def test_negative_weight_scales_only_the_negative_advantages():
    # 7 of 8 right (the text's example, G = 8, k = 7): A_right = sqrt(7 * 1 / 56) = 0.353553,
    #   A_wrong = -sqrt(7 * 7 / 8) = -2.474874; weight 0.1 -> -0.247487, the right ones unchanged
    rewards = torch.tensor([1.0] * 7 + [0.0])
    a = group_advantages(rewards, 8, eps=0.0, negative_weight=0.1)
    torch.testing.assert_close(a, torch.tensor([0.353553] * 7 + [-0.247487]), atol=2e-6, rtol=0)
    # mean-only, [1, 0, 0, 1] -> +-0.5 -> [0.5, -0.25, -0.25, 0.5] at weight 0.5; weight 0: only the right ones
    assert group_advantages(torch.tensor([1.0, 0, 0, 1]), 4, "none", negative_weight=0.5).tolist() == [
        0.5, -0.25, -0.25, 0.5]  # fmt: skip
    assert group_advantages(torch.tensor([1.0, 0, 0, 1]), 4, "none", negative_weight=0.0).tolist() == [
        0.5, 0.0, 0.0, 0.5]  # fmt: skip
    # weight 1 is the paper's advantage exactly; zero-variance groups stay 0
    plain = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1])
    assert torch.equal(group_advantages(plain, 4, negative_weight=1.0), group_advantages(plain, 4))
    assert group_advantages(plain, 4, negative_weight=0.3)[4:].tolist() == [0.0] * 4
    with pytest.raises(ValueError, match=r"grpo\.negative_weight"):
        group_advantages(plain, 4, negative_weight=1.5)


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size=4"):
        group_advantages(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match=r"grpo\.advantage_scale"):
        group_advantages(torch.zeros(4), 4, scale="rank")


def test_zero_variance_groups_and_fraction():
    rewards = torch.tensor([1.0, 1, 1, 0, 1, 0, 0, 0, 0, 0.5, 0.5, 0.5])  # groups of 3: all 1, mixed, all 0, all 0.5
    assert zero_variance_groups(rewards, 3).tolist() == [True, False, True, True]
    assert zero_variance_fraction(rewards, 3) == 0.75


# --- log-probs and masks -------------------------------------------------------------------------------------------
def test_token_log_probs_by_hand():
    # t=0: logits [0, ln 3] -> softmax [1/4, 3/4]; next token 1 -> ln 0.75 = -0.287682
    # t=1: logits [0, 0] -> [1/2, 1/2]; next token 0 -> ln 0.5 = -0.693147
    # temperature 2 at t=0: logits [0, ln(3)/2] -> p(1) = sqrt3 / (1 + sqrt3) = 0.633975 -> -0.455746
    logits = torch.tensor([[[0.0, LN(3)], [0.0, 0.0], [5.0, -5.0]]])  # [1, 3, 2]; the last position predicts nothing
    ids = torch.tensor([[0, 1, 0]])
    torch.testing.assert_close(token_log_probs(logits, ids), torch.tensor([[-0.287682, -0.693147]]))
    torch.testing.assert_close(token_log_probs(logits, ids, temperature=2.0)[0, 0], torch.tensor(-0.455746))


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
def test_token_log_probs_matches_naive_loop(chunk_size):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 11, (3, 6), generator=gen)
    got = token_log_probs(logits, ids, temperature=0.7, chunk_size=chunk_size)
    assert got.shape == (3, 5) and got.dtype == torch.float32
    for b in range(3):
        for t in range(5):
            row = [x / 0.7 for x in logits[b, t].tolist()]
            naive = row[ids[b, t + 1]] - math.log(sum(math.exp(x) for x in row))
            assert abs(float(got[b, t]) - naive) < 1e-5


def test_token_log_probs_gradient_and_bf16():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 7, generator=gen, requires_grad=True)
    ids = torch.randint(0, 7, (2, 4), generator=gen)
    weights = torch.randn(2, 3, generator=gen)
    (token_log_probs(logits, ids) * weights).sum().backward()
    ref = logits.detach().clone().requires_grad_()
    (torch.log_softmax(ref[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    # bf16 logits are upcast per chunk: the result is float32 and equals the float32 computation on the same values
    low = logits.detach().bfloat16()
    out = token_log_probs(low, ids)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, token_log_probs(low.float(), ids))


def test_token_log_probs_saves_no_copy_of_float32_logits():
    # The memory claim in token_log_probs' docstring: at temperature 1 autograd keeps float32 logits, not a copy.
    logits = torch.randn(4, 6, 50, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        token_log_probs(logits, torch.randint(0, 50, (4, 6)), chunk_size=2)
    big = [t for t in saved if t.numel() >= 2 * 5 * 50]  # as large as a chunk's logits
    assert big and all(t.untyped_storage().data_ptr() == logits.untyped_storage().data_ptr() for t in big)


def test_completion_mask_padding():
    # Targets are tokens 1..T-1; mask[b, j] says whether token j+1 is a completion token.
    attention = torch.tensor(
        [
            [1, 1, 1, 1, 0],  # right-padded, prompt 2: completion tokens 2, 3 -> j = 1, 2
            [1, 1, 1, 1, 1],  # no padding, prompt 3: completion tokens 3, 4 -> j = 2, 3
            [0, 1, 1, 1, 1],  # left-padded, prompt 2 (tokens 1, 2): completion tokens 3, 4 -> j = 2, 3
            [0, 1, 1, 1, 0],  # left-padded prompt 2 (tokens 1, 2), right-padded completion: token 3 -> j = 2
            [0, 0, 0, 0, 0],  # empty row (e.g. a dropped group): nothing
        ]
    )
    prompt_lengths = torch.tensor([2, 3, 2, 2, 1])
    expected = [[0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert completion_mask(attention, prompt_lengths).int().tolist() == expected
    with pytest.raises(ValueError, match="at least one token"):
        completion_mask(attention, torch.tensor([2, 3, 2, 0, 1]))


# --- k3 ------------------------------------------------------------------------------------------------------------
def test_kl_k3_by_hand():
    # d = ref - logp. d = 0 -> 0. d = ln 0.5 -> 0.5 + 0.693147 - 1 = 0.193147. d = ln 2 -> 2 - 0.693147 - 1 = 0.306853
    logp = torch.tensor([LN(0.3), LN(0.5), LN(0.5)])
    ref = torch.tensor([LN(0.3), LN(0.25), LN(1.0)])
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([0.0, 0.193147, 0.306853]))
    tiny = kl_k3(torch.tensor([0.0], dtype=torch.float64), torch.tensor([1e-9], dtype=torch.float64))
    assert 0 < float(tiny) < 1e-17  # d^2 / 2 = 5e-19; exp(d) - 1 - d would round to 0 or below


def test_kl_k3_estimates_exact_kl():
    # Policy p = [0.5, 0.3, 0.2], reference q = [0.2, 0.3, 0.5]:
    # KL(p || q) = 0.5 ln 2.5 + 0.3 ln 1 + 0.2 ln 0.4 = 0.3 * 0.916291 = 0.274887
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    actions = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    k3 = kl_k3(p.log()[actions], q.log()[actions])
    assert float(k3.min()) >= 0
    assert abs(float(k3.mean()) - 0.274887) < 0.005


def test_kl_exact_by_hand_and_its_gradient():
    # KL([0.5, 0.3, 0.2] || [0.2, 0.3, 0.5]) = 0.274887 (above); a second row with equal distributions: 0
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    logits = p.log()[None, None].repeat(1, 2, 1).requires_grad_(True)  # [1, 2, 3]
    ref = torch.stack([q.log(), p.log()])[None]  # [1, 2, 3]
    kl = kl_exact(logits.log_softmax(-1), ref)
    torch.testing.assert_close(kl, torch.tensor([[0.274887, 0.0]]))
    # d KL / d logit_v = p_v (log p_v - log q_v - KL): [0.5 (0.916291 - 0.274887), 0.3 (0 - 0.274887),
    # 0.2 (-0.916291 - 0.274887)] = [0.320702, -0.082466, -0.238236]; the second row's gradient is 0
    kl.sum().backward()
    torch.testing.assert_close(logits.grad[0, 0], torch.tensor([0.320702, -0.082466, -0.238236]))
    torch.testing.assert_close(logits.grad[0, 1], torch.zeros(3))
    assert ref.grad is None  # the reference is a constant
    with pytest.raises(ValueError, match="one shape"):
        kl_exact(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


def test_kl_exact_sees_mass_no_sample_holds():
    # The policy moved mass onto an action no sample wrote (index 2): k3 on the sampled tokens cannot tell, the
    # exact KL can. Sampled tokens 0 and 1 keep their reference log-probs, so k3 = 0 on both.
    ref = torch.tensor([0.6, 0.4, 0.0]).clamp(min=1e-9).log()
    policy = torch.tensor([0.6, 0.4 - 0.1, 0.1]).log()
    sampled = torch.tensor([0, 0])  # both samples wrote action 0
    assert float(kl_k3(policy[sampled], ref[sampled]).sum()) == pytest.approx(0.0, abs=1e-7)
    assert float(kl_exact(policy[None], ref[None])) > 1.0  # 0.1 ln(0.1 / 1e-9) + 0.3 ln 0.75 = 1.75


# --- clipping ------------------------------------------------------------------------------------------------------
RATIOS = [0.5, 1.1, 1.5]  # per row, with old_logp = 0 so logp = ln ratio


def _surrogate(advantages, eps_low=0.2, eps_high=0.2):
    logp = torch.tensor([[LN(r) for r in RATIOS]] * len(advantages), requires_grad=True)
    loss, low, high = clipped_surrogate(logp, torch.zeros_like(logp), torch.tensor(advantages), eps_low, eps_high)
    loss.sum().backward()
    return loss, low, high, logp.grad


def test_clipped_surrogate_values_and_gradients():
    # eps 0.2: clip range [0.8, 1.2]. d(-ratio * A)/d logp = -ratio * A where unclipped, 0 where clipped.
    # A = +1: ratio 0.5 -> -min(0.5, 0.8) = -0.5 (unclipped, grad -0.5); 1.1 -> -1.1 (grad -1.1);
    #         1.5 -> -min(1.5, 1.2) = -1.2 (clipped high, grad 0)
    # A = -1: ratio 0.5 -> -min(-0.5, -0.8) = 0.8 (clipped low, grad 0); 1.1 -> 1.1 (grad 1.1);
    #         1.5 -> -min(-1.5, -1.2) = 1.5 (unclipped: no upper clip for A < 0, grad 1.5)
    loss, low, high, grad = _surrogate([1.0, -1.0])
    torch.testing.assert_close(loss, torch.tensor([[-0.5, -1.1, -1.2], [0.8, 1.1, 1.5]]))
    torch.testing.assert_close(grad, torch.tensor([[-0.5, -1.1, 0.0], [0.0, 1.1, 1.5]]))
    assert high.tolist() == [[False, False, True], [False, False, False]]
    assert low.tolist() == [[False, False, False], [True, False, False]]


def test_clip_higher_is_asymmetric():
    # eps_low 0.2, eps_high 0.6 (range [0.8, 1.6]): A = +1 at ratio 1.5 is now inside -> loss -1.5, grad -1.5;
    # A = -1 at ratio 0.5 is still clipped low -> loss 0.8, grad 0
    loss, low, high, grad = _surrogate([1.0, -1.0], eps_low=0.2, eps_high=0.6)
    torch.testing.assert_close(loss[:, [0, 2]], torch.tensor([[-0.5, -1.5], [0.8, 1.5]]))
    torch.testing.assert_close(grad[:, [0, 2]], torch.tensor([[-0.5, -1.5], [0.0, 1.5]]))
    assert not high.any() and low.tolist() == [[False, False, False], [True, False, False]]


def test_zero_advantage_is_never_clipped():
    loss, low, high, grad = _surrogate([0.0])
    assert not loss.any() and not grad.any() and not (low | high).any()


# --- aggregation ---------------------------------------------------------------------------------------------------
PER_TOKEN = torch.tensor([[1.0, 2, 3, 4], [5, 6, 100, -7]])  # the second row's last two are padding
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token_mean", 3.5),  # (1+2+3+4 + 5+6) / 6 = 21 / 6
        ("seq_mean_token_mean", 4.0),  # (10/4 + 11/2) / 2 = (2.5 + 5.5) / 2
        ("constant", 2.625),  # 21 / (B * max_tokens) = 21 / (2 * 4)
    ],
)
def test_aggregate_loss_modes(mode, expected):
    assert float(aggregate_loss(PER_TOKEN, MASK, mode, max_tokens=4)) == pytest.approx(expected)
    assert float(aggregate_loss(PER_TOKEN, MASK.bool(), mode, max_tokens=4)) == pytest.approx(expected)


def test_aggregate_loss_errors_and_empty_mask():
    with pytest.raises(ValueError, match=r"grpo\.max_completion_tokens"):
        aggregate_loss(PER_TOKEN, MASK, "constant")
    with pytest.raises(ValueError, match=r"grpo\.loss_agg"):
        aggregate_loss(PER_TOKEN, MASK, "sum")
    for mode in ("token_mean", "seq_mean_token_mean"):
        assert float(aggregate_loss(PER_TOKEN, torch.zeros_like(MASK), mode)) == 0.0


# --- grpo_loss -----------------------------------------------------------------------------------------------------
def _policy_batch():
    """Logits to differentiate, their log-probs, and a completion mask with completions of 4 and 2 tokens."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 7, 5, generator=gen, requires_grad=True)
    ids = torch.randint(0, 5, (2, 7), generator=gen)
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
    mask = completion_mask(attention, torch.tensor([3, 3]))  # completion tokens 3..6 and 3..4
    assert mask.sum(dim=1).tolist() == [4, 2]
    return logits, token_log_probs(logits, ids), mask


@pytest.mark.parametrize(
    ("mode", "value", "weights"),
    [
        # A = [1, -1], ratio 1: per-token loss -A. token_mean: (-4 + 2) / 6; weight of a token 1 / 6
        ("token_mean", -1 / 3, [1 / 6, 1 / 6]),
        # (-4/4 + 2/2) / 2 = 0; weight 1 / (B * n_b) = 1/8 and 1/4
        ("seq_mean_token_mean", 0.0, [1 / 8, 1 / 4]),
        # (-4 + 2) / (2 * 5); weight 1 / 10
        ("constant", -0.2, [1 / 10, 1 / 10]),
    ],
)
def test_grpo_loss_mu1_is_plain_policy_gradient(mode, value, weights):
    cfg = GRPOLossConfig(loss_agg=mode, max_completion_tokens=5)
    advantages = torch.tensor([1.0, -1.0])
    logits, logp, mask = _policy_batch()
    loss, stats = grpo_loss(logp, logp.detach(), None, advantages, mask, cfg)
    assert loss.item() == pytest.approx(value) and stats["loss/policy"] == pytest.approx(value)
    assert stats["loss/ratio_mean"] == 1.0 and stats["loss/clip_frac"] == 0.0 and "loss/kl" not in stats
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    # the plain policy gradient: d/dlogits of -sum_bt A_b * w_b * mask_bt * logp_bt
    plain = -(advantages[:, None] * torch.tensor(weights)[:, None] * mask * logp).sum()
    (expected,) = torch.autograd.grad(plain, logits, retain_graph=True)
    torch.testing.assert_close(grad, expected)
    (default_old,) = torch.autograd.grad(grpo_loss(logp, None, None, advantages, mask, cfg)[0], logits)
    torch.testing.assert_close(default_old, grad)


def test_grpo_loss_clipping_stats_with_stored_old_logp():
    # mu > 1: the clipping batch above (loss rows [-0.5, -1.1, -1.2] and [0.8, 1.1, 1.5]).
    # All tokens: token_mean = (-2.8 + 3.4) / 6 = 0.1; one high and one low clip of 6; ratio mean 2 * 3.1 / 6
    logp = torch.tensor([[LN(r) for r in RATIOS]] * 2)
    cfg = GRPOLossConfig()
    mask = torch.ones(2, 3)
    loss, stats = grpo_loss(logp, torch.zeros_like(logp), None, torch.tensor([1.0, -1.0]), mask, cfg)
    assert loss.item() == pytest.approx(0.1)
    assert stats["loss/clip_frac_high"] == pytest.approx(1 / 6) and stats["loss/clip_frac_low"] == pytest.approx(1 / 6)
    assert stats["loss/clip_frac"] == pytest.approx(1 / 3)
    assert stats["loss/ratio_mean"] == pytest.approx(3.1 / 3) and stats["loss/ratio_max"] == pytest.approx(1.5)
    # Masking out the low-clipped token: (-2.8 + 2.6) / 5 = -0.04; no low clip, one high clip of 5
    mask[1, 0] = 0
    loss, stats = grpo_loss(logp, torch.zeros_like(logp), None, torch.tensor([1.0, -1.0]), mask, cfg)
    assert loss.item() == pytest.approx(-0.04)
    assert stats["loss/clip_frac_low"] == 0.0 and stats["loss/clip_frac_high"] == pytest.approx(1 / 5)
    assert all(isinstance(v, float) for v in stats.values())


def test_grpo_loss_kl_term():
    # A = 0, so only the KL acts. k3 = [0.193147, 0.306853] (test_kl_k3_by_hand), sum exactly 0.5 (the ln 2 cancel);
    # token_mean 0.25; beta 0.1 -> loss 0.025. d k3 / d logp = 1 - exp(ref - logp) = [1 - 0.5, 1 - 2] = [0.5, -1]
    # -> grad = 0.1 * [0.5, -1] / 2 = [0.025, -0.05]
    logp = torch.tensor([[LN(0.5), LN(0.5)]], requires_grad=True)
    ref = torch.tensor([[LN(0.25), LN(1.0)]])
    mask, a = torch.ones(1, 2), torch.zeros(1)
    loss, stats = grpo_loss(logp, None, ref, a, mask, GRPOLossConfig(beta=0.1))
    assert loss.item() == pytest.approx(0.025)
    assert stats["loss/kl"] == pytest.approx(0.25) and stats["loss/total"] == pytest.approx(0.025)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.025, -0.05]]))
    # beta = 0 with a reference: KL is logged, not added
    loss, stats = grpo_loss(logp, None, ref, a, mask, GRPOLossConfig())
    assert loss.item() == 0.0 and stats["loss/kl"] == pytest.approx(0.25)


def test_grpo_loss_exact_kl_term():
    # kl_estimator exact: the per-token KL comes as given (kl_exact of the full log-probs); A = 0, token_mean over
    # the 2 masked tokens of 3: (0.2 + 0.4) / 2 = 0.3, beta 0.5 -> 0.15; ref_logp is not read
    logp = torch.zeros(1, 3, requires_grad=True)
    kl = torch.tensor([[0.2, 0.4, 9.0]])
    mask, a = torch.tensor([[1.0, 1.0, 0.0]]), torch.zeros(1)
    loss, stats = grpo_loss(logp, None, None, a, mask, GRPOLossConfig(beta=0.5, kl_estimator="exact"), kl)
    assert loss.item() == pytest.approx(0.15) and stats["loss/kl"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="kl_tokens"):
        grpo_loss(logp, None, None, a, mask, GRPOLossConfig(beta=0.5, kl_estimator="exact"))
    with pytest.raises(ValueError, match="kl_tokens"):
        grpo_loss(logp, None, None, a, mask, GRPOLossConfig(beta=0.5, kl_estimator="exact"), kl[:, :2])


def test_grpo_loss_checks_inputs():
    logp, a, mask = torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, None, None, a, mask, GRPOLossConfig(beta=0.04))
    with pytest.raises(ValueError, match="mask"):
        grpo_loss(logp, None, None, a, torch.ones(2, 4), GRPOLossConfig())
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, None, None, torch.zeros(2, 3), mask, GRPOLossConfig())


# --- config --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"advantage_scale": "rank"}, "advantage_scale"),
        ({"loss_agg": "sum"}, "loss_agg"),
        ({"zero_variance": "skip"}, "zero_variance"),
        ({"kl_estimator": "k1"}, "kl_estimator"),
        ({"eps_low": 1.0}, "eps_low"),
        ({"eps_low": -0.1}, "eps_low"),
        ({"eps_high": -0.1}, "eps_high"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": "0.1"}, "beta"),
        ({"negative_weight": 1.5}, "negative_weight"),
        ({"negative_weight": -0.1}, "negative_weight"),
        ({"negative_weight": True}, "negative_weight"),
        ({"mu": 0}, "mu"),
        ({"mu": 1.5}, "mu"),
        ({"mu": True}, "mu"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"loss_agg": "constant"}, "max_completion_tokens"),
    ],
)
def test_config_validation_names_the_key(overrides, key):
    with pytest.raises(ValueError, match=rf"grpo\.{key}"):
        GRPOLossConfig(**overrides)


@pytest.mark.parametrize("value", [0, 0.0, 1.5, -0.2, float("nan"), "0.5", True])
def test_max_sft_p_must_be_a_probability(value):
    with pytest.raises(ValueError, match=r"grpo\.max_sft_p"):
        GRPOConfig(max_sft_p=value)
    assert GRPOConfig(max_sft_p=1).max_sft_p == 1 and GRPOConfig().max_sft_p is None


@pytest.mark.parametrize("value", [-0.1, float("nan"), "1", True, None])
def test_sft_coef_must_be_a_non_negative_number(value):
    with pytest.raises(ValueError, match=r"grpo\.sft_coef"):
        GRPOConfig(sft_coef=value)
    assert GRPOConfig(sft_coef=2).sft_coef == 2 and GRPOConfig().sft_coef == 0


def test_refresh_states_every_needs_a_pool_to_rebuild():
    """The policy's states to collect again (states=policy), or the difficulty filter to apply again (max_sft_p)."""
    with pytest.raises(ValueError, match=r"grpo\.refresh_states_every needs .*states=policy or grpo\.max_sft_p"):
        GRPOConfig(refresh_states_every=25)
    with pytest.raises(ValueError, match=r"grpo\.refresh_states_every needs grpo\.mode=single_turn"):
        GRPOConfig(refresh_states_every=25, max_sft_p=0.9, mode="multi_turn")
    assert GRPOConfig(refresh_states_every=25, max_sft_p=0.9).refresh_states_every == 25
    with pytest.raises(ValueError, match=r"grpo\.refresh_states_every"):
        GRPOConfig(refresh_states_every=-1, states="policy")
    assert GRPOConfig(refresh_states_every=25, states="policy").refresh_states_every == 25


def test_docstring_lists_every_key_with_its_default():
    # Principle 4: each way the objective can differ is a config key, documented with its default.
    for field in dataclasses.fields(GRPOLossConfig):
        assert f"`grpo.{field.name}`, default {field.default!r}" in grpo.__doc__, field.name
