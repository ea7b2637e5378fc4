#!/usr/bin/env bash
# The prepared GPU run of benchmarks/memory_speed.py (issue 7, item 7), for a lent H100/H200.
# It needs only the repository and the image's python3 (torch + triton); no Ray, no data.
# Expected: ~4-6 min on the card (hard stop at 470 s; the JSON is rewritten after each variant,
# so a stopped run still returns what it measured). From a session with a device, one call:
#
#   run(command="bash benchmarks/gpu_memory_speed.sh", timeout_s=540)
#
# and commit $OUT's memory_speed_cuda.json as benchmarks/memory_speed_<card>.json (e.g. _h200),
# then set DEFAULT_ACCEL["cuda"] in src/priorlab/methods/memory/accel.py to its
# "default_candidate" (docs/memory.md, "Execution options").
# Smoke test of this script on a CPU: DEVICE=cpu PATH=.venv/bin:$PATH bash benchmarks/gpu_memory_speed.sh --size tiny
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/memory_speed_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu \
  --format=csv > "$OUT/nvidia_smi.csv" 2>&1 || true
PYTHONUNBUFFERED=1 PYTHONPATH=src timeout 470 python3 benchmarks/memory_speed.py --device "${DEVICE:-cuda}" \
  --budget-s 330 --out "$OUT/memory_speed_cuda.json" "$@" 2>&1 | tee "$OUT/memory_speed_cuda.log"
