"""trainer=deepspeed: the same updates as trainer=torch (ZeRO-1/2/3, micro-batches accumulated), resume, config
checks, and two data-parallel ranks equal to one process on the whole batch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

from ds_two_ranks import batches, config, tiny_model, train, weights
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
from safetensors.torch import load_file

from planner_rl.checkpoint import write_atomically
from planner_rl.train import ConfigError, typed
from planner_rl.trainer.deepspeed import DeepSpeedTrainer, DeepSpeedTrainerConfig, destroy_distributed, is_main_process
from planner_rl.trainer.torch import TorchTrainer, TorchTrainerConfig

TESTS = Path(__file__).resolve().parent
CONF = str(TESTS.parent / "conf")
ATOL = 1e-4 if torch.cuda.is_available() else 1e-5  # fp32 on CPU: only summation order differs


@pytest.fixture(autouse=True)
def _fresh_process_group():
    """Each test starts its own world of one and tears it down, as a job in a multirun would."""
    yield
    destroy_distributed()
    assert not torch.distributed.is_initialized() and "MASTER_PORT" not in os.environ


def torch_run(cfg: DeepSpeedTrainerConfig, steps: int) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The reference: trainer=torch with the same keys, on the whole of every batch."""
    keys = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TorchTrainerConfig) if f.name != "_target_"}
    backend = TorchTrainer(tiny_model(), TorchTrainerConfig(**keys), steps)
    stats = train(backend, batches(steps))
    return {k: v.detach().clone() for k, v in backend.unwrapped.named_parameters()}, stats


def assert_same_run(got: tuple[dict, list[dict]], want: tuple[dict, list[dict]], atol: float = ATOL) -> None:
    (got_w, got_s), (want_w, want_s) = got, want
    assert got_w.keys() == want_w.keys()
    for k in want_w:
        torch.testing.assert_close(got_w[k], want_w[k], atol=atol, rtol=0, msg=k)
    for g, w in zip(got_s, want_s, strict=True):
        assert g["train/lr"] == pytest.approx(w["train/lr"], rel=1e-12)
        assert g["train/grad_norm"] == pytest.approx(w["train/grad_norm"], rel=1e-5)


@pytest.mark.parametrize(
    "keys", [dict(zero_stage=1), dict(zero_stage=2), dict(zero_stage=3), dict(zero_stage=2, offload_optimizer=True)]
)
def test_micro_batches_give_the_torch_backends_updates(keys):
    # 3 steps x 4 micro-batches of 2 rows, token-mean weights; clipping (norms ~2 > 0.5), warmup, cosine decay and
    # decoupled weight decay all active
    cfg = config(**keys)
    backend = DeepSpeedTrainer(tiny_model(), cfg, total_steps=3)
    assert isinstance(backend.unwrapped, torch.nn.Module) and is_main_process()
    assert backend.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    stats = train(backend, batches(3))
    assert all(s["train/grad_norm"] > cfg.grad_clip for s in stats)  # so clipping mattered
    assert_same_run((weights(backend), stats), torch_run(cfg, 3))


@pytest.mark.parametrize("stage", [2, 3])
def test_save_then_load_continues_exactly(tmp_path, stage):
    cfg = config(zero_stage=stage, warmup_steps=2)  # lr 0.5x then 1x: a schedule that restarted would show
    whole = DeepSpeedTrainer(tiny_model(), cfg, total_steps=2)
    stats = train(whole, batches(2))
    want = weights(whole), stats

    first = DeepSpeedTrainer(tiny_model(), cfg, total_steps=2)
    early = train(first, batches(1))
    saved = weights(first)
    # the way checkpoint.py writes: into .tmp-step_000001/, then renamed
    final = write_atomically(tmp_path / "step_000001", first.save)
    assert (final / "ds").is_dir() and not any(tmp_path.glob(".tmp-*"))
    hf = load_file(final / "model.safetensors")
    for k, v in saved.items():
        torch.testing.assert_close(hf[k].float(), v, atol=0, rtol=0, msg=k)

    resumed = DeepSpeedTrainer(tiny_model(seed=7), cfg, total_steps=2)  # other weights: load must replace them
    resumed.load(final)
    torch.testing.assert_close(weights(resumed), saved, atol=0, rtol=0)
    late = train(resumed, batches(2)[1:])  # the schedule and AdamW's moments continue too
    assert [s["train/lr"] for s in early + late] == [0.005, 0.01]
    assert_same_run((weights(resumed), early + late), want, atol=ATOL / 10)


def test_load_refuses_a_checkpoint_without_deepspeed_state(tmp_path):
    backend = DeepSpeedTrainer(tiny_model(), config(), total_steps=1)
    torch_ckpt = tmp_path / "step_000001"
    torch_ckpt.mkdir()
    TorchTrainer(tiny_model(), TorchTrainerConfig(), 1).save(torch_ckpt)
    with pytest.raises(FileNotFoundError, match="no DeepSpeed state"):
        backend.load(torch_ckpt)


def test_bf16_is_deepspeeds_own_cast():
    backend = DeepSpeedTrainer(tiny_model(), config(precision="bf16"), total_steps=2)
    assert next(backend.unwrapped.parameters()).dtype == torch.bfloat16
    with backend.autocast():  # a no-op: the module itself is bf16
        assert not torch.is_autocast_enabled("cpu")
    (one,) = train(backend, batches(1))
    assert torch.isfinite(torch.tensor(one["train/grad_norm"]))


# --- config ----------------------------------------------------------------------------------------------------
def compose_trainer(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=["trainer=deepspeed", *overrides])


def test_the_yaml_mirrors_the_schema():
    cfg = compose_trainer()
    assert typed(cfg, "trainer") == DeepSpeedTrainerConfig()
    yaml_keys = set(OmegaConf.load(Path(CONF, "trainer", "deepspeed.yaml")).keys()) - {"defaults"}
    assert yaml_keys == {f.name for f in dataclasses.fields(DeepSpeedTrainerConfig)}
    # trainer=torch's keys, plus the ZeRO ones
    assert yaml_keys - {f.name for f in dataclasses.fields(TorchTrainerConfig)} == {"zero_stage", "offload_optimizer"}


@pytest.mark.parametrize(
    ("override", "key"),
    [("trainer.zero_stage=4", "trainer.zero_stage"), ("trainer.zero_stage=0", "trainer.zero_stage"),
     ("trainer.precision=fp8", "trainer.precision"), ("trainer.schedule=step", "trainer.schedule")],
)  # fmt: skip
def test_bad_values_fail_naming_the_key(override, key):
    cfg = compose_trainer(override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        typed(cfg, "trainer")


@pytest.mark.parametrize(
    ("override", "named"),
    [("trainer.zero_stag=3", "zero_stag"), ("trainer.offload_optimizer=maybe", "offload_optimizer"),
     ("trainer.zero_stage=two", "zero_stage")],
)  # fmt: skip
def test_bad_keys_and_types_fail_at_compose_naming_the_key(override, named):
    errors = (ConfigCompositionException, ConfigKeyError, ConfigAttributeError, ValidationError)
    with pytest.raises(errors) as info:
        compose_trainer(override)
    assert named in str(info.value) + str(info.value.__cause__ or "")


def test_fp16_without_cuda_names_the_key():
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed on CUDA")
    with pytest.raises(ValueError, match=r"trainer\.precision"):
        DeepSpeedTrainer(tiny_model(), config(precision="fp16"), total_steps=1)


# --- data parallel ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", [2, pytest.param(1, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_two_ranks_on_halves_equal_one_process_on_the_batch(tmp_path, stage):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # two CPU ranks (gloo) on any machine
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TESTS / "ds_two_ranks.py"), str(tmp_path), str(stage)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for k, v in ranks[0]["weights"].items():
        torch.testing.assert_close(ranks[1]["weights"][k], v, atol=0, rtol=0, msg=k)  # replicas agree exactly
    want = torch_run(config(zero_stage=stage), 3)
    assert_same_run((ranks[0]["weights"], ranks[0]["stats"]), want)


# --- the main job ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_main_job_logs_the_same_run_with_either_backend(tmp_path):
    def run(name: str, *overrides: str) -> list[dict]:
        cmd = [sys.executable, "-m", "planner_rl.train", "debug=smoke", f"hydra.run.dir={tmp_path / name}", *overrides]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
        out = subprocess.run(cmd, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(r).items() if not k.startswith("perf/")} for r in lines]

    ds, ref = run("deepspeed", "trainer=deepspeed"), run("torch")
    assert len(ds) == len(ref) and any("train/grad_norm" in r for r in ref)
    for got, want in zip(ds, ref, strict=True):
        assert got.keys() == want.keys()
        for k, v in want.items():  # rewards, losses, lr, eval: equal; gradient norms and the theory check's
            # products of ~15-30 probabilities (p0, ~1e-54 here) to float rounding
            rounded = k == "train/grad_norm" or "/p0" in k
            assert got[k] == (pytest.approx(v, rel=1e-4 if "/p0" in k else 1e-5) if rounded else v), k


# --- GPU -------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_fp32_matches_torch_and_bf16_trains():
    cfg = config(zero_stage=2, precision="fp32")
    backend = DeepSpeedTrainer(tiny_model(), cfg, total_steps=3)
    assert backend.device.type == "cuda"
    stats = train(backend, batches(3))
    assert_same_run((weights(backend), stats), torch_run(cfg, 3), atol=1e-4)  # GPU kernels reorder sums
    destroy_distributed()

    bf16 = DeepSpeedTrainer(tiny_model(), config(zero_stage=2, precision="auto"), total_steps=3)
    assert next(bf16.unwrapped.parameters()).dtype == torch.bfloat16  # auto is bf16 on CUDA
    first, *_, last = train(bf16, batches(3))
    assert all(torch.isfinite(torch.tensor([first["train/grad_norm"], last["train/grad_norm"]])))


@pytest.mark.parametrize("stage", [2, 3])
def test_weights_for_the_rollout_engine_are_whole_under_every_stage(stage):
    """rollout=vllm's sync reads `model_weights`: under ZeRO-3 it gathers module by module, and must still give
    every weight whole, under its checkpoint name (the plain model's own names and values)."""
    from planner_rl.rollout.vllm import model_weights

    want = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    backend = DeepSpeedTrainer(tiny_model(), config(zero_stage=stage), 1)
    got = dict(model_weights(backend.unwrapped))
    named = {k for k, _ in tiny_model().named_parameters()}
    assert named <= set(got) <= set(want)
    for k, v in got.items():
        torch.testing.assert_close(v, want[k])
