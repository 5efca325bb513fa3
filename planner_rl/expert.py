"""The optimal expert on the command line.

    python -m planner_rl.expert task=burger seed=3 [pddl_dir=out/]

prints the canonical optimal plan (docs/environment.md), one action per line, then `steps: <n>`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from planner_rl.env.families import is_strips, make_world, solve
from planner_rl.env.planner import NoPlanError
from planner_rl.env.problem import ProblemError
from planner_rl.env.strips.task import PDDLTaskError
from planner_rl.env.tasks import TaskError


def run(cfg: DictConfig) -> list[str]:
    world = make_world(cfg.task, cfg.seed)
    solution = solve(world, max_expansions=cfg.max_expansions, optimal_sets=False)
    if cfg.pddl_dir is not None and not is_strips(world):  # a PDDL task is its files already
        from planner_rl.env.pddl import write_pddl

        write_pddl(world, Path(cfg.pddl_dir))
    return [*solution.texts, f"steps: {solution.cost}"]


@hydra.main(config_path="../conf", config_name="expert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        lines = run(cfg)
    except (TaskError, ProblemError, PDDLTaskError, NoPlanError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
