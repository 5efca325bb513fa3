"""The multi-turn evaluation protocol as a config: which tasks and layouts, the step budget, what an invalid answer
costs, the decoding (conf/eval/default.yaml; planner_rl/evaluate.py plays it).

Its own module so that the schemas of planner_rl/config.py can import it without importing the evaluator, whose
command line imports config.py: no import circle (tests/test_architecture.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner_rl.data import seed_list, task_list
from planner_rl.rollout import check_decoding

BUDGETS = ("robotouille", "optimal")
INVALID_PROTOCOLS = ("consume", "requery")


@dataclass
class EvalConfig:
    """conf/eval/default.yaml. Not frozen: it doubles as the structured-config schema of the `eval` group."""

    tasks: list[str] | None = None  # tasks to play; None: the caller's (env.tasks); generalization runs set all four
    seeds: list[int] | None = None  # layouts; None: the caller's (env.test_seeds)
    episodes: int = 1  # episodes per (task, seed); > 1 with temperature > 0 measures min-step success as a rate
    budget: str = "robotouille"  # robotouille | optimal
    invalid: str = "consume"  # consume | requery
    max_requeries: int = 5  # requery: refused answers re-asked per step
    max_exhausted: int = 3  # requery: steps with every answer refused before the episode fails
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 24
    batch_size: int = 64  # prompts per generate call
    transcripts: int = 3  # episodes whose turns are kept in the results
    seed: int = 0  # sampling seed (temperature > 0)
    lockstep: bool = True  # false: one episode at a time (the reference the lockstep schedule is checked against)
    theory: bool = True  # the product of the expert actions' probabilities along each expert plan (needs the model)
    decoding: str = "free"  # free | valid_actions: the answer is the most likely valid action (rollout/restricted.py)
    also_valid_actions: bool = False  # with free decoding: a second pass with valid_actions, as `valid_actions/...`

    def __post_init__(self) -> None:
        if self.seeds is not None:
            self.seeds = seed_list(self.seeds, "eval.seeds")
        if self.tasks is not None:
            self.tasks = task_list(self.tasks)
        checks = {
            "budget": (self.budget in BUDGETS, f"one of {BUDGETS}"),
            "invalid": (self.invalid in INVALID_PROTOCOLS, f"one of {INVALID_PROTOCOLS}"),
            "max_requeries": (self.max_requeries >= 0, ">= 0"),
            "max_exhausted": (self.max_exhausted >= 1, ">= 1"),
            "temperature": (self.temperature >= 0, ">= 0"),
            "top_p": (0 < self.top_p <= 1, "in (0, 1]"),
            "max_new_tokens": (self.max_new_tokens >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "transcripts": (self.transcripts >= 0, ">= 0"),
            "episodes": (self.episodes >= 1, ">= 1"),
        }
        for key, (ok, need) in checks.items():
            if not ok:
                raise ValueError(f"eval.{key} must be {need}, got {getattr(self, key)!r}")
        check_decoding(self.decoding, "eval.decoding", self.top_p)
        if self.also_valid_actions:
            if self.decoding != "free":
                raise ValueError("eval.also_valid_actions adds a valid_actions pass beside free decoding: it needs "
                                 f"eval.decoding=free, got {self.decoding!r}")  # fmt: skip
            check_decoding("valid_actions", "eval.also_valid_actions: eval.decoding", self.top_p)
