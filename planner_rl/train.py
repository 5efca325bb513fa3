"""The main job: single-turn data -> SFT warm start -> single-turn GRPO -> multi-turn evaluation, in one run dir.

    python -m planner_rl.train +experiment=long_horizon        # double cheeseburger, tiny model, 2 CPU cores
    python -m planner_rl.train debug=smoke                     # every stage for a few steps
    python -m planner_rl.train hydra.run.dir=outputs/long_horizon/<run>   # continue a killed run (trainer.resume=auto)
    python -m planner_rl.train model=qwen2_5_1_5b model.path=/models/Qwen2.5-1.5B-Instruct trainer.lr=1e-6

Stages (each skipped when the run dir already holds its result):
1. data: one prompt per state of each expert plan (planner_rl/data.py), train and test layouts disjoint.
2. SFT warm start (planner_rl/sft.py), then the multi-turn evaluation of the SFT-only policy (step 0); the model and
   that evaluation are saved together in <run dir>/sft_model.
3. GRPO: each step draws N prompts, samples G completions per prompt, scores them with the 0/1 reward, turns the
   rewards into group-relative advantages and takes the policy-gradient step of planner_rl/grpo.py; then the
   rollout engine gets the new weights; multi-turn evaluation every `grpo.eval_every` steps and at the end.
Run dir: .hydra/ (config, overrides), run.json (git SHA, command), metrics.jsonl, samples.jsonl, checkpoints/,
eval/step_*.json (episodes), results.json (SFT-only vs SFT+GRPO).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import transformers
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from planner_rl import distributed as dist
from planner_rl.checkpoint import (
    LoopState,
    average_weights,
    complete_checkpoints,
    is_complete,
    load_stage,
    restore_stage,
    resume_training,
    save_training_checkpoint,
    stage_key,
    store_stage,
    usable,
    write_atomically,
    write_average,
)
from planner_rl.config import ConfigError, register_configs, typed
from planner_rl.data import build_dataset, seed_list, task_list, test_examples
from planner_rl.env.planner import NoPlanError
from planner_rl.env.problem import ProblemError
from planner_rl.env.strips.task import PDDLTaskError
from planner_rl.env.tasks import TaskError
from planner_rl.evaluate import (
    EvalConfig,
    evaluate,
    label_log_probs,
    protocol_line,
    transcript_rows,
    write_evaluation,
)
from planner_rl.grpo import GRPOConfig, zero_variance_groups
from planner_rl.integrity import CheckpointError, load_weights
from planner_rl.logger import NoLogger, Records, json_safe
from planner_rl.model import ModelConfig, ModelLoadError, load_model_and_tokenizer, model_config
from planner_rl.onpolicy import policy_examples
from planner_rl.packing import MicroBatch, group_micro_batches, kept_advantages, turn_micro_batches
from planner_rl.progress import Progress, say
from planner_rl.prompts import PromptConfig
from planner_rl.report import plot_run
from planner_rl.rewards import RewardConfig
from planner_rl.rollout import Completion
from planner_rl.rollout.hf import HFRollout, stop_ids
from planner_rl.runlock import RunDirLock
from planner_rl.sampler import (
    Draw,
    Episodes,
    EpisodeSampler,
    Groups,
    SingleTurnSampler,
    draw_groups,
    episode_figures,
    group_figures,
)
from planner_rl.sft import SFTConfig, answer_loss, collate, encode_example, single_step_accuracy, train_sft
from planner_rl.sweep import job_name, run_job
from planner_rl.update import Policy, balance_micro_batches, old_and_reference_log_probs, policy_update

register_configs()
transformers.utils.logging.disable_progress_bar()  # per-shard bars on every save and load; ours are per phase
EVAL_KEYS = ("sr", "asat", "asst", "min_step_sr", "p0", "invalid_rate", "parse_fail_rate")
SFT_INPUTS = ("env", "prompt", "model", "sft", "eval", "seed", "label_noise", "label_noise_seed")  # what SFT + its
# evaluation depend on: the SFT stage cache's key


# --- small pieces ------------------------------------------------------------------------------------------------
def enrich_note(info: dict) -> str:
    """The data line's account of env.enrich_seeds: how many candidate layouts matched env.enrich_action."""
    if "enrich" not in info:
        return ""
    found = sum(len(s) for s in info["enrich"]["layouts"].values())
    return f" (with {found} of the {info['enrich']['candidates']} env.enrich_seeds layouts, by env.enrich_action)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_sha() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.strip() else "")


def eval_line(label: str, m: dict) -> str:
    cells = " ".join(f"{m.get(k, float('nan')):>10.3f}" for k in EVAL_KEYS)
    return f"{label:<24} {cells}"


def eval_rows(label: str, m: dict) -> list[str]:
    """The table row of one evaluation's `eval/` metrics, and its `(valid actions)` row when it has one."""
    rows = [eval_line(label, {k.removeprefix("eval/"): v for k, v in m.items()})]
    if "eval/valid_actions/sr" in m:
        rows.append(
            eval_line(f"{label} (valid actions)", {k.removeprefix("eval/valid_actions/"): v for k, v in m.items()})
        )
    return rows


@dataclass(frozen=True)
class Job:
    """What the phases of a run read: its typed config sections, its run dir and this process's place."""

    cfg: DictConfig
    run_dir: Path
    grpo: GRPOConfig
    trainer: Any  # the update backend's schema (planner_rl/trainer/)
    rollout: Any  # the rollout backend's schema (planner_rl/rollout/)
    eval: EvalConfig
    prompt: PromptConfig
    reward: RewardConfig
    sft: SFTConfig
    model: ModelConfig
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:  # rank 0 logs, evaluates and writes the run's files; every rank samples and trains
        return self.rank == 0

    def say(self, text: str) -> None:
        if self.main:
            say(text)


def make_job(cfg: DictConfig) -> Job:
    """Check every config section against its schema, and the section combinations data parallelism allows."""
    sections = {k: typed(cfg, k) for k in ("grpo", "trainer", "rollout", "eval", "prompt", "reward", "sft")}
    job = Job(cfg, Path(cfg.paths.output_dir), **sections, model=model_config(cfg.model), rank=dist.rank(),
              world=dist.world_size())  # fmt: skip
    grpo, world = job.grpo, job.world
    if world > 1 and (grpo.prompts_per_step % world or grpo.zero_variance == "resample" or grpo.mode != "single_turn"):
        raise ConfigError(
            f"with {world} ranks, grpo.prompts_per_step ({grpo.prompts_per_step}) must be a multiple of the number "
            "of ranks, grpo.zero_variance must be keep or drop, and grpo.mode single_turn"
        )
    k, trainer = grpo.average_checkpoints, job.trainer
    if k and getattr(trainer, "zero_stage", 0) >= 3:
        raise ConfigError("grpo.average_checkpoints needs the whole model on rank 0: trainer.zero_stage 1 or 2")
    if k and not (trainer.checkpoint_every > 0 and trainer.keep_checkpoints >= k):
        raise ConfigError(
            f"grpo.average_checkpoints={k} averages the last {k} checkpoints: it needs trainer.checkpoint_every > 0 "
            f"(got {trainer.checkpoint_every}) and trainer.keep_checkpoints >= {k} (got {trainer.keep_checkpoints})"
        )
    return job


def open_records(job: Job, config: dict) -> tuple[Records, Any]:
    """run.json (git SHA, command, overrides) and the logger on rank 0, and the run's records (rank 0's only)."""
    cfg = job.cfg
    meta = {"git_sha": git_sha(), "command": " ".join(sys.argv), "overrides": list(HydraConfig.get().overrides.task),
            "world_size": job.world}  # fmt: skip
    if job.main:
        (job.run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        logger = get_class(cfg.logger._target_)(
            OmegaConf.to_object(cfg.logger), job.run_dir, config | meta, job_name(cfg)
        )
    else:
        logger = NoLogger(None, job.run_dir, config, cfg.name)
    return Records(job.run_dir, logger, enabled=job.main), logger


class Evaluator:
    """A step's evaluation: multi-turn episodes on the test layouts (planner_rl/evaluate.py, written to
    eval/step_N.json) and single-step accuracy on the test prompts, logged as eval/ metrics with the transcripts."""

    def __init__(self, job: Job, tasks: list[str], test_seeds: list[int], test_rows: list[dict], records, logger,
                 task_rows: dict[str, list[dict]] | None = None):  # fmt: skip
        self.job, self.tasks, self.test_seeds, self.test_rows = job, tasks, test_seeds, test_rows
        self.records, self.logger = records, logger
        self.task_rows = task_rows or {}  # evaluation task -> its test states: per-task accuracy (eval.tasks)

    def single_step(self, model, tokenizer, decoding: str, prefix: str) -> dict:
        """Single-step accuracy on the training tasks' test states (`<prefix>step_*`) and, with several evaluation
        tasks, on each one's (`<prefix><task>/step_*`, the generalization matrix's second table)."""
        job, fmt = self.job, self.job.prompt.output_format
        out, done = {}, {}  # id(rows) -> its accuracy: a single training task's rows are the test split's, once
        for task, rows in [(None, self.test_rows), *self.task_rows.items()]:
            if id(rows) not in done:
                done[id(rows)] = single_step_accuracy(model, tokenizer, rows, fmt, job.sft, decoding)
            name = prefix + (f"{task}/" if task else "")
            out |= {k.replace("eval/sft_", f"{name}step_"): v for k, v in done[id(rows)].items()}
        return out

    def __call__(self, model, tokenizer, rollout, step: int) -> dict:
        job, cfg = self.job, self.job.eval
        ev = evaluate(rollout, tokenizer, self.tasks, self.test_seeds, job.prompt, cfg, job.cfg.expert_cache, model)
        write_evaluation(job.run_dir / "eval" / f"step_{step:06d}.json", ev, cfg)
        metrics = {f"eval/{k}": v for k, v in ev.summary.items() if not k.endswith("seconds")}
        metrics["perf/eval_s"], metrics["perf/eval_play_s"] = ev.summary["seconds"], ev.summary["play_seconds"]
        metrics |= self.single_step(model, tokenizer, cfg.decoding, "eval/")
        if ev.valid_actions is not None:  # eval.also_valid_actions
            metrics["perf/eval_valid_actions_s"] = ev.summary["valid_actions/seconds"]
            metrics |= self.single_step(model, tokenizer, "valid_actions", "eval/valid_actions/")
        self.records.log({"train/step": step, **metrics})
        columns = ["task", "seed", "success", "steps", "transcript"]
        self.logger.table("eval/transcripts", columns, transcript_rows(ev.episodes))
        job.say(
            f"eval step {step}: sr {ev.summary['sr']:.2f} asat {ev.summary['asat']:.1f} min-step sr "
            f"{ev.summary['min_step_sr']:.2f} (predicted {ev.summary.get('p0', float('nan')):.2f}; "
            f"{ev.summary['seconds']:.0f} s, invalid actions: {cfg.invalid})"
        )
        return metrics


def eval_task_rows(job: Job, tasks: list[str], test_seeds: list[int], test_rows: list[dict]) -> dict[str, list]:
    """With several evaluation tasks (eval.tasks), each one's expert-state prompts on the evaluation layouts: the
    training tasks' from the test split (itself, with one training task), the others' built here; {} with one."""
    eval_tasks = job.eval.tasks or tasks
    if len(eval_tasks) < 2:
        return {}
    seeds = job.eval.seeds or test_seeds
    new = [t for t in eval_tasks if not (seeds == test_seeds and t in tasks)]
    built = test_examples(job.cfg, new, seeds) if new else []

    def rows(t: str) -> list[dict]:
        if t not in new and tasks == [t]:
            return test_rows
        return [ex for ex in (built if t in new else test_rows) if ex["task"] == t]

    return {t: rows(t) for t in eval_tasks}


# --- SFT stage ---------------------------------------------------------------------------------------------------
def sft_stage(job: Job, config: dict, data, records: Records, evaluator: Evaluator) -> dict:
    """The SFT warm start and the SFT-only evaluation (step 0), saved together in <run dir>/sft_model; reused when
    the run dir already holds it or `sft_cache` has a stage with the same inputs. Returns the stage's stage.json."""
    sft_dir = job.run_dir / "sft_model"
    while not job.main and not is_complete(sft_dir):  # no process group yet: wait for rank 0 on the shared disk
        time.sleep(2)
    cached = Path(job.cfg.sft_cache) / stage_key({k: config[k] for k in SFT_INPUTS}) if job.cfg.sft_cache else None
    if job.main and not usable(sft_dir) and cached is not None and usable(cached):  # damaged ones are redone
        records.restore(restore_stage(cached, sft_dir))
        job.say(f"sft: the same SFT stage (and its evaluation) is cached, reused {cached}")
    if not is_complete(sft_dir):
        run_sft_stage(job, data, records, evaluator, sft_dir)
        if cached is not None:
            store_stage(sft_dir, cached, records.text())
    return load_stage(sft_dir)


def run_sft_stage(job: Job, data, records: Records, evaluator: Evaluator, sft_dir: Path) -> None:
    records.truncate({})
    seed_everything(job.cfg.seed)
    model, tokenizer = load_model_and_tokenizer(job.model)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    trained = job.sft.epochs > 0
    if trained:
        log = functools.partial(log_sft, records, job.say)
        train_sft(model, tokenizer, data, job.sft, job.prompt.output_format, None, log)
    baseline = evaluator(model, tokenizer, HFRollout(model, tokenizer), 0)  # greedy: any backend is the same
    stage = {"trained": trained, "baseline": baseline, "offsets": records.offsets()}
    write_atomically(sft_dir, functools.partial(write_sft_stage, model=model, tokenizer=tokenizer, stage=stage))


def log_sft(records: Records, say, m: dict) -> None:
    records.log(m)
    if "eval/sft_accuracy" in m:
        say(
            f"sft epoch {m['sft/epoch']}: test loss {m['eval/sft_loss']:.4f}, single-step accuracy "
            f"{m['eval/sft_accuracy']:.3f}, valid {m['eval/sft_valid_rate']:.3f}"
        )


def write_sft_stage(tmp: Path, model, tokenizer, stage: dict) -> None:
    if stage["trained"]:  # untrained weights are not copied: they are model.path's
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    (tmp / "stage.json").write_text(json.dumps(stage))


# --- GRPO step phases --------------------------------------------------------------------------------------------
@dataclass
class StepBatch:
    """A step's sampled groups, ready for the update: micro-batches of the kept groups (`kept` of them), every sampled
    completion, the reward/ and rollout/ figures, a weight-0 filler for a rank with fewer micro-batches."""

    micro_batches: list[MicroBatch]
    kept: int
    completions: list[Completion]
    metrics: dict[str, float]
    filler: MicroBatch | None = None


def single_turn_batch(draw: Draw, sampler: SingleTurnSampler, grpo: GRPOConfig, micro_batch_size: int) -> StepBatch:
    """Advantages of a step's kept groups, and micro-batches of whole groups (each group's prompt runs through the
    model once, planner_rl/packing.py)."""
    g, keep, G = draw.groups, draw.keep, sampler.G
    adv = kept_advantages(g.scores, keep, G, grpo.advantage_scale, grpo.negative_weight)  # [B] (B = kept groups * G)
    prompts = [sampler.prompt(g.idx[k]) for k in keep]
    completions = [g.completions[k * G + j].token_ids for k in keep for j in range(G)]
    mbs = group_micro_batches(prompts, completions, adv, G, micro_batch_size)
    first = keep[0] if keep else 0  # a group of this rank, counted with loss weight 0
    filler = MicroBatch([sampler.prompt(g.idx[first])], [g.completions[first * G + j].token_ids for j in range(G)],
                        torch.zeros(G), 0.0)  # fmt: skip
    return StepBatch(mbs, len(keep), g.completions, group_figures(draw, sampler, grpo.zero_variance), filler)


def multi_turn_batch(episodes: Episodes, grpo: GRPOConfig, micro_batch_size: int) -> StepBatch:
    """Episode advantages of a step's kept groups, and micro-batches of turns: every turn's answer carries its
    episode's advantage."""
    G = grpo.group_size
    zero = zero_variance_groups(torch.tensor(episodes.scores), G)  # [N]
    keep = [g for g in range(len(zero)) if not (zero[g] and grpo.zero_variance == "drop")]
    adv = kept_advantages(episodes.scores, keep, G, grpo.advantage_scale, grpo.negative_weight)  # [kept episodes]
    rows = [g * G + k for g in keep for k in range(G)]
    turns = [(p, c.token_ids, float(a)) for r, a in zip(rows, adv, strict=True) for p, c in episodes.turns[r]]
    mbs = turn_micro_batches(turns, micro_batch_size)
    return StepBatch(mbs, len(keep), episodes.completions, episode_figures(episodes, zero, keep))


def step_line(steps: int, m: dict) -> str:
    return (
        f"step {m['train/step']}/{steps} reward {m['reward/mean']:.3f} match {m['reward/main']:.3f} "
        f"valid {m['reward/valid_rate']:.2f} zero-var {m['rollout/zero_variance_frac']:.2f} "
        f"loss {m.get('loss/total', 0.0):+.4f} grad {m.get('train/grad_norm', 0.0):.3f} "
        f"| gen {m['perf/generate_s']:.1f}s update {m['perf/update_s']:.1f}s step {m['perf/step_s']:.1f}s"
    )


def sample_table(rows: list[dict], groups: Groups, G: int) -> tuple[list[str], list[list]]:
    """The first sample of the step's first four groups, beside the expert's action (samples.jsonl)."""
    cols = ["task", "seed", "step", "expert_action", "completion", "reward"]
    show = [rows[groups.idx[r // G]] for r in range(0, len(groups.completions), G)][:4]
    table = [[ex["task"], ex["seed"], ex["step"], ex["expert_action"], groups.completions[k * G].text,
              groups.scores[k * G]] for k, ex in enumerate(show)]  # fmt: skip
    return cols, table


def on_schedule(step: int, every: int, final: bool) -> bool:
    return final or bool(every and step % every == 0)


# --- the GRPO stage ----------------------------------------------------------------------------------------------
def grpo_stage(
    job: Job,
    state: LoopState,
    sampler: SingleTurnSampler | EpisodeSampler,
    policy: Policy,
    rollout,
    tokenizer,
    records: Records,
    evaluator: Evaluator,
    refresh: Callable[[Any, int], tuple[list[dict], dict]] | None = None,
    anchor: Callable[[torch.nn.Module, int], torch.Tensor] | None = None,
    pool: tuple[int, dict] = (0, {}),
) -> dict:
    """GRPO steps from `state` until grpo.steps or the token budget: sample -> score -> advantages -> update ->
    sync -> log, evaluation and checkpoint on schedule. Returns the last evaluation's metrics ({} if none ran).
    `refresh(model, step)`: the single-turn prompt pool rebuilt from the current model every
    grpo.refresh_states_every steps (None: never), with its `pool/` figures. `anchor(model, step)`: the SFT loss
    added to each update (grpo.sft_coef; None: off). `pool`: (the step the current pool was built at, its figures);
    a pool's figures are logged with the step after the one it was built at."""
    grpo, G, backend, last = job.grpo, job.grpo.group_size, policy.backend, state.last_eval
    bar = Progress("grpo", grpo.steps, initial=state.step, enabled=job.main)
    budget = grpo.max_generated_tokens or float("inf")
    every, first = grpo.refresh_states_every, state.step
    while state.step < grpo.steps and state.generated < budget:
        if refresh is not None and state.step > first and state.step % every == 0:  # the pool from the policy now
            rows, figures = refresh(backend.unwrapped, state.step)
            sampler.set_rows(rows)
            pool = (state.step, figures)
        state.step += 1
        t0 = time.perf_counter()
        # --- sample groups, score them, advantages and micro-batches ----------------------------------------------
        if grpo.mode == "single_turn":
            draw = draw_groups(sampler, state.position, grpo)
            state.position, score_s = draw.position, draw.groups.score_s
            t_gen = time.perf_counter() - t0 - score_s
            batch = single_turn_batch(draw, sampler, grpo, job.trainer.micro_batch_size)
        else:  # multi_turn: G whole episodes per instance
            episodes = sampler.draw(state.position, grpo.prompts_per_step)
            state.position, score_s = state.position + grpo.prompts_per_step, 0.0
            t_gen = time.perf_counter() - t0
            batch = multi_turn_batch(episodes, grpo, job.trainer.micro_batch_size)
        mbs, batch_tokens, batch_rows, completion_tokens = balance_micro_batches(
            batch.micro_batches, batch.kept, batch.filler
        )
        # --- old and reference log-probs (only when they are used), then the policy-gradient update ---------------
        t1 = time.perf_counter()
        olds, refs = old_and_reference_log_probs(policy, mbs, grpo)
        t2 = time.perf_counter()
        step_anchor = functools.partial(anchor, step=state.step) if anchor is not None else None
        stats, t_opt = policy_update(policy, mbs, olds, refs, grpo, batch_tokens, batch_rows, job.world, step_anchor)
        t_update = time.perf_counter() - t2
        # --- sync weights to the rollout engine --------------------------------------------------------------------
        t3 = time.perf_counter()
        rollout.sync_weights(backend.unwrapped)
        t_sync = time.perf_counter() - t3
        # --- log ---------------------------------------------------------------------------------------------------
        gen_tokens = sum(len(c.token_ids) for c in batch.completions)  # this rank's; perf/ figures are rank 0's
        state.generated += int(dist.all_sum([gen_tokens])[0])
        final = state.step == grpo.steps or state.generated >= budget
        train_tokens = (sum(len(p) for mb in mbs for p in mb.prompts) + completion_tokens) * grpo.mu  # prompts once
        metrics = batch.metrics | stats | {"train/updated": float(bool(mbs))} | {
            "train/step": state.step, "train/epoch": state.position / len(sampler),
            "train/generated_tokens": state.generated, "train/samples": state.position * G,
            "perf/generate_s": t_gen, "perf/score_s": score_s, "perf/logprob_s": t2 - t1,
            "perf/update_s": t_update, "perf/optimizer_s": t_opt, "perf/sync_s": t_sync,
            "perf/step_s": time.perf_counter() - t0,
            "perf/generate_tokens_per_s": gen_tokens / max(t_gen, 1e-9),
            "perf/train_tokens_per_s": train_tokens / max(t_update, 1e-9),
        }  # fmt: skip
        if state.step == pool[0] + 1:  # the pool's figures, with the first step drawn from it
            metrics |= pool[1]
        records.log(metrics)
        bar.update(1, reward=metrics["reward/mean"])
        job.say(step_line(grpo.steps, metrics))
        if grpo.mode == "single_turn" and grpo.sample_every and state.step % grpo.sample_every == 0:
            records.samples(state.step, *sample_table(sampler.rows, draw.groups, G))
        # --- evaluate and checkpoint on schedule -------------------------------------------------------------------
        if on_schedule(state.step, grpo.eval_every, final) and not (final and grpo.average_checkpoints):
            dist.barrier()
            last = evaluator(backend.unwrapped, tokenizer, rollout, state.step) if job.main else {}
            state.last_eval = last  # checkpointed with the loop: a resume after the last step does not evaluate again
            dist.barrier()
        if on_schedule(state.step, job.trainer.checkpoint_every, final):
            keep = job.trainer.keep_checkpoints
            save_training_checkpoint(job.run_dir, state, backend, tokenizer, records, keep, job.main, dist.barrier)
            if job.world > 1 and getattr(job.trainer, "zero_stage", 0) < 3:  # ZeRO-3 ranks hold shards, not copies
                dist.check_same_weights(backend.unwrapped, state.step)
    bar.close()
    return last


def sft_anchor(job: Job, rows, tokenizer, pad_id: int) -> Callable[[torch.nn.Module, int], torch.Tensor] | None:
    """grpo.sft_coef > 0: anchor(model, step), the SFT objective (sft.prompt_loss included) on sft.batch_size of the
    SFT examples `rows`, drawn for (seed, rank, step) so that a resumed run draws the same; None otherwise."""
    if not job.grpo.sft_coef:
        return None

    def loss(model: torch.nn.Module, step: int) -> torch.Tensor:
        rng = random.Random(f"sft_anchor/{job.cfg.seed}/{job.rank}/{step}")
        picked = [rows[i] for i in rng.sample(range(len(rows)), min(job.sft.batch_size, len(rows)))]
        device = next(model.parameters()).device
        batch = collate([encode_example(tokenizer, r["prompt"], r["target"]) for r in picked], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        return answer_loss(model, batch, job.sft.prompt_loss)

    return loss


def greedy_play(job: Job) -> EvalConfig:
    """The evaluation's protocol for one greedy, free-decoded episode per layout and nothing else (no theory check,
    transcripts or valid-action pass): how GRPO's pool plays a model on its layouts."""
    return replace(job.eval, tasks=None, seeds=None, episodes=1, temperature=0.0, decoding="free", theory=False,
                   also_valid_actions=False, transcripts=0)  # fmt: skip


def policy_rows(job: Job, model, tokenizer, tasks: list[str], rows: list[dict], who: str) -> list[dict]:
    """grpo.states=policy: the states `model` (`who`: the SFT model, or the policy at a GRPO step) reaches off the
    expert's plan, played greedily under the evaluation's protocol on GRPO's layouts, each labelled by the expert
    replanned there (planner_rl/onpolicy.py)."""
    t0 = time.perf_counter()
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    extra = policy_examples(model, tokenizer, tasks, seeds, job.prompt, greedy_play(job), job.cfg.expert_cache,
                            off_plan_only=True)  # fmt: skip
    job.say(f"grpo.states=policy: {len(extra)} off-plan states of the {who} on {len(seeds)} layouts "
            f"({time.perf_counter() - t0:.0f} s) beside {len(rows)} expert-plan prompts")  # fmt: skip
    return extra


def failed_layouts(job: Job, model, tokenizer, tasks: list[str], rows: list[dict]) -> tuple[list[dict], dict]:
    """grpo.layouts=failed: the GRPO prompts `rows` of the layouts the SFT `model` fails, each played once greedily
    in closed loop under the evaluation's protocol; and the figures `pool/layouts` (those layouts) and
    `pool/sft_sr` (the SFT model's success rate on all GRPO layouts). Deterministic, so a resume gets the same."""
    t0 = time.perf_counter()
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    was_training = model.training
    model.eval()
    try:
        rollout = HFRollout(model, tokenizer)
        ev = evaluate(rollout, tokenizer, tasks, seeds, job.prompt, greedy_play(job), job.cfg.expert_cache)
    finally:
        model.train(was_training)
    failed = {(e.task, e.seed) for e in ev.episodes if not e.success}
    keep = [r for r in rows if (r["task"], r["seed"]) in failed]
    job.say(f"grpo.layouts=failed: the SFT model fails {len(failed)} of {len(ev.episodes)} GRPO layouts (sr "
            f"{ev.summary['sr']:.3f}; {time.perf_counter() - t0:.0f} s); their {len(keep)} of {len(rows)} prompts "
            "kept")  # fmt: skip
    if not keep:
        raise ConfigError(f"grpo.layouts=failed: the SFT model solves all {len(ev.episodes)} GRPO layouts, so GRPO "
                          "has nothing to train on: use grpo.layouts=all or more env.grpo_seeds")  # fmt: skip
    return keep, {"pool/layouts": float(len(failed)), "pool/sft_sr": ev.summary["sr"]}


def grpo_pool(
    job: Job, model, step: int, tokenizer, tasks: list[str], rows: list[dict], restricted: bool
) -> tuple[list[dict], dict[str, float]]:
    """The single-turn GRPO prompts: the expert plans' states `rows`, plus `model`'s own off-plan states
    (grpo.states=policy; `step` the GRPO step it is at), filtered by its probability of their labels (max_sft_p);
    and the pool's `pool/` figures ({} without max_sft_p)."""
    who = f"policy at GRPO step {step}" if step else "SFT model"
    if job.grpo.states == "policy":
        rows = rows + policy_rows(job, model, tokenizer, tasks, rows, who)
    if job.grpo.max_sft_p is None:
        return rows, {}
    return hard_rows(job, model, tokenizer, rows, restricted, who, refreshing=step > 0)


def hard_rows(
    job: Job, model, tokenizer, rows: list[dict], restricted: bool, who: str, refreshing: bool = False
) -> tuple[list[dict], dict[str, float]]:
    """grpo.max_sft_p: the prompts whose labelled answer `model` (`who`: the SFT model, or the policy at a GRPO
    step) writes with probability <= max_sft_p at the sampling temperature (teacher-forced; among the valid
    actions when the rollout is restricted to them). The rest would mostly give groups with one reward for all, so
    no gradient, and crowd out the states still to learn. A refresh (`refreshing`) that keeps none, the policy
    having learned every prompt, goes on with all of `rows` rather than stop the run. Figures: `pool/label_p`, the
    mean label probability (the expected expert_match reward of one sample per prompt) over the prompts kept at the
    first build and over all of `rows` at a refresh, so that with states=expert it is measured on the same SFT pool
    every time: a learning curve, which reward/main on the refiltered pool is not; `pool/prompts`, the prompts kept."""
    t0, decoding = time.perf_counter(), "valid_actions" if restricted else "free"
    fmt, temperature = job.prompt.output_format, job.rollout.sampling.temperature
    scored = label_log_probs(model, tokenizer, rows, fmt, temperature, decoding=decoding)
    probs = [math.exp(lp) for lp, _ in scored]
    keep = [r for r, p in zip(rows, probs, strict=True) if p <= job.grpo.max_sft_p]
    # the mean over every prompt a refresh filters; over the pool the first build keeps
    over = probs if refreshing or not keep else [p for p in probs if p <= job.grpo.max_sft_p]
    figures = {"pool/label_p": sum(over) / len(over), "pool/prompts": float(len(keep) or len(rows))}
    job.say(f"grpo.max_sft_p={job.grpo.max_sft_p}: {len(keep)} of {len(rows)} prompts kept, the label's "
            f"probability under the {who} at most that (pool/label_p {figures['pool/label_p']:.3f}; "
            f"{time.perf_counter() - t0:.0f} s)")  # fmt: skip
    if not keep and refreshing:
        job.say(f"grpo.max_sft_p={job.grpo.max_sft_p}: the {who} writes every label above it; all {len(rows)} kept")
        return rows, figures
    if not keep:
        raise ConfigError(f"grpo.max_sft_p={job.grpo.max_sft_p} keeps none of the {len(rows)} GRPO prompts: raise it")
    return keep, figures


# --- report ------------------------------------------------------------------------------------------------------
def average_model(job: Job, model: torch.nn.Module) -> list[int]:
    """grpo.average_checkpoints: the mean of the last checkpoints' weights, written to <run>/average_model and loaded
    into `model` (the policy, after its last step: the rollout samples from it, and its last checkpoint on disk stays
    the resumable one). Returns the steps it averages."""
    folders = complete_checkpoints(job.run_dir)[-job.grpo.average_checkpoints :]
    steps = [int(f.name.removeprefix("step_")) for f in folders]
    weights = average_weights(folders)
    out = write_average(job.run_dir / "average_model", folders, weights)
    load_weights(model, weights, out)
    job.say(f"grpo.average_checkpoints={job.grpo.average_checkpoints}: the final model is the mean of the weights "
            f"at steps {', '.join(map(str, steps))} ({out})")  # fmt: skip
    return steps


def report(job: Job, stage: dict, last: dict, steps: int, tasks: list[str], test_seeds: list[int], logger,
           averaged: list[int] | None = None) -> dict:  # fmt: skip
    """results.json (SFT-only vs SFT+GRPO; `averaged`: the checkpoints' steps the final model averages), the
    logger's summary and the console table."""
    baseline, eval_cfg = stage["baseline"], job.eval
    results = {"sft_only": baseline, "final": last, "steps": steps, "eval": asdict(eval_cfg)}
    if averaged:
        results["averaged_steps"] = averaged
    clean = {k: {m: json_safe(v) for m, v in d.items()} if isinstance(d, dict) else d for k, d in results.items()}
    (job.run_dir / "results.json").write_text(json.dumps(clean, indent=1, allow_nan=False))
    logger.summary({f"eval/sft_only/{k.removeprefix('eval/')}": v for k, v in baseline.items()})
    logger.summary({f"eval/final/{k.removeprefix('eval/')}": v for k, v in last.items()})
    eval_tasks, n_seeds = eval_cfg.tasks or tasks, len(eval_cfg.seeds or test_seeds)
    print(f"\nmulti-turn evaluation, {', '.join(eval_tasks)}: {protocol_line(eval_cfg, len(eval_tasks) * n_seeds)}")
    print(f"{'':<24} " + " ".join(f"{k:>10}" for k in EVAL_KEYS))
    print("\n".join(eval_rows("SFT-only", baseline) + eval_rows("SFT+GRPO", last)))
    print(f"run dir: {job.run_dir}")
    print(f"plot: {plot_run(job.run_dir)}")  # training reward, single-step accuracy, SR before/after
    return results


def remove_weights(run_dir: Path) -> None:
    """A sweep keeps each job's records and results, not its weights (cleanup=true)."""
    for heavy in [run_dir / "checkpoints", run_dir / "average_model", *(run_dir / "sft_model").glob("*.safetensors")]:
        shutil.rmtree(heavy, ignore_errors=True) if heavy.is_dir() else heavy.unlink(missing_ok=True)


# --- the job -----------------------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> dict:
    job = make_job(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    lock = RunDirLock(job.run_dir, enabled=job.main).__enter__()  # one job per run dir; the `finally` gives it back
    records, logger = open_records(job, config)
    rollout = backend = None
    try:
        # --- data ---------------------------------------------------------------------------------------------------
        data, info = build_dataset(cfg)
        test_rows = data["test"].to_list()
        train_rows = data["grpo" if "grpo" in data else "train"].to_list()  # GRPO's prompts (env.grpo_seeds)
        # seed_list: a range "a-b" is a config's spelling too (list() of it would give its characters)
        tasks, test_seeds = task_list(cfg.env.tasks), seed_list(cfg.env.test_seeds, "env.test_seeds")
        grpo_note = f" / {info['examples']['grpo']} GRPO prompts (env.grpo_seeds)" if "grpo" in data else ""
        job.say(
            f"data: {info['examples']['train']} train{enrich_note(info)} / {info['examples']['test']} test prompts"
            f"{grpo_note} "
            f"({info['tasks']} tasks) in {info['seconds']:.1f} s; ambiguity {info['ambiguity']['rate']:.2%}"
        )
        task_rows = eval_task_rows(job, tasks, test_seeds, test_rows)
        evaluator = Evaluator(job, tasks, test_seeds, test_rows, records, logger, task_rows)
        # --- SFT warm start and the SFT-only evaluation (step 0) ---------------------------------------------------
        stage = sft_stage(job, config, data, records, evaluator)
        start_cfg = replace(job.model, path=str(job.run_dir / "sft_model")) if stage["trained"] else job.model
        # --- GRPO setup: policy, reference, backends, resume -------------------------------------------------------
        seed_everything(cfg.seed + 1)  # the same whether SFT ran in this process or was loaded
        model, tokenizer = load_model_and_tokenizer(start_cfg)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids(tokenizer)[0]
        restricted = getattr(job.rollout, "decoding", "free") == "valid_actions"  # GRPO samples among valid actions
        expert_rows, pool = train_rows, (0, {})  # pool: (the step the prompt pool was built at, its pool/ figures)
        if job.grpo.mode == "single_turn":  # from the SFT model: the same on resume (unless refreshed, below)
            layouts = {}
            if job.grpo.layouts == "failed":  # only the layouts the SFT model fails in closed loop
                expert_rows, layouts = failed_layouts(job, model, tokenizer, tasks, expert_rows)
            train_rows, figures = grpo_pool(job, model, 0, tokenizer, tasks, expert_rows, restricted)
            pool = (0, layouts | figures)
        # grpo.refresh_states_every rebuilds the pool from: the expert rows and the policy's new states
        # (states=policy), or the SFT model's pool, filtered again by the current policy (states=expert)
        refresh_rows = expert_rows if job.grpo.states == "policy" else train_rows
        reference = copy.deepcopy(model).requires_grad_(False) if job.grpo.beta > 0 else None  # none at beta 0
        backend = get_class(job.trainer._target_)(model, job.trainer, job.grpo.steps * job.grpo.mu)
        if reference is not None:
            reference.to(backend.device)
        rollout = get_class(job.rollout._target_)(backend.unwrapped, tokenizer, job.rollout)
        state, ckpt = resume_training(job.run_dir, job.trainer.resume, backend, records, stage["offsets"])
        if ckpt is not None:
            rollout.sync_weights(backend.unwrapped)
            job.say(f"resumed from {ckpt} (step {state.step})")
            if job.grpo.refresh_states_every and state.step >= job.grpo.refresh_states_every:  # from the resumed model
                train_rows, figures = grpo_pool(job, backend.unwrapped, state.step, tokenizer, tasks, refresh_rows,
                                                restricted)  # fmt: skip
                pool = (state.step, figures)  # logged as the refresh at that step was
        sampling, G = job.rollout.sampling, job.grpo.group_size
        if job.grpo.mode == "single_turn":
            fmt = job.prompt.output_format
            sampler = SingleTurnSampler(rollout, tokenizer, train_rows, G, sampling, job.reward, fmt, cfg.seed,
                                        job.rank, job.world, restricted)  # fmt: skip
        else:
            sampler = EpisodeSampler(rollout, tokenizer, train_rows, G, sampling, job.prompt, job.eval, cfg.seed,
                                     restricted)  # fmt: skip
        policy = Policy(backend, reference, pad_id, sampling.temperature or 1.0)
        # --- GRPO steps ---------------------------------------------------------------------------------------------
        refresh = functools.partial(grpo_pool, job, tokenizer=tokenizer, tasks=tasks, rows=refresh_rows,
                                    restricted=restricted) if job.grpo.refresh_states_every else None  # fmt: skip
        anchor = sft_anchor(job, data["train"], tokenizer, pad_id)
        last = grpo_stage(job, state, sampler, policy, rollout, tokenizer, records, evaluator, refresh, anchor, pool)
        if not job.main:
            return {}
        averaged = None
        if job.grpo.average_checkpoints and state.step:  # the final model: the mean of the last checkpoints
            averaged = average_model(job, backend.unwrapped)
            rollout.sync_weights(backend.unwrapped)
        if averaged or not last:  # the averaged model; or resumed after the last step's checkpoint, or steps=0
            last = evaluator(backend.unwrapped, tokenizer, rollout, state.step)
        # --- report: SFT-only vs SFT+GRPO ---------------------------------------------------------------------------
        results = report(job, stage, last, state.step, tasks, test_seeds, logger, averaged)
        if cfg.cleanup:
            remove_weights(job.run_dir)
        return results
    finally:
        records.close()
        logger.finish()
        if rollout is not None:
            rollout.close()
        if backend is not None:
            backend.close()
        lock.__exit__()


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    known = (ConfigError, ModelLoadError, TaskError, ProblemError, PDDLTaskError, NoPlanError, FileNotFoundError,
             CheckpointError)  # fmt: skip
    run_job(train, cfg, known)


if __name__ == "__main__":
    main()
