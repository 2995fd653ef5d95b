"""Finetune results.json files -> three tables: one row per job, one per job x class, and the mean and
std over seeds with the random-init baseline beside. The CSV files keep every number exactly.

A job is named by its results.json (encoder_name, task, protocol_name, seed), never by its path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from myjepa.errors import UserError
from myjepa.report.references import PTBXL_BENCHMARK
from myjepa.tasks.metrics import paired_difference
from myjepa.utils.io import atomic_path

# results.json key -> the tables' column naming the job
JOB_KEYS = {"encoder_name": "encoder", "task": "task", "protocol_name": "protocol", "seed": "seed"}
RESULT_KEYS = (
    *JOB_KEYS,
    "protocol",
    "test_auc",
    "test_auc_ci",
    "val_best_auc",
    "classes",
    "n_train",
    "n_val",
    "n_test",
    "steps",
    "wall_time_s",
    "device",
)
PER_CLASS_COLUMNS = ["encoder", "task", "protocol", "seed", "group", "class", "auc", "n_pos", "note"]
JOB_ORDER = ["task", "protocol", "kind", "group", "encoder", "seed"]


def read_result(path: Path) -> dict[str, Any]:
    """A finetune results.json, checked for the keys the tables need."""
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read finetune results: {e}") from None
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise UserError(f"{path}: results lack the key {missing[0]!r}")
    if not isinstance(result["seed"], int) or isinstance(result["seed"], bool):
        raise UserError(f"{path}: the key 'seed' is {result['seed']!r}, not an integer")
    return result


def job_of(result: dict[str, Any]) -> dict[str, Any]:
    """encoder, task, protocol (the workflow's names) and seed of one job."""
    return {column: result[key] for key, column in JOB_KEYS.items()}


def encoder_info(encoders: dict[str, dict[str, Any]], encoder: str) -> dict[str, Any]:
    """What the workflow says of an encoder; one it does not know is a pretrained run of its own group."""
    default = {"kind": "pretrained", "group": encoder, "baseline": None, "model": "", "pretrain_seed": None}
    return encoders.get(encoder, default)


def nan_if_none(x: Any) -> float:
    return float("nan") if x is None else float(x)


def job_row(path: Path, result: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The row of auc.csv for one finetune job."""
    lo, hi = (result["test_auc_ci"] or [None, None])[:2]
    return {
        **job_of(result),
        "protocol_kind": result["protocol"],
        "kind": info["kind"],
        "group": info["group"],
        "baseline": info.get("baseline") or "",
        "model": info.get("model", ""),
        "pretrain_seed": info.get("pretrain_seed"),
        "test_auc": nan_if_none(result["test_auc"]),
        "ci_lo": nan_if_none(lo),
        "ci_hi": nan_if_none(hi),
        "val_best_auc": nan_if_none(result["val_best_auc"]),
        "n_train": result["n_train"],
        "n_val": result["n_val"],
        "n_test": result["n_test"],
        "steps": result["steps"],
        "wall_time_s": result["wall_time_s"],
        "device": result["device"],
        "encoder_sha256": result.get("encoder_sha256", ""),
        "results": str(path),
    }


def class_rows(result: dict[str, Any], info: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of auc_per_class.csv for one finetune job."""
    job = job_of(result)
    return [
        {
            **job,
            "group": info["group"],
            "class": c["name"],
            "auc": nan_if_none(c.get("auc")),
            "n_pos": c.get("n_pos"),
            "note": c.get("note") or "",
        }
        for c in result["classes"]
    ]


def aggregate(
    result_paths: Sequence[Path], encoders: dict[str, dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(one row per finetune job, one per job x class, mean/std over seeds with the baseline beside)."""
    rows, per_class = [], []
    for path in map(Path, result_paths):
        result = read_result(path)
        info = encoder_info(encoders, result["encoder_name"])
        rows.append(job_row(path, result, info))
        per_class += class_rows(result, info)
    if not rows:
        raise UserError("no finetune results to aggregate")
    jobs = pd.DataFrame(rows).sort_values(JOB_ORDER, kind="stable").reset_index(drop=True)
    return jobs, pd.DataFrame(per_class, columns=PER_CLASS_COLUMNS), summarise(jobs)


def summarise(jobs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds (pretraining and finetuning) per task x protocol x group."""
    summary = (
        jobs.groupby(["task", "protocol", "kind", "group"], sort=False)
        .agg(
            protocol_kind=("protocol_kind", "first"),
            baseline=("baseline", "first"),
            n=("test_auc", "size"),
            auc_mean=("test_auc", "mean"),
            auc_std=("test_auc", lambda x: x.std(ddof=1) if len(x) > 1 else float("nan")),
            ci_lo_mean=("ci_lo", "mean"),
            ci_hi_mean=("ci_hi", "mean"),
            val_best_auc_mean=("val_best_auc", "mean"),
        )
        .reset_index()
    )
    summary["baseline_auc_mean"], summary["baseline_auc_std"] = baseline_of(summary)
    summary["delta_vs_baseline"] = summary["auc_mean"] - summary["baseline_auc_mean"]
    summary["delta_ci_lo"], summary["delta_ci_hi"] = paired_intervals(summary, jobs)
    summary["ptbxl_benchmark"] = [PTBXL_BENCHMARK.get(t, float("nan")) for t in summary["task"]]
    return summary


def baseline_of(summary: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Each row's baseline (same task and protocol, the group its `baseline` names): mean and std, or NaN."""
    base = summary.set_index(["task", "protocol", "group"])
    mean, std = [], []
    for row in summary.itertuples():
        key = (row.task, row.protocol, row.baseline)
        found = bool(row.baseline) and key in base.index
        mean.append(base.loc[key, "auc_mean"] if found else float("nan"))
        std.append(base.loc[key, "auc_std"] if found else float("nan"))
    return mean, std


def paired_intervals(summary: pd.DataFrame, jobs: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Each row's 95 % interval of the paired difference to its baseline (`tasks.metrics.paired_difference`):
    every job of the row is paired with the baseline's job of the same finetuning seed, on the same test records
    (their predictions.npz beside results.json); NaN where a row has no baseline or a pair cannot be made."""
    lo, hi = [], []
    for row in summary.itertuples():
        pairs = []
        if row.baseline:
            same = (jobs["task"] == row.task) & (jobs["protocol"] == row.protocol)
            base = jobs[same & (jobs["group"] == row.baseline)].set_index("seed")["results"]
            mine = jobs[same & (jobs["group"] == row.group)]
            pairs = [(a, base.get(seed)) for a, seed in zip(mine["results"], mine["seed"])]
        found = test_scores(pairs)
        if found is None:
            lo.append(float("nan"))
            hi.append(float("nan"))
            continue
        _, low, high = paired_difference(*found)
        lo.append(low)
        hi.append(high)
    return lo, hi


def test_scores(pairs: list[tuple[str, str | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(targets, scores of the firsts, scores of the seconds) of result pairs on one test set, or None."""
    if not pairs or any(b is None for _, b in pairs):
        return None
    targets, firsts, seconds = None, [], []
    for a, b in pairs:
        preds = []
        for path in (a, b):
            npz = Path(path).parent / "predictions.npz"
            if not npz.is_file():
                return None
            with np.load(npz, allow_pickle=False) as data:
                preds.append((data["test_targets"], data["test_scores"]))
        targets = preds[0][0] if targets is None else targets
        if not all(t.shape == targets.shape and np.array_equal(t, targets) for t, _ in preds):
            return None
        firsts.append(preds[0][1])
        seconds.append(preds[1][1])
    return targets, np.stack(firsts), np.stack(seconds)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)  # floats as repr: they read back bit for bit


def read_csv(path: str) -> pd.DataFrame:
    """A table written by write_csv, with empty text cells as '' rather than NaN."""
    try:
        frame = pd.read_csv(path, dtype={"baseline": str, "note": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: cannot read table: {e}") from None
    return frame.fillna({c: "" for c in ("baseline", "note") if c in frame})
