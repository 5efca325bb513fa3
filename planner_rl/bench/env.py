"""Benchmark of the cooking environment and the expert (`make bench-env`); prints figures, asserts nothing.

    python -m planner_rl.bench.env [--tasks 0 1 ...] [--seeds 5] [--first-seed 0] [--steps 20000] [--json PATH]

1. Environment throughput on random walks over valid actions: raw transitions (`World.step`) and full text steps
   (`CookingEnv.step`: parse the action string, step, render the observation), in steps per second.
2. Expert planning per task, on the file's own layout and on `--seeds` seeded layouts (first-seed .. first-seed +
   N - 1): the plan alone (optimal cost and canonical plan: `solve(..., optimal_sets=False)`, what an agent's
   expert needs) and the full solve (also the optimal action set at every plan state, what the single-turn data
   needs): seconds, and for the full solve states expanded (successors generated) and generated (distinct symmetry
   classes seen); one summary line per task (median and worst over the seeds), and a line per layout with
   `--verbose`. The totals of both close it.
With `--json PATH` every figure (and each layout's row) is also written there as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

from planner_rl.env.cooking import CookingEnv, ground_world, make_world
from planner_rl.env.planner import solve
from planner_rl.env.tasks import synchronous_tasks


def env_throughput(task: str, steps: int, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    world = make_world(task)
    s, t0 = world.initial_state, time.perf_counter()
    for _ in range(steps):
        valid = world.valid_actions(s)
        s = world.step(s, rng.choice(valid))
    raw = steps / (time.perf_counter() - t0)
    env = CookingEnv(task)
    env.reset()
    t0 = time.perf_counter()
    for _ in range(steps // 10):
        _, _, done, _ = env.step(rng.choice(env.valid_actions))
        if done:
            env.reset()
    text = (steps // 10) / (time.perf_counter() - t0)
    return raw, text


def _spread(values: list) -> dict:
    return {"median": statistics.median(values), "max": max(values)} if values else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", type=int, default=list(range(10)))
    parser.add_argument("--seeds", type=int, default=3, help="seeded layouts per task")
    parser.add_argument("--first-seed", type=int, default=0, help="seeded layouts: first-seed, first-seed + 1, ...")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--verbose", action="store_true", help="a line per layout")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    env_task = "lettuce_tomato_cheeseburger"
    raw, text = env_throughput(env_task, args.steps)
    print(f"env: World.step {raw:,.0f} steps/s; CookingEnv.step (text in, observation out) {text:,.0f} steps/s")
    head = (
        f"{'task':<58} {'file: steps':>11} {'s':>5} {'expanded':>8} | seeds: {'steps':>9} {'plan med/max s':>14}"
        f" {'solve med/max s':>15} {'expanded med/max':>16} {'generated med/max':>17}"
    )
    print(head)
    tasks = {t.number: t for t in synchronous_tasks()}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "env": {"task": env_task, "steps": args.steps, "world_step_per_s": raw, "cooking_env_step_per_s": text},
        "seeds": seeds,
        "tasks": [],
    }
    total = total_plan = 0.0
    for n in args.tasks:
        rows = []
        for seed in [None, *seeds]:
            # each on a world of its own: a world's caches (heuristic values, symmetry keys) would serve the second
            world = ground_world(tasks[n].name, seed)
            t0 = time.perf_counter()
            plan = solve(world, optimal_sets=False)
            plan_s = time.perf_counter() - t0
            world = ground_world(tasks[n].name, seed)
            t0 = time.perf_counter()
            sol = solve(world)
            dt = time.perf_counter() - t0
            if plan.plan != sol.plan:
                raise RuntimeError(f"task {n} seed {seed}: the plan alone differs from the full solve's plan")
            total, total_plan = total + dt, total_plan + plan_s
            row = {"seed": seed, "cost": sol.cost, "plan_s": plan_s, "s": dt}
            rows.append(row | {"expanded": sol.expanded, "generated": sol.generated})
            if args.verbose:
                label = "file" if seed is None else f"seed {seed}"
                print(
                    f"  {label:>8}: {sol.cost} steps, plan {plan_s:.3f} s, solve {dt:.3f} s, {sol.expanded} expanded,"
                    f" {sol.generated} generated"
                )
        file_row, seeded = rows[0], rows[1:]
        entry = {"number": n, "name": tasks[n].name, "file": file_row, "layouts": seeded}
        line = f"{n} {tasks[n].name:<56} {file_row['cost']:>11} {file_row['s']:>5.2f} {file_row['expanded']:>8} |"
        if seeded:
            costs = [r["cost"] for r in seeded]
            entry["cost"] = {"min": min(costs), "max": max(costs)}
            for name in ("plan_s", "s", "expanded", "generated"):
                entry[name] = _spread([r[name] for r in seeded])
            span = f"{min(costs)}-{max(costs)}"
            plan_col = f"{entry['plan_s']['median']:.3f}/{entry['plan_s']['max']:.3f}"
            solve_col = f"{entry['s']['median']:.3f}/{entry['s']['max']:.3f}"
            exp = f"{entry['expanded']['median']:.0f}/{entry['expanded']['max']}"
            gen = f"{entry['generated']['median']:.0f}/{entry['generated']['max']}"
            line += f" {'':>6} {span:>9} {plan_col:>14} {solve_col:>15} {exp:>16} {gen:>17}"
        print(line)
        report["tasks"].append(entry)
    report["total_solve_s"], report["total_plan_s"] = total, total_plan
    layouts = sum(1 + len(seeds) for _ in args.tasks)
    print(f"all {layouts} layouts: plans alone {total_plan:.2f} s, full solves {total:.2f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
