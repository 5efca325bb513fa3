"""Multi-turn evaluation: scripted policies with hand-worked step counts under both invalid-action protocols and
both budgets, the lockstep schedule, the metrics, the results file and config, and the tiny model end to end."""

import json
import math
import random

import pytest
from omegaconf import OmegaConf

from planner_rl.data import expert_trajectory
from planner_rl.env.tasks import get_task
from planner_rl.evaluate import EvalConfig, Instance, evaluate, play, summarize, write_results
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig
from planner_rl.rollout.hf import HFRollout

PROMPT = PromptConfig()
# T_GT 8 / 7 / 12 / 8 / 7 / 12 / 15; budgets 15 (cheese_sandwich, burger) and 21 (lettuce_sandwich)
CASES = [("cheese_sandwich", 42), ("cheese_sandwich", 84), ("cheese_sandwich", 126), ("burger", 42), ("burger", 84)]
CASES += [("lettuce_sandwich", 84), ("lettuce_sandwich", 42)]


@pytest.fixture(scope="module")
def plans():
    return {(t, s): expert_trajectory(t, s).plan for t, s in CASES}


def instances(plans, cases=CASES):
    return [Instance(t, s, len(plans[(t, s)])) for t, s in cases]


def expert(plans, calls=None):
    """Answers the expert's next action; records the active episodes of each call in `calls`."""

    def decide(episodes, messages):
        if calls is not None:
            calls.append([(ep.task, ep.seed) for ep in episodes])
        return [f"Action: {plans[(ep.task, ep.seed)][len(ep.history)]}" for ep in episodes]

    return decide


def test_expert_policy_succeeds_in_minimal_steps_in_lockstep(plans):
    calls = []
    results = play(instances(plans), PROMPT, EvalConfig(), expert(plans, calls))
    t_gt = [len(plans[c]) for c in CASES]
    assert [r.steps for r in results] == t_gt and all(r.success and r.end == "success" for r in results)
    # lockstep: one call per turn holding every episode still playing, so max T_GT calls in all
    assert len(calls) == max(t_gt) == 15
    assert [len(c) for c in calls] == [sum(t > k for t in t_gt) for k in range(15)]
    m = summarize(results)
    assert m["sr"] == m["min_step_sr"] == 1.0 and m["invalid_rate"] == m["parse_fail_rate"] == 0.0
    assert m["asat"] == m["asst"] == pytest.approx(sum(t_gt) / 7)  # 69 / 7
    assert m["burger/asat"] == 7.5 and m["lettuce_sandwich/sr"] == 1.0 and m["episodes"] == 7.0
    assert [r.transcript is not None for r in results] == [True] * 3 + [False] * 4
    assert results[0].transcript[0] == {"step": 0, "completion": f"Action: {plans[CASES[0]][0]}",
                                        "action": plans[CASES[0]][0], "valid": True}  # fmt: skip


def garbage(episodes, messages):
    """Random text, seeded by the episode and turn so every test sees the same answers."""
    out = []
    for ep in episodes:
        rng = random.Random(f"{ep.task}-{ep.seed}-{ep.answers}")
        pool = "abc XYZ:\n\t.,'\"<>/|{}#éü中😀"
        out.append(rng.choice(["", "\n\n", "x" * 500, "Action:", "Action: Action:"]) if rng.random() < 0.2 else
                   "".join(rng.choices(pool, k=rng.randrange(60))))  # fmt: skip
    return out


def test_garbage_never_crashes_and_fails_at_the_budget(plans):
    results = play(instances(plans), PROMPT, EvalConfig(), garbage)
    m = summarize(results)
    assert m["sr"] == m["min_step_sr"] == 0.0 and math.isnan(m["asst"])
    assert m["parse_fail_rate"] == m["invalid_rate"] == 1.0
    # consume: every answer costs a step, so each episode makes exactly `budget` answers
    assert all(r.steps == r.answers == r.budget and r.end == "budget" for r in results)
    assert m["asat"] == pytest.approx((5 * 15 + 2 * 21) / 7)
    assert m["burger/asat"] == 15.0 and m["lettuce_sandwich/asat"] == 21.0


def test_requery_always_invalid_ends_after_max_exhausted_steps(plans):
    cfg = EvalConfig(invalid="requery")
    results = play(instances(plans)[:2], PROMPT, cfg, garbage)
    # each step: 1 answer + 5 re-queries = 6 refused, then the step is consumed; the 3rd such step ends it:
    # 3 steps, 18 answers. ASAT still counts the budget (15).
    assert all((r.steps, r.answers, r.exhausted, r.end) == (3, 18, 3, "exhausted") for r in results)
    assert summarize(results)["asat"] == 15.0
    short = play(instances(plans)[:1], PROMPT, EvalConfig(invalid="requery", max_requeries=0, max_exhausted=1), garbage)
    assert (short[0].steps, short[0].answers) == (1, 1)  # no re-query: the first refusal exhausts the step


def stubborn(plans, seen):
    """Even answers: a well-formed action that does not exist; odd answers: the expert's action."""

    def decide(episodes, messages):
        seen.extend((ep.answers, m[-1]["content"]) for ep, m in zip(episodes, messages, strict=True))
        return ["Action: Fly robot1 to the moon" if ep.answers % 2 == 0 else
                f"Action: {plans[(ep.task, ep.seed)][len(ep.history)]}" for ep in episodes]  # fmt: skip

    return decide


def test_one_refusal_per_step_requery_vs_consume(plans):
    cases = [("cheese_sandwich", 84), ("cheese_sandwich", 42)]  # T_GT 7 and 8, budget 15
    seen = []
    results = play(instances(plans, cases), PROMPT, EvalConfig(invalid="requery"), stubborn(plans, seen))
    # re-queries cost no step: still T_GT steps, two answers per step, half of them refused, none malformed
    assert [(r.success, r.steps, r.answers, r.invalid, r.malformed) for r in results] == [
        (True, 7, 14, 7, 0),
        (True, 8, 16, 8, 0),
    ]
    feedback = "Feedback: The action 'Fly robot1 to the moon' is not valid. Please provide a valid action."
    feedback += " Reason: not a valid action."
    assert all((feedback in prompt) == (k % 2 == 1) for k, prompt in seen)
    assert summarize(results)["min_step_sr"] == 1.0 and summarize(results)["invalid_rate"] == 0.5

    results = play(instances(plans, cases), PROMPT, EvalConfig(invalid="consume"), stubborn(plans, []))
    # consume: each plan action takes two steps. T_GT 7: 14 <= 15 steps, a success; T_GT 8 needs 16 > 15, so at
    # step 15 (7 plan actions done, the 15th answer refused) the budget ends it.
    assert [(r.success, r.steps, r.answers, len(r.transcript)) for r in results] == [
        (True, 14, 14, 14),
        (False, 15, 15, 15),
    ]
    m = summarize(results)
    assert (m["sr"], m["min_step_sr"], m["asat"], m["asst"]) == (0.5, 0.0, 14.5, 14.0)


def test_optimal_budget_is_one_and_a_half_t_gt(plans):
    results = play(instances(plans), PROMPT, EvalConfig(budget="optimal"), garbage)
    assert [r.budget for r in results] == [12, 11, 18, 12, 11, 18, 23]  # ceil(1.5 * (8, 7, 12, 8, 7, 12, 15))
    assert all(r.budget == math.ceil(1.5 * r.t_gt) == r.steps for r in results)
    robotouille = play(instances(plans)[:1], PROMPT, EvalConfig(), garbage)
    assert robotouille[0].budget == get_task("cheese_sandwich").budget == 15


def test_eval_config_validation_names_the_key():
    for key, value in [("budget", "twice"), ("invalid", "ignore"), ("max_requeries", -1), ("max_exhausted", 0),
                       ("temperature", -0.1), ("top_p", 0.0), ("max_new_tokens", 0), ("batch_size", 0),
                       ("transcripts", -1), ("seeds", [1, 1]), ("seeds", [])]:  # fmt: skip
        with pytest.raises(ValueError, match=f"eval.{key}"):
            EvalConfig(**{key: value})


def test_yaml_mirrors_the_schema(tmp_path):
    schema = OmegaConf.structured(EvalConfig)
    yaml = OmegaConf.load("conf/eval/default.yaml")
    assert set(yaml) == set(schema) and OmegaConf.to_object(OmegaConf.merge(schema, yaml)) == EvalConfig()
    with pytest.raises(Exception, match="sedes"):
        OmegaConf.merge(schema, {"sedes": [1]})


def test_tiny_model_end_to_end(tmp_path):
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    cfg = EvalConfig(seeds=[42, 84], max_new_tokens=12, batch_size=1, transcripts=1)
    summary, results = evaluate(HFRollout(model, tokenizer), tokenizer, ["cheese_sandwich"], [1, 2], PROMPT, cfg)
    assert [(r.task, r.seed, r.t_gt) for r in results] == [("cheese_sandwich", 42, 8), ("cheese_sandwich", 84, 7)]
    assert summary["episodes"] == 2.0 and 0 <= summary["sr"] <= 1 and summary["seconds"] > 0
    assert all(r.steps <= r.budget and r.invalid <= r.answers for r in results)
    assert len(results[0].transcript) == results[0].answers and results[1].transcript is None
    write_results(tmp_path / "out" / "results.json", summary, results, cfg)
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["invalid_protocol"] == "consume" and doc["config"]["seeds"] == [42, 84]
    assert [e["transcript"] is not None for e in doc["episodes"]] == [True, False]
    assert set(doc["summary"]) == set(summary)
