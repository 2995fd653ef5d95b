"""Does pretraining on real ECGs learn? Collapse check and linear probes on the real PTB-XL sample.

    python benchmarks/pretrain_quality.py                                  # tiny, 300 steps, rhythm + superdiagnostic
    python benchmarks/pretrain_quality.py --config ViTXS_mimic --set batch_size=32 steps=900 warmup_steps=100 \
        probe_interval=100

Converts tests/data/ptb-xl-sample (988 real records, 100 Hz) to a 500 Hz dump, pretrains on its
train folds 1-8 (`datasets={ptb-xl: 1}`, the config's `folds`) with the online probe on (train folds
1-8, validation fold 9; its probe/auc and the collapse alarms' embed_std and rankme are printed per
step), then compares the pretrained encoder with a randomly initialised one of the same config:
- collapse: the per-dimension std of the record embeddings (mean over patches) of folds 9-10,
  averaged over dimensions, and their effective rank (exp of the entropy of the normalised singular
  values); a collapsed encoder has a std near 0 and a rank near 1;
- quality: `myjepa finetune --config linear` (the shipped protocol: up to 5,000 steps, early stopping
  on fold 9) test macro AUC (fold 10) per task.
Every step runs the `myjepa` command beside this interpreter, so the script measures whichever
version of the package that interpreter has installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from myjepa.models.vit import VisionTransformer
from myjepa.pretrain import checkpoints

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "ptb-xl-sample"
MYJEPA = str(Path(sys.executable).parent / "myjepa")


def myjepa(*args: str) -> None:
    subprocess.run([MYJEPA, *args], check=True, stdout=subprocess.DEVNULL)


@torch.no_grad()
def embedding_spread(encoder: VisionTransformer, x: np.ndarray) -> tuple[float, float]:
    """(mean per-dimension std, effective rank) of the record embeddings of x (N, 12, T), normalised."""
    encoder.eval()
    z = torch.cat([encoder(torch.from_numpy(x[i : i + 64])).mean(1) for i in range(0, len(x), 64)])
    s = torch.linalg.svdvals(z - z.mean(0))
    p = s / s.sum()
    return float(z.std(0).mean()), float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))


def probe(work: Path, dump: Path, encoder: str, label: str, task: str, steps: int | None, seed: int) -> float:
    out = work / "probe" / label / task
    sets = ["--set", f"steps={steps}"] if steps else []  # default: the shipped protocol, early stopping included
    myjepa("finetune", "--data-dir", str(SAMPLE), "--dump", str(dump), "--encoder", encoder, "--task", task,
           "--config", "linear", "--out", str(out), "--seed", str(seed), *sets)  # fmt: skip
    return json.loads((out / "results.json").read_text())["test_auc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--set", nargs="*", default=["steps=300"], help="pretraining overrides")
    parser.add_argument("--tasks", nargs="+", default=["rhythm", "superdiagnostic"])
    parser.add_argument("--probe-steps", type=int, help="linear probe steps (default: the shipped protocol's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="work folder (default: a new temporary one)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="myjepa-quality-"))
    dump, run = work / "ptb-xl.npy", work / "pretrain" / "encoder.pt"

    t0 = time.perf_counter()
    if not dump.is_file():
        myjepa("convert", "ptb-xl", "--src", str(SAMPLE), "--out", str(dump), "--source-rate", "100", "--quiet")
    sets = ["datasets={ptb-xl: 1.0}", *args.set]
    probe_args = ["--probe-data", str(dump), "--probe-labels", str(SAMPLE)]
    myjepa("pretrain", "--data", f"ptb-xl={dump}", "--out", str(run.parent), "--config", args.config,
           "--seed", str(args.seed), *probe_args, "--set", *sets)  # fmt: skip
    t_pretrain = time.perf_counter() - t0
    metrics = [json.loads(line) for line in (run.parent / "metrics.jsonl").read_text().splitlines()]

    ckpt = checkpoints.read(run)
    pretrained = VisionTransformer.from_config(ckpt.run.encoder_config)
    pretrained.load_state_dict(ckpt.encoder)
    torch.manual_seed(args.seed)  # the random-init encoder the probe below builds from the same config
    random_init = VisionTransformer.from_config(ckpt.run.encoder_config)
    stats = json.loads(dump.with_suffix(".stats.json").read_text())
    folds = pd.read_csv(dump.with_suffix(".index.csv"))["strat_fold"].to_numpy()
    signals = np.load(dump, mmap_mode="r")[np.isin(folds, [9, 10])].astype(np.float32)
    x = (signals - np.array(stats["mean"])[:, None]) / np.array(stats["std"])[:, None]
    x = x[:, :, : ckpt.run.config["channel_size"]].astype(np.float32)
    model_yaml = work / "pretrain" / "config.yaml"

    rows = {}
    for name, encoder, spec in (("pretrained", pretrained, str(run)), ("random init", random_init, str(model_yaml))):
        std, rank = embedding_spread(encoder, x)
        label = name.replace(" ", "-")
        aucs = {task: probe(work, dump, spec, label, task, args.probe_steps, args.seed) for task in args.tasks}
        rows[name] = {"embedding std": std, "effective rank": rank, **aucs}

    last = metrics[-1]
    curves = pd.DataFrame(metrics).set_index("step")
    shown = [k for k in ("train/pred_loss", "train/sigreg_loss", "train/embed_std", "train/rankme", "probe/auc",
                         "probe/seconds", "train/step_time") if k in curves]  # fmt: skip
    print(curves[shown].dropna(subset=["probe/auc"] if "probe/auc" in curves else None).to_string())
    print(f"pretrain {args.config} {' '.join(args.set)}, seed {args.seed}: {last['step']} steps in {t_pretrain:.0f} s; "
          f"last pred_loss {last['train/pred_loss']:.4g}, sigreg_loss {last['train/sigreg_loss']:.4g}")  # fmt: skip
    steps = args.probe_steps or "the shipped linear protocol's"
    print(f"folds 9-10: {len(x)} records; linear probe: {steps} steps (early stopping on fold 9), test fold 10")
    print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
