"""What a run reports: the test fold scored per class, then its files in --out.

best_ckpt.pt (the best step's encoder and probe, with what evaluating them again needs) and
predictions.npz (validation and test scores) come first; results.json, the completion marker the
workflow and the report read, comes last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from myjepa.config import to_dict
from myjepa.evaluate.model import Model, device_name
from myjepa.evaluate.run import Run
from myjepa.evaluate.training import Training
from myjepa.tasks.metrics import bootstrap_macro_auc, class_aucs, mean_defined_auc
from myjepa.utils import checkpoint
from myjepa.utils.io import atomic_path, write_json

FILES = ("best_ckpt.pt", "predictions.npz", "results.json", "metrics.jsonl")
"""What a run writes into --out (metrics.jsonl through its MetricsLogger)."""


def finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


@dataclass
class FoldScores:
    """The test fold's scores and what they amount to."""

    targets: np.ndarray  # (records, C)
    scores: np.ndarray
    auc: float  # macro AUC over the classes where it is defined
    ci: tuple[float, float]  # bootstrap CI of the macro AUC
    classes: list[dict[str, Any]]  # per class: name, auc (None where undefined), n_pos, note

    @property
    def metrics(self) -> dict[str, float]:
        """test/auc and one test/auc/CLASS per class with an AUC, for metrics.jsonl."""
        return {"test/auc": self.auc} | {
            f"test/auc/{c['name']}": c["auc"] for c in self.classes if c["auc"] is not None
        }


def score_test(
    classes: list[str], targets: np.ndarray, scores: np.ndarray, bootstrap_samples: int, seed: int
) -> FoldScores:
    """Macro AUC, its bootstrap CI (fixed by `seed`), and per class the AUC or why it is undefined."""
    aucs = class_aucs(targets, scores)
    auc = mean_defined_auc(aucs)
    ci = bootstrap_macro_auc(targets, scores, bootstrap_samples, seed=seed)
    rows = []
    for name, class_auc, pos in zip(classes, aucs, targets.sum(0)):
        missing = "positive" if pos == 0 else "negative"
        note = "" if np.isfinite(class_auc) else f"no {missing} record in the test fold"
        rows.append({"name": name, "auc": finite_or_none(class_auc), "n_pos": int(pos), "note": note})
    return FoldScores(targets, scores, auc, ci, rows)


def best_checkpoint(run: Run, model: Model, training: Training) -> dict[str, Any]:
    """best_ckpt.pt: the model (holding the best step's weights) and what evaluating it again needs."""
    cfg, crops = run.cfg, run.crops
    return {
        "encoder": model.encoder.state_dict(),
        "config": run.encoder.config,
        "head": model.head.state_dict(),
        "head_config": {
            "dim": model.encoder.dim,
            "num_classes": len(run.classes),
            "num_heads": cfg.head_num_heads,
            "dropout": cfg.dropout,
        },
        "classes": run.classes,
        "task": run.task,
        "multiclass": run.multiclass,
        "protocol": cfg.protocol,
        "finetune_config": to_dict(cfg),
        "norm_mean": crops.mean.tolist(),
        "norm_std": crops.std.tolist(),
        "crop": crops.crop,
        "stride": run.stride,
        "step": training.best.step,
        "val_auc": finite_or_none(training.best.auc),
        "encoder_source": str(run.encoder.path),
        "encoder_sha256": run.encoder_sha256,
    }


def results_json(
    run: Run, model: Model, training: Training, test: FoldScores, start_time: float, cache_s: float
) -> dict[str, Any]:
    rows = run.splits.rows
    return {
        "task": run.task,
        "protocol": run.cfg.protocol,
        "protocol_name": run.protocol_name,
        "seed": run.seed,
        "encoder": str(run.encoder.path),
        "encoder_name": run.encoder_name,
        "encoder_sha256": run.encoder_sha256,
        "encoder_pretrained": run.encoder.pretrained,
        "config": to_dict(run.cfg),
        "test_auc": finite_or_none(test.auc),
        "test_auc_ci": [finite_or_none(test.ci[0]), finite_or_none(test.ci[1])],
        "val_best_auc": finite_or_none(training.best.auc),
        "best_step": training.best.step,
        "classes": [{"name": c["name"], "description": d} | c for c, d in zip(test.classes, run.descriptions)],
        "data": run.data,
        "n_train": int(len(rows["train"])),
        "n_val": int(len(rows["val"])),
        "n_test": int(len(rows["test"])),
        "steps": training.steps,
        "wall_time_s": round(time.time() - start_time, 2),
        "device": device_name(model.device),
        "timing": {
            "cache_s": round(cache_s, 2),
            "train_s": round(training.train_s, 2),
            "eval_s": round(training.eval_s, 2),
        },
    }


def write_outputs(
    out: Path, run: Run, model: Model, training: Training, test: FoldScores, start_time: float, cache_s: float
) -> None:
    """best_ckpt.pt and predictions.npz first, results.json (the completion marker) last."""
    checkpoint.save(best_checkpoint(run, model, training), out / "best_ckpt.pt")
    with atomic_path(out / "predictions.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                classes=np.array(run.classes),
                val_targets=run.splits.targets["val"],
                val_scores=training.best.val_scores,
                test_targets=test.targets,
                test_scores=test.scores,
            )
    results = results_json(run, model, training, test, start_time, cache_s)
    write_json(out / "results.json", results)
    best = training.best
    print(
        f"finetune: test macro AUC {test.auc:.4f} [{test.ci[0]:.4f}, {test.ci[1]:.4f}] "
        f"(best val {best.auc:.4f} at step {best.step}/{training.steps}), "
        f"{results['wall_time_s']:.1f} s -> {out / 'results.json'}",
        flush=True,
    )
