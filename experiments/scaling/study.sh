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
# the action history: 5 previous actions (the default) vs none (the prompt is Markov without it: prompt.progress)
$run cb_c_h0_1000x2      $cb prompt.observation=compact prompt.history=0 env.train_seeds=1000-1999 sft.epochs=2 &
$run cb_c_h0_2000x2      $cb prompt.observation=compact prompt.history=0 env.train_seeds=1000-2999 sft.epochs=2
wait
# GRPO from cb_c_h0_2000x2's SFT model: on its own SFT layouts (D) and on 1,000 fresh layouts (E)
h0="env.tasks=[cheeseburger] prompt.system=brief prompt.observation=compact prompt.history=0 num_proc=1 sft.epochs=0"
sft=$PWD/../../outputs/scaling/cb_c_h0_2000x2/sft/final
grpo="grpo.steps=80 grpo.prompts_per_step=16 grpo.eval_every=20"
cd ../..
OMP_NUM_THREADS=1 .venv/bin/python -m planner_rl.train $h0 $grpo model.path=$sft env.train_seeds=1000-2999 \
  trainer.lr=1e-4 rollout.temperature=0.7 hydra.run.dir=outputs/scaling/grpo_D > outputs/scaling/grpo_D.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python -m planner_rl.train $h0 $grpo model.path=$sft env.train_seeds=5000-5999 \
  grpo.zero_variance=resample trainer.lr=3e-4 rollout.temperature=1.0 hydra.run.dir=outputs/scaling/grpo_E \
  > outputs/scaling/grpo_E.log 2>&1
wait
# session 4: model width / depth at 1,000 layouts (compare cb_c_h0_1000x2), 4,000 layouts, all ten tasks at once
h0sft="$cb prompt.observation=compact prompt.history=0 sft.epochs=2"
cd experiments/scaling
$run cb_c_h0_1000x2_L8   $h0sft env.train_seeds=1000-1999 model.num_hidden_layers=8 &
$run cb_c_h0_1000x2_w192 $h0sft env.train_seeds=1000-1999 model.hidden_size=192 model.intermediate_size=576 \
  model.num_attention_heads=6 model.num_key_value_heads=2
wait
$run cb_c_h0_4000x2      $h0sft env.train_seeds=1000-4999 &
$run all_c_h0_200x2      env.tasks=all prompt.system=brief sft.lr=3e-3 num_proc=1 prompt.observation=compact \
  prompt.history=0 sft.epochs=2 env.train_seeds=1000-1199
wait
# GRPO from cb_c_h0_4000x2's SFT model on 1,000 fresh layouts (grpo_E's settings)
cd ../..
OMP_NUM_THREADS=1 .venv/bin/python -m planner_rl.train $h0 $grpo model.path=outputs/scaling/cb_c_h0_4000x2/sft/final \
  env.train_seeds=6000-6999 grpo.zero_variance=resample trainer.lr=3e-4 rollout.temperature=1.0 \
  hydra.run.dir=outputs/scaling/grpo_G > outputs/scaling/grpo_G.log 2>&1
# the SFT learning rate at 1,000 layouts (compare cb_c_h0_1000x2, 3e-3)
cd experiments/scaling
$run cb_c_h0_1000x2_lr1e-3 env.tasks=[cheeseburger] prompt.system=brief num_proc=1 prompt.observation=compact \
  prompt.history=0 env.train_seeds=1000-1999 sft.epochs=2 sft.lr=1e-3 &
$run cb_c_h0_1000x2_lr6e-3 env.tasks=[cheeseburger] prompt.system=brief num_proc=1 prompt.observation=compact \
  prompt.history=0 env.train_seeds=1000-1999 sft.epochs=2 sft.lr=6e-3
wait
# session 5: detours (prompt.detours), one more epoch on 1,000 fresh layouts from cb_c_h0_4000x2's SFT model
ft="env.tasks=[cheeseburger] prompt.system=brief num_proc=1 prompt.observation=compact prompt.history=0 \
  model.path=outputs/scaling/cb_c_h0_4000x2/sft/final env.train_seeds=8000-8999 sft.epochs=1 sft.lr=1e-3"
$run ft4000_det50 $ft prompt.detours=0.5 &
$run ft4000_plain $ft
wait
# session 6: the recipe end to end (conf/experiment/cheeseburger.yaml), 3 seeds side by side, one thread each
cd ../..
for s in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/python -m planner_rl.train +experiment=cheeseburger seed=$s \
    hydra.run.dir=outputs/scaling/cb_seed$s > outputs/scaling/cb_seed$s.log 2>&1 &
done
wait
# a second GRPO from each seed's SFT stage (reused from the run dir): 160 steps at lr 1e-3
for s in 0 1 2; do
  mkdir -p outputs/scaling/cb_g2_seed$s
  cp -r outputs/scaling/cb_seed$s/{sft_model,metrics.jsonl,samples.jsonl} outputs/scaling/cb_g2_seed$s/
  OMP_NUM_THREADS=1 .venv/bin/python -m planner_rl.train +experiment=cheeseburger seed=$s trainer.lr=1e-3 \
    grpo.steps=160 grpo.eval_every=80 hydra.run.dir=outputs/scaling/cb_g2_seed$s > outputs/scaling/cb_g2_seed$s.log 2>&1 &
done
wait
# session 7: the recipe with 4,000 layouts (now conf/experiment/cheeseburger.yaml's default), 3 seeds side by side
for s in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/python -m planner_rl.train +experiment=cheeseburger seed=$s env.train_seeds=1000-4999 \
    hydra.run.dir=outputs/scaling/cb4k_seed$s > outputs/scaling/cb4k_seed$s.log 2>&1 &
done
wait
