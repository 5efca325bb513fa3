"""Every shell command of README.md and docs/*.md (tests/docs_commands.py extracts them) is mapped here to a cheap
invocation or an explicit skip with its reason; a command added to the docs without either fails `make test`.

Default suite (seconds): the mapping is complete and has no stale entries; every Hydra command composes with its
own overrides (placeholders filled in), GPU ones included; every `make` target exists and `make run` expands to
the main job. `slow` (`make test-all`, or `pytest -m slow tests/test_docs_commands.py`): each mapped command runs
in its cheap form (smoke-sized overrides appended, which win over the command's own) and exits 0.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from docs_commands import ROOT, doc_commands
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from planner_rl.config import register_configs

# smoke-sized overrides, flattened from conf/debug/smoke.yaml, then shorter still: on the command line they come
# after `+experiment=...`, so they win over it
_SMOKE = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "debug" / "smoke.yaml"))


def _flat(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif k != "name":
            out.append(f"{prefix}{k}=" + (f"[{','.join(map(str, v))}]" if isinstance(v, list) else str(v)))
    return out


SMALL = " ".join(
    [
        *_flat(_SMOKE),
        "grpo.steps=2",
        "grpo.eval_every=0",
        "sft.epochs=1",
        "trainer.checkpoint_every=0",
        "grpo.average_checkpoints=0",
    ]
)
DATA = "env.tasks=[cheese_sandwich] env.train_seeds=0-3 env.test_seeds=[42]"
GPU = "skip: needs a GPU and Qwen2.5 weights (composes in the default suite)"
MANY = "skip: several GPUs or nodes and Qwen2.5 weights (its overrides compose in the default suite)"
SUITE = "skip: runs the test suite itself (CI runs it)"
BENCH = "skip: the CPU benchmark, about 10 min (`make bench`; its figures are in docs/performance.md)"

# {py}: this interpreter; {tmp}: a scratch dir; {run}: the main job's smoke run dir (made by `make run` first)
PLANS: dict[str, str] = {
    "make test": SUITE,
    "make run": f"run: make -o .venv/.installed run PY={{py}} ARGS='{SMALL} hydra.run.dir={{run}}'",
    "make run ARGS='debug=smoke'": "run: make -o .venv/.installed run PY={py} "
    f"ARGS='debug=smoke {SMALL} hydra.run.dir={{tmp}}/smoke'",
    "source .venv/bin/activate": "skip: sets up the shell; the tests run with the venv's python already",
    "python -m planner_rl.expert task=cheeseburger seed=42": "run: {py} -m planner_rl.expert task=cheeseburger seed=42",
    "python -m planner_rl.expert task=burger pddl_dir=out/": "run: {py} -m planner_rl.expert task=burger "
    "pddl_dir={tmp}/out",
    "python -m planner_rl.expert task=asynchronous/5_potato_soup": "run: {py} -m planner_rl.expert "
    "task=asynchronous/5_potato_soup",
    "make bench-env": "run: make -o .venv/.installed bench-env PY={py} BENCH_ARGS='--tasks 0 --seeds 1 --steps 200'",
    "make bench": BENCH,
    "python -m planner_rl.data env.tasks=[burger] env.train_seeds=0-49": "run: {py} -m planner_rl.data "
    f"{DATA} out_dir={{tmp}}/data",
    "python -m planner_rl.model": "run: {py} -m planner_rl.model",
    "python -m planner_rl.sft env.tasks=[burger] sft.epochs=3": f"run: {{py}} -m planner_rl.sft {DATA} sft.epochs=1 "
    "sft.eval_examples=4 hydra.run.dir={tmp}/sft",
    "python -m planner_rl.train debug=smoke": f"run: {{py}} -m planner_rl.train debug=smoke {SMALL} "
    "hydra.run.dir={tmp}/smoke2",
    "python -m planner_rl.train +experiment=long_horizon logger=wandb": "run: {py} -m planner_rl.train "
    f"+experiment=long_horizon logger=wandb {SMALL} hydra.run.dir={{tmp}}/wandb",
    "python -m planner_rl.train hydra.run.dir=outputs/long_horizon/<run>": "run: {py} -m planner_rl.train "
    f"+experiment=long_horizon {SMALL} hydra.run.dir={{run}}",
    "python -m planner_rl.train model=qwen2_5_1_5b model.path=/models/Qwen2.5-1.5B-Instruct trainer.lr=1e-6": GPU,
    "python -m planner_rl.evaluate model.path=outputs/<name>/<run>/sft_model prompt.system=brief": "run: {py} -m "
    "planner_rl.evaluate model.path={run}/sft_model prompt.system=brief env.tasks=[cheese_sandwich] "
    "env.test_seeds=[42] eval.max_new_tokens=8 hydra.run.dir={tmp}/eval",
    "python -m planner_rl.train -m +sweep=generalization": "run: {py} -m planner_rl.train -m +sweep=generalization "
    f"{SMALL} hydra.sweep.dir={{tmp}}/sweep",
    "python -m planner_rl.report multirun/generalization/<time>": "run: {py} -m planner_rl.report {tmp}/sweep",
    "python -m planner_rl.train +experiment=long_horizon model=qwen2_5_1_5b model.path=/models/Qwen2.5-1.5B-Instruct "
    "rollout=vllm rollout.gpu_memory_utilization=0.3 sft.lr=1e-5 trainer.lr=1e-6 logger=wandb": GPU,
    "torchrun --nproc_per_node=8 -m planner_rl.train +experiment=long_horizon model=qwen2_5_7b "
    "model.path=/models/Qwen2.5-7B-Instruct trainer=deepspeed trainer.zero_stage=2 rollout=vllm "
    "grpo.prompts_per_step=64 hydra.run.dir=/shared/runs/lh7b": MANY,
    "torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=node0:29500 -m planner_rl.train "
    "+experiment=long_horizon model=qwen2_5_14b model.path=/models/Qwen2.5-14B-Instruct trainer=deepspeed "
    "trainer.zero_stage=3 rollout=vllm rollout.tensor_parallel_size=2 hydra.run.dir=/shared/runs/lh14b": MANY,
    "deepspeed --hostfile hostfile --no_local_rank --module planner_rl.train +experiment=long_horizon "
    "trainer=deepspeed ...": MANY,
    "python -m planner_rl.data": "run: {py} -m planner_rl.data env.train_seeds=1000 env.test_seeds=[42] "
    "out_dir={tmp}/data_all",
    "python -m planner_rl.data env.tasks=[burger,cheeseburger] env.train_seeds=0-49 out_dir=data/burgers": "run: "
    "{py} -m planner_rl.data env.tasks=[burger,cheeseburger] env.train_seeds=0-1 env.test_seeds=[42] "
    "out_dir={tmp}/burgers",
    "python -m planner_rl.data prompt.output_format=think prompt.history=0 label_noise=0.2": "run: {py} -m "
    f"planner_rl.data prompt.output_format=think prompt.history=0 label_noise=0.2 {DATA} out_dir={{tmp}}/think",
    "python -m planner_rl.sft env.tasks=[double_cheeseburger] sft.epochs=5": "run: {py} -m planner_rl.sft "
    "env.tasks=[double_cheeseburger] env.train_seeds=0 env.test_seeds=[42] sft.epochs=1 sft.eval_examples=4 "
    "hydra.run.dir={tmp}/sft2",
    "python -m planner_rl.sft data_dir=data/robotouille model=qwen2_5_0_5b sft.lr=1e-5": GPU,
    "python -m planner_rl.sft env.tasks=[double_cheeseburger] sft.epochs=6 sft.lr=2e-3 sft.eval_examples=0": "run: "
    "{py} -m planner_rl.sft env.tasks=[double_cheeseburger] env.train_seeds=0 env.test_seeds=[42] sft.epochs=1 "
    "sft.lr=2e-3 sft.eval_examples=0 hydra.run.dir={tmp}/sft3",
    "python -m planner_rl.evaluate": "run: {py} -m planner_rl.evaluate env.tasks=[cheese_sandwich] "
    "env.test_seeds=[42] eval.max_new_tokens=8 hydra.run.dir={tmp}/eval0",
    "python -m planner_rl.evaluate model.path=outputs/long_horizon/<run>/sft_model env.tasks=[double_cheeseburger] "
    "prompt.system=none prompt.goal=name prompt.question=false prompt.observation=compact prompt.history=0": "run: "
    "{py} -m planner_rl.evaluate model.path={run}/sft_model env.tasks=[double_cheeseburger] prompt.system=none "
    "prompt.goal=name prompt.question=false prompt.observation=compact prompt.history=0 env.test_seeds=[42] "
    "eval.max_new_tokens=8 hydra.run.dir={tmp}/eval2",
    "python -m planner_rl.evaluate model.path=<ckpt> eval.temperature=1.0 eval.episodes=20": "run: {py} -m "
    "planner_rl.evaluate model.path={run}/sft_model eval.temperature=1.0 eval.episodes=2 env.tasks=[cheese_sandwich] "
    "env.test_seeds=[42] eval.max_new_tokens=8 hydra.run.dir={tmp}/eval3",
    "python -m planner_rl.evaluate model=qwen2_5_7b model.path=/models/Qwen2.5-7B-Instruct eval.invalid=requery": GPU,
    "python -m planner_rl.model model=tiny model.seed=1": "run: {py} -m planner_rl.model model=tiny model.seed=1",
    "python -m planner_rl.model model=qwen2_5_1_5b model.path=/data/Qwen2.5-1.5B-Instruct": GPU,
    "python -m planner_rl.bench.env": "run: {py} -m planner_rl.bench.env --tasks 0 --seeds 1 --steps 200",
    "python -m planner_rl.bench.eval": "run: {py} -m planner_rl.bench.eval --tasks cheese_sandwich --seeds 1 "
    "--out {tmp}/bench_eval.json",
    "python -m planner_rl.bench.trl": "skip: needs the bench extra (trl), `make bench` installs it",
    "python -m planner_rl.bench.step": BENCH,
    "OMP_NUM_THREADS=1 python -m planner_rl.bench.trl --steps 4": "skip: needs the bench extra (trl), `make bench`",
    "OMP_NUM_THREADS=1 python -m planner_rl.bench.trl --rounds 1 --steps 3": "skip: needs the bench extra (trl), "
    "`make bench`",
    "OMP_NUM_THREADS=1 python -m planner_rl.bench.step": BENCH,
    "python -m planner_rl.bench.grpo": "run: {py} -m planner_rl.bench.grpo --prompts 2 --group 2 --repeats 1",
    "python -m planner_rl.train +experiment=long_horizon": f"run: {{py}} -m planner_rl.train +experiment=long_horizon "
    f"{SMALL} hydra.run.dir={{tmp}}/lh",
    "python -m planner_rl.train +experiment=long_horizon grpo.beta=0.04 grpo.loss_agg=seq_mean_token_mean": "run: "
    f"{{py}} -m planner_rl.train +experiment=long_horizon grpo.beta=0.04 grpo.loss_agg=seq_mean_token_mean {SMALL} "
    "hydra.run.dir={tmp}/beta",
    "python -m planner_rl.train model=qwen2_5_1_5b model.path=/models/Qwen2.5-1.5B-Instruct sft.lr=1e-5 "
    "trainer.lr=1e-6": GPU,
    "python -m planner_rl.train +experiment=long_horizon hydra.run.dir=outputs/long_horizon/seed0": "run: {py} -m "
    f"planner_rl.train +experiment=long_horizon {SMALL} hydra.run.dir={{tmp}}/seed0",
}
STUDY = "skip: the learning study of docs/scaling.md, many SFT runs (CPU hours)"
PLANS |= {
    "experiments/scaling/study.sh": STUDY,
    "experiments/scaling/sft_run.sh <name> <overrides...>": STUDY,
    "python experiments/scaling/summarize.py outputs/scaling": "skip: reads the learning study's run dirs "
    "(outputs/scaling), which only the study makes",
    "python experiments/scaling/errors.py cheeseburger outputs/scaling/cb_c_h0_2000x2/sft/final prompt.system=brief "
    "prompt.observation=compact prompt.history=0": "skip: reads an SFT model of the learning study, which only the "
    "study makes",
}
BLOCKS = "skip: Blocksworld training at full size (CPU tens of minutes); debug=smoke_blocksworld runs that pipeline"
PLANS |= {
    "python -m planner_rl.train debug=smoke_blocksworld": "run: {py} -m planner_rl.train debug=smoke_blocksworld "
    "hydra.run.dir={tmp}/bw",
    "python -m planner_rl.expert task=blocks6 seed=3": "run: {py} -m planner_rl.expert task=blocks6 seed=3",
    "python -m planner_rl.data env=blocksworld env.tasks=[blocks4] out_dir=data/bw4": "run: {py} -m planner_rl.data "
    "env=blocksworld env.tasks=[blocks4] env.train_seeds=1000-1003 env.test_seeds=[0] out_dir={tmp}/bw4",
    "python -m planner_rl.train +experiment=blocksworld": BLOCKS,
    "python -m planner_rl.train -m +sweep=blocksworld_generalization": BLOCKS,
    "python -m planner_rl.train env=pddl env.tasks=[my/problems] env.train_seeds=0-39 env.test_seeds=40-49": "skip: "
    "needs a user's problem files; tests/test_blocksworld_pipeline.py builds env=pddl data from a directory",
}
HYDRA_APPS = {"train": "train", "data": "data", "sft": "sft", "evaluate": "evaluate", "expert": "expert"}


def test_every_doc_command_is_mapped_and_no_entry_is_stale():
    found = doc_commands()
    missing = [f"{doc}: {cmd}" for cmd, doc in found.items() if cmd not in PLANS]
    assert not missing, "add these to PLANS (a cheap run or 'skip: reason'):\n" + "\n".join(missing)
    stale = [cmd for cmd in PLANS if cmd not in found]
    assert not stale, "no longer in the docs, remove from PLANS:\n" + "\n".join(stale)
    assert all(p.startswith(("run: ", "skip: ")) for p in PLANS.values())


def _hydra_call(cmd: str) -> tuple[str, list[str]] | None:
    """(config name, overrides) of a command that runs a Hydra entry point, placeholders filled in."""
    m = re.search(r"(?:-m|--module) planner_rl\.(\w+)(.*)$", cmd)
    if not m or m.group(1) not in HYDRA_APPS:
        return None
    args = [a for a in shlex.split(m.group(2)) if a not in ("-m", "...")]
    args = [re.sub(r"<\w+>", "x", a) for a in args]
    return HYDRA_APPS[m.group(1)], args


@pytest.mark.parametrize("cmd", sorted(c for c in doc_commands() if _hydra_call(c)))
def test_doc_command_composes(cmd):
    register_configs()
    name, overrides = _hydra_call(cmd)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        compose(name, overrides=overrides, return_hydra_config=True)


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_make_targets_of_the_docs_exist_and_make_run_is_the_main_job():
    for cmd in doc_commands():
        if cmd.startswith("make "):
            out = _make(*shlex.split(cmd)[1:])
            assert out.returncode == 0, cmd + out.stderr
    out = _make("run", "ARGS=seed=3 debug=smoke").stdout.strip().splitlines()
    assert out[-1] == ".venv/bin/python -m planner_rl.train +experiment=long_horizon seed=3 debug=smoke"


@pytest.mark.slow
def test_doc_commands_run_in_their_cheap_form(tmp_path):
    """The docs' commands in the order of PLANS' dependencies: `make run` first (its run dir is {run})."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PLANNER_RL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}  # fmt: skip
    runs = [p.removeprefix("run: ") for p in PLANS.values() if p.startswith("run: ")]
    fill = {"py": sys.executable, "tmp": str(tmp_path), "run": str(tmp_path / "run")}
    failed = []
    for template in runs:
        cmd = template.format(**fill)
        out = subprocess.run(cmd, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            failed.append(f"{cmd}\n{out.stdout[-1500:]}{out.stderr[-1500:]}")
    assert not failed, "\n\n".join(failed)
