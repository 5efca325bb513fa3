"""`planner_rl.bench.trl`'s reward settings and informative share, without TRL: the `mixed` setting turns answers
that differ only in format into groups with reward std > 0, where plain expert_match leaves them all-0."""

import pytest

from planner_rl.bench.trl import SETTINGS, informative_share
from planner_rl.rewards import RewardConfig, compute_reward


def test_informative_share_counts_groups_with_unequal_rewards():
    # G = 4: all-0, mixed, all-1, mixed -> 2 of 4 groups informative
    assert informative_share([0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0], 4) == pytest.approx(0.5)
    assert informative_share([0.0] * 8, 8) == 0.0


def test_mixed_setting_makes_groups_informative(make_world):
    from planner_rl.env.planner import solve

    world = make_world("burger", 1000)  # the expert's states of one layout, as the benchmark's rows hold them
    state, rows = world.initial_state, []
    for action in solve(world, optimal_sets=False).plan:
        valid = [a.text for a in world.valid_actions(state)]
        rows.append({"expert_action": action.text, "valid_actions": valid, "optimal_actions": [action.text]})
        state = world.step(state, action)
    rows = [r for r in rows if len(r["valid_actions"]) > 1]
    assert rows
    G, answers = 4, []
    for row in rows:  # per group: two well-formed non-expert answers, two malformed ones; never the expert's action
        other = next(a for a in row["valid_actions"] if a != row["expert_action"])
        answers += [f"Action: {other}", f"robot1 {other}", "from table1 cheese1Can", f"Action: {other}"]

    def share(setting: str) -> float:
        reward = RewardConfig(name="expert_match", **SETTINGS[setting])
        return informative_share(
            [compute_reward(reward, a, rows[k // G], "action")[0] for k, a in enumerate(answers)], G
        )

    assert share("expert_match") == 0.0  # the benchmark's plain setting: all-0 groups, zero advantages
    assert share("mixed") == 1.0 > 0.5
