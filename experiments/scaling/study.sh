#!/usr/bin/env bash
# The learning study of docs/scaling.md: SFT of the embedded tiny model, one lever at a time, each run on one thread
# (two runs side by side on the 2 cores). Results: outputs/scaling/<run>/; table and plot:
#   python experiments/scaling/summarize.py outputs/scaling
set -euo pipefail
cd "$(dirname "$0")"
run=./sft_run.sh
cb="env.tasks=[cheeseburger] prompt.system=brief sft.lr=3e-3 num_proc=1"
dcb="env.tasks=[double_cheeseburger] prompt.system=brief sft.lr=3e-3 num_proc=1"
# prompt: Robotouille's text vs the compact observation; the valid-action list
$run cb_text_100x4       $cb env.train_seeds=1000-1099 sft.epochs=4 &
$run cb_c_100x4          $cb prompt.observation=compact env.train_seeds=1000-1099 sft.epochs=4
wait
$run cb_c_nva_300x6      $cb prompt.observation=compact prompt.valid_actions=false env.train_seeds=1000-1299 sft.epochs=6 &
# number of training layouts, epochs
$run cb_c_1000x2         $cb prompt.observation=compact env.train_seeds=1000-1999 sft.epochs=2
wait
$run cb_c_1000x4         $cb prompt.observation=compact env.train_seeds=1000-1999 sft.epochs=4 &
$run dcb_c_1000x2        $dcb prompt.observation=compact env.train_seeds=1000-1999 sft.epochs=2
wait
