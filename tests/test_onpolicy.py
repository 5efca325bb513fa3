"""The policy's own closed-loop states, labelled by the expert replanned there (planner_rl/onpolicy.py)."""

from __future__ import annotations

import pytest

from planner_rl.data import expert_trajectory
from planner_rl.env.families import make_world, solve
from planner_rl.eval_protocol import EvalConfig
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.onpolicy import ORIGIN, label_visits, visited_states
from planner_rl.parsing import format_target
from planner_rl.prompts import PromptConfig
from planner_rl.rollout import Completion

PROMPT = PromptConfig(system="brief", observation="compact", history=0)


@pytest.fixture(scope="module")
def tokenizer():
    return load_model_and_tokenizer(ModelConfig())[1]


class Scripted:
    """A rollout that reads each prompt's valid actions and answers the expert's plan step `k` of its episode for
    `k < on_plan` turns, then the last listed move (a policy that errs from turn `on_plan` on)."""

    def __init__(self, tokenizer, on_plan: int):
        self.tokenizer, self.on_plan, self.calls = tokenizer, on_plan, 0
        self.plan = expert_trajectory("cheeseburger", 42).plan

    def generate(self, prompts, n, sampling, seeds=None, choices=None):
        out = []
        for i, ids in enumerate(prompts):
            text = self.tokenizer.decode(ids)
            valid = text.split("Valid Actions:\n", 1)[1].split("\n\n", 1)[0].split("\n")
            turn = self.calls
            action = self.plan[turn] if turn < self.on_plan else [a for a in valid if a.startswith("Move")][-1]
            out.append(Completion(i, [], format_target(action, "action"), True))
        self.calls += 1
        return out


def test_visits_are_labelled_by_the_expert_replanned_there(tokenizer):
    rollout = Scripted(tokenizer, on_plan=3)
    visits = visited_states(rollout, tokenizer, ["cheeseburger"], [42], PROMPT, EvalConfig(theory=False))
    assert [v[4] for v in visits[:4]] == [0, 1, 2, 3]  # one per turn until the loop repeats states
    examples = label_visits(visits, PROMPT)
    world = make_world("cheeseburger", 42)
    plan = expert_trajectory("cheeseburger", 42).plan
    for ex, (_, state, history, feedback, turn) in zip(examples, visits, strict=True):
        sol = solve(world, state)
        assert ex["expert_action"] == ex["label"] == sol.texts[0] and ex["target"] == f"Action: {sol.texts[0]}"
        assert ex["expert_action"] in ex["valid_actions"] and ex["expert_action"] in ex["optimal_actions"]
        assert ex["detour"] == ORIGIN and ex["step"] == turn and ex["history"] == history and feedback is None
    # on the plan for three turns: the expert's own states and actions
    assert [ex["expert_action"] for ex in examples[:3]] == list(plan[:3])
    # then a wrong move: the replanned expert walks back, and the states repeat (each kept once per episode)
    assert examples[3]["history"] == list(plan[:3]) and examples[3]["expert_action"] == plan[3]
    assert len({(str(v[1]), v[3]) for v in visits}) == len(visits)
    assert len(visits) < 23  # the budget, minus the repeated states of the back-and-forth


def test_a_refused_answer_keeps_its_feedback_and_never_crashes(tokenizer):
    class Garbage(Scripted):
        def generate(self, prompts, n, sampling, seeds=None, choices=None):
            return [Completion(i, [], "Action: fly to the moon", True) for i in range(len(prompts))]

    visits = visited_states(Garbage(tokenizer, 0), tokenizer, ["cheeseburger"], [42], PROMPT, EvalConfig(theory=False))
    assert len(visits) == 2  # the initial state, then the same state after a refusal (its feedback differs)
    examples = label_visits(visits, PROMPT)
    plan = expert_trajectory("cheeseburger", 42).plan
    assert [ex["expert_action"] for ex in examples] == [plan[0], plan[0]]
    users = [ex["prompt"][-1]["content"] for ex in examples]
    assert "Feedback:" in users[1] and "Feedback:" not in users[0]
