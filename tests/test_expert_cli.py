"""`python -m planner_rl.expert` as a user runs it: the plan, its step count, the PDDL files, clean errors."""

import subprocess
import sys

from planner_rl.env.domain import load_domain
from planner_rl.env.planner import solve
from planner_rl.env.tasks import load_problem
from planner_rl.env.world import World


def expert(*overrides: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "planner_rl.expert", *overrides]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_prints_the_plan_then_its_length_and_writes_pddl(tmp_path):
    out = expert("task=burger", "seed=3", f"pddl_dir={tmp_path / 'pddl'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    *actions, last = out.stdout.splitlines()
    world = World(load_problem("burger", 3), load_domain())
    assert actions and all(a in world.by_text for a in actions)  # every line but the last is an action
    assert last == f"steps: {len(actions)}"
    assert actions == solve(world).texts
    for name in ("domain.pddl", "problem.pddl"):
        assert (tmp_path / "pddl" / name).read_text().startswith("(define")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pddl"]  # no Hydra outputs or logs left behind


def test_unknown_task_fails_with_its_name_and_no_traceback(tmp_path):
    out = expert("task=no_such_dish", cwd=tmp_path)
    assert out.returncode != 0 and out.stdout == ""
    assert "unknown task 'no_such_dish'" in out.stderr and "Traceback" not in out.stderr
