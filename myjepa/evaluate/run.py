"""What one run evaluates, settled before training: the task's data, its crops, the encoder, the protocol.

`load_task_data` reads the PTB-XL tables and the dump and checks that they match (`load_labels_data`:
a user's LABELS.csv instead, `custom_labels`); `task_crops`
checks the encoder against the dump and cuts the records into the protocol's strided crops,
normalised with the train folds' statistics. `Run` gathers what best_ckpt.pt and results.json record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from myjepa.dumps import Dump, open_dump, sidecars
from myjepa.errors import UserError
from myjepa.evaluate.config import FinetuneConfig
from myjepa.evaluate.custom_labels import read_labels
from myjepa.evaluate.encoder_io import LoadedEncoder, check_compatible
from myjepa.evaluate.features import StridedCrops, crop_starts, norm_stats
from myjepa.evaluate.labels import (
    Splits,
    check_dump_index,
    is_multiclass,
    make_splits,
    read_database,
    read_statements,
    task_labels,
)


@dataclass
class TaskData:
    dump: Dump
    splits: Splits  # the task's dump rows and targets per split
    train_fold_rows: np.ndarray  # every dump row of the train folds, labelled or not: the normalisation's records
    multiclass: bool  # one class per record: softmax + cross-entropy instead of sigmoid + binary cross-entropy


@dataclass
class Run:
    """The task, protocol and encoder of one run, and the data it trains and scores on."""

    task: str
    cfg: FinetuneConfig
    seed: int
    encoder: LoadedEncoder
    encoder_sha256: str
    encoder_name: str  # how the report names the encoder and the protocol
    protocol_name: str
    splits: Splits
    crops: StridedCrops
    stride: int  # samples between crop starts
    multiclass: bool

    @property
    def classes(self) -> list[str]:
        return self.splits.classes


def load_task_data(
    data_dir: str | Path, dump_path: str | Path, task: str, min_samples: int, val_fold: int, test_fold: int
) -> TaskData:
    """The dump, the task's splits (dump rows + targets) and every dump row of the train folds (for normalisation)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir}: not a folder")
    db_path = data_dir / "ptbxl_database.csv"
    db = read_database(db_path)
    statements = read_statements(data_dir / "scp_statements.csv")
    dump = open_dump(dump_path)
    skipped = {
        int(s["id"])
        for s in dump.stats.get("skipped", [])
        if isinstance(s, dict) and str(s.get("id", "")).lstrip("-").isdigit()
    }
    check_dump_index(dump.index, db, skipped, str(dump.path), str(db_path))
    db = db[~db["ecg_id"].isin(skipped)].reset_index(drop=True)
    labels = task_labels(list(db["scp_codes"]), statements, task, min_samples)
    folds = db["strat_fold"].to_numpy()
    splits = make_splits(folds, labels, task, val_fold, test_fold)
    train_fold_rows = np.flatnonzero(np.isin(folds, splits.folds["train"]))
    return TaskData(dump, splits, train_fold_rows, is_multiclass(task))


def load_labels_data(labels: str | Path, dump_path: str | Path, val_fold: int, test_fold: int) -> TaskData:
    """The dump and a user's task from LABELS.csv; the train split's records are the normalisation's."""
    dump = open_dump(dump_path)
    splits, multiclass = read_labels(labels, dump.index, str(sidecars(dump.path)[0]), val_fold, test_fold)
    return TaskData(dump, splits, splits.rows["train"], multiclass)


def task_crops(data: TaskData, encoder: LoadedEncoder, crop_s: float, stride_s: float) -> tuple[StridedCrops, int]:
    """The strided crops of the dump's records, once the encoder is known to fit the dump; and the stride."""
    dump = data.dump
    length = dump.signals.shape[2]
    crop, stride = check_compatible(
        encoder.config, str(encoder.path), str(dump.path), dump.fs, dump.leads, length, crop_s, stride_s
    )
    starts = crop_starts(length, crop, stride)
    mean, std = norm_stats(dump.signals, data.train_fold_rows)
    return StridedCrops(dump.signals, starts, crop, mean, std), stride
