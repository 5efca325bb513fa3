"""`planner_rl.bench.env` (figures only, no timing asserted): it runs; its JSON holds both expert timings per layout."""

import json

from planner_rl.bench import env as bench_env


def test_bench_env_writes_plan_and_solve_figures(tmp_path, capsys):
    out = tmp_path / "env.json"
    bench_env.main(["--tasks", "0", "3", "--seeds", "2", "--steps", "200", "--json", str(out)])
    report = json.loads(out.read_text())
    assert [t["number"] for t in report["tasks"]] == [0, 3]
    for task in report["tasks"]:
        rows = [task["file"], *task["layouts"]]
        assert [r["seed"] for r in rows] == [None, 0, 1]
        assert all(r["cost"] > 0 and r["plan_s"] > 0 and r["s"] > 0 and r["expanded"] >= r["cost"] for r in rows)
        assert set(task["plan_s"]) == set(task["s"]) == {"median", "max"}
    assert report["total_plan_s"] > 0 and report["total_solve_s"] > 0
    assert "6 layouts: plans alone" in capsys.readouterr().out
