"""GRPO numerics: group advantages, per-token log-probs and masks, the k3 KL estimate, the clipped surrogate, loss
aggregation, and `grpo_loss`, which combines them. Pure torch functions; the training loop calls them.

Shapes: N prompts, G samples per prompt (`group_size`), B = N*G sequences, T tokens, V vocabulary. Groups are
contiguous: sample g of prompt n is row n*G + g.

The paper names GRPO with a KL penalty to a reference and no further detail; we read it as DeepSeekMath's objective,
single-turn, with the 0/1 reward r = 1{a == expert action}:

    loss = mean_i 1/|o_i| sum_t [ -min(ratio_it A_i, clip(ratio_it, 1 - eps, 1 + eps) A_i) + beta k3_it ]
    ratio_it = exp(logp_it - old_logp_it),  A_i = (r_i - mean_group(r)) / std_group(r),
    k3_it = exp(ref_logp_it - logp_it) - (ref_logp_it - logp_it) - 1.

Every way ours can differ from it, with its key in `GRPOLossConfig` (config group `grpo`) and default:

- Advantage scale (`grpo.advantage_scale`, default 'std'): 'std' is the paper's (r - mean) / (std + eps); 'none' is
  r - mean (Dr. GRPO), which drops the 1/std weight that favours nearly solved and nearly failed prompts. std is
  the unbiased (n - 1) group std, as torch.std in DeepSeekMath's and TRL's GRPO code, so advantages match theirs;
  the population std would multiply every advantage by sqrt(G / (G - 1)), a constant for a fixed G.
- Negative advantages (`grpo.negative_weight`, default 1.0, the paper's): every A < 0 is multiplied by this weight
  in [0, 1] after scaling. At a prompt the policy nearly has (7 of 8 samples right, p_right ~0.875), the one
  wrong sample gets A = -2.47 times a full-size logit gradient (1 - its small probability), each right one +0.35
  times a small one (1 - p_right ~0.125): the step is mostly the push on the wrong answer (~8x the right ones'
  together), and what it moves spills over onto states outside the batch. A weight < 1 shrinks that push and
  keeps the positive one; the weighted advantages then sum to > 0 within a group, so it is no longer the plain
  policy gradient of the expected reward, and 0 reinforces only the right samples (rejection-sampling fine-tuning
  on the prompts).
- Clipping (`grpo.eps_low`, default 0.2; `grpo.eps_high`, default 0.2): the ratio is clipped to
  [1 - eps_low, 1 + eps_high]. Equal values are the paper's symmetric clip; eps_high > eps_low is DAPO's
  "clip-higher" (0.2 / 0.28 there), which lets unlikely good tokens gain more per update. No dual clip: for A < 0
  the loss grows without bound in the ratio, as in PPO.
- KL (`grpo.beta`, default 0.0): beta * k3 per token, in the loss (not the reward), as in DeepSeekMath. For tokens
  sampled from the policy, k3 is a non-negative, unbiased estimate of KL(policy || reference). beta = 0 drops the
  term and no reference model is loaded (DAPO, Dr. GRPO); the paper uses beta > 0, value not reported.
- KL estimator (`grpo.kl_estimator`, default 'k3'): the per-token term. 'k3' above, from the sampled tokens'
  log-probs only; 'exact' is KL(policy || reference) over the whole vocabulary at each completion position,
  sum_v p_v (log p_v - log ref_v) (`kl_exact`). k3 sees only the tokens that were sampled, so it cannot hold the
  probability of answers no sample wrote (an action never sampled, e.g. a move to the station the robot stands at,
  can gain mass from the other tokens' updates unchecked); the exact KL does, at the cost of [B, T, V] log-probs of
  both models (with a 150k vocabulary, mind the micro-batch size).
- Aggregation (`grpo.loss_agg`, default 'token_mean'; `grpo.max_completion_tokens`, default None): how per-token
  losses become one scalar (`aggregate_loss`). 'seq_mean_token_mean' is the paper's (mean within each completion,
  then over completions: a long completion's tokens weigh less). 'token_mean' divides the batch's sum by its token
  count (DAPO). 'constant' divides by B * max_completion_tokens (Dr. GRPO), so no length enters the gradient.
  The defaults (beta 0, token_mean) are not the paper's: set grpo.beta > 0 and grpo.loss_agg=seq_mean_token_mean
  for its objective. Normalisers are per call; the loop weights each micro-batch's loss by `micro_batch_weight`, so that
  accumulating micro-batches gives the batch's loss exactly in every mode.
- Updates per batch (`grpo.mu`, default 1): DeepSeekMath's mu, gradient steps on each batch of samples. With mu = 1
  (and one optimiser step per batch) old_logp = logp.detach(), the ratio is 1, nothing is clipped, and the gradient
  is the plain policy gradient -A grad(logp) / normaliser. With mu > 1, or several optimiser steps per batch, the
  loop stores old_logp (the trainer model's, under no_grad, before the first step; not the rollout engine's, which
  differ numerically) and clipping is live.
- Zero-variance groups (`grpo.zero_variance`, default 'keep'): groups whose G rewards are all equal
  (`zero_variance_groups`) get A = 0 under either scale. 'keep' leaves them in: no policy gradient, but their
  tokens still count in the normaliser (diluting the others') and still feel the KL term. 'drop' removes them
  before the update; 'resample' draws new groups until the batch is full (DAPO's dynamic sampling).
- Samples (`rollout.decoding`, default 'free', the paper's): 'valid_actions' samples each completion among the
  prompt's valid actions (planner_rl/rollout/restricted.py); the log-probs stay the policy's, not renormalised over
  them (why that is still the restricted policy gradient under mean-centred advantages: docs/evaluation.md).

Single-turn special case: 0/1 rewards, k of G samples correct (0 < k < G). The group mean is p = k / G and the
unbiased variance G / (G - 1) * p (1 - p), so (eps aside)

    A_correct = (1 - p) / std = sqrt((G - 1)(G - k) / (G k)),    A_wrong = -p / std = -sqrt((G - 1) k / (G (G - k))),

e.g. G = 4, k = 1: A_correct = 1.5, A_wrong = -0.5. (Population std: sqrt((G - k) / k) and -sqrt(k / (G - k)).)
A rare success is pushed up hard, a common one gently; k * A_correct + (G - k) * A_wrong = 0. k = 0 or k = G is a
zero-variance group.

Log-probs are of the sampling distribution: pass the sampling temperature to `token_log_probs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ADVANTAGE_SCALES = ("std", "none")
LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "constant")
KL_ESTIMATORS = ("k3", "exact")
ZERO_VARIANCE_MODES = ("keep", "drop", "resample")


@dataclass  # not frozen: it is also the structured-config schema of its conf/ group
class GRPOLossConfig:
    """The keys that shape the GRPO objective (see the module docstring for each one's meaning)."""

    advantage_scale: str = "std"  # one of ADVANTAGE_SCALES
    negative_weight: float = 1.0  # in [0, 1]: multiplies every negative advantage (1: the paper's GRPO)
    eps_low: float = 0.2  # in [0, 1): the ratio's lower clip is 1 - eps_low
    eps_high: float = 0.2  # >= 0: the ratio's upper clip is 1 + eps_high
    beta: float = 0.0  # >= 0: weight of the per-token KL to the reference; 0 loads no reference model
    kl_estimator: str = "k3"  # one of KL_ESTIMATORS: k3 (sampled tokens) | exact (the whole vocabulary)
    loss_agg: str = "token_mean"  # one of LOSS_AGGS
    max_completion_tokens: int | None = None  # > 0, tokens; required by loss_agg=constant
    mu: int = 1  # >= 1: gradient steps per batch of samples
    zero_variance: str = "keep"  # one of ZERO_VARIANCE_MODES

    def __post_init__(self) -> None:
        for key, allowed in (
            ("advantage_scale", ADVANTAGE_SCALES),
            ("loss_agg", LOSS_AGGS),
            ("kl_estimator", KL_ESTIMATORS),
            ("zero_variance", ZERO_VARIANCE_MODES),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(f"grpo.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not (_is_real(self.eps_low) and 0 <= self.eps_low < 1):
            raise ValueError(f"grpo.eps_low must be a number in [0, 1), got {self.eps_low!r}")
        for key in ("eps_high", "beta"):
            if not (_is_real(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"grpo.{key} must be a finite number >= 0, got {getattr(self, key)!r}")
        if not (_is_real(self.negative_weight) and 0 <= self.negative_weight <= 1):
            raise ValueError(f"grpo.negative_weight must be a number in [0, 1], got {self.negative_weight!r}")
        if not (_is_int(self.mu) and self.mu >= 1):
            raise ValueError(f"grpo.mu must be an integer >= 1, got {self.mu!r}")
        tokens = self.max_completion_tokens
        if tokens is not None and not (_is_int(tokens) and tokens > 0):
            raise ValueError(f"grpo.max_completion_tokens must be an integer > 0 or None, got {tokens!r}")
        if self.loss_agg == "constant" and tokens is None:
            raise ValueError("grpo.max_completion_tokens must be set when grpo.loss_agg is 'constant'")


GRPO_STATES = ("expert", "policy")
GRPO_LAYOUTS = ("all", "failed")
GRPO_MODES = ("single_turn", "multi_turn")


@dataclass
class GRPOConfig(GRPOLossConfig):
    """conf/grpo/default.yaml: the objective's keys above, plus the loop's (planner_rl/train.py)."""

    mode: str = "single_turn"  # single_turn: the method | multi_turn: whole episodes, 0/1 success reward (baseline)
    steps: int = 60  # GRPO steps (one batch of N*G samples each)
    max_generated_tokens: int | None = None  # stop once this many tokens were sampled (equal-compute comparisons)
    prompts_per_step: int = 8  # N: single-turn prompts (multi_turn: training instances) per step
    group_size: int = 8  # G: samples per prompt (>= 2, a group needs a baseline)
    max_resample_rounds: int = 4  # zero_variance=resample: extra draws of N prompts before giving up
    eval_every: int = 20  # steps between evaluations (0: only at the end)
    sample_every: int = 10  # steps between tables of sample completions (0: never)
    states: str = "expert"  # expert: the expert plans' states (the paper's) | policy: also the SFT model's own
    #   closed-loop states off the plan, on the same layouts, labelled by the expert replanned there (onpolicy.py)
    layouts: str = "all"  # all: every GRPO layout (env.grpo_seeds) | failed: only those the SFT model fails when
    #   played greedily in closed loop (the evaluation's protocol): GRPO on the kinds of layout SFT left unsolved
    max_sft_p: float | None = None  # keep only the prompts whose labelled answer the SFT model writes with probability
    #   <= this at the sampling temperature (offline difficulty filtering); None: every prompt
    refresh_states_every: int = 0  # rebuild the prompt pool from the current model every this many steps; 0: once,
    #   from the SFT model. states=policy: collect the policy's off-plan states again (and filter by max_sft_p);
    #   states=expert with max_sft_p: filter the SFT model's pool again (drops the prompts the policy has learned)
    sft_coef: float = 0.0  # weight of the SFT loss on a batch of the SFT examples (sft.batch_size of them, the SFT
    #   objective with sft.prompt_loss) added to every update: an anchor to what SFT taught (PPO-ptx); 0: off
    average_checkpoints: int = 0  # >= 2: the final model (evaluated, and saved as <run>/average_model) is the mean
    #   of the last this many checkpoints' weights (trainer.checkpoint_every apart); 0: the last step's weights

    def __post_init__(self) -> None:
        super().__post_init__()
        counts = ("steps", "prompts_per_step", "max_resample_rounds", "eval_every", "sample_every")
        keys = (*counts, "refresh_states_every")
        for key in keys:
            if not (_is_int(getattr(self, key)) and getattr(self, key) >= (1 if key == "prompts_per_step" else 0)):
                raise ValueError(f"grpo.{key} must be a non-negative integer (prompts_per_step >= 1)")
        if not (_is_int(self.group_size) and self.group_size >= 2):
            raise ValueError(f"grpo.group_size must be an integer >= 2, got {self.group_size!r}")
        if self.mode not in GRPO_MODES:
            raise ValueError(f"grpo.mode must be one of {GRPO_MODES}, got {self.mode!r}")
        if self.states not in GRPO_STATES:
            raise ValueError(f"grpo.states must be one of {GRPO_STATES}, got {self.states!r}")
        if self.layouts not in GRPO_LAYOUTS:
            raise ValueError(f"grpo.layouts must be one of {GRPO_LAYOUTS}, got {self.layouts!r}")
        if self.layouts != "all" and self.mode != "single_turn":
            raise ValueError("grpo.layouts=failed needs grpo.mode=single_turn (multi_turn plays its own instances)")
        if self.refresh_states_every and (
            self.mode != "single_turn" or (self.states != "policy" and self.max_sft_p is None)
        ):
            raise ValueError(
                "grpo.refresh_states_every needs grpo.mode=single_turn and grpo.states=policy or grpo.max_sft_p set"
            )
        if self.mode == "multi_turn" and self.zero_variance == "resample":
            raise ValueError("grpo.zero_variance=resample is single-turn only; multi_turn takes keep or drop")
        if self.max_sft_p is not None and not (_is_real(self.max_sft_p) and 0 < self.max_sft_p <= 1):
            raise ValueError(f"grpo.max_sft_p must be a number in (0, 1] or None, got {self.max_sft_p!r}")
        k = self.average_checkpoints
        if not (_is_int(k) and (k == 0 or k >= 2)):
            raise ValueError(f"grpo.average_checkpoints must be 0 (off) or an integer >= 2, got {k!r}")
        if not (_is_real(self.sft_coef) and self.sft_coef >= 0):
            raise ValueError(f"grpo.sft_coef must be a number >= 0, got {self.sft_coef!r}")
        budget = self.max_generated_tokens
        if budget is not None and not (_is_int(budget) and budget > 0):
            raise ValueError(f"grpo.max_generated_tokens must be an integer > 0 or None, got {budget!r}")


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# --- advantages --------------------------------------------------------------------------------------------------
def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Rewards [N*G] or [N, G] as float [N, G]."""
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (a group needs a baseline), got {group_size}")
    if rewards.dim() == 2 and rewards.shape[1] != group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not have group_size={group_size} columns")
    if rewards.dim() not in (1, 2) or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    return rewards.reshape(-1, group_size).float()


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "std", eps: float = 1e-6, negative_weight: float = 1.0
) -> torch.Tensor:
    """Group-relative advantages [N*G]: r - group mean, divided by (unbiased group std + eps) when scale='std';
    the negative ones then multiplied by `negative_weight` (grpo.negative_weight)."""
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"grpo.advantage_scale must be one of {ADVANTAGE_SCALES}, got {scale!r}")
    if not 0 <= negative_weight <= 1:
        raise ValueError(f"grpo.negative_weight must be in [0, 1], got {negative_weight!r}")
    r = _grouped(rewards, group_size)  # [N, G]
    centred = r - r.mean(dim=1, keepdim=True)  # [N, G]
    if scale == "std":
        centred = centred / (r.std(dim=1, keepdim=True, unbiased=True) + eps)  # std [N, 1]; 0 -> A = 0
    centred = torch.where(centred < 0, centred * negative_weight, centred)  # weight 1: the same values exactly
    return centred.reshape(-1)  # [N*G]


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Bool [N]: True where every reward in the group is exactly equal (its advantages are all 0)."""
    r = _grouped(rewards, group_size)  # [N, G]
    return (r == r[:, :1]).all(dim=1)


def zero_variance_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Fraction of groups whose rewards are all equal."""
    return zero_variance_groups(rewards, group_size).float().mean().item()


# --- log-probs and masks -----------------------------------------------------------------------------------------
def token_log_probs(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0, chunk_size: int = 1
) -> torch.Tensor:
    """Float32 [B, T-1]: log-prob of input_ids[:, t+1] under logits[:, t] / temperature.

    Computed as picked logit - logsumexp, `chunk_size` rows at a time, instead of log_softmax + gather: under no_grad
    (old and reference log-probs) the extra memory is one chunk's float32 logits, not a [B, T, V] float32 copy. With
    grad, float32 logits at temperature 1 are saved for the backward as they are, with no copy (log_softmax would
    keep its [B, T, V] output); otherwise one float32 copy is kept, as with log_softmax.
    """
    if logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and input_ids {tuple(input_ids.shape)} disagree on [B, T]")
    if temperature <= 0 or chunk_size < 1:
        raise ValueError(f"need temperature > 0 and chunk_size >= 1, got {temperature} and {chunk_size}")
    targets = input_ids[:, 1:].unsqueeze(-1)  # [B, T-1, 1]
    rows = []
    for start in range(0, logits.shape[0], chunk_size):
        chunk = logits[start : start + chunk_size, :-1].float()  # [b, T-1, V]; a copy only if not float32 already
        if temperature != 1.0:
            chunk = chunk / temperature
        picked = chunk.gather(-1, targets[start : start + chunk_size]).squeeze(-1)  # [b, T-1]
        rows.append(picked - torch.logsumexp(chunk, dim=-1))  # [b, T-1]
    return torch.cat(rows)  # [B, T-1]


def completion_mask(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor) -> torch.Tensor:
    """Bool [B, T-1], aligned with `token_log_probs`: True where the predicted token belongs to the completion.

    Each row's real tokens (attention_mask 1) are one contiguous run, padded left, right or both; its first
    prompt_lengths[b] real tokens are the prompt, the rest the completion.
    """
    if attention_mask.dim() != 2 or prompt_lengths.shape != attention_mask.shape[:1]:
        raise ValueError(
            f"need attention_mask [B, T] and prompt_lengths [B], got {tuple(attention_mask.shape)} "
            f"and {tuple(prompt_lengths.shape)}"
        )
    if (prompt_lengths < 1).any():
        raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")
    real = attention_mask.bool()  # [B, T]
    first = real.int().argmax(dim=1)  # [B]: index of the first real token (0 for an empty row)
    positions = torch.arange(real.shape[1], device=real.device)  # [T]
    is_completion = real & (positions[None, :] >= (first + prompt_lengths)[:, None])  # [B, T]
    return is_completion[:, 1:]  # [B, T-1]: token t+1 is predicted at t


# --- loss pieces -------------------------------------------------------------------------------------------------
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 = exp(d) - d - 1 with d = ref_logp - logp (>= 0; ref_logp is a constant).

    expm1(d) - d keeps it exact for small d, where exp(d) - 1 would cancel.
    """
    d = ref_logp.detach() - logp
    return torch.expm1(d) - d


def kl_exact(logp_full: torch.Tensor, ref_logp_full: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) = sum_v exp(logp_v) (logp_v - ref_v), [B, T] from log-probs [B, T, V]
    over the whole vocabulary (the reference's a constant). >= 0, and 0 where the two distributions agree."""
    if logp_full.shape != ref_logp_full.shape:
        raise ValueError(f"logp {tuple(logp_full.shape)} and ref {tuple(ref_logp_full.shape)} must have one shape")
    return (logp_full.exp() * (logp_full - ref_logp_full.detach())).sum(dim=-1)


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token loss, clipped_low, clipped_high), all [B, T]; logp, old_logp [B, T], advantages [B].

    loss = -min(ratio A, clip(ratio, 1 - eps_low, 1 + eps_high) A), ratio = exp(logp - old_logp) (old_logp is a
    constant). A clipped token has zero gradient: clipped_high where A > 0 and ratio > 1 + eps_high, clipped_low
    where A < 0 and ratio < 1 - eps_low.
    """
    a = advantages.detach()[:, None]  # [B, 1]
    ratio = torch.exp(logp - old_logp.detach())  # [B, T]
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)  # [B, T]
    loss = -torch.minimum(ratio * a, clipped * a)  # [B, T]
    with torch.no_grad():
        clipped_high = (a > 0) & (ratio > 1 + eps_high)  # [B, T]
        clipped_low = (a < 0) & (ratio < 1 - eps_low)  # [B, T]
    return loss, clipped_low, clipped_high


def aggregate_loss(
    per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_tokens: int | None = None
) -> torch.Tensor:
    """Scalar from per-token values [B, T] over mask [B, T] (see the module docstring: grpo.loss_agg).

    token_mean: sum / number of masked tokens. seq_mean_token_mean: each row's masked mean, then the mean over all B
    rows (an empty row counts as 0). constant: sum / (B * max_tokens).
    """
    m = mask.to(per_token.dtype)  # [B, T]
    masked = per_token * m  # [B, T]; where() would also hide NaN/inf, but those should surface
    if mode == "token_mean":
        return masked.sum() / m.sum().clamp(min=1)
    if mode == "seq_mean_token_mean":
        return (masked.sum(dim=1) / m.sum(dim=1).clamp(min=1)).mean()  # [B] -> scalar
    if mode == "constant":
        if max_tokens is None or max_tokens <= 0:
            raise ValueError("grpo.max_completion_tokens must be set (> 0) when grpo.loss_agg is 'constant'")
        return masked.sum() / (per_token.shape[0] * max_tokens)
    raise ValueError(f"grpo.loss_agg must be one of {LOSS_AGGS}, got {mode!r}")


def micro_batch_weight(mask: torch.Tensor, batch_tokens: float, batch_rows: int, mode: str) -> float:
    """Factor that turns `aggregate_loss` over a micro-batch into its exact share of the loss over the batch.

    mask [b, T] is the micro-batch's completion mask; batch_tokens and batch_rows are the whole batch's completion
    tokens and rows (over every rank, under data parallelism). Summing weight * aggregate_loss(micro-batch) over
    the micro-batches gives aggregate_loss(batch) for every mode: token_mean: the micro-batch's share of the
    batch's tokens; seq_mean_token_mean and constant: b / B. E.g. a batch of 2 rows with 3 and 1 completion
    tokens, split in single rows, token_mean: weights 3/4 and 1/4, so 3/4 * mean(row 0) + 1/4 * mean(row 1) =
    sum of all 4 tokens / 4.
    """
    if mode == "token_mean":
        return float(mask.sum()) / max(float(batch_tokens), 1.0)
    if mode in ("seq_mean_token_mean", "constant"):
        return mask.shape[0] / max(batch_rows, 1)
    raise ValueError(f"grpo.loss_agg must be one of {LOSS_AGGS}, got {mode!r}")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg: GRPOLossConfig,
    kl_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, stats): clipped surrogate + beta * KL, aggregated by cfg.loss_agg.

    logp, old_logp, ref_logp, mask [B, T]; advantages [B]. old_logp None means logp.detach() (mu = 1). The KL per
    token is k3 from ref_logp (kl_estimator k3), or kl_tokens [B, T] as given (kl_estimator exact: `kl_exact` of
    both models' full log-probs, which the caller holds; ref_logp is then unused). Stats:
    loss/total = loss/policy + beta * loss/kl (both aggregated like the loss; loss/kl only with ref_logp), and over
    the masked tokens loss/clip_frac_low, loss/clip_frac_high, loss/clip_frac, loss/ratio_mean, loss/ratio_max.
    """
    exact = cfg.kl_estimator == "exact"
    if cfg.beta > 0 and (kl_tokens if exact else ref_logp) is None:
        need = "kl_tokens (the exact per-token KL)" if exact else "ref_logp (the reference model's log-probs)"
        raise ValueError(f"grpo.beta > 0 with grpo.kl_estimator={cfg.kl_estimator} needs {need}")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask), ("kl_tokens", kl_tokens)):
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must have logp's shape {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages {tuple(advantages.shape)} must be [B] for logp {tuple(logp.shape)}")
    old_logp = logp.detach() if old_logp is None else old_logp

    def agg(x: torch.Tensor) -> torch.Tensor:
        return aggregate_loss(x, mask, cfg.loss_agg, cfg.max_completion_tokens)

    surrogate, low, high = clipped_surrogate(logp, old_logp, advantages, cfg.eps_low, cfg.eps_high)  # [B, T] x3
    policy = agg(surrogate)
    loss = policy
    stats: dict[str, float] = {"loss/policy": policy.item()}
    per_token_kl = kl_tokens if exact else (kl_k3(logp, ref_logp) if ref_logp is not None else None)
    if per_token_kl is not None:
        kl = agg(per_token_kl)
        stats["loss/kl"] = kl.item()
        if cfg.beta > 0:
            loss = loss + cfg.beta * kl
    with torch.no_grad():
        m = mask.bool()  # [B, T]
        count = max(int(m.sum()), 1)
        ratio = torch.exp(logp - old_logp)[m]  # [masked tokens]
        stats["loss/total"] = loss.item()
        stats["loss/clip_frac_low"] = (low & m).sum().item() / count
        stats["loss/clip_frac_high"] = (high & m).sum().item() / count
        stats["loss/clip_frac"] = stats["loss/clip_frac_low"] + stats["loss/clip_frac_high"]
        stats["loss/ratio_mean"] = ratio.sum().item() / count if ratio.numel() else 1.0
        stats["loss/ratio_max"] = ratio.max().item() if ratio.numel() else 1.0
    return loss, stats
