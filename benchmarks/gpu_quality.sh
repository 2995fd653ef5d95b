#!/usr/bin/env bash
# Issue #22's runs that 2 CPU cores cannot make (2.5 h a seed there), on one GPU: ViT-XS, 2,700 steps × 32 on
# the real sample, seeds 0-2; first the seed formulation, then ECG-JEPA's EMA reference, each against random
# init, then both in one table (benchmarks/pretrain_quality.py, several runs sharing the GPU at a time):
#   benchmarks/gpu_quality.sh [--dry-run] DIR
# --dry-run does the same on the CPU with `tiny` at 20 steps, seeds 0-1 (a check of the script, not a result).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=${1:-}
[[ $DRY == --dry-run ]] && shift
if [[ $# != 1 ]]; then
    echo "usage: benchmarks/gpu_quality.sh [--dry-run] DIR (the harness's work folder, reused)" >&2
    exit 2
fi
if [[ $DRY == --dry-run ]]; then
    RUNS=(--config tiny --seeds 0 1 --jobs 4 --set steps=20 warmup_steps=5 probe_interval=10 num_workers=1)
else
    RUNS=(--config ViTXS_mimic --seeds 0 1 2 --jobs 6
        --set batch_size=32 steps=2700 warmup_steps=100 probe_interval=300 num_workers=1)
fi
QUALITY=($PY benchmarks/pretrain_quality.py --dir "$1" "${RUNS[@]}")
"${QUALITY[@]}" --variant seed --name seed
"${QUALITY[@]}" --reference --name reference
"${QUALITY[@]}" --variant seed --reference --against seed --name both
