"""`myjepa predict` on dumps of N and 8N records: peak resident memory must not grow with N.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/predict_memory.py [--records 256] [--threads 1]

Writes a finetune run folder of a randomly initialised `tiny` encoder and probe (best_ckpt.pt, predictions.npz,
results.json, as `myjepa finetune` writes them), exports it with `myjepa export --classifier`, writes two
synthetic 500 Hz, 10 s dumps (N and 8N records), then runs `myjepa predict` on each in a fresh process and
prints its peak RSS (VmHWM) and throughput.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from embed_memory import big_dump, measure

from myjepa.models.heads import AttentiveProbe
from myjepa.models.vit import VisionTransformer
from myjepa.pretrain.config import load_config
from myjepa.release import export
from myjepa.utils import checkpoint

CLASSES = ["A", "B", "C"]


def finetune_folder(root: Path) -> Path:
    """What `myjepa finetune` leaves for `export --classifier`: random weights, random validation/test scores."""
    run = root / "run"
    run.mkdir()
    cfg = load_config("tiny").encoder_config()
    encoder = VisionTransformer.from_config(cfg)
    head = AttentiveProbe(encoder.dim, len(CLASSES), 4)
    checkpoint.save(
        {
            "encoder": encoder.state_dict(),
            "config": cfg,
            "head": head.state_dict(),
            "head_config": {"dim": encoder.dim, "num_classes": len(CLASSES), "num_heads": 4, "dropout": 0.0},
            "classes": CLASSES,
            "task": "benchmark",
            "multiclass": False,
            "finetune_config": {"protocol": "finetune", "feature_cache": False},
            "norm_mean": [0.0] * 12,
            "norm_std": [0.2] * 12,
            "crop": 1250,
            "stride": 625,
        },
        run / "best_ckpt.pt",
    )
    rng = np.random.default_rng(0)
    scores = {split: rng.random((40, len(CLASSES))).astype(np.float32) for split in ("val", "test")}
    targets = {split: (rng.random((40, len(CLASSES))) < 0.3).astype(np.uint8) for split in ("val", "test")}
    np.savez(run / "predictions.npz", classes=np.array(CLASSES), **{f"{s}_scores": scores[s] for s in scores},
             **{f"{s}_targets": targets[s] for s in targets})  # fmt: skip
    classes = [{"name": c, "description": c} for c in CLASSES]
    results = {"task": "benchmark", "seed": 0, "classes": classes, "config": {"bootstrap_samples": 20}}
    (run / "results.json").write_text(json.dumps(results | {"test_auc": None, "test_auc_ci": [None, None]}))
    return run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assert export.main(["--classifier", str(finetune_folder(root)), "--out", str(root / "release")]) == 0
        for n in (args.records, 8 * args.records):
            dump = big_dump(root / f"d{n}.npy", n)
            argv = ["--model", str(root / "release"), "--src", str(dump), "--out", str(root / f"p{n}.csv")]
            measure("myjepa.release.predict", argv, dump, n)


if __name__ == "__main__":
    main()
