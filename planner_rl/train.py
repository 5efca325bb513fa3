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
import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import hydra
import numpy as np
import torch
import transformers
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from planner_rl import distributed as dist
from planner_rl.checkpoint import (
    find_resume,
    is_complete,
    load_stage,
    restore_stage,
    save_checkpoint,
    stage_key,
    store_stage,
    usable,
    write_atomically,
)
from planner_rl.config import ConfigError, register_configs, typed
from planner_rl.data import build_dataset, task_list
from planner_rl.env.planner import NoPlanError
from planner_rl.env.problem import ProblemError
from planner_rl.env.tasks import TaskError
from planner_rl.evaluate import Instance, evaluate, play, protocol_line, transcript_rows, write_results
from planner_rl.grpo import (
    group_advantages,
    grpo_loss,
    micro_batch_weight,
    zero_variance_groups,
)
from planner_rl.integrity import CheckpointError, load_loop, save_loop
from planner_rl.logger import NoLogger, Records, json_safe
from planner_rl.model import ModelLoadError, load_model_and_tokenizer, model_config
from planner_rl.packing import group_log_probs
from planner_rl.rewards import compute_reward
from planner_rl.rollout.hf import HFRollout, encode_prompt, stop_ids
from planner_rl.runlock import RunDirLock
from planner_rl.sft import single_step_accuracy, train_sft
from planner_rl.sweep import job_name, run_job

register_configs()
transformers.utils.logging.disable_progress_bar()  # per-shard bars on every save and load; ours are per phase
EVAL_KEYS = ("sr", "asat", "asst", "min_step_sr", "p0", "invalid_rate", "parse_fail_rate")


# --- small pieces ------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_sha() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.strip() else "")


def prompt_order(n: int, seed: int, position: int, count: int) -> list[int]:
    """Training-prompt indices at global positions [position, position + count): epoch e = p // n of the data is a
    permutation of range(n) seeded by (seed, e), so the order resumes from `position` alone."""
    out, perms = [], {}
    for p in range(position, position + count):
        epoch, i = divmod(p, n)
        if epoch not in perms:
            perms[epoch] = list(range(n))
            random.Random(f"{seed}/{epoch}").shuffle(perms[epoch])
        out.append(perms[epoch][i])
    return out


def eval_line(label: str, m: dict) -> str:
    cells = " ".join(f"{m.get(k, float('nan')):>10.3f}" for k in EVAL_KEYS)
    return f"{label:<10} {cells}"


# --- the job -----------------------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.paths.output_dir)
    grpo, trainer_cfg, rollout_cfg, eval_cfg, prompt_cfg, reward_cfg, sft_cfg = (
        typed(cfg, k) for k in ("grpo", "trainer", "rollout", "eval", "prompt", "reward", "sft")
    )
    model_cfg, fmt, G = model_config(cfg.model), prompt_cfg.output_format, grpo.group_size
    sampling = rollout_cfg.sampling
    temp = sampling.temperature or 1.0  # log-probs of the sampling distribution (greedy sampling: of the policy)
    rank, world = dist.rank(), dist.world_size()
    main = rank == 0  # rank 0 logs, evaluates and writes the run's files; every rank samples and trains
    if world > 1 and (grpo.prompts_per_step % world or grpo.zero_variance == "resample" or grpo.mode != "single_turn"):
        raise ConfigError(
            f"with {world} ranks, grpo.prompts_per_step ({grpo.prompts_per_step}) must be a multiple of the number "
            "of ranks, grpo.zero_variance must be keep or drop, and grpo.mode single_turn"
        )
    say = tqdm.write if main else (lambda *_: None)
    config = OmegaConf.to_container(cfg, resolve=True)
    meta = {"git_sha": git_sha(), "command": " ".join(sys.argv), "overrides": list(HydraConfig.get().overrides.task),
            "world_size": world}  # fmt: skip
    lock = RunDirLock(run_dir, enabled=main).__enter__()  # one job per run dir; the `finally` gives it back
    if main:
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        logger = get_class(cfg.logger._target_)(OmegaConf.to_object(cfg.logger), run_dir, config | meta, job_name(cfg))
    else:
        logger = NoLogger(None, run_dir, config, cfg.name)
    records, rollout, backend = Records(run_dir, logger, enabled=main), None, None
    try:
        # --- data -----------------------------------------------------------------------------------------------
        data, report = build_dataset(cfg)
        train_rows, test_rows = data["train"].to_list(), data["test"].to_list()
        tasks, test_seeds = task_list(cfg.env.tasks), list(cfg.env.test_seeds)
        say(
            f"data: {report['examples']['train']} train / {report['examples']['test']} test prompts "
            f"({report['tasks']} tasks) in {report['seconds']:.1f} s; ambiguity {report['ambiguity']['rate']:.2%}"
        )

        def run_eval(model, tokenizer, rollout, step: int) -> dict:
            ev = evaluate(rollout, tokenizer, tasks, test_seeds, prompt_cfg, eval_cfg, cfg.expert_cache, model)
            write_results(run_dir / "eval" / f"step_{step:06d}.json", ev.summary, ev.episodes, eval_cfg, ev.paths)
            single = single_step_accuracy(model, tokenizer, test_rows, fmt, sft_cfg)
            metrics = {f"eval/{k}": v for k, v in ev.summary.items() if not k.endswith("seconds")}
            metrics["perf/eval_s"], metrics["perf/eval_play_s"] = ev.summary["seconds"], ev.summary["play_seconds"]
            metrics |= {k.replace("eval/sft_", "eval/step_"): v for k, v in single.items()}
            records.log({"train/step": step, **metrics})
            logger.table(
                "eval/transcripts", ["task", "seed", "success", "steps", "transcript"], transcript_rows(ev.episodes)
            )
            say(
                f"eval step {step}: sr {ev.summary['sr']:.2f} asat {ev.summary['asat']:.1f} min-step sr "
                f"{ev.summary['min_step_sr']:.2f} (predicted {ev.summary.get('p0', float('nan')):.2f}; "
                f"{ev.summary['seconds']:.0f} s, invalid actions: {eval_cfg.invalid})"
            )
            return metrics

        # --- SFT warm start and the SFT-only evaluation (step 0) -------------------------------------------------
        sft_dir = run_dir / "sft_model"
        while not main and not is_complete(sft_dir):  # no process group yet: wait for rank 0 on the shared disk
            time.sleep(2)
        inputs = {
            k: config[k] for k in ("env", "prompt", "model", "sft", "eval", "seed", "label_noise", "label_noise_seed")
        }
        cached = Path(cfg.sft_cache) / stage_key(inputs) if cfg.sft_cache else None  # what SFT + its eval depend on
        if main and not usable(sft_dir) and cached is not None and usable(cached):  # damaged ones are redone
            records.restore(restore_stage(cached, sft_dir))
            say(f"sft: the same SFT stage (and its evaluation) is cached, reused {cached}")
        if not is_complete(sft_dir):
            records.truncate({})
            seed_everything(cfg.seed)
            model, tokenizer = load_model_and_tokenizer(model_cfg)
            model.to("cuda" if torch.cuda.is_available() else "cpu")
            if sft_cfg.epochs > 0:

                def log_sft(m: dict) -> None:
                    records.log(m)
                    if "eval/sft_accuracy" in m:
                        say(
                            f"sft epoch {m['sft/epoch']}: test loss {m['eval/sft_loss']:.4f}, single-step accuracy "
                            f"{m['eval/sft_accuracy']:.3f}, valid {m['eval/sft_valid_rate']:.3f}"
                        )

                train_sft(model, tokenizer, data, sft_cfg, fmt, None, log_sft)
            baseline = run_eval(model, tokenizer, HFRollout(model, tokenizer), 0)  # greedy: any backend is the same

            def write_sft(tmp: Path) -> None:
                if sft_cfg.epochs > 0:  # untrained weights are not copied: they are model.path's
                    model.save_pretrained(tmp)
                    tokenizer.save_pretrained(tmp)
                stage = {"trained": sft_cfg.epochs > 0, "baseline": baseline, "offsets": records.offsets()}
                (tmp / "stage.json").write_text(json.dumps(stage))

            write_atomically(sft_dir, write_sft)
            if cached is not None:
                store_stage(sft_dir, cached, records.text())
            del model
        stage = load_stage(sft_dir)
        start_cfg = replace(model_cfg, path=str(sft_dir)) if stage["trained"] else model_cfg

        # --- GRPO setup: policy, reference, backends, resume -----------------------------------------------------
        seed_everything(cfg.seed + 1)  # the same whether SFT ran in this process or was loaded
        model, tokenizer = load_model_and_tokenizer(start_cfg)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids(tokenizer)[0]
        reference = copy.deepcopy(model).requires_grad_(False) if grpo.beta > 0 else None  # none loaded at beta 0
        backend = get_class(trainer_cfg._target_)(model, trainer_cfg, grpo.steps * grpo.mu)
        if reference is not None:
            reference.to(backend.device)
        rollout = get_class(rollout_cfg._target_)(backend.unwrapped, tokenizer, rollout_cfg)
        step, position, generated = 0, 0, 0  # generated: completion tokens sampled so far, all ranks
        ckpt = find_resume(run_dir, trainer_cfg.resume)
        if ckpt is not None:
            loop = load_loop(ckpt)  # JSON + safetensors, every field checked: nothing in a checkpoint runs code
            backend.load(ckpt)
            step, position, generated = loop["step"], loop["position"], loop.get("generated", 0)
            set_rng_state(loop["rng"])
            records.truncate(loop["offsets"])
            rollout.sync_weights(backend.unwrapped)
            say(f"resumed from {ckpt} (step {step})")
        else:
            records.truncate(stage["offsets"])
        encoded: dict[int, list[int]] = {}  # prompt token ids by training-example index

        timing = {"score": 0.0}

        def draw(count: int) -> tuple[list[int], list, list[float], list[dict]]:
            """This rank's share of the next `count` prompts of the data order, G samples each, and their scores."""
            nonlocal position
            share = count // world
            first = position + rank * share  # global data-order position of this rank's first prompt
            idx = prompt_order(len(train_rows), cfg.seed, first, share)
            position += count
            for i in idx:  # each training prompt is tokenised once per run
                if i not in encoded:
                    encoded[i] = encode_prompt(tokenizer, train_rows[i]["prompt"])
            prompts = [encoded[i] for i in idx]
            seeds = [cfg.seed * 1_000_003 + first + k for k in range(share)]  # a group's samples: f(seed, position)
            comps = rollout.generate(prompts, G, sampling, seeds)  # [share*G], each prompt's samples adjacent
            t = time.perf_counter()
            scored = [compute_reward(reward_cfg, c.text, train_rows[idx[k // G]], fmt) for k, c in enumerate(comps)]
            timing["score"] += time.perf_counter() - t
            return idx, comps, [s for s, _ in scored], [i for _, i in scored]

        instances = sorted({(r["task"], r["seed"], r["t_gt"]) for r in train_rows}, key=str)  # multi_turn's data
        episode_cfg = replace(eval_cfg, transcripts=0, lockstep=True, episodes=1)

        def draw_episodes(count: int) -> tuple[list[list[tuple[list[int], object]]], list[float], list, list]:
            """multi_turn: the next `count` training instances of the data order, G sampled episodes each (budget and
            invalid-action protocol of `eval`). Per episode its turns as (prompt ids, completion) and its reward,
            1.0 for success, else 0.0: the sparse episode reward the method argues against; all turns' completions;
            the episodes' results."""
            nonlocal position
            idx = prompt_order(len(instances), cfg.seed, position, count)
            position += count
            turns: dict[int, list] = {}

            def decide(episodes, messages):
                prompts = [encode_prompt(tokenizer, m) for m in messages]
                comps = rollout.generate(prompts, 1, sampling)  # one batched call per turn over all G*N episodes
                for ep, p, c in zip(episodes, prompts, comps, strict=True):
                    turns.setdefault(ep.index, []).append((p, c))
                return [c.text for c in comps]

            played = play([Instance(*instances[i]) for i in idx for _ in range(G)], prompt_cfg, episode_cfg, decide)
            units = [turns.get(k, []) for k in range(len(played))]
            return units, [float(r.success) for r in played], [c for u in units for _, c in u], played

        last = loop["eval"] if ckpt is not None else {}  # after the last step's checkpoint: its evaluation
        bar = tqdm(total=grpo.steps, initial=step, desc="grpo", dynamic_ncols=True, disable=None if main else True)
        budget = grpo.max_generated_tokens or float("inf")
        while step < grpo.steps and generated < budget:
            step += 1
            t0, timing["score"] = time.perf_counter(), 0.0
            # --- sample groups and score them ----------------------------------------------------------------------
            if grpo.mode == "single_turn":
                idx, comps, scores, infos = draw(grpo.prompts_per_step)
                flat = torch.tensor(scores)  # [N*G]
                zero = zero_variance_groups(flat, G)  # [N]
                metrics = {}
                keep = (
                    [g for g in range(len(idx)) if not zero[g]]
                    if grpo.zero_variance != "keep"
                    else list(range(len(idx)))
                )
                rounds = 0
                while grpo.zero_variance == "resample" and len(keep) < len(idx) and rounds < grpo.max_resample_rounds:
                    rounds += 1
                    more = draw(grpo.prompts_per_step)
                    base = len(idx)
                    idx, comps, scores, infos = (a + b for a, b in zip((idx, comps, scores, infos), more, strict=True))
                    fresh = zero_variance_groups(torch.tensor(more[2]), G)
                    keep += [base + g for g in range(len(more[0])) if not fresh[g]]
                if grpo.zero_variance == "resample":
                    keep = keep[: grpo.prompts_per_step]
                    metrics["rollout/resample_rounds"] = rounds
                rows_kept = [g * G + k for g in keep for k in range(G)]
                t_gen = time.perf_counter() - t0 - timing["score"]
                sums = dist.all_sum(
                    [len(scores), sum(scores), sum(i["main"] for i in infos), sum(i["valid"] for i in infos),
                     sum(i["well_formed"] for i in infos), sum(len(c.token_ids) for c in comps),
                     sum(not c.finished for c in comps), float(zero.sum()), len(zero), len(keep)]
                )  # fmt: skip
                n = max(sums[0], 1)
                metrics = {
                    "reward/mean": sums[1] / n, "reward/main": sums[2] / n, "reward/valid_rate": sums[3] / n,
                    "reward/format_rate": sums[4] / n, "rollout/completion_tokens": sums[5] / n,
                    "rollout/truncated_frac": sums[6] / n, "rollout/zero_variance_frac": sums[7] / max(sums[8], 1),
                    "rollout/groups": int(sums[9]),
                    "rollout/prompt_tokens": sum(len(encoded[i]) for i in idx) / len(idx),
                } | metrics  # fmt: skip
                # --- advantages --------------------------------------------------------------------------------------
                rewards = torch.tensor([scores[r] for r in rows_kept])  # [B] (B = kept groups * G)
                adv = group_advantages(rewards, G, grpo.advantage_scale) if rows_kept else rewards  # [B]
                # micro-batches of whole groups: each group's prompt runs through the model once (planner_rl/packing.py)
                per = max(1, trainer_cfg.micro_batch_size // G)
                mbs = [
                    ([encoded[idx[g]] for g in keep[s : s + per]],
                     [comps[g * G + k].token_ids for g in keep[s : s + per] for k in range(G)],
                     adv[s * G : (s + per) * G], 1.0)
                    for s in range(0, len(keep), per)
                ]  # fmt: skip
            else:  # multi_turn: G whole episodes per instance; every turn's answer carries its episode's advantage
                units, scores, comps, played = draw_episodes(grpo.prompts_per_step)
                zero = zero_variance_groups(torch.tensor(scores), G)  # [N]
                keep = [g for g in range(len(zero)) if not (zero[g] and grpo.zero_variance == "drop")]
                t_gen = time.perf_counter() - t0
                answers = max(sum(r.answers for r in played), 1)
                metrics = {
                    "reward/mean": sum(scores) / len(scores), "reward/main": sum(scores) / len(scores),
                    "reward/valid_rate": 1 - sum(r.invalid for r in played) / answers,
                    "reward/format_rate": 1 - sum(r.malformed for r in played) / answers,
                    "rollout/completion_tokens": sum(len(c.token_ids) for c in comps) / max(len(comps), 1),
                    "rollout/truncated_frac": sum(not c.finished for c in comps) / max(len(comps), 1),
                    "rollout/episode_turns": len(comps) / len(played),
                    "rollout/prompt_tokens": sum(len(p) for u in units for p, _ in u) / max(len(comps), 1),
                    "rollout/zero_variance_frac": float(zero.float().mean()), "rollout/groups": len(keep),
                }  # fmt: skip
                rows = [g * G + k for g in keep for k in range(G)]
                ep_adv = (
                    group_advantages(torch.tensor([scores[r] for r in rows]), G, grpo.advantage_scale) if rows else []
                )
                flat = [(p, c.token_ids, float(a)) for r, a in zip(rows, ep_adv, strict=True) for p, c in units[r]]
                per = trainer_cfg.micro_batch_size  # turns have their own prompts: plain rows, no shared prefix
                mbs = [
                    ([p for p, _, _ in flat[s : s + per]], [c for _, c, _ in flat[s : s + per]],
                     torch.tensor([a for _, _, a in flat[s : s + per]]), 1.0)
                    for s in range(0, len(flat), per)
                ]  # fmt: skip
            lengths = [len(c) for _, cs, _, _ in mbs for c in cs]  # [B] on this rank
            batch_tokens, batch_rows, kept_all = dist.all_sum([sum(lengths), len(lengths), len(keep)])
            if kept_all == 0:  # every rank dropped every group: no update anywhere
                mbs = []
            most = dist.all_max([len(mbs)])[0]  # ZeRO reduces inside backward: every rank makes as many calls
            while len(mbs) < most:
                g = keep[0] if keep else 0  # a group of this rank, counted with loss weight 0
                mbs.append(([encoded[idx[g]]], [comps[g * G + k].token_ids for k in range(G)], torch.zeros(G), 0.0))

            def logps(model, mb):  # (log-probs [b, C], completion mask [b, C]) of one micro-batch
                return group_log_probs(model, mb[0], mb[1], pad_id, temp)

            # --- old and reference log-probs (only when they are used) --------------------------------------------
            t1 = time.perf_counter()
            with torch.no_grad(), backend.autocast():
                none = [None] * len(mbs)
                olds = [logps(backend.model, mb)[0] for mb in mbs] if grpo.mu > 1 else none
                refs = [logps(reference, mb)[0] for mb in mbs] if reference is not None else none
            t_logp = time.perf_counter() - t1
            # --- policy-gradient update (mu steps per batch, micro-batches accumulated) ----------------------------
            t2, stats, t_opt = time.perf_counter(), {}, 0.0
            for _ in range(grpo.mu if mbs else 0):
                stats = {}
                for mb, old, ref in zip(mbs, olds, refs, strict=True):
                    with backend.autocast():
                        logp, mask = logps(backend.model, mb)  # [b, C] x2
                    loss, s = grpo_loss(logp, old, ref, mb[2].to(logp.device), mask, grpo)
                    w = micro_batch_weight(mask, batch_tokens, batch_rows, grpo.loss_agg) * mb[3]
                    backend.backward(loss * w * world)  # ranks' gradients are averaged: x world sums them
                    share = float(mask.sum()) / max(batch_tokens, 1) * mb[3]
                    for k, v in s.items():
                        weight = w if k in ("loss/policy", "loss/kl", "loss/total") else share
                        stats[k] = max(stats.get(k, v), v) if k == "loss/ratio_max" else stats.get(k, 0.0) + weight * v
                t4 = time.perf_counter()
                stats |= backend.step()
                t_opt += time.perf_counter() - t4
            if stats:  # each rank's share of the batch's loss statistics -> the batch's
                keys = [k for k in stats if k.startswith("loss/") and k != "loss/ratio_max"]
                stats |= dict(zip(keys, dist.all_sum([stats[k] for k in keys]), strict=True))
                stats["loss/ratio_max"] = dist.all_max([stats["loss/ratio_max"]])[0]
            metrics |= stats
            metrics["train/updated"] = float(bool(mbs))
            t_update = time.perf_counter() - t2
            # --- sync weights to the rollout engine ----------------------------------------------------------------
            t3 = time.perf_counter()
            rollout.sync_weights(backend.unwrapped)
            t_sync = time.perf_counter() - t3
            # --- log ---------------------------------------------------------------------------------------------
            gen_tokens = sum(len(c.token_ids) for c in comps)  # this rank's; perf/ figures are rank 0's
            generated += int(dist.all_sum([gen_tokens])[0])
            final = step == grpo.steps or generated >= budget
            train_tokens = sum(len(p) for mb in mbs for p in mb[0]) + sum(lengths)  # prompts once per group
            train_tokens *= grpo.mu
            elapsed = time.perf_counter() - t0
            metrics |= {
                "train/step": step,
                "train/epoch": position / (len(train_rows) if grpo.mode == "single_turn" else len(instances)),
                "train/generated_tokens": generated,
                "train/samples": position * G,
                "perf/generate_s": t_gen, "perf/score_s": timing["score"], "perf/logprob_s": t_logp,
                "perf/update_s": t_update, "perf/optimizer_s": t_opt, "perf/sync_s": t_sync, "perf/step_s": elapsed,
                "perf/generate_tokens_per_s": gen_tokens / max(t_gen, 1e-9),
                "perf/train_tokens_per_s": train_tokens / max(t_update, 1e-9),
            }  # fmt: skip
            records.log(metrics)
            bar.update(1)
            say(
                f"step {step}/{grpo.steps} reward {metrics['reward/mean']:.3f} match {metrics['reward/main']:.3f} "
                f"valid {metrics['reward/valid_rate']:.2f} zero-var {metrics['rollout/zero_variance_frac']:.2f} "
                f"loss {metrics.get('loss/total', 0.0):+.4f} grad {metrics.get('train/grad_norm', 0.0):.3f} "
                f"| gen {t_gen:.1f}s update {t_update:.1f}s step {elapsed:.1f}s"
            )
            if grpo.mode == "single_turn" and grpo.sample_every and step % grpo.sample_every == 0:
                cols = ["task", "seed", "step", "expert_action", "completion", "reward"]
                show = [train_rows[idx[r // G]] for r in range(0, len(comps), G)][:4]
                table = [[ex["task"], ex["seed"], ex["step"], ex["expert_action"], comps[k * G].text, scores[k * G]]
                         for k, ex in enumerate(show)]  # fmt: skip
                records.samples(step, cols, table)
            # --- evaluate and checkpoint on schedule ---------------------------------------------------------------
            if final or (grpo.eval_every and step % grpo.eval_every == 0):
                dist.barrier()
                last = run_eval(backend.unwrapped, tokenizer, rollout, step) if main else {}
                dist.barrier()
            if final or (trainer_cfg.checkpoint_every and step % trainer_cfg.checkpoint_every == 0):

                def write_ckpt(tmp: Path, step=step, generated=generated, last=last) -> None:
                    backend.save(tmp)  # collective
                    if main:
                        tokenizer.save_pretrained(tmp)
                        loop = {"step": step, "position": position, "generated": generated, "rng": rng_state(),
                                "offsets": records.offsets(), "eval": last}  # fmt: skip
                        save_loop(tmp, loop)

                save_checkpoint(run_dir, step, write_ckpt, trainer_cfg.keep_checkpoints, main, dist.barrier)
                if world > 1 and getattr(trainer_cfg, "zero_stage", 0) < 3:  # ZeRO-3 ranks hold shards, not copies
                    total = sum(p.detach().double().sum().item() for p in backend.unwrapped.parameters())
                    hi, neg_lo = dist.all_max([total, -total])
                    if hi != -neg_lo:
                        raise RuntimeError(f"step {step}: the ranks' weights differ (checksums {-neg_lo} .. {hi})")
        bar.close()
        if not main:
            return {}
        if not last:  # resumed after the last step's checkpoint, or steps=0
            last = run_eval(backend.unwrapped, tokenizer, rollout, step)

        # --- report: SFT-only vs SFT+GRPO ------------------------------------------------------------------------
        baseline = stage["baseline"]
        results = {"sft_only": baseline, "final": last, "steps": step, "eval": asdict(eval_cfg)}
        clean = {k: {m: json_safe(v) for m, v in d.items()} if isinstance(d, dict) else d for k, d in results.items()}
        (run_dir / "results.json").write_text(json.dumps(clean, indent=1, allow_nan=False))
        logger.summary({f"eval/sft_only/{k.removeprefix('eval/')}": v for k, v in baseline.items()})
        logger.summary({f"eval/final/{k.removeprefix('eval/')}": v for k, v in last.items()})
        eval_tasks, n_seeds = eval_cfg.tasks or tasks, len(eval_cfg.seeds or test_seeds)
        print(f"\nmulti-turn evaluation, {', '.join(eval_tasks)}: {protocol_line(eval_cfg, len(eval_tasks) * n_seeds)}")
        print(f"{'':<10} " + " ".join(f"{k:>10}" for k in EVAL_KEYS))
        print(eval_line("SFT-only", {k.removeprefix("eval/"): v for k, v in baseline.items()}))
        print(eval_line("SFT+GRPO", {k.removeprefix("eval/"): v for k, v in last.items()}))
        print(f"run dir: {run_dir}")
        if cfg.cleanup:  # a sweep keeps each job's records and results, not its weights
            for heavy in [run_dir / "checkpoints", *sft_dir.glob("*.safetensors")]:
                shutil.rmtree(heavy, ignore_errors=True) if heavy.is_dir() else heavy.unlink(missing_ok=True)
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
    known = (ConfigError, ModelLoadError, TaskError, ProblemError, NoPlanError, FileNotFoundError, CheckpointError)
    run_job(train, cfg, known)


if __name__ == "__main__":
    main()
