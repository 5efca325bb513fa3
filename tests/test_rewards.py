"""Rewards: hand-worked scores for each main reward and the weighted formula, label noise, and fuzzing."""

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from planner_rl.parsing import OUTPUT_FORMATS
from planner_rl.rewards import (
    REWARD_NAMES,
    RewardConfig,
    compute_reward,
    corrupt_label,
    expert_match,
    noisy_expert,
    optimal_set,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "reward"
TO_TABLE2 = "Move robot1 from table4 to table2"  # the expert's: bread1 is on table2
TO_TABLE5 = "Move robot1 from table4 to table5"  # bread2 is on table5: another optimal first step
TO_SINK = "Move robot1 from table4 to sink1"
EXAMPLE = {
    "expert_action": TO_TABLE2,
    "optimal_actions": [TO_TABLE2, TO_TABLE5],
    "valid_actions": [
        TO_SINK,
        "Move robot1 from table4 to table1",
        TO_TABLE2,
        "Move robot1 from table4 to table3",
        TO_TABLE5,
        "Do nothing",
    ],
    "task": "cheese_sandwich",
    "seed": 1,
    "step": 0,
}


def flags(info: dict) -> tuple[bool, bool, bool]:
    return info["well_formed"], info["valid"], info["matched"]


def ok(action: str, fmt: str = "action") -> str:
    return f"Action: {action}" if fmt == "action" else f"<think>\nplan\n</think>\nAction: {action}"


# --- main rewards -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize(
    ("action", "expert", "optimal"),
    [
        (TO_TABLE2, 1.0, 1.0),  # the expert's action
        ("move ROBOT1 from table4 to table2.", 1.0, 1.0),  # a harmless variant of it
        (f"`{TO_TABLE2}`", 1.0, 1.0),
        (TO_TABLE5, 0.0, 1.0),  # another optimal first step: only optimal_set accepts it
        (TO_SINK, 0.0, 0.0),  # valid but not optimal
        ("Move robot1 from table4 to table9", 0.0, 0.0),  # not valid
    ],
)
def test_expert_match_and_optimal_set(fmt, action, expert, optimal):
    assert expert_match(ok(action, fmt), EXAMPLE, fmt)[0] == expert
    assert optimal_set(ok(action, fmt), EXAMPLE, fmt)[0] == optimal


def test_info_fields():
    score, info = expert_match(ok(TO_TABLE5), EXAMPLE, "action")
    assert score == 0.0
    assert info == {
        "parsed_action": TO_TABLE5,
        "well_formed": True,
        "valid": True,
        "matched": False,
        "error": None,
        "label": TO_TABLE2,
    }
    score, info = optimal_set("Action: Fly away", EXAMPLE, "action")
    assert (score, info["parsed_action"], flags(info)) == (0.0, None, (True, False, False))
    assert info["error"] == "not a valid action" and info["label"] is None


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_malformed_completions_score_zero_even_with_the_right_action(name):
    cfg = RewardConfig(name=name)
    for completion, fmt in [
        (TO_TABLE2, "action"),  # no keyword
        (f"Action: {TO_TABLE2}\nAction: {TO_TABLE2}", "action"),  # two Action lines
        (f"Action: {TO_TABLE2}", "think"),  # the think block is required
        (f"Sure. {ok(TO_TABLE2, 'think')}", "think"),
    ]:
        score, info = compute_reward(cfg, completion, EXAMPLE, fmt)
        assert score == 0.0
        assert (flags(info), info["parsed_action"]) == ((False, False, False), None)


# --- the weighted formula ---------------------------------------------------------------------------------------
# fw = 0.25, vw = 0.5: score = main + 0.25 * well_formed + 0.5 * valid
#   correct           1 + 0.25 + 0.5 = 1.75
#   valid, wrong      0 + 0.25 + 0.5 = 0.75
#   well-formed only  0 + 0.25 + 0   = 0.25
#   malformed         0 + 0    + 0   = 0
@pytest.mark.parametrize(
    ("name", "completion", "expected"),
    [
        ("expert_match", ok(TO_TABLE2), 1.75),
        ("expert_match", ok(TO_TABLE5), 0.75),
        ("expert_match", ok("Fly away"), 0.25),
        ("expert_match", TO_TABLE2, 0.0),
        ("optimal_set", ok(TO_TABLE5), 1.75),
        ("optimal_set", ok(TO_SINK), 0.75),
        ("optimal_set", ok("Move robot1 from table4 to table"), 0.25),  # a prefix of five actions
        ("optimal_set", "", 0.0),
        ("noisy_expert", ok(TO_TABLE2), 1.75),  # noise_p = 0: the label is the expert's
    ],
)
def test_compute_reward_formula(name, completion, expected):
    cfg = RewardConfig(name, format_weight=0.25, valid_weight=0.5)
    score, info = compute_reward(cfg, completion, EXAMPLE, "action")
    assert score == pytest.approx(expected)
    assert info["score"] == score and info["main"] in (0.0, 1.0)


def test_compute_reward_default_weights_are_the_main_reward():
    for completion in (ok(TO_TABLE2), ok(TO_SINK), "junk"):
        assert (
            compute_reward(RewardConfig(), completion, EXAMPLE, "action")[0]
            == expert_match(completion, EXAMPLE, "action")[0]
        )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"name": "exact"}, "reward.name"),
        ({"format_weight": -0.1}, "reward.format_weight"),
        ({"valid_weight": float("nan")}, "reward.valid_weight"),
        ({"valid_weight": float("inf")}, "reward.valid_weight"),
        ({"noise_p": 1.5}, "reward.noise_p"),
        ({"noise_p": -0.1}, "reward.noise_p"),
    ],
)
def test_reward_config_rejects_bad_values(kwargs, key):
    with pytest.raises(ValueError, match=key):
        RewardConfig(**kwargs)


def test_bad_example_raises():
    bad = {**EXAMPLE, "expert_action": "Teleport"}
    with pytest.raises(ValueError, match="expert_action"):
        expert_match(ok(TO_TABLE2), bad, "action")
    bad = {**EXAMPLE, "optimal_actions": [TO_TABLE2, "Teleport"]}
    with pytest.raises(ValueError, match="optimal_actions"):
        optimal_set(ok(TO_TABLE2), bad, "action")


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_reward_yaml_builds_its_config(path):
    cfg = RewardConfig(**OmegaConf.to_container(OmegaConf.load(path)))
    assert cfg.name == path.stem
    assert compute_reward(cfg, ok(TO_TABLE2), EXAMPLE, "action")[1]["well_formed"]


def test_every_reward_has_a_yaml():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(REWARD_NAMES)


# --- label noise ------------------------------------------------------------------------------------------------
def examples(n: int, seed: int | None = 1):
    """n distinct example identities over two tasks, sharing EXAMPLE's actions."""
    return [{**EXAMPLE, "task": ("burger", "cheese_sandwich")[i % 2], "step": i // 2, "seed": seed} for i in range(n)]


def test_corrupt_label_edges():
    assert corrupt_label(EXAMPLE, 0.0, seed=0) == (TO_TABLE2, False)
    for ex in examples(50):
        label, corrupted = corrupt_label(ex, 1.0, seed=0)
        assert corrupted and label != TO_TABLE2 and label in EXAMPLE["valid_actions"]
    alone = {**EXAMPLE, "valid_actions": [TO_TABLE2], "optimal_actions": [TO_TABLE2]}
    assert corrupt_label(alone, 1.0, seed=0) == (TO_TABLE2, False)  # no valid non-expert action
    with pytest.raises(ValueError, match="noise_p"):
        corrupt_label(EXAMPLE, 1.01, seed=0)


def test_corrupt_label_is_deterministic_and_order_free():
    first = [corrupt_label(ex, 0.5, seed=7) for ex in examples(200)]
    assert first == [corrupt_label(ex, 0.5, seed=7) for ex in examples(200)]
    shuffled = [{**ex, "valid_actions": ex["valid_actions"][::-1]} for ex in examples(200)]
    assert first == [corrupt_label(ex, 0.5, seed=7) for ex in shuffled]
    # every part of the identity changes the draw: the global seed, the task, the layout seed, the step
    assert first != [corrupt_label(ex, 0.5, seed=8) for ex in examples(200)]
    assert first != [corrupt_label(ex, 0.5, seed=7) for ex in examples(200, seed=None)]
    swapped = [{**ex, "task": "x" + ex["task"]} for ex in examples(200)]
    assert first != [corrupt_label(ex, 0.5, seed=7) for ex in swapped]
    shifted = [{**ex, "step": ex["step"] + 1000} for ex in examples(200)]
    assert first != [corrupt_label(ex, 0.5, seed=7) for ex in shifted]


def test_corrupt_label_rate_and_choices():
    exs = examples(2000)
    labels = [corrupt_label(ex, 0.3, seed=0) for ex in exs]
    corrupted = [label for label, c in labels if c]
    # Binomial(2000, 0.3): sd = sqrt(2000 * 0.3 * 0.7) ~ 20.5, so 0.3 +- 0.04 is about +-4 sd
    assert abs(len(corrupted) / 2000 - 0.3) < 0.04
    assert all(label == TO_TABLE2 for label, c in labels if not c)
    assert TO_TABLE2 not in corrupted and set(corrupted) <= set(EXAMPLE["valid_actions"])
    # uniform over the 5 non-expert actions: each ~120 of ~600, sd ~ 10
    counts = Counter(corrupted)
    assert len(counts) == 5 and all(abs(k - len(corrupted) / 5) < 50 for k in counts.values())


def test_corruption_is_nested_in_p():
    exs = examples(500)
    low = [corrupt_label(ex, 0.1, seed=3) for ex in exs]
    high = [corrupt_label(ex, 0.4, seed=3) for ex in exs]
    for (label_lo, c_lo), (label_hi, c_hi) in zip(low, high, strict=True):
        if c_lo:  # corrupted at 0.1 implies corrupted at 0.4, to the same action
            assert c_hi and label_hi == label_lo


def test_noisy_expert_scores_against_the_label():
    for ex in examples(100):
        label, corrupted = corrupt_label(ex, 0.5, seed=11)
        score, info = noisy_expert(ok(label), ex, "action", 0.5, 11)
        assert (score, info["label"], info["corrupted"], info["matched"]) == (1.0, label, corrupted, True)
        if corrupted:  # the true expert action is now wrong
            assert noisy_expert(ok(TO_TABLE2), ex, "action", 0.5, 11)[0] == 0.0
    cfg = RewardConfig("noisy_expert", noise_p=0.5, noise_seed=11)
    ex = examples(100)[0]
    assert compute_reward(cfg, ok(TO_SINK), ex, "action")[1]["label"] == corrupt_label(ex, 0.5, 11)[0]


# --- fuzzing: every reward, any string, never a crash, always in range ------------------------------------------
PIECES = ["Action:", "Action: ", "<think>", "</think>", "\n", " ", ".", '"', "`", *EXAMPLE["valid_actions"]]
completions = st.text() | st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=12).map("".join)


@settings(max_examples=1000, deadline=None)
@given(
    completion=completions,
    fmt=st.sampled_from(OUTPUT_FORMATS),
    name=st.sampled_from(REWARD_NAMES),
    fw=st.floats(0, 2),
    vw=st.floats(0, 2),
    p=st.floats(0, 1),
    step=st.integers(0, 40),
)
def test_rewards_never_raise_and_stay_in_range(completion, fmt, name, fw, vw, p, step):
    ex = {**EXAMPLE, "step": step}
    cfg = RewardConfig(name, format_weight=fw, valid_weight=vw, noise_p=p, noise_seed=step)
    score, info = compute_reward(cfg, completion, ex, fmt)
    assert 0.0 <= score <= 1.0 + fw + vw + 1e-12
    assert info["main"] in (0.0, 1.0)
    assert score == pytest.approx(info["main"] + fw * info["well_formed"] + vw * info["valid"])
    assert not info["matched"] or info["valid"]
    assert not info["valid"] or info["well_formed"]
    for reward in (expert_match, optimal_set):
        s, i = reward(completion, ex, fmt)
        assert s in (0.0, 1.0) and s == float(i["matched"])
    s, i = noisy_expert(completion, ex, fmt, p, step)
    assert s in (0.0, 1.0)
