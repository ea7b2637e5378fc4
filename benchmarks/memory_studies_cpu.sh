#!/usr/bin/env bash
# The seeded CPU-budget checks of the Ch. 2 studies of issue 12 (continual learning, label delay,
# segmentation injection, effective depth), one after another on the local Ray, each through the
# CLI as a user runs it; then each experiment's results, history, tables and plot are copied
# beside this script as memory_<study>_cpu_*. Budgets are cut far below each study's own laptop
# BUDGET so that all four fit one 2-core session shared with other jobs; benchmarks/RESULTS.md
# says what they settle (mostly: nothing about the thesis' ordering).
#   bash benchmarks/memory_studies_cpu.sh [STAGE ...]     (all stages: about 2 h on a loaded 2-core machine)
# Stages: continual delay segmentation segmentation_finetune depth (depth6).
# As run on 2026-12-06: `continual` was started with --samples 3 and stopped (SIGINT) after its
# first 6 trials, which are exactly the trials of --samples 2 (seeds 0 and 1 of each model).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/offline-env.sh
RUNS=${RUNS:-runs/cpu-checks}
P=.venv/bin/priorlab
run() {  # name study args...
  local name=$1; shift
  echo "=== $(date -u +%FT%TZ) $name: priorlab sweep $*"
  $P sweep "$@" --name "$name" --runs-dir "$RUNS" --stream local
  echo "=== $(date -u +%FT%TZ) $name: rc $?"
  collect "$name"
}
collect() {  # copy what a person opens next to this script
  local name=$1
  $P report "$RUNS/$name" > "benchmarks/${name}_tables.md" 2>&1
  for f in results history; do cp "$RUNS/$name/$f.parquet" "benchmarks/${name}_$f.parquet" 2>/dev/null; done
  png=$(ls "$RUNS/$name"/*.png 2>/dev/null | head -1); [ -n "$png" ] && cp "$png" "benchmarks/${name}_curves.png"
}
stages=${*:-continual delay segmentation segmentation_finetune depth}
for s in $stages; do case $s in
  continual) run memory_continual_cpu memory-continual --samples 2 max_iters=1000 ;;
  delay) run memory_delay_cpu memory-delay --samples 2 max_iters=600 eval_every=300 ;;
  segmentation) run memory_segmentation_cpu memory-segmentation-injection --samples 2 max_iters=200 \
      curriculum_steps=100 eval_every=200 eval_episodes=40 ;;
  segmentation_finetune) run memory_segmentation_finetune_cpu memory-segmentation-injection \
      model=finetune_cnn --samples 2 max_iters=200 curriculum_steps=100 eval_every=200 eval_episodes=40 ;;
  # Table A.1's T = 30 column only (k = 6): depth 4 x 30 = 120 (thesis: efficient), depth 6 x 30
  # = 180 (beyond the thesis' limit), with and without the skip.
  # (As run on 2026-12-06 the study's budget pinned conv_layers=2, so `depth` ran depth 4 only;
  # `depth6` ran the depth-6 half afterwards. Since the fix, `depth` alone runs both.)
  depth) run memory_depth_cpu memory-depth subtasks=6 --samples 2 max_iters=300 eval_every=300 ;;
  depth6) run memory_depth6_cpu memory-depth subtasks=6 conv_layers=4 --samples 2 max_iters=300 eval_every=300 ;;
  collect-*) collect "${s#collect-}" ;;
  *) echo "unknown stage $s"; exit 2 ;;
esac; done
echo "=== $(date -u +%FT%TZ) all done"
