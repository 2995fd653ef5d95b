"""`myjepa export --classifier FINETUNE_DIR`: a finetune run -> a classifier release folder.

    myjepa export --classifier results/finetune/tiny-s0/rhythm/linear/s0 \
        --out results/classifiers/tiny-s0/rhythm/linear/s0

Reads the run's best_ckpt.pt (the best step's encoder and probe, the normalisation and crops), its
predictions.npz (the validation fold's scores choose each class's decision threshold; the test fold's give
the card its per-class AUCs with bootstrap intervals) and results.json (the task, the protocol, the data).
Writes model.safetensors (the encoder, as in an encoder release), head.safetensors (the probe), config.json
and MODEL_CARD.md; the format is `myjepa.release`'s. `myjepa.load_classifier(DIR)` and `myjepa predict` read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from myjepa.encoders.build import build_encoder, load_state
from myjepa.encoders.contract import InputContract
from myjepa.encoders.release import (
    CARD,
    CLASSIFIER,
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    HEAD_WEIGHTS,
    WEIGHTS,
    release_files,
)
from myjepa.errors import UserError
from myjepa.models.heads import AttentiveProbe
from myjepa.release.classifier_card import render_classifier_card
from myjepa.release.files import save_weights, software, write_card
from myjepa.tasks.metrics import bootstrap_class_aucs, class_aucs, max_f1_threshold
from myjepa.utils import checkpoint
from myjepa.utils.io import check_outputs, outputs_of, sha256_file, write_json

RUN_FILES = ("best_ckpt.pt", "predictions.npz", "results.json")
CHECKPOINT_KEYS = ("encoder", "config", "head", "head_config", "classes", "task", "norm_mean", "norm_std", "crop")
DEFAULT_THRESHOLD = 0.5
"""A multi-label class without a positive validation record has no F1 to maximise: it gets this threshold."""

DECISIONS = {
    "max-f1": "per class, the threshold on its probability that maximises F1 on the validation fold "
    "(halfway between the lowest probability called positive and the next lower one); p >= threshold is a label",
    "argmax": "one label per record: the most probable class (a multi-class task, softmax over the classes)",
}


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """best_ckpt.pt (weights only), predictions.npz (no pickle) and results.json of a finetune run, checked
    to belong together."""
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"--classifier {folder}: no {', '.join(missing)}; give the --out folder of a finished `myjepa finetune`"
        )
    ckpt = checkpoint.load(folder / "best_ckpt.pt")
    absent = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if absent:
        raise UserError(f"{folder / 'best_ckpt.pt'}: no {', '.join(absent)}; not a `myjepa finetune` best_ckpt.pt")
    try:
        with np.load(folder / "predictions.npz", allow_pickle=False) as f:
            predictions = {k: f[k] for k in ("classes", "val_targets", "val_scores", "test_targets", "test_scores")}
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"{folder / 'predictions.npz'}: not the predictions of a finetune run: {e}") from None
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{folder / 'results.json'}: not readable JSON: {e}") from None
    classes = list(ckpt["classes"])
    if [str(c) for c in predictions["classes"]] != classes or [c["name"] for c in results["classes"]] != classes:
        raise UserError(f"--classifier {folder}: best_ckpt.pt, predictions.npz and results.json name other classes")
    return ckpt, predictions, results


def decision_rule(multiclass: bool, targets: np.ndarray, scores: np.ndarray) -> tuple[str, list[dict[str, Any]]]:
    """The rule's name and, per class, its threshold chosen on the validation fold (None under argmax)."""
    if multiclass:
        return "argmax", [{"threshold": None, "val_f1": None, "note": ""} for _ in range(targets.shape[1])]
    rows = []
    for j in range(targets.shape[1]):
        found = max_f1_threshold(targets[:, j], scores[:, j])
        if found is None:
            note = f"no positive record in the validation fold: threshold {DEFAULT_THRESHOLD}"
            rows.append({"threshold": DEFAULT_THRESHOLD, "val_f1": None, "note": note})
        else:
            rows.append({"threshold": found[0], "val_f1": found[1], "note": ""})
    return "max-f1", rows


def test_evaluation(results: dict[str, Any], predictions: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """The test fold: macro AUC and its CI (results.json's), per class the AUC with a bootstrap CI (the run's
    resamples and seed), positives, and sensitivity and specificity of the release's decisions."""
    targets, scores = predictions["test_targets"].astype(bool), predictions["test_scores"]
    config = results.get("config", {})
    aucs = class_aucs(targets, scores)
    cis = bootstrap_class_aucs(targets, scores, int(config.get("bootstrap_samples", 1000)), int(results["seed"]))
    rows = []
    for j in range(targets.shape[1]):
        y, called = targets[:, j], labels[:, j].astype(bool)
        rows.append(
            {
                "auc": finite_or_none(aucs[j]),
                "auc_ci": [finite_or_none(cis[j, 0]), finite_or_none(cis[j, 1])],
                "positives": int(y.sum()),
                "sensitivity": finite_or_none((called & y).sum() / y.sum() if y.any() else np.nan),
                "specificity": finite_or_none((~called & ~y).sum() / (~y).sum() if (~y).any() else np.nan),
            }
        )
    ci = results.get("test_auc_ci") or [None, None]
    return {"records": len(targets), "macro_auc": results.get("test_auc"), "macro_auc_ci": ci, "classes": rows}


def finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def classifier_config(
    name: str, folder: Path, ckpt: dict[str, Any], predictions: dict[str, np.ndarray], results: dict[str, Any]
) -> dict[str, Any]:
    """config.json without the weights' digests: the encoder and its input contract (as an encoder release
    has them), the classifier (classes, decisions, how records are scored) and the finetune run it came from."""
    encoder, finetune = ckpt["config"], ckpt.get("finetune_config") or results.get("config", {})
    multiclass = bool(ckpt["multiclass"]) if "multiclass" in ckpt else is_softmax(predictions)
    contract = InputContract(
        fs=int(encoder["fs"]),
        leads=list(encoder["leads"]),
        units="mV",
        crop=int(ckpt["crop"]),
        stride=int(ckpt.get("stride", ckpt["crop"])),
        mean=[float(v) for v in ckpt["norm_mean"]],
        std=[float(v) for v in ckpt["norm_std"]],
    )
    rule, decisions = decision_rule(multiclass, predictions["val_targets"], predictions["val_scores"])
    descriptions = [c.get("description", c["name"]) for c in results["classes"]]
    classes = [
        {"code": code, "description": str(text), **decision}
        for code, text, decision in zip(ckpt["classes"], descriptions, decisions)
    ]
    cached = finetune.get("protocol") == "linear" and finetune.get("feature_cache", False)
    classifier = {
        "task": ckpt["task"],
        "classes": classes,
        "multiclass": multiclass,
        "activation": "softmax" if multiclass else "sigmoid",
        "decision": {"rule": rule, "text": DECISIONS[rule]},
        "scoring": "each crop's probabilities, averaged over the record's crops",
        "input_rounding": "float16",  # the finetune run read a float16 dump
        "token_rounding": "float16" if cached else None,
        "head": {k: ckpt["head_config"][k] for k in ("dim", "num_classes", "num_heads")},
    }
    labels = decide(classifier, predictions["test_scores"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": CLASSIFIER,
        "name": name,
        "encoder": encoder,
        "embedding": {"dim": encoder["dim"], "pooling": "mean over patch tokens, then over strided crops"},
        "input": contract.to_dict(),
        "classifier": classifier,
        "finetuning": finetuning(folder, ckpt, results) | {"test": test_evaluation(results, predictions, labels)},
        "software": software(),
    }


def is_softmax(predictions: dict[str, np.ndarray]) -> bool:
    """Whether the run's scores are a softmax (rows sum to 1, one target per record): a multi-class run whose
    best_ckpt.pt predates its `multiclass` key."""
    scores, targets = predictions["val_scores"], predictions["val_targets"]
    return bool(np.allclose(scores.sum(1), 1, atol=1e-4) and (targets.sum(1) == 1).all() and scores.shape[1] > 1)


def decide(classifier: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """The release's decisions on `scores` (what `Classifier.labels` computes), for the card's test figures."""
    if classifier["multiclass"]:
        return (np.arange(scores.shape[1])[None] == scores.argmax(1)[:, None]).astype(np.uint8)
    return (scores >= np.array([c["threshold"] for c in classifier["classes"]])[None]).astype(np.uint8)


def finetuning(folder: Path, ckpt: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Where the classifier comes from: the run, its encoder, protocol, best step and data."""
    keys = ("protocol", "protocol_name", "seed", "encoder_name", "encoder_pretrained", "best_step", "steps")
    return {k: results.get(k) for k in keys} | {
        "run": str(folder),
        "encoder": results.get("encoder", ckpt.get("encoder_source")),
        "encoder_sha256": results.get("encoder_sha256", ckpt.get("encoder_sha256")),
        "best_ckpt_sha256": sha256_file(folder / "best_ckpt.pt"),
        "val_best_auc": results.get("val_best_auc"),
        "records": {split: results.get(f"n_{split}") for split in ("train", "val", "test")},
        "data": results.get("data"),
        "config": ckpt.get("finetune_config") or results.get("config"),
    }


def export_classifier(folder: Path, out: Path, name: str | None, overwrite: bool) -> int:
    """Check, read, build, then write: the weights first, config.json with their digests, the card last."""
    inputs = [("--classifier", folder / f) for f in RUN_FILES]
    check_outputs(outputs_of("--out", out, release_files(out, CLASSIFIER)), inputs, overwrite)
    ckpt, predictions, results = read_run(folder)
    config = classifier_config(name or out.absolute().name, folder, ckpt, predictions, results)
    encoder, _ = build_encoder(ckpt["config"], str(folder / "best_ckpt.pt"))
    load_state(encoder, ckpt["encoder"], str(folder / "best_ckpt.pt"))
    head = AttentiveProbe(**config["classifier"]["head"])
    try:
        head.load_state_dict(ckpt["head"])
    except RuntimeError:
        raise UserError(f"{folder / 'best_ckpt.pt'}: its head weights do not fit its head_config") from None

    out.mkdir(parents=True, exist_ok=True)
    config["weights"] = save_weights(out / WEIGHTS, encoder.state_dict())
    config["classifier"]["head"] |= save_weights(out / HEAD_WEIGHTS, head.state_dict())
    write_json(out / CONFIG, config)
    write_card(out / CARD, render_classifier_card(config))
    classes = config["classifier"]["classes"]
    print(
        f"export: {folder} -> {out} ({WEIGHTS}, {HEAD_WEIGHTS}, {CONFIG}, {CARD}; task {ckpt['task']}, "
        f"{len(classes)} classes, decisions: {config['classifier']['decision']['rule']})"
    )
    return 0
