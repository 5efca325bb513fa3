"""Benchmark of the cooking environment and the expert (`make bench-env`); prints figures, asserts nothing.

    python -m planner_rl.bench_env [--tasks 0 1 ...] [--seeds 5] [--steps 20000]

1. Environment throughput on random walks over valid actions: raw transitions (`World.step`) and full text steps
   (`CookingEnv.step`: parse the action string, step, render the observation), in steps per second.
2. Expert planning per task: the full solve (optimal cost, canonical plan, optimal action set at every plan state)
   on the file's own layout and on `--seeds` seeded layouts (0..N-1): seconds, states expanded and generated; one
   summary line per task (median and worst over the seeds), and a line per layout with `--verbose`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from planner_rl.env.cooking import CookingEnv, make_world
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", type=int, default=list(range(10)))
    parser.add_argument("--seeds", type=int, default=3, help="seeded layouts per task (seeds 0..N-1)")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--verbose", action="store_true", help="a line per layout")
    args = parser.parse_args(argv)

    raw, text = env_throughput("lettuce_tomato_cheeseburger", args.steps)
    print(f"env: World.step {raw:,.0f} steps/s; CookingEnv.step (text in, observation out) {text:,.0f} steps/s")
    head = (
        f"{'task':<58} {'file: steps':>11} {'s':>5} {'expanded':>8} | seeds: {'steps':>9} {'median s':>8} {'max s':>6}"
    )
    print(head)
    tasks = {t.number: t for t in synchronous_tasks()}
    for n in args.tasks:
        rows = []
        for seed in [None, *range(args.seeds)]:
            world = make_world(tasks[n].name, seed)
            t0 = time.perf_counter()
            sol = solve(world)
            rows.append((seed, sol.cost, time.perf_counter() - t0, sol.expanded, sol.generated))
            if args.verbose:
                label = "file" if seed is None else f"seed {seed}"
                print(f"  {label:>8}: {sol.cost} steps, {rows[-1][2]:.3f} s, {sol.expanded} expanded, "
                      f"{sol.generated} generated")  # fmt: skip
        _, cost, dt, expanded, _ = rows[0]
        seeded = rows[1:]
        line = f"{n} {tasks[n].name:<56} {cost:>11} {dt:>5.2f} {expanded:>8} |"
        if seeded:
            costs = [r[1] for r in seeded]
            times = [r[2] for r in seeded]
            span = f"{min(costs)}-{max(costs)}"
            line += f" {'':>6} {span:>9} {statistics.median(times):>8.2f} {max(times):>6.2f}"
        print(line)


if __name__ == "__main__":
    main()
