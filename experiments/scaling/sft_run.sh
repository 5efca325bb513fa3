#!/usr/bin/env bash
# One run of the learning study: SFT of the embedded tiny model with the given overrides, one thread, timed.
#   experiments/scaling/sft_run.sh <name> [hydra overrides ...]   -> outputs/scaling/<name>/{metrics.jsonl,time.txt}
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; shift
out=${SCALING_OUT:-outputs/scaling}/$name
mkdir -p "$out"
start=$(date +%s.%N)
OMP_NUM_THREADS=${THREADS:-1} .venv/bin/python -m planner_rl.sft "$@" hydra.run.dir="$out" > "$out/log.txt" 2>&1
echo "$(date +%s.%N) - $start" | bc > "$out/time.txt"
