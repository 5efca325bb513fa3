"""planner_rl.report on hand-made run dirs: grouping by variant, mean ± std over seeds, the generalization matrix,
failed jobs, and the PNGs."""

import json

import pytest
from omegaconf import OmegaConf

from planner_rl.report import find_runs, generalization, main, mean_std, write_report


def make_run(path, overrides, train_task, sr_by_task, status="ok", step_accuracy=0.5):
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    config = {"seed": seed, "env": {"tasks": [train_task]}, "eval": {"budget": "robotouille", "invalid": "consume",
              "temperature": 0.0}}  # fmt: skip
    OmegaConf.save(OmegaConf.create(config), path / ".hydra" / "config.yaml")
    (path / "status.json").write_text(json.dumps({"status": status, "error": "boom" if status != "ok" else None}))
    if status != "ok":
        return
    stage = {"eval/sr": sum(sr_by_task.values()) / len(sr_by_task), "eval/step_accuracy": step_accuracy}
    for task, sr in sr_by_task.items():
        stage |= {f"eval/{task}/sr": sr, f"eval/{task}/asat": 10.0, f"eval/{task}/p0": sr / 2,
                  f"eval/{task}/min_step_sr": sr,
                  f"eval/{task}/step_accuracy": 0.9 if task == train_task else 0.3}  # fmt: skip
    (path / "results.json").write_text(json.dumps({"sft_only": stage, "final": stage, "steps": 2}))
    rows = [{"train/step": s, "reward/mean": 0.1 * s, "train/generated_tokens": 100 * s} for s in (1, 2)]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (path / "eval").mkdir()
    summary = {f"{t}/p0": sr / 2 for t, sr in sr_by_task.items()} | {
        f"{t}/min_step_sr": sr for t, sr in sr_by_task.items()
    }
    (path / "eval" / "step_000002.json").write_text(json.dumps({"summary": summary}))


@pytest.fixture
def sweep(tmp_path):
    d = tmp_path / "sweep"
    make_run(d / "0", ["env.tasks=[burger]", "seed=0"], "burger", {"burger": 1.0, "cheeseburger": 0.0})
    make_run(d / "1", ["env.tasks=[burger]", "seed=1"], "burger", {"burger": 0.0, "cheeseburger": 0.0})
    make_run(d / "2", ["env.tasks=[cheeseburger]", "seed=0"], "cheeseburger", {"burger": 0.6, "cheeseburger": 0.4})
    make_run(d / "3", ["env.tasks=[cheeseburger]", "seed=1"], "cheeseburger", {}, status="failed")
    return d


def test_mean_std_over_seeds():
    assert mean_std([1.0, 0.0]) == pytest.approx((0.5, 2**0.5 / 2, 2))
    assert mean_std([0.3]) == (0.3, 0.0, 1)
    m, _, n = mean_std([None, float("nan")])
    assert n == 0 and m != m


def test_generalization_matrix_and_report(sweep, tmp_path):
    runs = find_runs([sweep])
    assert [r.variant for r in runs] == ["env.tasks=[burger]"] * 2 + ["env.tasks=[cheeseburger]"] * 2
    rows, cols, grid = generalization(runs)
    assert rows == cols == ["burger", "cheeseburger"]
    assert grid[0][0] == pytest.approx((0.5, 2**0.5 / 2, 2)) and grid[0][1] == (0.0, 0.0, 2)
    assert grid[1][0] == (0.6, 0.0, 1)  # the failed seed has no results
    out = tmp_path / "report"
    text = write_report([sweep], out).read_text()
    assert "| burger | 0.50 ± 0.71 (n=2) | 0.00 ± 0.00 (n=2) |" in text
    assert "- 3 (env.tasks=[cheeseburger], seed 1): failed: boom" in text
    assert "| final (after GRPO) | burger | 0.50 ± 0.71 | 10.00 ± 0.00 |" in text
    rows, cols, acc = generalization(runs, metric="step_accuracy")  # on each column task's own test states
    assert acc[0] == [(0.9, 0.0, 2), (0.3, 0.0, 2)] and acc[1] == [(0.3, 0.0, 1), (0.9, 0.0, 1)]
    assert "Single-step accuracy on the column task's test states, final (after GRPO)" in text
    assert "| cheeseburger | 0.30 ± 0.00 (n=1) | 0.90 ± 0.00 (n=1) |" in text
    row = "| final (after GRPO) | cheeseburger | 0.00 ± 0.00 | 10.00 ± 0.00 | - | 0.00 ± 0.00 | 0.00 ± 0.00 | 0.30 ±"
    assert row in text  # the per-task single-step accuracy in the variant table
    for png in ("generalization.png", "curves.png", "theory.png"):
        assert (out / png).stat().st_size > 1000, png


def test_valid_action_decoding_gets_rows_of_its_own(sweep, tmp_path):
    doc = json.loads((sweep / "0" / "results.json").read_text())
    for stage in ("sft_only", "final"):
        doc[stage] |= {"eval/valid_actions/sr": 0.25, "eval/valid_actions/burger/sr": 0.5, "eval/valid_actions/"
                       "cheeseburger/sr": 0.0, "eval/valid_actions/step_accuracy": 0.75}  # fmt: skip
    (sweep / "0" / "results.json").write_text(json.dumps(doc))
    (run,) = [r for r in find_runs([sweep]) if r.path.name == "0"]
    assert set(run.stages) == {"sft_only", "sft_only_valid_actions", "final", "final_valid_actions"}
    assert run.stages["final_valid_actions"]["burger/sr"] == 0.5 and "valid_actions/sr" not in run.stages["final"]
    text = write_report([sweep], tmp_path / "report").read_text()
    assert "| final (after GRPO), valid-action decoding | all | 0.25 | - | - | - | - | 0.75 |" in text
    assert "| step 0 (SFT-only), valid-action decoding | burger | 0.50 |" in text
    assert "valid_actions |" not in text  # not taken for a task


def test_cli_names_a_missing_dir(tmp_path):
    with pytest.raises(SystemExit, match="not a directory"):
        main([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no run dirs"):
        main([str(tmp_path / "empty")])
