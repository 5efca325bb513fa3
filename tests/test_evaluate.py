"""Multi-turn evaluation: scripted policies with hand-worked step counts under both invalid-action protocols and
both budgets, the lockstep schedule, the metrics, the results file and config, and the tiny model end to end."""

import json
import math
import os
import random
import subprocess
import sys
import types

import pytest
import torch
from omegaconf import OmegaConf

from planner_rl.data import expert_trajectory, trajectory_examples
from planner_rl.env.tasks import get_task
from planner_rl.evaluate import (
    EvalConfig,
    Instance,
    PathProbability,
    answer_log_probs,
    evaluate,
    expert_path_probabilities,
    play,
    restricted_answer_log_probs,
    results_table,
    summarize,
    theory_summary,
    write_evaluation,
    write_results,
)
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.parsing import format_target
from planner_rl.prompts import PromptConfig
from planner_rl.rollout import Sampling
from planner_rl.rollout.hf import HFRollout, encode_prompt
from planner_rl.rollout.restricted import answer_choices

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
                       ("transcripts", -1), ("seeds", [1, 1]), ("seeds", []), ("episodes", 0),
                       ("decoding", "beam")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"eval.{key}"):
            EvalConfig(**{key: value})
    with pytest.raises(ValueError, match=r"eval\.decoding=valid_actions .* top_p must be 1"):
        EvalConfig(decoding="valid_actions", top_p=0.9)
    with pytest.raises(ValueError, match=r"eval\.also_valid_actions .* needs eval\.decoding=free"):
        EvalConfig(decoding="valid_actions", also_valid_actions=True)
    with pytest.raises(ValueError, match="top_p must be 1"):
        EvalConfig(also_valid_actions=True, top_p=0.5)


def test_yaml_mirrors_the_schema(tmp_path):
    schema = OmegaConf.structured(EvalConfig)
    yaml = OmegaConf.load("conf/eval/default.yaml")
    assert set(yaml) == set(schema) and OmegaConf.to_object(OmegaConf.merge(schema, yaml)) == EvalConfig()
    with pytest.raises(Exception, match="sedes"):
        OmegaConf.merge(schema, {"sedes": [1]})


def test_tiny_model_end_to_end(tmp_path):
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    cfg = EvalConfig(seeds=[42, 84], max_new_tokens=12, batch_size=1, transcripts=1)
    summary, results, paths, restricted = evaluate(HFRollout(model, tokenizer), tokenizer, ["cheese_sandwich"], [1, 2],
                                                   PROMPT, cfg)  # fmt: skip
    assert restricted is None  # no eval.also_valid_actions
    assert paths == []  # no model given: no theory check
    assert [(r.task, r.seed, r.t_gt) for r in results] == [("cheese_sandwich", 42, 8), ("cheese_sandwich", 84, 7)]
    assert summary["episodes"] == 2.0 and 0 <= summary["sr"] <= 1 and summary["seconds"] > 0
    assert all(r.steps <= r.budget and r.invalid <= r.answers for r in results)
    assert len(results[0].transcript) == results[0].answers and results[1].transcript is None
    write_results(tmp_path / "out" / "results.json", summary, results, cfg)
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["invalid_protocol"] == "consume" and doc["config"]["seeds"] == [42, 84]
    assert [e["transcript"] is not None for e in doc["episodes"]] == [True, False]
    assert set(doc["summary"]) == set(summary)


def test_valid_action_decoding_beside_free_generation(tmp_path):
    """eval.also_valid_actions: a second pass whose every answer is a valid action, under `valid_actions/`, written
    beside the free pass; its theory check is over the restricted policy."""
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    cfg = EvalConfig(seeds=[42, 84], max_new_tokens=8, transcripts=1, also_valid_actions=True)
    ev = evaluate(HFRollout(model, tokenizer), tokenizer, ["cheese_sandwich"], [], PROMPT, cfg, model=model)
    restricted = ev.valid_actions.summary
    assert ev.summary["invalid_rate"] > 0.5  # the untrained model's free answers are refused...
    assert restricted["invalid_rate"] == restricted["parse_fail_rate"] == 0.0  # ...its restricted ones never
    assert ev.valid_actions.episodes[0].answers == ev.valid_actions.episodes[0].steps
    assert all(t["valid"] for t in ev.valid_actions.episodes[0].transcript)
    assert {k: ev.summary[f"valid_actions/{k}"] for k in restricted} == restricted  # NaN asst: the same object
    assert len(ev.valid_actions.paths) == 2 and "valid_actions/p0" in ev.summary
    write_evaluation(tmp_path / "eval" / "step_000003.json", ev, cfg)
    doc = json.loads((tmp_path / "eval" / "valid_actions" / "step_000003.json").read_text())
    assert doc["config"]["decoding"] == "valid_actions" and len(doc["episodes"]) == 2
    assert "valid_actions/sr" in json.loads((tmp_path / "eval" / "step_000003.json").read_text())["summary"]
    with pytest.raises(ValueError, match="pass its model"):
        evaluate(HFRollout(model, tokenizer), tokenizer, ["cheese_sandwich"], [42], PROMPT,
                 EvalConfig(decoding="valid_actions"))  # fmt: skip


def test_restricted_path_probabilities_are_the_shares_of_the_valid_answers(tmp_path):
    """Under valid-action decoding a state's answer probabilities sum to 1 over its valid actions, and exactly one
    of them is the greedy pick."""
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    ex = trajectory_examples(expert_trajectory("burger", 42), PROMPT)[3]
    prompt, options = encode_prompt(tokenizer, ex["prompt"]), answer_choices(ex["valid_actions"], "action")
    for temperature in (0.0, 0.5):
        scored = restricted_answer_log_probs(model, tokenizer, [(prompt, a, options) for a in options], temperature)
        assert sum(math.exp(lp) for lp, _ in scored) == pytest.approx(1.0, rel=1e-5)
        assert sum(g for _, g in scored) == 1
    (p,) = expert_path_probabilities(model, tokenizer, [expert_trajectory("burger", 42)], PROMPT, 0.5, 4,
                                     "valid_actions")  # fmt: skip
    share = restricted_answer_log_probs(model, tokenizer, [(prompt, ex["target"], options)], 0.5)[0][0]
    assert p.step_probs[3] == pytest.approx(math.exp(share), rel=1e-5) and max(p.step_probs) <= 1


# --- every task, lockstep vs one at a time ------------------------------------------------------------------------
def test_scripted_expert_reaches_sr_and_min_step_sr_one_on_every_task():
    from planner_rl.env.tasks import task_names

    cases = [(t, s) for t in task_names() for s in (42, 84)]
    plans = {c: expert_trajectory(*c).plan for c in cases}
    for budget in ("robotouille", "optimal"):
        results = play(instances(plans, cases), PROMPT, EvalConfig(budget=budget), expert(plans))
        m = summarize(results)
        assert m["sr"] == m["min_step_sr"] == 1.0 and m["invalid_rate"] == 0.0
        assert all(r.steps == r.t_gt == len(plans[(r.task, r.seed)]) for r in results)
        assert all(m[f"{t}/sr"] == m[f"{t}/min_step_sr"] == 1.0 for t in task_names())


def mixed(plans):
    """Per (episode, answer), seeded: the expert's action, a random valid action, a bad action, or garbage."""

    def decide(episodes, messages):
        out = []
        for ep in episodes:
            rng = random.Random(f"{ep.task}/{ep.seed}/{ep.answers}")
            u, plan = rng.random(), plans[(ep.task, ep.seed)]
            if u < 0.6 and len(ep.history) < len(plan) and list(ep.history) == list(plan[: len(ep.history)]):
                out.append(f"Action: {plan[len(ep.history)]}")
            elif u < 0.85:
                out.append(f"Action: {rng.choice(ep.world.valid_actions(ep.state)).text}")
            elif u < 0.95:
                out.append("Action: Fly robot1 to the moon")
            else:
                out.append("".join(rng.choices("ab: \n<>", k=rng.randrange(20))))
        return out

    return decide


@pytest.mark.parametrize("invalid", ["consume", "requery"])
def test_lockstep_equals_one_episode_at_a_time(plans, invalid):
    calls = {True: 0, False: 0}
    results = {}
    for lockstep in (True, False):
        decide = mixed(plans)

        def counted(episodes, messages, decide=decide, lockstep=lockstep):
            calls[lockstep] += 1
            return decide(episodes, messages)

        cfg = EvalConfig(invalid=invalid, lockstep=lockstep, transcripts=7)
        results[lockstep] = play(instances(plans), PROMPT, cfg, counted)
    assert results[True] == results[False]  # every field of every episode, transcripts included
    assert {r.end for r in results[True]} >= {"success"} and any(not r.success for r in results[True])
    assert calls[False] == sum(r.answers for r in results[True]) > calls[True]


def test_lockstep_equals_one_at_a_time_with_the_tiny_model(tmp_path):
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    rollout = HFRollout(model, tokenizer)
    runs = [
        evaluate(
            rollout,
            tokenizer,
            ["cheese_sandwich", "burger"],
            [42, 84],
            PROMPT,
            EvalConfig(max_new_tokens=8, lockstep=lockstep, theory=False),
        )
        for lockstep in (True, False)
    ]
    assert runs[0].episodes == runs[1].episodes  # batched (left-padded) greedy answers = one-prompt answers


# --- the theory check ---------------------------------------------------------------------------------------------
class FakeLM(torch.nn.Module):
    """Logits by rule, to check the arithmetic: `uniform`, or `oracle` (logit c on the next input token, 0 elsewhere:
    it knows the answer it is scored on). The decoder's hidden state is that logit vector; the head is the identity."""

    def __init__(self, vocab: int, mode: str, c: float = 5.0):
        super().__init__()
        self.vocab, self.c = vocab, c if mode == "oracle" else 0.0
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.anchor.device

    def get_decoder(self):
        def decoder(input_ids, attention_mask=None):
            nxt = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1)
            hidden = torch.nn.functional.one_hot(nxt, self.vocab).float() * self.c
            return types.SimpleNamespace(last_hidden_state=hidden)

        return decoder

    def get_output_embeddings(self):
        return torch.nn.Identity()


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    return load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path_factory.mktemp("models"))))[1]


def answer_tokens(tokenizer, traj) -> int:
    """Tokens scored along a plan: each target answer and its end-of-turn token."""
    return sum(len(tokenizer.encode(format_target(a, PROMPT.output_format), add_special_tokens=False)) + 1
               for a in traj.plan)  # fmt: skip


def test_path_probability_of_a_uniform_policy_is_v_to_the_minus_n(tiny_tokenizer):
    trajs = [expert_trajectory("cheese_sandwich", 42), expert_trajectory("burger", 84)]
    V = len(tiny_tokenizer)
    for temperature in (0.0, 0.5, 1.0):  # uniform at any temperature
        paths = expert_path_probabilities(FakeLM(V, "uniform"), tiny_tokenizer, trajs, PROMPT, temperature, 5)
        for p, traj in zip(paths, trajs, strict=True):
            n = answer_tokens(tiny_tokenizer, traj)
            assert (p.task, p.seed, p.t_gt, len(p.step_probs)) == (traj.task, traj.seed, len(traj.plan), p.t_gt)
            assert p.log_p0 == pytest.approx(-n * math.log(V), rel=1e-5) and not p.greedy


def test_path_probability_counts_the_plan_states_only(tiny_tokenizer):
    # detour and feedback examples are training data, not states of the expert's path: P_0 multiplies t_gt steps
    traj = expert_trajectory("cheeseburger", 42)
    V, n = len(tiny_tokenizer), answer_tokens(tiny_tokenizer, traj)
    with_extras = PromptConfig(detours=1.0, feedback_examples=1.0)
    (p,) = expert_path_probabilities(FakeLM(V, "uniform"), tiny_tokenizer, [traj], with_extras, 1.0)
    assert len(p.step_probs) == p.t_gt == len(traj.plan)
    assert p.log_p0 == pytest.approx(-n * math.log(V), rel=1e-5)


def test_path_probability_of_an_oracle_is_the_per_token_product(tiny_tokenizer):
    traj = expert_trajectory("cheese_sandwich", 84)
    V, n, c = len(tiny_tokenizer), answer_tokens(tiny_tokenizer, traj), 5.0
    for temperature, t in ((1.0, 1.0), (0.5, 0.5), (0.0, 1.0)):  # greedy scores at temperature 1
        (p,) = expert_path_probabilities(FakeLM(V, "oracle", c), tiny_tokenizer, [traj], PROMPT, temperature)
        per_token = math.exp(c / t) / (math.exp(c / t) + V - 1)
        # float32 log-softmax: each token's log-prob is x - logsumexp(x), ~c/t + log(V) - 1 in size, so it carries a
        # few ULPs of that (~1e-6 at t = 0.5); n of them sum to ~1e-4, which a wrong token count or temperature
        # (>= 0.06 a token) far exceeds. The tolerance: 8 ULPs a token.
        tol = n * 8 * torch.finfo(torch.float32).eps * (c / t + math.log(V))
        assert p.greedy and p.log_p0 == pytest.approx(n * math.log(per_token), abs=tol)
        assert math.prod(p.step_probs) == pytest.approx(p.p0, rel=1e-6)


def test_theory_summary_arithmetic():
    rows = [PathProbability("a", 1, 3, math.log(0.5), True, (0.5, 1, 1)),
            PathProbability("a", 2, 3, math.log(0.25), False, (0.5, 0.5, 1)),
            PathProbability("b", 1, 2, math.log(0.1), False, (0.1, 1))]  # fmt: skip
    sampled = theory_summary(rows, 1.0)
    assert sampled["p0"] == sampled["p0_sampled"] == pytest.approx(0.85 / 3)
    assert sampled["greedy_path"] == pytest.approx(1 / 3) and sampled["a/p0"] == pytest.approx(0.375)
    greedy = theory_summary(rows, 0.0)
    assert greedy["p0"] == pytest.approx(1 / 3) and greedy["a/p0"] == 0.5 and greedy["b/p0"] == 0.0
    table = results_table(sampled | {"sr": 0.5, "a/sr": 1.0, "b/asst": float("nan")}, ["a", "b"])
    assert table.splitlines()[2].startswith("| a | 1.000 |") and "| - |" in table.splitlines()[3]


def test_greedy_flag_agrees_with_greedy_generation(tmp_path):
    """The argmax check against `generate` itself: the model's own greedy answers are greedy; one token changed, not."""
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    prompts = [
        encode_prompt(tokenizer, ex["prompt"]) for ex in trajectory_examples(expert_trajectory("burger", 84), PROMPT)
    ]
    comps = HFRollout(model, tokenizer).generate(prompts[:6], 1, Sampling(0.0, 1.0, 10))
    rows = [(p, c.token_ids) for p, c in zip(prompts, comps, strict=False)]
    bent = [(p, [*a[:-1], (a[-1] + 1) % len(tokenizer)]) for p, a in rows]
    scored = answer_log_probs(model, rows + bent, 0.0, tokenizer.pad_token_id, batch_size=4)
    assert [g for _, g in scored] == [True] * 6 + [False] * 6
    assert all(lp_bent < lp for (lp, _), (lp_bent, _) in zip(scored[:6], scored[6:], strict=True))


def test_path_probabilities_equal_a_plain_forward_of_the_tiny_model(tmp_path):
    model, tokenizer = load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path / "models")))
    traj = expert_trajectory("burger", 42)
    (p,) = expert_path_probabilities(model, tokenizer, [traj], PROMPT, 0.7, batch_size=3)  # ragged batches
    from planner_rl.sft import encode_example

    for ex, prob in zip(trajectory_examples(traj, PROMPT), p.step_probs, strict=True):
        ids, labels = encode_example(tokenizer, ex["prompt"], ex["target"])
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1] / 0.7, -1)
        answer = [(i, t) for i, t in enumerate(labels[1:]) if t != -100]
        assert math.exp(sum(float(lp[i, t]) for i, t in answer)) == pytest.approx(prob, rel=1e-4, abs=1e-30)


def test_cli_writes_results_and_names_a_wrong_key(tmp_path):
    env_vars = {"PLANNER_RL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "planner_rl.evaluate", f"hydra.run.dir={tmp_path / 'run'}", "env.tasks=[burger]",
           "eval.seeds=[42,84]", "eval.max_new_tokens=6", "prompt.system=brief"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ | env_vars)
    assert done.returncode == 0, done.stderr
    assert "| burger |" in done.stdout and "invalid actions: consume" in done.stdout
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["invalid_protocol"] == "consume" and len(doc["episodes"]) == 2 and len(doc["theory"]) == 2
    assert 0 <= doc["summary"]["p0"] <= doc["summary"]["min_step_sr"] + 1e-9
    bad = subprocess.run([*cmd, "eval.budgett=optimal"], capture_output=True, text=True, timeout=300,
                         env=os.environ | env_vars)  # fmt: skip
    assert bad.returncode != 0 and "budgett" in bad.stderr
