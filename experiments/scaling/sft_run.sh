#!/usr/bin/env bash
# One run of the learning study: SFT of the embedded tiny model with the given overrides, one thread, timed; then the
# closed-loop evaluation of the SFT model (free generation and restricted to the valid actions) on the same prompts.
#   experiments/scaling/sft_run.sh <name> [hydra overrides ...]
#   -> outputs/scaling/<name>/{metrics.jsonl,time.txt,log.txt,eval/results.json,eval.txt}
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; shift
out=${SCALING_OUT:-outputs/scaling}/$name
mkdir -p "$out"
start=$(date +%s.%N)
OMP_NUM_THREADS=${THREADS:-1} .venv/bin/python -m planner_rl.sft "$@" hydra.run.dir="$out" > "$out/log.txt" 2>&1
echo "$(date +%s.%N) - $start" | bc > "$out/time.txt"
# the evaluator takes the env's tasks and the prompt options; the SFT and data keys are not its own
eval_args=()
for a in "$@"; do [[ $a == env.tasks=* || $a == prompt.* ]] && eval_args+=("$a"); done
OMP_NUM_THREADS=${THREADS:-1} .venv/bin/python -m planner_rl.evaluate model.path="$out/sft/final" "${eval_args[@]}" \
  eval.also_valid_actions=true hydra.run.dir="$out/eval" > "$out/eval.txt" 2>&1
