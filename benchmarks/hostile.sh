#!/usr/bin/env bash
# What happens when... (README): runs each hostile case for real and prints what the user sees.
#
#     bash benchmarks/hostile.sh [WORKDIR]      # ~2 min on 2 cores; needs `unshare -rm` for the disk-full cases
#
# Each case prints its command's exit status, its stderr (last 2 lines) and the files it left.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
W=${1:-$(mktemp -d /tmp/hostile.XXXX)}
mkdir -p "$W"
export OMP_NUM_THREADS=1 WANDB_MODE=disabled
myjepa() { "$PY" -m myjepa "$@"; }
bg() { "$PY" -m myjepa "$@" 2>"$W/err" & }  # in the background: $! is the python process itself
show() { echo "  exit $1"; tr '\r' '\n' < "$W/err" | grep -av '^step \|^\s*$\|%|' | sed 's/^/  | /' | tail -n 2; }
started() { until compgen -G "$1" >/dev/null; do sleep 0.05; done; sleep 0.2; }  # its temporary .npy exists
case_() { echo; echo "== $*"; }
TINY=(--config tiny --set channel_size=2500 batch_size=16 log_interval=1 probe_interval=1 warmup_steps=3)

myjepa synth --layout mimic-iv-ecg --out "$W/mimic" --records 3000 --seed 1 --quiet
myjepa convert mimic-iv-ecg --src "$W/mimic" --out "$W/a.npy" --quiet --shard 1/10 >/dev/null
myjepa convert mimic-iv-ecg --src "$W/mimic" --out "$W/b.npy" --quiet --shard 2/10 >/dev/null

case_ "disk full during conversion (1 MB tmpfs as --out's folder, --workers 2)"
mkdir -p "$W/mnt"
unshare -rm sh -c "mount -t tmpfs -o size=1m tmpfs $W/mnt && $PY -m myjepa convert mimic-iv-ecg --src $W/mimic \
  --out $W/mnt/d.npy --workers 2 --quiet; echo \$? > $W/rc; ls -A $W/mnt > $W/left" 2>"$W/err"
show "$(cat "$W/rc")"; echo "  left: [$(cat "$W/left")]"

case_ "disk full at a checkpoint (pretraining into a 5 MB tmpfs: room for the first checkpoints only)"
unshare -rm sh -c "mount -t tmpfs -o size=5m tmpfs $W/mnt && $PY -m myjepa pretrain --data mimic-iv-ecg=$W/a.npy \
  --out $W/mnt/run ${TINY[*]} steps=4 checkpoint_interval=2; echo \$? > $W/rc; ls -A $W/mnt/run > $W/left; \
  $PY -c \"import torch; print(torch.load('$W/mnt/run/last_ckpt.pt', weights_only=True)['step'])\" > $W/step" 2>"$W/err"
show "$(cat "$W/rc")"; echo "  left: [$(tr '\n' ' ' < "$W/left")], last_ckpt.pt holds step $(cat "$W/step")"

case_ "SIGTERM during conversion (--workers 2, 0.2 s in)"
rm -rf "$W/c"
bg convert mimic-iv-ecg --src "$W/mimic" --out "$W/c/d.npy" --workers 2 --quiet
started "$W/c/.d.npy.tmp*"; kill -TERM $!; wait $!; show $?; echo "  left: [$(ls -A "$W/c")]"

case_ "kill -9 during conversion, then the same command again"
bg convert mimic-iv-ecg --src "$W/mimic" --out "$W/c/d.npy" --quiet
started "$W/c/.d.npy.tmp*"; kill -KILL $!; wait $! 2>/dev/null; echo "  exit $? left: [$(ls -A "$W/c")]"
myjepa convert mimic-iv-ecg --src "$W/mimic" --out "$W/c/d.npy" --quiet >/dev/null 2>"$W/err"
show $?; echo "  left: [$(ls -A "$W/c" | tr '\n' ' ')]"

case_ "SIGTERM during pretraining (4 s in), kill -9 during the rerun (4 s in), then a third run"
P=(--out "$W/run" "${TINY[@]}" steps=150 checkpoint_interval=10)
bg pretrain --data mimic-iv-ecg="$W/a.npy" "${P[@]}"; sleep 4; kill -TERM $!; wait $!; show $?
bg pretrain --data mimic-iv-ecg="$W/a.npy" "${P[@]}"; sleep 4; kill -KILL $!; wait $! 2>/dev/null
echo "  kill -9: exit $?, left: [$(ls -A "$W/run" | tr '\n' ' ')]"
myjepa pretrain --data mimic-iv-ecg="$W/a.npy" "${P[@]}" 2>"$W/err"; rc=$?
grep -a "^resuming" "$W/err" | sed 's/^/  | /'; echo "  third run: exit $rc"

case_ "changed data: the same command with another dump"
myjepa pretrain --data mimic-iv-ecg="$W/b.npy" "${P[@]}" 2>"$W/err"; show $?

case_ "an output over its input: embed --src a.npy --out DIR/./a.npy, then --out a hard link to it with --overwrite"
digest() { cat "$W/a.npy" "$W/a.index.csv" "$W/a.stats.json" | sha256sum; }
before=$(digest); ln -f "$W/a.npy" "$W/hard.npy"
myjepa embed --encoder "$W/run/encoder.pt" --src "$W/a.npy" --out "$W/./a.npy" 2>"$W/err"; show $?
myjepa embed --encoder "$W/run/encoder.pt" --src "$W/a.npy" --out "$W/hard.npy" --overwrite 2>"$W/err"; show $?
echo "  a.npy and its sidecars unchanged: $([ "$before" = "$(digest)" ] && echo yes || echo no)"

case_ "an existing --out (the dump b.npy) without --overwrite"
myjepa embed --encoder "$W/run/encoder.pt" --src "$W/a.npy" --out "$W/b.npy" 2>"$W/err"; show $?

case_ "non-finite loss or weights (--set lr=1e6 checkpoint_interval=1)"
myjepa pretrain --data mimic-iv-ecg="$W/a.npy" --out "$W/nan" "${TINY[@]}" steps=60 lr=1e6 checkpoint_interval=1 \
  2>"$W/err"; show $?

case_ "malicious checkpoint (a pickle that runs os.system) as last_ckpt.pt"
mkdir -p "$W/evil"
"$PY" -c "
import os, sys, torch
class Payload:
    def __reduce__(self): return (os.system, ('touch $W/pwned',))
torch.save({'model': {}, 'x': Payload()}, sys.argv[1])" "$W/evil/last_ckpt.pt"
myjepa pretrain --data mimic-iv-ecg="$W/a.npy" --out "$W/evil" "${TINY[@]}" steps=4 2>"$W/err"; show $?
echo "  payload ran: $([ -e "$W/pwned" ] && echo yes || echo no)"

case_ "bad override in the workflow config (snakemake -n)"
printf 'pretrain:\n  runs:\n    - {name: tiny, config: tiny, set: {warmup_steps: -5}}\n' > "$W/bad.yaml"
"$PY" -m snakemake -n --snakefile workflow/Snakefile --directory "$W" --configfile config/config.yaml "$W/bad.yaml" \
  >"$W/err" 2>&1; rc=$?; grep -a 'config: ' "$W/err" | sed 's/^/  | /' | tail -n 1; echo "  exit $rc"

# myjepa predict: a classifier release of a 24-step linear probe on the 100 Hz PTB-XL sample (random-init encoder)
S=tests/data/ptb-xl-sample
cat > "$W/enc100.yaml" <<'YAML'
{fs: 100, leads: [I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6], channel_size: 1000, patch_size: 25,
 dim: 32, depth: 1, num_heads: 2, mlp_ratio: 2.0, num_registers: 1}
YAML
myjepa convert ptb-xl --src $S --source-rate 100 --fs 100 --out "$W/p.npy" --quiet >/dev/null
myjepa finetune --data-dir $S --dump "$W/p.npy" --encoder "$W/enc100.yaml" --task rhythm --config linear \
  --out "$W/lin" --set steps=24 eval_interval=8 bootstrap_samples=50 >/dev/null 2>&1
myjepa export --classifier "$W/lin" --out "$W/clf" >/dev/null
"$PY" -c "
import sys, numpy as np, pandas as pd, shutil
from myjepa.ingest.wfdb_io import read_record, write_record
from myjepa import LEADS
w = sys.argv[1]
x, _ = read_record('$S/records100/00000/00001_lr')
write_record(w + '/nolead/b', x[[0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]], 100, [*LEADS[:6], *LEADS[7:]])
write_record(w + '/short/c', x[:, :200], 100, list(LEADS))
d = np.load(w + '/p.npy')[:4].copy(); d[2, 3, 100:110] = np.nan; np.save(w + '/nan.npy', d)
pd.read_csv(w + '/p.index.csv').head(4).to_csv(w + '/nan.index.csv', index=False)
shutil.copy(w + '/p.stats.json', w + '/nan.stats.json')" "$W"

case_ "predict on a WFDB record without lead V1, then with --missing-leads zero"
myjepa predict --model "$W/clf" --src "$W/nolead" --out "$W/p.csv" 2>"$W/err" >/dev/null; show $?
myjepa predict --model "$W/clf" --src "$W/nolead" --out "$W/p.csv" --missing-leads zero 2>"$W/err" >/dev/null
show $?; echo "  left: [$(ls -A "$W" | grep -a 'p\.csv' | tr '\n' ' ')]"

case_ "predict on a record shorter than one crop; on a dump row holding NaN"
myjepa predict --model "$W/clf" --src "$W/short" --out "$W/q.csv" 2>"$W/err" >/dev/null; show $?
myjepa predict --model "$W/clf" --src "$W/nan.npy" --out "$W/q.csv" 2>"$W/err" >/dev/null; show $?
echo "  left: [$(ls -A "$W" | grep -a 'q\.csv' | tr '\n' ' ')]"

case_ "predict --model an encoder release; a finetune folder"
myjepa export --encoder "$W/run/encoder.pt" --out "$W/enc-release" >/dev/null
myjepa predict --model "$W/enc-release" --src "$W/nolead" --out "$W/q.csv" 2>"$W/err" >/dev/null; show $?
myjepa predict --model "$W/lin" --src "$W/nolead" --out "$W/q.csv" 2>"$W/err" >/dev/null; show $?

case_ "predict --src x.npy --out x.index.csv --overwrite (the dump's own index)"
myjepa predict --model "$W/clf" --src "$W/nan.npy" --out "$W/nan.index.csv" --overwrite 2>"$W/err"; show $?
