#!/usr/bin/env bash
# What happens when... (README): runs each hostile case for real and prints what the user sees.
#
#     bash benchmarks/hostile.sh [WORKDIR]      # ~2.5 min on 2 cores; needs `unshare -rm` for the disk-full cases
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

# ---- issue 23: the release path and the converters, tried as a new user would ----------------------
rm -rf "$W/rel"; myjepa export --encoder "$W/run/encoder.pt" --out "$W/rel" >/dev/null
api() {  # a Python call on the release ($W/rel, as `m`): its shape, its warning, or its one-line error
  "$PY" -W always -c "
import numpy as np, torch, myjepa
from myjepa.errors import UserError
m = myjepa.load_encoder('$W/rel')
x = 0.1 * np.random.default_rng(0).standard_normal((2, 12, 2500)).astype(np.float32)
try:
    print('  -> shape', tuple(($1).shape))
except UserError as e:
    print('  | UserError:', e)" 2>&1 | grep -av '^\s*$\|^  print\|^  z =' | sed 's/^<string>:[0-9]*: /  | /'; }

case_ "load_encoder, export and embed on last_ckpt.pt and best_ckpt.pt (once TypeError: string indices)"
for f in last_ckpt.pt best_ckpt.pt; do
  "$PY" -c "import myjepa; print('  load_encoder($f): dim', myjepa.load_encoder('$W/run/$f').dim)"
  myjepa export --encoder "$W/run/$f" --out "$W/rel-$f" --overwrite >/dev/null 2>"$W/err"; echo "  export: exit $?"
  myjepa embed --encoder "$W/run/$f" --src "$W/a.npy" --out "$W/e-$f.npy" --overwrite >/dev/null 2>"$W/err"
  echo "  embed: exit $?"
done

case_ "embed(x, fs) with fs 0, -1, nan, '500'; no records; NaN, Inf and int16 samples; microvolts"
for fs in 0 -1 "float('nan')" "'500'"; do api "m.embed(x, fs=$fs)"; done
api "m.embed(x[:0], fs=500)"
api "m.embed(np.where(np.arange(2500) == 7, np.nan, x), fs=500)"
api "m.embed(np.where(np.arange(2500) == 7, np.inf, x), fs=500)"
api "m.embed((x * 1000).astype(np.int16), fs=500)"
api "m.embed(x * 1000, fs=500)"

case_ "myjepa embed --device cuda with a CPU-only torch"
myjepa embed --encoder "$W/rel" --src "$W/a.npy" --out "$W/dev.npy" --device cuda 2>"$W/err"; show $?

case_ "a release whose config.json has 11 input means"
rm -rf "$W/rel11"; cp -r "$W/rel" "$W/rel11"
"$PY" -c "import json, sys; p = sys.argv[1]; c = json.load(open(p)); c['input']['mean'] = c['input']['mean'][:11]
json.dump(c, open(p, 'w'))" "$W/rel11/config.json"
"$PY" -c "
import myjepa
try: myjepa.load_encoder('$W/rel11')
except myjepa.errors.UserError as e: print('  | UserError:', e)"

case_ "model.safetensors of a release under umask 027 (once 0600)"
(umask 027; rm -rf "$W/relu"; myjepa export --encoder "$W/run/encoder.pt" --out "$W/relu" >/dev/null)
stat -c '  %A %n' "$W/relu"/* | sed "s|$W/relu/||"

case_ "two exports of the same encoder"
myjepa export --encoder "$W/run/encoder.pt" --out "$W/rel2" --name rel --overwrite >/dev/null
echo "  same bytes: $(cmp -s "$W/rel/model.safetensors" "$W/rel2/model.safetensors" && cmp -s "$W/rel/config.json" \
  "$W/rel2/config.json" && echo yes || echo no)"

case_ "convert code-15 with one Inf sample and an exam in no part, --max-skip-fraction 0.5 and then the default"
rm -rf "$W/c15"; myjepa synth --layout code-15 --out "$W/c15" --records 40 --seed 3 --quiet >/dev/null
"$PY" -c "import h5py, numpy as np, pandas as pd; f = h5py.File('$W/c15/exams_part0.hdf5', 'r+'); t = f['tracings'][0]
t[1000, 3] = np.inf; f['tracings'][0] = t; e = pd.read_csv('$W/c15/exams.csv')  # and an exam in no HDF5 part:
e.loc[len(e)] = [99999, *e.iloc[0, 1:]]; e.to_csv('$W/c15/exams.csv', index=False)"
myjepa convert code-15 --src "$W/c15" --out "$W/c15.npy" --quiet --max-skip-fraction 0.5 --overwrite 2>"$W/err" | sed 's/^/  | /'
"$PY" -c "import json; [print('  skipped', s['id'], s['file'] or '(no file)', '-', s['reason']) for s in
json.load(open('$W/c15.stats.json'))['skipped'] if 'shorter' not in s['reason']]"
myjepa convert code-15 --src "$W/c15" --out "$W/c15.npy" --quiet --overwrite 2>"$W/err"; show $?

case_ "WFDB records named rä…, a rate of nan, no sample count, a MAT v5 file from scipy.io.savemat"
rm -rf "$W/wf"; "$PY" -c "
import numpy as np, scipy.io
from myjepa import LEADS
from myjepa.ingest.wfdb_io import write_record
x = 0.3 * np.sin(np.arange(5000) / 50) * np.ones((12, 1))
for name in ('ok/rä1001', 'ok/rä1002', 'bad/nan1', 'ok/nocount1'):
    write_record('$W/wf/' + name, x, 500, list(LEADS))
for name, old, new in (('bad/nan1', ' 500 5000', ' nan 5000'), ('ok/nocount1', ' 500 5000', ' 500')):
    p = '$W/wf/' + name + '.hea'; t = open(p).read(); open(p, 'w').write(t.replace(old, new, 1))
scipy.io.savemat('$W/wf/bad/mat1.mat', {'val': np.round(x * 1000).astype(np.int16)})
open('$W/wf/bad/mat1.hea', 'w').write('\n'.join(['mat1 12 500 5000'] + [f'mat1.mat 16+24 1000/mV 16 0 0 0 0 {l}' for l in LEADS]))"
myjepa convert wfdb --src "$W/wf" --out "$W/wf.npy" --quiet --max-skip-fraction 0.5 --overwrite 2>"$W/err" | sed 's/^/  | /'
"$PY" -c "import json; [print('  skipped', s['file'], '-', s['reason']) for s in json.load(open('$W/wf.stats.json'))['skipped']]"
for src in ok bad; do
  myjepa embed --encoder "$W/rel" --src "$W/wf/$src" --out "$W/wf-emb.npy" --overwrite 2>"$W/err" | tail -n 1 | sed 's/^/  | /'
  show "${PIPESTATUS[0]}"
done

case_ "myjepa embed: a WFDB record with a gap of 12 NaN samples; a dump with one NaN (row 3, lead II, sample 7)"
"$PY" -c "
import shutil, numpy as np
from myjepa import LEADS
from myjepa.ingest.wfdb_io import write_record
x = 0.3 * np.sin(np.arange(5000) / 50) * np.ones((12, 1)); x[1, 100:112] = np.nan
write_record('$W/gaps/r1', x, 500, list(LEADS))
d = np.load('$W/a.npy'); d[3, 1, 7] = np.nan; np.save('$W/nan.npy', d)
for s in ('index.csv', 'stats.json'): shutil.copy('$W/a.' + s, '$W/nan.' + s)"
myjepa embed --encoder "$W/rel" --src "$W/gaps" --out "$W/gaps.npy" --overwrite 2>"$W/err" | grep -a NaN | sed 's/^/  | /'
myjepa embed --encoder "$W/rel" --src "$W/nan.npy" --out "$W/nan-emb.npy" 2>"$W/err" >/dev/null; show $?

case_ "finetune --labels with one class in its label column; --labels a folder"
"$PY" -c "import pandas as pd; i = pd.read_csv('$W/a.index.csv'); s = ['train', 'val', 'test'] * (len(i) // 3)
pd.DataFrame({'study_id': i['study_id'][:len(s)], 'split': s, 'label': 'SR'}).to_csv('$W/one.csv', index=False)"
F=(finetune --dump "$W/a.npy" --encoder "$W/rel" --config linear --out "$W/ft" --set steps=2)
myjepa "${F[@]}" --labels "$W/one.csv" 2>"$W/err"; show $?
myjepa "${F[@]}" --labels "$W/wf" 2>"$W/err"; show $?

case_ "pretrain --data ptb-xl=… with a config whose datasets name mimic-iv-ecg only"
rm -rf "$W/ds"; myjepa pretrain --data ptb-xl="$W/a.npy" --out "$W/ds" "${TINY[@]}" steps=2 2>"$W/err" >/dev/null
show $?; echo "  the run records datasets: $(grep -A1 '^datasets:' "$W/ds/config.yaml" | tail -n 1)"

case_ "embed into a full disk (a 8 kB tmpfs, then 80 kB: room for the embeddings but not their index)"
for size in 8k 80k; do
  unshare -rm sh -c "mount -t tmpfs -o size=$size tmpfs $W/mnt && $PY -m myjepa embed --encoder $W/rel --src $W/a.npy \
    --out $W/mnt/e.npy >/dev/null; echo \$? > $W/rc; ls -A $W/mnt > $W/left" 2>"$W/err"
  show "$(cat "$W/rc")"; echo "  left: [$(cat "$W/left")]"
done

case_ "slurm-profile: sinfo printing a byte that is not UTF-8, then negative CPUs; --gpus-per-job 0"
mkdir -p "$W/bin"
fake() { printf '#!/bin/sh\nprintf "%s"\n' "$1" > "$W/bin/sinfo"; printf '#!/bin/sh\ntrue\n' > "$W/bin/scontrol"
  chmod +x "$W/bin/sinfo" "$W/bin/scontrol"; }
for sinfo in 'cpu*|1|2|1000|(null)\ng\\374pu|1|2|1000|gpu:1\n' 'cpu*|1|-4|1000|(null)\ngpu|1|2|1000|gpu:1\n'; do
  fake "$sinfo"; PATH="$W/bin:$PATH" XDG_CONFIG_HOME="$W/xdg" myjepa slurm-profile 2>"$W/err" >/dev/null; show $?
done
fake 'cpu*|1|2|1000|(null)\ngpu|1|2|1000|gpu:1\n'
PATH="$W/bin:$PATH" XDG_CONFIG_HOME="$W/xdg" myjepa slurm-profile --gpus-per-job 0 2>"$W/err" >/dev/null; show $?

case_ "myjepa synth --out a folder of your own files --overwrite"
mkdir -p "$W/mine"; echo keep > "$W/mine/notes.txt"
myjepa synth --layout ptb-xl --out "$W/mine" --records 3 --overwrite 2>"$W/err"; show $?
echo "  notes.txt still there: $([ -f "$W/mine/notes.txt" ] && echo yes || echo no)"

case_ "the workflow: data.fs 250 for 500 Hz models; a NaN dataset weight; --config 'evaluate={val_fold: 8}' (snakemake -n)"
printf 'data:\n  fs: 250\n' > "$W/fs.yaml"
printf 'pretrain:\n  runs:\n    - {name: tiny, config: tiny, datasets: {mimic-iv-ecg: .nan}}\n' > "$W/nan.yaml"
SMK=("$PY" -m snakemake -n --snakefile workflow/Snakefile --directory "$W" --configfile config/config.yaml)
for extra in "$W/fs.yaml" "$W/nan.yaml"; do
  "${SMK[@]}" "$extra" >"$W/err" 2>&1; rc=$?; grep -a '^config: ' "$W/err" | sed 's/^/  | /' | tail -n 1; echo "  exit $rc"
done
"${SMK[@]}" --config 'evaluate={val_fold: 8}' >"$W/err" 2>&1; echo "  --config 'evaluate={val_fold: 8}': exit $?"
