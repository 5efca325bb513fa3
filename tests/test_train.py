"""The main job: config composition and validation, the loop's batching pieces, a smoke run, sweeps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from planner_rl import train as train_module
from planner_rl.config import register_configs
from planner_rl.eval_protocol import EvalConfig
from planner_rl.grpo import aggregate_loss, micro_batch_weight, token_log_probs
from planner_rl.packing import group_log_probs
from planner_rl.sampler import prompt_order
from planner_rl.train import ConfigError, enrich_note, typed

CONF = str(Path(__file__).resolve().parent.parent / "conf")
ROOT = Path(__file__).resolve().parent.parent


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=False)


# --- configs ---------------------------------------------------------------------------------------------------
def test_the_data_line_counts_the_enrich_layouts():
    info = {"enrich": {"candidates": 3000, "layouts": {"cheeseburger": [7002, 7038], "burger": [7005]}}}
    assert enrich_note(info) == " (with 3 of the 3000 env.enrich_seeds layouts, by env.enrich_action)"
    assert enrich_note({"examples": {}}) == ""


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["debug=smoke"],
        ["+experiment=long_horizon"],
        ["logger=wandb", "reward=optimal_set", "model=qwen2_5_1_5b"],
        ["reward=noisy_expert", "model=qwen2_5_7b", "prompt.output_format=think"],
    ],
)
def test_every_group_composes_and_builds(overrides):
    cfg = compose_train(overrides)
    for key in ("grpo", "trainer", "rollout", "eval", "prompt", "reward", "sft", "logger", "model"):
        obj = typed(cfg, key)
        assert obj is not None
    assert cfg.trainer._target_.endswith("TorchTrainer") and cfg.rollout._target_.endswith("HFRollout")


def test_experiment_files_compose():
    for path in sorted(Path(CONF, "experiment").glob("*.yaml")):
        cfg = compose_train([f"+experiment={path.stem}"])
        assert typed(cfg, "grpo").steps >= 1, path.name


@pytest.mark.parametrize(
    ("override", "error", "named"),
    [
        ("grpo.stpes=3", (ConfigCompositionException, ConfigKeyError, ConfigAttributeError), "stpes"),
        ("trainer.lrr=1e-3", (ConfigCompositionException, ConfigKeyError, ConfigAttributeError), "lrr"),
        ("grpo.steps=abc", (ConfigCompositionException, ValidationError), "grpo.steps"),
        ("trainer.micro_batch_size=1.5", (ConfigCompositionException, ValidationError), "micro_batch_size"),
        ("rollout=nope", (ConfigCompositionException,), "rollout"),
    ],
)
def test_bad_config_fails_at_compose_naming_the_key(override, error, named):
    with pytest.raises(error) as info:
        compose_train([override])
    text = str(info.value) + str(info.value.__cause__ or "")
    assert named in text


@pytest.mark.parametrize(
    ("override", "key"),
    [("grpo.loss_agg=bogus", "grpo.loss_agg"), ("grpo.group_size=1", "grpo.group_size"),
     ("trainer.precision=fp8", "trainer.precision"), ("eval.invalid=skip", "eval.invalid"),
     ("reward.format_weight=-1", "reward.format_weight"), ("rollout.decoding=beam", "rollout.decoding"),
     ("eval.decoding=beam", "eval.decoding"), ("sft.decoding=beam", "sft.decoding"),
     ("grpo.layouts=some", "grpo.layouts")],
)  # fmt: skip
def test_bad_values_fail_naming_the_key(override, key):
    cfg = compose_train([override])
    group = key.split(".")[0]
    with pytest.raises((ConfigError, ValueError), match=key.replace(".", r"\.")):
        typed(cfg, group)


def test_valid_action_rollouts_need_rollout_hf():
    with pytest.raises(ConfigError, match="not supported with rollout=vllm"):
        typed(compose_train(["rollout=vllm", "rollout.decoding=valid_actions"]), "rollout")
    with pytest.raises(ConfigError, match="top_p must be 1"):
        typed(compose_train(["rollout.decoding=valid_actions", "rollout.top_p=0.9"]), "rollout")
    assert typed(compose_train(["rollout.decoding=valid_actions"]), "rollout").decoding == "valid_actions"


def test_failed_layouts_need_single_turn_grpo():
    with pytest.raises(ValueError, match=r"grpo\.layouts=failed needs grpo\.mode=single_turn"):
        typed(compose_train(["grpo.layouts=failed", "grpo.mode=multi_turn"]), "grpo")
    assert typed(compose_train(["grpo.layouts=failed"]), "grpo").layouts == "failed"


def test_failed_layouts_keeps_the_prompts_of_the_layouts_the_sft_model_fails(monkeypatch):
    """grpo.layouts=failed: one greedy closed-loop episode per GRPO layout under the evaluation's protocol; the rows
    of the failed layouts are kept, in their order, with the figures; a model that solves every layout is refused."""
    rows = [{"task": "cheeseburger", "seed": s, "step": i} for s in (7, 3, 5) for i in range(2)]
    solved, played = {3}, {}

    def fake_evaluate(rollout, tokenizer, tasks, seeds, prompt, cfg, expert_cache=None, model=None):
        played.update(tasks=tasks, seeds=seeds, cfg=cfg, training=net.training)
        episodes = [types.SimpleNamespace(task=t, seed=s, success=s in solved) for t in tasks for s in seeds]
        return types.SimpleNamespace(episodes=episodes, summary={"sr": len(solved) / len(episodes)})

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(train_module, "HFRollout", lambda model, tokenizer: None)
    said = []
    protocol = EvalConfig(episodes=3, temperature=0.7, transcripts=5, also_valid_actions=True, theory=True)
    cache = types.SimpleNamespace(expert_cache=None)
    job = types.SimpleNamespace(eval=protocol, prompt=None, cfg=cache, say=said.append)
    net = torch.nn.Linear(1, 1)
    keep, figures = train_module.failed_layouts(job, net, None, ["cheeseburger"], rows)
    assert [(r["seed"], r["step"]) for r in keep] == [(7, 0), (7, 1), (5, 0), (5, 1)]
    assert figures == {"pool/layouts": 2.0, "pool/sft_sr": 1 / 3}
    assert played["seeds"] == [7, 3, 5] and played["tasks"] == ["cheeseburger"]
    cfg = played["cfg"]  # one greedy, free episode per layout, nothing else played or kept
    assert (cfg.episodes, cfg.temperature, cfg.decoding, cfg.theory, cfg.also_valid_actions, cfg.transcripts) == (
        1, 0.0, "free", False, False, 0
    )  # fmt: skip
    assert played["training"] is False and net.training  # played in eval mode, given back in train mode
    assert "the SFT model fails 2 of 3 GRPO layouts" in said[0] and "their 4 of 6 prompts kept" in said[0]
    solved.update({5, 7})
    with pytest.raises(ConfigError, match=r"grpo\.layouts=failed: the SFT model solves all 3 GRPO layouts"):
        train_module.failed_layouts(job, net, None, ["cheeseburger"], rows)


def test_a_difficulty_filter_that_keeps_nothing_exits_cleanly(tmp_path):
    cmd = [sys.executable, "-m", "planner_rl.train", "debug=smoke", "grpo.max_sft_p=1e-30", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "grpo.max_sft_p=1e-30 keeps none of the" in out.stdout + out.stderr
    assert (tmp_path / "sft_model" / "COMPLETE").exists()  # the SFT stage is kept: a rerun with another value reuses it


def test_bad_config_on_the_command_line_exits_cleanly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "planner_rl.train", "grpo.loss_agg=bogus", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "grpo.loss_agg" in out.stderr and "Traceback" not in out.stderr


# --- batching pieces -------------------------------------------------------------------------------------------
def test_prompt_order_is_a_permutation_per_epoch_and_resumes_from_a_position():
    n = 7
    first, second = prompt_order(n, 3, 0, n), prompt_order(n, 3, n, n)
    assert sorted(first) == sorted(second) == list(range(n)) and first != second
    whole = prompt_order(n, 3, 0, 20)
    assert whole == prompt_order(n, 3, 0, 9) + prompt_order(n, 3, 9, 11)  # split anywhere, same order
    assert prompt_order(n, 4, 0, n) != first


def test_group_log_probs_equal_a_full_forward_of_each_sequence():
    torch.manual_seed(0)
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = Qwen3ForCausalLM(
        Qwen3Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16, max_position_embeddings=64)
    )  # fmt: skip
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11, 12]]  # unequal lengths: left padding
    comps = [[13, 14], [15], [16, 17, 18], [19, 20, 21], [22], [23, 24], [25], [26, 27], [28]]  # G = 3
    logp, mask = group_log_probs(model, prompts, comps, 0, 0.7)  # [9, 3] x2
    assert mask.tolist()[:3] == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    (logp * mask).sum().backward()
    shared = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = 0.0
    for r, c in enumerate(comps):  # each sequence alone, unpadded, every logit
        p = prompts[r // 3]
        ids = torch.tensor([p + c])
        full = token_log_probs(model(input_ids=ids).logits, ids, 0.7)[0, len(p) - 1 :]  # the completion's
        torch.testing.assert_close(logp[r][mask[r]].detach(), full.detach(), atol=1e-5, rtol=1e-5)
        total = total + full.sum()
    total.backward()  # and the gradient through the repeated prompt cache is the sum over the G sequences'
    for a, b in zip(shared, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="groups"):
        group_log_probs(model, prompts, comps[:8], 0, 1.0)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "constant"])
def test_weighted_micro_batches_accumulate_to_the_batch_loss(mode):
    torch.manual_seed(1)
    x = torch.randn(4, 3)  # per-token values of a batch of 4 rows
    mask = torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    whole = aggregate_loss(x, mask, mode, max_tokens=3)
    parts = [(x[:1], mask[:1]), (x[1:3], mask[1:3]), (x[3:], mask[3:])]  # unequal micro-batches
    summed = sum(
        micro_batch_weight(m, mask.sum(), mask.shape[0], mode) * aggregate_loss(v, m, mode, max_tokens=3)
        for v, m in parts
    )
    torch.testing.assert_close(summed, whole)


def test_micro_batch_weight_hand_worked():
    batch = torch.tensor([[1, 1, 1], [0, 0, 1]], dtype=torch.bool)  # 3 + 1 tokens
    assert micro_batch_weight(batch[:1], 4, 2, "token_mean") == pytest.approx(3 / 4)
    assert micro_batch_weight(batch[1:], 4, 2, "token_mean") == pytest.approx(1 / 4)
    assert micro_batch_weight(batch[1:], 4, 2, "seq_mean_token_mean") == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="loss_agg"):
        micro_batch_weight(batch, 4, 2, "sum")


# --- the main job ----------------------------------------------------------------------------------------------
def run_train(run_dir: Path, *overrides: str, wait: bool = True):
    cmd = [sys.executable, "-m", "planner_rl.train", "debug=smoke", f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without timings (perf/), which differ between runs."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def test_smoke_run_of_the_main_job(tmp_path):
    run = tmp_path / "run"
    out = run_train(run, "logger=wandb")
    assert "SFT-only" in out and "SFT+GRPO" in out and f"plot: {run / 'training.png'}" in out
    files = [
        "run.json",
        "metrics.jsonl",
        "samples.jsonl",
        "results.json",
        "training.png",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
    ]
    for name in [*files, "sft_model/COMPLETE", "eval/step_000000.json", "eval/step_000004.json"]:
        assert (run / name).exists(), name
    assert json.loads((run / "run.json").read_text())["git_sha"]
    rows = records(run)
    steps = [r["train/step"] for r in rows if "reward/mean" in r]
    assert steps == [1, 2, 3, 4]
    keys = {k for r in rows for k in r}
    for prefix in ("train/", "rollout/", "reward/", "loss/", "eval/", "sft/"):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert any(r.get("train/grad_norm", 0) > 0 for r in rows)  # the smoke config's rewards vary: real updates
    results = json.loads((run / "results.json").read_text())
    assert set(results) >= {"sft_only", "final"} and "eval/sr" in results["final"]
    assert list((run / "wandb").glob("offline-run-*")), "logger=wandb without a key runs offline"
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_000002", "step_000004"]


@pytest.mark.parametrize(
    "variant",
    [
        ("grpo.mu=2", "grpo.beta=0.1", "grpo.kl_estimator=exact", "grpo.zero_variance=resample",
         "grpo.loss_agg=seq_mean_token_mean", "grpo.max_sft_p=0.5"),
        ("grpo.zero_variance=drop", "grpo.loss_agg=constant", "grpo.max_completion_tokens=16",
         "grpo.advantage_scale=none", "grpo.negative_weight=0.5", "reward=optimal_set", "grpo.states=policy",
         "prompt.move_contents=true", "grpo.refresh_states_every=1", "grpo.layouts=failed"),
        ("rollout.decoding=valid_actions", "eval.also_valid_actions=true", "sft.decoding=valid_actions"),
    ],
)  # fmt: skip
def test_objective_variants_run_end_to_end(tmp_path, variant):
    run = tmp_path / "run"
    out = run_train(run, "grpo.steps=2", "grpo.eval_every=0", "sft.epochs=1", *variant)
    rows = [r for r in records(run) if "reward/mean" in r]
    assert [r["train/step"] for r in rows] == [1, 2]
    if "rollout.decoding=valid_actions" in variant:  # every sample a valid action; both decodings in the table
        assert all(r["reward/valid_rate"] == r["reward/format_rate"] == 1.0 for r in rows)
        assert [r["eval/sft_valid_rate"] for r in records(run) if "eval/sft_valid_rate" in r] == [1.0]
        results = json.loads((run / "results.json").read_text())
        for stage in ("sft_only", "final"):
            assert results[stage]["eval/valid_actions/invalid_rate"] == 0.0
            assert (
                results[stage]["eval/valid_actions/step_valid_rate"] == 1.0 and "eval/step_valid_rate" in results[stage]
            )
        assert "SFT-only (valid actions)" in out and "SFT+GRPO (valid actions)" in out
        assert (run / "eval" / "valid_actions" / "step_000002.json").exists()
    elif "grpo.beta=0.1" in variant:
        assert all("loss/kl" in r and r["loss/kl"] >= 0 for r in rows if r["train/updated"])
        kept, total = map(int, re.search(r"grpo.max_sft_p=0.5: (\d+) of (\d+) prompts kept", out).groups())
        assert 0 < kept <= total
        assert all("rollout/resample_rounds" in r for r in rows)
    else:
        assert all(r["rollout/groups"] <= 2 for r in rows)
        failed = int(re.search(r"grpo.layouts=failed: the SFT model fails (\d+) of 16 GRPO layouts", out).group(1))
        assert [r["pool/layouts"] for r in rows if "pool/layouts" in r] == [failed]  # with step 1
        assert f"off-plan states of the SFT model on {failed} layouts" in out  # only on the layouts it fails
        assert f"off-plan states of the policy at GRPO step 1 on {failed} layouts" in out  # refreshed before step 2


def test_a_broken_checkpoint_write_is_never_resumed(tmp_path):
    from planner_rl.checkpoint import complete_checkpoints, find_resume, save_checkpoint

    def ok(d: Path) -> None:
        (d / "w").write_text("x")

    save_checkpoint(tmp_path, 1, ok, keep=2)
    (tmp_path / "checkpoints" / ".tmp-step_000002").mkdir()  # a killed write
    (tmp_path / "checkpoints" / "step_000003").mkdir()  # a folder without the marker
    assert find_resume(tmp_path, "auto").name == "step_000001"
    save_checkpoint(tmp_path, 4, ok, keep=2)
    assert not (tmp_path / "checkpoints" / ".tmp-step_000002").exists()
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_000001", "step_000004"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000004"
    assert find_resume(tmp_path, "none") is None
    with pytest.raises(FileNotFoundError, match=r"trainer\.resume"):
        find_resume(tmp_path, str(tmp_path / "checkpoints" / "step_000003"))
    with pytest.raises(FileNotFoundError):
        find_resume(tmp_path, str(tmp_path / "nowhere"))


# --- sweeps ------------------------------------------------------------------------------------------------------
def test_multirun_of_two_tiny_jobs_records_a_failure_and_goes_on(tmp_path):
    """Hydra multirun: job 0 runs, job 1 (a model dir that does not exist) fails, is recorded, and the sweep ends
    normally with sweep.json listing both."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "planner_rl.train", "-m", "debug=smoke", "grpo.steps=1", "sft.epochs=1",
           "grpo.eval_every=0", "model.path=null,/no/such/model", f"hydra.sweep.dir={sweep}",
           "cleanup=true"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PLANNER_RL_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((sweep / "sweep.json").read_text())
    assert (summary["jobs"], summary["ok"], summary["failed"]) == (2, 1, 1)
    ok, bad = summary["records"]
    assert ok["status"] == "ok" and (sweep / "0" / "results.json").exists()
    assert bad["status"] == "failed" and "/no/such/model" in bad["error"] and "ModelLoadError" in bad["error"]
    assert "failed: job 1" in out.stdout
    assert "sweep job 1/2: ok in" in out.stdout and "sweep job 2/2: failed" in out.stdout
    assert not (sweep / "0" / "checkpoints").exists()  # cleanup: weights gone, records and results kept
    assert not list((sweep / "0" / "sft_model").glob("*.safetensors"))
    from planner_rl.report import write_report

    text = write_report([sweep], tmp_path / "report").read_text()
    failed = [line for line in text.splitlines() if line.startswith("- 1 (")]
    assert len(failed) == 1 and "model.path=/no/such/model" in failed[0] and "failed: ModelLoadError" in failed[0]
    assert "model.path=null" in text and "| final (after GRPO) | all |" in text


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in Path(CONF, "sweep").glob("*.yaml") if p.stem not in ("small_scale", "plain_grpo"))
)
def test_sweep_files_compose_with_their_axes(name):
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    app = "evaluate" if name == "model_size" else "train"
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(app, overrides=[f"+sweep={name}", "hydra/launcher=slurm"], return_hydra_config=True)
        assert cfg.hydra.sweeper.params and cfg.name == name
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
        values = [
            o.sweep_string_iterator() if o.is_sweep_override() else [o.get_value_element_as_str()] for o in parsed
        ]
        axes = [[f"{o.key_or_group}={v}" for v in vs] for o, vs in zip(parsed, values, strict=True)]
        for point in itertools.product(*axes):  # every job of the sweep: its config passes every schema
            job = compose(app, overrides=[f"+sweep={name}", *point])
            for key in ("eval", "prompt") + (("grpo", "reward", "sft") if app == "train" else ()):
                typed(job, key)


def test_several_evaluation_tasks_get_single_step_accuracy_each(tmp_path):
    run = tmp_path / "run"
    run_train(run, "grpo.steps=1", "grpo.eval_every=0", "eval.tasks=[cheese_sandwich,burger]")
    final = json.loads((run / "results.json").read_text())["final"]
    for task in ("cheese_sandwich", "burger"):  # the trained task's test states, and those of one never trained on
        assert 0 <= final[f"eval/{task}/step_accuracy"] <= final[f"eval/{task}/step_valid_rate"] <= 1
    assert final["eval/cheese_sandwich/step_accuracy"] == final["eval/step_accuracy"]  # the same states
    assert "eval/burger/sr" in final and final["eval/burger/step_format_rate"] > 0  # burger states were decoded


def test_sft_cache_reuses_the_stage_with_the_same_inputs(tmp_path):
    cache = tmp_path / "sft-cache"
    first = run_train(tmp_path / "a", f"sft_cache={cache}", "grpo.steps=2", "grpo.eval_every=0")
    second = run_train(tmp_path / "b", f"sft_cache={cache}", "grpo.steps=2", "grpo.eval_every=0", "grpo.beta=0.05")
    assert "reused" not in first and "reused" in second
    assert len(list(cache.iterdir())) == 1
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    sft_rows = [r for r in a if "train/step" not in r or r["train/step"] == 0]
    assert sft_rows and b[: len(sft_rows)] == sft_rows  # the SFT records and the step-0 evaluation, as if re-run
    third = run_train(tmp_path / "c", f"sft_cache={cache}", "grpo.steps=2", "grpo.eval_every=0", "sft.lr=0.004")
    assert "reused" not in third and len(list(cache.iterdir())) == 2  # another SFT input: another stage


@pytest.mark.parametrize("decoding", ["free", "valid_actions"])
def test_multi_turn_grpo_runs_and_stops_at_the_token_budget(tmp_path, decoding):
    run = tmp_path / "run"
    run_train(run, "grpo.mode=multi_turn", "grpo.steps=50", "grpo.prompts_per_step=1", "grpo.eval_every=0",
              "grpo.max_generated_tokens=1500", "sft.epochs=1", f"rollout.decoding={decoding}")  # fmt: skip
    rows = [r for r in records(run) if "reward/mean" in r]
    if decoding == "valid_actions":  # every turn's answer is one of its state's valid actions
        assert all(r["reward/valid_rate"] == r["reward/format_rate"] == 1.0 for r in rows)
    tokens = [r["train/generated_tokens"] for r in rows]
    assert 2 <= len(rows) < 50 and tokens[-1] >= 1500 > tokens[-2] and tokens == sorted(tokens)
    assert all(r["rollout/episode_turns"] >= 1 and r["rollout/groups"] == 1 for r in rows)
    assert json.loads((run / "results.json").read_text())["steps"] == len(rows)


# --- grpo.average_checkpoints: the final model is the mean of the last checkpoints -----------------------------
def _checkpoint(folder: Path, weights: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    from planner_rl.integrity import write_manifest

    folder.mkdir(parents=True)
    save_file(weights, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    (folder / "optimizer.pt").write_bytes(b"")
    write_manifest(folder)
    return folder


def test_average_weights_is_the_hand_worked_mean_and_refuses_another_models(tmp_path):
    from planner_rl.checkpoint import average_weights, write_average
    from planner_rl.integrity import CheckpointError, check_manifest

    a = _checkpoint(tmp_path / "a", {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([[0.5]], dtype=torch.bfloat16)})
    b = _checkpoint(tmp_path / "b", {"w": torch.tensor([3.0, -2.0]), "h": torch.tensor([[1.5]], dtype=torch.bfloat16)})
    c = _checkpoint(tmp_path / "c", {"w": torch.tensor([5.0, 3.0]), "h": torch.tensor([[4.0]], dtype=torch.bfloat16)})
    mean = average_weights([a, b, c])
    assert mean["w"].tolist() == [3.0, 1.0] and mean["h"].dtype == torch.bfloat16 and mean["h"].item() == 2.0
    out = write_average(tmp_path / "avg", [a, b, c], mean)
    check_manifest(out)  # a model folder: the newest one's config, no optimizer, its manifest
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", "MANIFEST.json", "config.json", "model.safetensors"]
    other = _checkpoint(tmp_path / "d", {"w": torch.tensor([1.0, 2.0, 3.0]), "h": torch.tensor([[1.0]])})
    with pytest.raises(CheckpointError, match="names or shapes differ"):
        average_weights([a, other])
    (b / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        average_weights([a, b])


@pytest.mark.parametrize(
    ("overrides", "match"),
    [(["grpo.average_checkpoints=1"], r"grpo\.average_checkpoints must be 0 \(off\) or an integer >= 2"),
     (["grpo.average_checkpoints=3", "trainer.keep_checkpoints=2"], r"trainer\.keep_checkpoints >= 3 \(got 2\)"),
     (["grpo.average_checkpoints=2", "trainer.checkpoint_every=0"], r"trainer\.checkpoint_every > 0 \(got 0\)")],
)  # fmt: skip
def test_average_checkpoints_needs_that_many_kept_checkpoints(overrides, match, tmp_path):
    from planner_rl.train import make_job

    cfg = compose_train([*overrides, f"paths.output_dir={tmp_path}"])
    with pytest.raises((ConfigError, ValueError), match=match):
        make_job(cfg)


def test_the_final_model_averages_the_last_checkpoints(tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    out = run_train(run, "grpo.steps=4", "grpo.eval_every=0", "sft.epochs=1", "trainer.checkpoint_every=1",
                    "trainer.keep_checkpoints=3", "grpo.average_checkpoints=3")  # fmt: skip
    assert "the final model is the mean of the weights at steps 2, 3, 4" in out
    results = json.loads((run / "results.json").read_text())
    assert results["averaged_steps"] == [2, 3, 4] and "eval/sr" in results["final"]
    ckpts = [load_file(run / "checkpoints" / f"step_{s:06d}" / "model.safetensors") for s in (2, 3, 4)]
    mean = load_file(run / "average_model" / "model.safetensors")
    assert set(mean) == set(ckpts[0])
    for k in mean:
        torch.testing.assert_close(mean[k], (ckpts[0][k] + ckpts[1][k] + ckpts[2][k]) / 3)
    assert any(not torch.equal(ckpts[0][k], ckpts[2][k]) for k in mean)  # the steps moved the weights
    evals = [r["train/step"] for r in records(run) if "eval/sr" in r and r.get("train/step")]
    assert evals == [4]  # one evaluation at the last step, of the averaged model
