#!/usr/bin/env bash
# The one-GPU check (issue #12), 4 min 52 s on one H200; every figure also goes to FILE:
#   benchmarks/gpu.sh [--dry-run] [FILE]        (FILE default: gpu_figures.txt)
# 1. the CUDA tests (pytest -m cuda tests/test_cuda.py);
# 2. ViT-S bf16 step time, samples/s and MFU at B = 256, 512, 1024, eager and torch.compile'd, peak memory
#    per sample and the largest batch that fits, with and without activation checkpointing;
# 3. loader samples/s with 8 and 16 workers, pinned and normalised on the GPU;
# 4. a 200-step tiny run killed with SIGTERM half-way and resumed by rerunning the same command.
# --dry-run does all of it on the CPU at tiny sizes in about a minute (CI runs it): it checks the script, not the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=0
if [[ ${1:-} == --dry-run ]]; then DRY=1; shift; fi
OUT=$(realpath -m "${1:-gpu_figures.txt}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$OUT"
FAILED=()
say() { echo "$@" | tee -a "$OUT"; }
step() { say "## $1 ($(date -u +%T))"; }
# one part's output into FILE; a failing part is recorded and the others still run
part() { "$@" 2>&1 | tee -a "$OUT" || { FAILED+=("$*"); say "FAILED: $*"; }; }

say "# benchmarks/gpu.sh$([[ $DRY == 1 ]] && echo ' --dry-run'), $(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ $DRY == 1 ]]; then
    DEVICE=cpu
    STEP_ARGS=(--configs tiny --batch 4 8 --steps 1 --threads 1 --memory)
    LOADER_ARGS=(--config tiny --batch 64 --records 128 --batches 2 --workers 1 2)
    RUN_STEPS=100 RUN_SET=(channel_size=2500 batch_size=8 log_interval=2 checkpoint_interval=5 warmup_steps=2)
else
    DEVICE=cuda
    GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    say "GPU: $GPU"
    case $GPU in  # dense bf16 peaks from the vendors' data sheets
        *H100* | *H200* | *GH200*) NOMINAL=(--nominal-tflops 989) ;;
        *A100*) NOMINAL=(--nominal-tflops 312) ;;
        *) NOMINAL=() ;;
    esac
    STEP_ARGS=(--configs ViTS_mimic --batch 256 512 1024 --steps 10 --compile --memory --max-batch "${NOMINAL[@]}")
    LOADER_ARGS=(--workers 8 16 --batches 20)
    RUN_STEPS=200 RUN_SET=(log_interval=10 checkpoint_interval=50)
fi

step "CUDA tests: pytest -m cuda tests/test_cuda.py"
# on the CPU every CUDA test is collected and skips
part $PY -m pytest -q -p no:cacheprovider -m cuda -rs tests/test_cuda.py  # the GPU image need not hold wfdb

step "training step: benchmarks/pretrain_step.py --device $DEVICE ${STEP_ARGS[*]}"
part $PY benchmarks/pretrain_step.py --device "$DEVICE" "${STEP_ARGS[@]}"

step "loader: benchmarks/loader.py --device $DEVICE ${LOADER_ARGS[*]}"
part $PY benchmarks/loader.py --device "$DEVICE" "${LOADER_ARGS[@]}"

step "stop and resume: a $RUN_STEPS-step tiny run, SIGTERM half-way, the same command again"
$PY -c "import sys; sys.path.insert(0, 'benchmarks'); from loader import write_dump; \
from pathlib import Path; write_dump(Path(sys.argv[1]), 256, 5000)" "$WORK"
RUN=($PY -m myjepa pretrain --data "mimic-iv-ecg=$WORK/bench.npy" --out "$WORK/run" --config tiny
    --device "$DEVICE" --set steps=$RUN_STEPS "${RUN_SET[@]}")
start=$SECONDS
"${RUN[@]}" >"$WORK/first.log" 2>&1 &
pid=$!
half=$((RUN_STEPS / 2))
until [[ -f $WORK/run/metrics.jsonl ]] && grep -q "\"step\": $half," "$WORK/run/metrics.jsonl"; do
    kill -0 $pid 2>/dev/null || { say "SUMMARY resume: FAILED, the run ended before step $half"; cat "$WORK/first.log"; exit 1; }
    sleep 0.2
done
kill -TERM $pid 2>/dev/null || true  # a run that already finished is reported below, not a silent exit
first=0
wait $pid || first=$?
second=0
"${RUN[@]}" >"$WORK/second.log" 2>&1 || second=$?
stopped_at=$(grep -o 'at step [0-9]*' "$WORK/first.log" | tail -1)
last=$(tail -n 1 "$WORK/run/metrics.jsonl" | grep -o '"step": [0-9]*')
resumed=$(grep -o 'resuming from .* at step [0-9]*' "$WORK/second.log" || true)
wall=$((SECONDS - start))
if [[ $first == 143 && $second == 0 && -n $resumed && $last == "\"step\": $RUN_STEPS" ]]; then
    say "SUMMARY resume: SIGTERM -> exit 143 ($stopped_at); rerun: ${resumed##*/}, finished at step $RUN_STEPS: ok (${wall} s)"
else
    say "SUMMARY resume: FAILED (first exit $first, second exit $second, '$resumed', last $last)"
    tail -n 5 "$WORK/first.log" "$WORK/second.log" | tee -a "$OUT"
    FAILED+=(resume)
fi
say "# done $(date -u +%T); figures in $OUT; ${#FAILED[@]} parts failed"
[[ ${#FAILED[@]} == 0 ]]
