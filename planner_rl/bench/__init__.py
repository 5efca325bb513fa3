"""Benchmarks, beside the product modules rather than among them; each one is an entry point:

    python -m planner_rl.bench.env     env steps/s and expert planning time per task
    python -m planner_rl.bench.eval    lockstep evaluation vs one episode at a time
    python -m planner_rl.bench.grpo    a group's prompt shared vs repeated, in sampling and in the update
    python -m planner_rl.bench.step    the GRPO step by phase vs its floor, memory, scaling in G and prompt length
    python -m planner_rl.bench.trl     a GRPO step, planner_rl vs TRL's GRPOTrainer (needs `make bench`'s extra)

`make bench` runs them all (docs/performance.md holds the figures).
"""
