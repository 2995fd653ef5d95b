"""What a task gives its users (evaluation, the online probe): dump rows and targets per split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from myjepa.dumps import Dump


@dataclass
class Splits:
    """Dump row numbers and targets for train / val / test; `classes` names the target columns."""

    classes: list[str]
    rows: dict[str, np.ndarray]  # split -> dump row indices
    targets: dict[str, np.ndarray]  # split -> (n, C) uint8
    folds: dict[str, list[int]]


@dataclass
class TaskData:
    dump: Dump
    splits: Splits  # the task's dump rows and targets per split
    train_fold_rows: np.ndarray  # every dump row of the train folds, labelled or not: the normalisation's records
    multiclass: bool  # one class per record: softmax + cross-entropy instead of sigmoid + binary cross-entropy
    descriptions: list[str]  # each class in words (PTB-XL's statement names; a LABELS.csv's class names)
    source: dict[str, Any]  # where the labels come from: the PTB-XL tables folder or the LABELS.csv
