"""Where a trained model's single-step errors are: greedy answers on the expert-plan states of a task's evaluation
layouts, by the expert action's verb and by plan position, and what it answers where the expert moves.

    python experiments/scaling/errors.py <task> <model dir> [hydra overrides of the prompt ...]
    python experiments/scaling/errors.py cheeseburger outputs/scaling/cb_c_h0_2000x2/sft/final \
        prompt.system=brief prompt.observation=compact prompt.history=0
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

from hydra import compose, initialize_config_dir

from planner_rl.config import register_configs, typed
from planner_rl.data import expert_trajectory, seed_list, trajectory_examples
from planner_rl.model import load_model_and_tokenizer
from planner_rl.parsing import parse_completion
from planner_rl.rollout.hf import encode_prompt, generate

CONF = Path(__file__).resolve().parents[2] / "conf"


def rates(rows: list[tuple[bool, bool]]) -> str:
    n = len(rows)
    return f"n {n:3d}  accuracy {sum(a for a, _ in rows) / n:.3f}  valid {sum(v for _, v in rows) / n:.3f}"


def main(task: str, model_dir: str, overrides: list[str]) -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=overrides)
    prompt = typed(cfg, "prompt")
    model, tokenizer = load_model_and_tokenizer({"path": model_dir})
    model.eval()
    examples = [ex for seed in seed_list(cfg.env.test_seeds) for ex in
                trajectory_examples(expert_trajectory(task, seed), prompt)]  # fmt: skip
    outs = generate(model, tokenizer, [encode_prompt(tokenizer, ex["prompt"]) for ex in examples], max_new_tokens=24)
    by_verb, by_step, moves = defaultdict(list), defaultdict(list), Counter()
    for ex, out in zip(examples, outs, strict=True):
        parsed = parse_completion(out.text, prompt.output_format, ex["valid_actions"])
        hit, verb = parsed.action == ex["expert_action"], ex["expert_action"].split()[0]
        by_verb[verb].append((hit, parsed.valid))
        by_step[min(ex["step"] // 3, 4)].append((hit, parsed.valid))
        if verb == "Move" and not hit:
            answer = parsed.action or ""
            optimal = " (one of the optimal actions)" if answer in ex["optimal_actions"] else ""
            moves["a move elsewhere" + optimal if answer.startswith("Move") else
                  f"another verb: {answer.split()[0] if answer else 'invalid'}"] += 1  # fmt: skip
    print(f"{task}, {len(examples)} states, {model_dir}")
    for verb, rows in sorted(by_verb.items()):
        print(f"  expert {verb:8s} {rates(rows)}")
    for k, rows in sorted(by_step.items()):
        print(f"  steps {3 * k:2d}-{'' if k == 4 else 3 * k + 2:2}  {rates(rows)}")
    print("  where the expert moves, the wrong answers:", dict(moves))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
