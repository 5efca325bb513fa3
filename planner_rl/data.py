"""Single-turn training data: one example per state on each expert plan, the method's core transformation.

    python -m planner_rl.data                                   # all 10 tasks, train seeds 1000-1099, test 42..420
    python -m planner_rl.data env.tasks=[burger] env.train_seeds=0-9 out_dir=data/burger prompt.history=0

For every (task, seed) the expert's canonical optimal plan s_0 a_0 s_1 ... s_T is turned into T examples, one per
state s_t (the goal state gives none):

    prompt           chat messages: system (domain, action syntax, output format) + user (planner_rl.prompts)
    target           the assistant's answer for SFT: the label in the output format (parsing.format_target)
    expert_action    a_t, the canonical expert's next action (the paper's label)
    label            the SFT label: a_t, or with `label_noise` a seeded valid non-expert action
    optimal_actions  every valid action that begins some optimal plan from s_t (the `optimal_set` reward)
    valid_actions    every valid action at s_t
    history          a_0 .. a_{t-1}
    detour           "" (with `prompt.detours`: the random off-plan action taken at s_t; the example is then the state
                     it leads to, labelled by the expert replanned from there, and its step is t + 1)
    task, seed, step (= t), t_gt (= T, the instance's optimal length)

Train and test splits come from disjoint layout seeds (checked). Expert plans are cached on disk by a hash of the
instance and the planner's source, so building another prompt variant costs only rendering.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from planner_rl.env.families import ground_world, is_strips, make_world, planner_version, resolve_task, solve
from planner_rl.env.planner import FEW_COLLECTIONS, NoPlanError
from planner_rl.env.problem import ProblemError
from planner_rl.env.strips.task import PDDLTaskError
from planner_rl.env.tasks import TaskError, task_names
from planner_rl.env.world import World
from planner_rl.parsing import format_target, parse_completion, refusal
from planner_rl.progress import Progress
from planner_rl.prompts import PromptConfig, build_messages
from planner_rl.rewards import corrupt_label


# --- configuration values ----------------------------------------------------------------------------------------
def seed_list(spec: object, key: str = "seeds") -> list[int]:
    """Seeds from a config value: an int, a list of ints, or an inclusive range string "a-b" (e.g. "1000-1099")."""
    if isinstance(spec, bool):
        raise ValueError(f"{key}: expected an int, a list of ints or a range 'a-b', got {spec!r}")
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, str):
        lo, sep, hi = spec.partition("-")
        if sep and lo.strip().isdigit() and hi.strip().isdigit() and int(lo) <= int(hi):
            return list(range(int(lo), int(hi) + 1))
        raise ValueError(f"{key}: expected a range 'a-b' with a <= b, got {spec!r}")
    try:
        seeds = list(spec)  # a list or a ListConfig
    except TypeError:
        raise ValueError(f"{key}: expected an int, a list of ints or a range 'a-b', got {spec!r}") from None
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"{key}: expected a non-empty list of ints, got {spec!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{key}: repeated seeds in {spec!r}")
    return seeds


def task_list(spec: object) -> list[str]:
    """Task names from a config value: `all` (Robotouille's 10), a task of any family (planner_rl/env/families.py:
    a Robotouille name, number or `*.json` file, `blocks<n>`, a PDDL problem file or directory), or a list of them."""
    if spec == "all":
        return task_names()
    items = [spec] if isinstance(spec, (str, int)) else list(spec)
    return [resolve_task(t) for t in items]


def check_disjoint(train: list[int], test: list[int], key: str = "env.train_seeds") -> None:
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"{key} and env.test_seeds overlap on {overlap}: test layouts must be unseen")


# --- expert trajectories -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trajectory:
    """The expert's canonical plan on one instance and the optimal action set at each of its states."""

    task: str
    seed: int | None
    plan: tuple[str, ...]
    optimal: tuple[tuple[str, ...], ...]


def _instance_key(world: World) -> str:
    """A hash of everything the expert's answer depends on: the instance (initial state, goal) and the planner."""
    text = world.observation(world.initial_state) + repr(world.problem.goal) + planner_version(is_strips(world))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def expert_trajectory(
    task: str, seed: int | None, cache_dir: str | None = None, world: World | None = None
) -> Trajectory:
    """Solve one instance (or read its solution from the cache); `world`: its grounded world, if at hand."""
    world = make_world(task, seed) if world is None else world
    path = _cache_path(cache_dir, task, seed, world) if cache_dir else None
    if path is not None and path.exists():
        try:
            raw = json.loads(path.read_text())
            plan, optimal = tuple(raw["plan"]), tuple(tuple(o) for o in raw["optimal"])
            texts = [*plan, *(a for o in optimal for a in o)]
            if len(optimal) == len(plan) and all(isinstance(a, str) for a in texts):
                return Trajectory(task, seed, plan, optimal)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # a damaged entry is solved again and rewritten
    sol = solve(world)
    traj = Trajectory(task, seed, tuple(sol.texts), tuple(tuple(a.text for a in o) for o in sol.optimal_actions))
    if cache_dir:
        store_trajectory(traj, cache_dir, world)
    return traj


def _cache_path(cache_dir: str, task: str, seed: int | None, world: World) -> Path:
    stem = hashlib.sha256(task.encode()).hexdigest()[:12] if "/" in task else task  # a path: no slashes in names
    return Path(cache_dir) / f"{stem}-{seed}-{_instance_key(world)}.json"


def store_trajectory(traj: Trajectory, cache_dir: str, world: World) -> None:
    """Write a solved plan into the expert cache (atomically: readers see the old entry or the whole new one)."""
    path = _cache_path(cache_dir, traj.task, traj.seed, world)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"plan": traj.plan, "optimal": traj.optimal}))
    tmp.replace(path)


# --- examples ----------------------------------------------------------------------------------------------------
def trajectory_examples(
    traj: Trajectory,
    prompt: PromptConfig,
    label_noise: float = 0.0,
    label_noise_seed: int = 0,
    world: World | None = None,
) -> list[dict]:
    """One example per non-goal state of the trajectory, replaying the plan in the world to render each prompt;
    with `prompt.feedback_examples` > 0, a share of the states once more after a refused answer (`feedback_example`)."""
    world = make_world(traj.task, traj.seed) if world is None else world
    state, out = world.initial_state, []
    for step, action in enumerate(traj.plan):
        valid = world.valid_actions(state)
        example = {
            "prompt": build_messages(world, state, traj.plan[:step], prompt),
            "expert_action": action,
            "optimal_actions": list(traj.optimal[step]),
            "valid_actions": [a.text for a in valid],
            "history": list(traj.plan[:step]),
            "task": traj.task,
            "seed": traj.seed,
            "step": step,
            "t_gt": len(traj.plan),
            "detour": "",  # the off-plan action that led here (detour_example); "" on the expert's own states
        }
        label, corrupted = corrupt_label(example, label_noise, label_noise_seed) if label_noise else (action, False)
        example.update(label=label, label_corrupted=corrupted, target=format_target(label, prompt.output_format))
        out.append(example)
        draw = random.Random(f"{traj.task}-{traj.seed}-{step}").random() if prompt.feedback_examples else 1.0
        if draw < prompt.feedback_examples:  # the same states whatever else changes
            out += feedback_example(example, traj.plan, world, state, prompt)
        draw = random.Random(f"{traj.task}-{traj.seed}-{step}-d").random() if prompt.detours else 1.0
        if draw < prompt.detours:
            out += detour_example(example, world, state, valid, prompt)
        chosen = next((a for a in valid if a.text == action), None)
        if chosen is None:
            raise ValueError(
                f"{traj.task} seed {traj.seed}: cached expert action {action!r} is not valid at step {step}"
            )
        state = world.step(state, chosen)
    if not world.is_goal(state):
        raise ValueError(f"{traj.task} seed {traj.seed}: the expert plan does not reach the goal")
    return out


def feedback_example(example: dict, plan: list[str], world: World, state, prompt: PromptConfig) -> list[dict]:
    """The same state as the closed loop shows it after a refused answer: Robotouille's `Feedback:` section quoting
    an invalid action, the expert's action still the target. The quoted action is one of the plan's other actions,
    invalid here, or with probability `prompt.feedback_self_moves` a move to the robot's own station (`self_moves`).
    The expert never errs, so without these no training prompt has that section. [] when there is nothing to quote."""
    valid, key = example["valid_actions"], f"{example['task']}-{example['seed']}-{example['step']}"
    wrong = [a for a in dict.fromkeys(plan) if a not in valid]
    own = self_moves(valid) if prompt.feedback_self_moves else []
    if own and random.Random(f"{key}-s").random() < prompt.feedback_self_moves:
        wrong = own
    if not wrong:
        return []
    answer = format_target(random.Random(f"{key}-w").choice(wrong), prompt.output_format)
    feedback = refusal(answer, parse_completion(answer, prompt.output_format, valid))
    messages = build_messages(world, state, example["history"], prompt, feedback)
    return [example | {"prompt": messages}]


SELF_MOVE = re.compile(r"Move (\S+) from (\S+) to \S+")


def self_moves(valid: list[str]) -> list[str]:
    """Robotouille's moves of each robot to the station it stands at (`Move robot1 from table1 to table1`): never
    valid, and the answer a history-free closed loop most often has refused (docs/scaling.md). [] in other domains."""
    found = (SELF_MOVE.fullmatch(a) for a in valid)
    return list(dict.fromkeys(f"Move {m[1]} from {m[2]} to {m[2]}" for m in found if m))


def detour_example(example: dict, world: World, state, valid: list, prompt: PromptConfig) -> list[dict]:
    """The state one random off-plan action away from the plan (what the closed loop reaches after an error), its
    target the expert's action replanned from there: the expert's own states never show how to recover. The action
    is drawn among the valid ones that change the state; [] when there is none or the goal (or a dead end) follows."""
    others = [a for a in valid if a.text != example["expert_action"]]
    rng = random.Random(f"{example['task']}-{example['seed']}-{example['step']}-detour")
    rng.shuffle(others)
    for off in others:
        after = world.step(state, off)
        if after != state:
            break
    else:
        return []
    if world.is_goal(after):
        return []
    try:
        sol = solve(world, after)
    except NoPlanError:
        return []
    action, history = sol.texts[0], [*example["history"], off.text]
    return [example | {
        "prompt": build_messages(world, after, history, prompt),
        "expert_action": action,
        "label": action,
        "label_corrupted": False,
        "target": format_target(action, prompt.output_format),
        "optimal_actions": [a.text for a in sol.optimal_actions[0]],
        "valid_actions": [a.text for a in world.valid_actions(after)],
        "history": history,
        "step": example["step"] + 1,
        "detour": off.text,
    }]  # fmt: skip


def is_feedback_example(example: dict) -> bool:
    return "\n\nFeedback: " in example["prompt"][-1]["content"]


def ambiguity(examples: list[dict]) -> dict:
    """How many distinct prompts map to more than one expert action (the method needs a function prompt -> action)."""
    actions: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        key = ex["prompt"] if isinstance(ex["prompt"], str) else json.dumps(ex["prompt"])
        actions[key].add(ex["expert_action"])
    bad = sum(len(a) > 1 for a in actions.values())
    return {"prompts": len(actions), "ambiguous": bad, "rate": bad / max(1, len(actions))}


def _instance_job(job: tuple) -> list[dict]:
    task, seed, prompt, opts = job
    # A world of its own, freed with the job: `make_world`'s cache would keep the last 64 (and their solves'
    # tables) alive, and the collector's full passes walk whatever is alive (a quarter of a solve's time).
    world = ground_world(task, seed)
    traj = expert_trajectory(task, seed, opts.get("expert_cache"), world)
    noise = (opts.get("label_noise", 0.0), opts.get("label_noise_seed", 0))
    try:
        return trajectory_examples(traj, prompt, *noise, world)
    except ValueError:  # a cached plan that does not replay (a damaged or hand-edited entry): solve again
        if not opts.get("expert_cache"):
            raise
        traj = expert_trajectory(task, seed, None, world)
        examples = trajectory_examples(traj, prompt, *noise, world)
        store_trajectory(traj, opts["expert_cache"], world)
        return examples


def _fewer_collections() -> None:
    """A build's process keeps what it renders (and each solve its tables) alive for a while, millions of small
    objects and no reference cycles: the collector's passes at the default gen-0 threshold (700) would walk them
    again and again (`planner.fewer_collections` does the same for each solve alone)."""
    gc.set_threshold(FEW_COLLECTIONS, 20, 10)


def build_examples(tasks: list[str], seeds: list[int], prompt: PromptConfig, opts: dict) -> list[dict]:
    """Examples of every (task, seed), in that order; each instance is solved (or read from the cache) and rendered
    in one job, in `opts["num_proc"]` processes."""
    return build_splits(tasks, {"all": seeds}, prompt, opts)["all"]


def build_splits(tasks: list[str], splits: dict[str, list[int] | dict[str, list[int]]], prompt: PromptConfig,
                 opts: dict) -> dict:  # fmt: skip
    """{split: examples of every (task, seed) of its seeds, in that order}; a split's seeds are a list (the same for
    every task) or {task: its seeds}. All splits' instances are built in one pool of `opts["num_proc"]` processes."""
    per_split = [[(t, s) for t in tasks for s in (seeds[t] if isinstance(seeds, dict) else seeds)]
                 for seeds in splits.values()]  # fmt: skip
    jobs = [(t, s, prompt, opts) for pairs in per_split for t, s in pairs]
    chunks = _map(_instance_job, jobs, opts.get("num_proc", 1), "data", tasks)
    out, at = {}, 0
    for name, pairs in zip(splits, per_split, strict=True):
        out[name] = [ex for chunk in chunks[at : at + len(pairs)] for ex in chunk]
        at += len(pairs)
    return out


def _map(fn, jobs: list[tuple], num_proc: int, name: str, tasks: list[str]) -> list:
    """[fn(job) for job in jobs] with a progress bar, in `num_proc` processes; a job's first item is its task, and
    the jobs of the later `tasks` (the longest solves) are handed out first so that no process ends on a long one."""
    bar = Progress(name, len(jobs), unit="instance")
    if num_proc <= 1 or len(jobs) < 4:
        previous = gc.get_threshold()
        _fewer_collections()
        try:
            results = []
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
        finally:
            gc.set_threshold(*previous)
    else:
        rank = {t: n for n, t in enumerate(tasks)}
        order = sorted(range(len(jobs)), key=lambda n: -rank[jobs[n][0]])
        results = [None] * len(jobs)
        with ProcessPoolExecutor(num_proc, initializer=_fewer_collections) as pool:
            # small chunks: solve times vary 1000x
            for n, result in zip(order, pool.map(fn, [jobs[n] for n in order], chunksize=2), strict=True):
                results[n] = result
                bar.update(1)
    bar.close()
    return results


def build_opts(cfg: DictConfig) -> dict:
    """build_splits' options from a config with the keys of conf/data.yaml."""
    return {
        "expert_cache": cfg.get("expert_cache"),
        "num_proc": cfg.get("num_proc", 0) or os.cpu_count() or 1,
        "label_noise": cfg.get("label_noise", 0.0),
        "label_noise_seed": cfg.get("label_noise_seed", 0),
    }


def expert_states(examples: list[dict]) -> list[dict]:
    """The examples of the expert's own states: no feedback prompts, no detours (what a test split measures)."""
    return [ex for ex in examples if not is_feedback_example(ex) and not ex["detour"]]


def build_dataset(cfg: DictConfig) -> tuple[object, dict]:
    """The DatasetDict {train, test} for a config with `env`, `prompt` and the keys of conf/data.yaml, and a report
    (examples per split, ambiguity, seconds); with `env.grpo_seeds` set also a `grpo` split, the prompts GRPO draws
    from (layouts SFT never saw, where the SFT model still errs)."""
    from datasets import Dataset, DatasetDict

    tasks = task_list(cfg.env.tasks)
    train_seeds = seed_list(cfg.env.train_seeds, "env.train_seeds")
    test_seeds = seed_list(cfg.env.test_seeds, "env.test_seeds")
    check_disjoint(train_seeds, test_seeds)
    seeds: dict = {"train": train_seeds, "test": test_seeds}
    if cfg.env.get("grpo_seeds") is not None:
        seeds["grpo"] = seed_list(cfg.env.grpo_seeds, "env.grpo_seeds")
        check_disjoint(seeds["grpo"], test_seeds, "env.grpo_seeds")
    t0, opts = time.perf_counter(), build_opts(cfg)
    enrich = enrich_layouts(cfg.env, tasks, train_seeds, test_seeds, opts)
    if enrich is not None:
        seeds["enrich"] = enrich
    splits = build_splits(tasks, seeds, PromptConfig(**cfg.prompt), opts)
    splits["train"] += splits.pop("enrich", [])
    splits["test"] = expert_states(splits["test"])
    seconds = time.perf_counter() - t0
    report = {
        "tasks": len(tasks),
        "train_seeds": len(train_seeds),
        "test_seeds": len(test_seeds),
        "examples": {k: len(v) for k, v in splits.items()},
        "ambiguity": ambiguity(splits["train"] + splits["test"]),
        "seconds": round(seconds, 2),
    }
    if enrich is not None:
        report["enrich"] = {"candidates": len(seed_list(cfg.env.enrich_seeds)), "layouts": enrich}
    data = DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()})
    return data, report


def enrich_layouts(
    env: DictConfig, tasks: list[str], train: list[int], test: list[int], opts: dict
) -> dict[str, list[int]] | None:
    """{task: the layouts of `env.enrich_seeds` whose expert plan has an action starting with `env.enrich_action`},
    extra SFT layouts of a kind the train layouts rarely show (cheeseburger: `Unstack`, the 8% of layouts where an
    item must be parked and taken back, docs/scaling.md); None when `env.enrich_seeds` is null."""
    spec, prefix = env.get("enrich_seeds"), env.get("enrich_action")
    if spec is None and prefix is None:
        return None
    if spec is None or not isinstance(prefix, str) or not prefix.strip():
        raise ValueError("env.enrich_seeds and env.enrich_action go together: candidate layouts and the text an "
                         f"action of their expert plan must start with (got {spec!r} and {prefix!r})")  # fmt: skip
    candidates = seed_list(spec, "env.enrich_seeds")
    check_disjoint(candidates, test, "env.enrich_seeds")
    twice = sorted(set(candidates) & set(train))
    if twice:
        raise ValueError(f"env.enrich_seeds and env.train_seeds overlap on {twice}: a layout would be trained on twice")
    jobs = [(t, s, prefix, opts.get("expert_cache")) for t in tasks for s in candidates]
    matched = _map(_plan_matches, jobs, opts.get("num_proc", 1), "enrich", tasks)
    found = {t: [s for (task, s, *_), hit in zip(jobs, matched, strict=True) if hit and task == t] for t in tasks}
    if not any(found.values()):
        raise ValueError(f"env.enrich_action: no action of the expert plans of env.enrich_seeds ({spec}) on {tasks} "
                         f"starts with {prefix!r}")  # fmt: skip
    return found


def _plan_matches(job: tuple) -> bool:
    task, seed, prefix, cache = job
    return any(a.startswith(prefix) for a in expert_trajectory(task, seed, cache, ground_world(task, seed)).plan)


def test_examples(cfg: DictConfig, tasks: list[str], seeds: list[int]) -> list[dict]:
    """The expert-state prompts of `tasks` on `seeds`, rendered as the training prompts are (for the single-step
    accuracy on evaluation tasks the model was not trained on: the generalization matrix)."""
    return expert_states(build_splits(tasks, {"test": seeds}, PromptConfig(**cfg.prompt), build_opts(cfg))["test"])


@hydra.main(config_path="../conf", config_name="data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        data, report = build_dataset(cfg)
    except (TaskError, ProblemError, PDDLTaskError, NoPlanError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    data.save_to_disk(cfg.out_dir)
    amb = report["ambiguity"]
    print(
        f"{report['tasks']} tasks x ({report['train_seeds']} train + {report['test_seeds']} test) seeds -> "
        f"{report['examples']['train']} train / {report['examples']['test']} test examples in "
        f"{report['seconds']:.1f} s; ambiguity {amb['ambiguous']}/{amb['prompts']} prompts ({amb['rate']:.2%}); "
        f"saved to {cfg.out_dir}"
    )


if __name__ == "__main__":
    main()
