"""The progress lines: formatting and throttling against hand-worked numbers, a fake clock, no sleeping."""

from planner_rl.progress import Progress, Throttle, format_duration, format_line


def test_format_duration():
    assert [format_duration(s) for s in (0, 42.4, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_format_line_has_stage_step_total_rate_eta_and_metrics():
    # 320 of 1104 steps in 40 s: 8 steps/s, 784 left -> 98 s
    line = format_line("sft", 320, 1104, 40.0, "step", {"loss": 0.41234, "epoch": 1})
    assert line == "sft 320/1104 (29%) 8 step/s eta 1m38s | loss 0.4123 epoch 1"
    # resumed at step 30: the rate counts only this process's steps (10 in 20 s), ETA from it
    assert format_line("grpo", 40, 60, 20.0, "step", {}, start=30) == "grpo 40/60 (67%) 0.5 step/s eta 40s"
    assert format_line("eval", 2, None, 30.0, "turn", {}) == "eval 2 15 s/turn"  # slow: seconds per unit


def test_throttle_fires_at_most_once_per_interval():
    t = Throttle(15, start=100.0)
    assert [t.due(now) for now in (101, 114.9, 115, 120, 129.9, 130.0, 200)] == [
        False, False, True, False, False, True, True]  # fmt: skip


def test_progress_prints_throttled_lines_only_when_asked():
    now, out = [0.0], []
    p = Progress("sft", 100, every=15, clock=lambda: now[0], lines=True, write=out.append)
    for _ in range(10):  # 10 steps, 4 s each: lines at 16 s and 32 s (not every step)
        now[0] += 4
        p.update(1, loss=0.5)
    p.close()
    assert out == ["sft 4/100 (4%) 0.25 step/s eta 6m24s | loss 0.5", "sft 8/100 (8%) 0.25 step/s eta 6m08s | loss 0.5"]
    quiet = []
    p = Progress("sft", 100, every=15, clock=lambda: now[0], lines=False, write=quiet.append)
    now[0] += 100
    p.update(1)
    assert quiet == []


def test_sweep_size_counts_the_basic_sweepers_jobs():
    from planner_rl.sweep import sweep_size

    params = {"env.tasks": "[cheese_sandwich],[burger],[cheeseburger]", "seed": "0,1"}
    assert sweep_size(params, ["debug=smoke"]) == 6
    assert sweep_size(params, ["seed=3"]) == 3  # the command line wins over the file's axis
    assert sweep_size({}, ["model.path=null,/no/such/model", "grpo.lr=1,2"]) == 4
