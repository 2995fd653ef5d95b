"""A user's own task for `myjepa finetune --labels LABELS.csv --dump DUMP`: which records, which split, which classes.

LABELS.csv, one row per record:
- the first column is the record id; its name is a column of the dump's index (`ecg_id`, `study_id`, `file`, ...);
- `split` (train / val / test), or `fold` (integers: --val-fold and --test-fold are val and test, the rest train);
- then one 0/1 column per class (multi-label, sigmoid outputs), or one `label` column holding each record's
  class (multi-class, softmax outputs).
The result is the same `Splits` a PTB-XL task gives, so training, scoring and outputs are the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from myjepa.dumps import open_dump, sidecars
from myjepa.errors import UserError
from myjepa.tasks.splits import Splits, TaskData
from myjepa.utils.tables import read_csv

SPLITS = ("train", "val", "test")


def dump_rows(ids: pd.Series, index: pd.DataFrame, path: Path, index_name: str) -> np.ndarray:
    """The dump row of each id (matched as text, so 17 and "17" agree); unknown or repeated ids are errors."""
    column = str(ids.name)
    if column not in index.columns:
        raise UserError(
            f"{path}: the first column, {column!r}, must be the record id and name a column of the dump index "
            f"{index_name} ({', '.join(map(str, index.columns))})"
        )
    keys = index[column].astype(str)
    if keys.duplicated().any():
        raise UserError(f"{index_name}: column {column!r} repeats {keys[keys.duplicated()].iloc[0]!r}; not a record id")
    ids = ids.astype(str)
    if ids.duplicated().any():
        raise UserError(f"{path}: record id {ids[ids.duplicated()].iloc[0]!r} is listed twice")
    row_of = pd.Series(np.arange(len(keys)), index=keys.to_numpy())
    unknown = ids[~ids.isin(row_of.index)]
    if len(unknown):
        raise UserError(
            f"{path}: {len(unknown)} record id(s) not in the dump's {column!r} column, e.g. {list(unknown[:3])}"
        )
    return row_of[ids.to_numpy()].to_numpy()


def record_splits(df: pd.DataFrame, path: Path, val_fold: int, test_fold: int) -> np.ndarray:
    """train / val / test per row, from the `split` column or from `fold`."""
    if "split" in df.columns:
        split = df["split"].astype(str).str.strip().str.lower()
        bad = ~split.isin(SPLITS)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{path}: split {df['split'].iloc[row]!r} in data row {row + 1} is not one of {SPLITS}")
        return split.to_numpy()
    if "fold" not in df.columns:
        raise UserError(
            f"{path}: no 'split' column (train/val/test) and no 'fold' column (with --val-fold/--test-fold); "
            f"it has {', '.join(map(str, df.columns))}"
        )
    if val_fold == test_fold:
        raise UserError(f"--val-fold and --test-fold are both {val_fold}: they must differ")
    fold = pd.to_numeric(df["fold"], errors="coerce")
    if fold.isna().any() or (fold != fold.round()).any():
        row = int(np.flatnonzero((fold.isna() | (fold != fold.round())).to_numpy())[0])
        raise UserError(f"{path}: fold {str(df['fold'].iloc[row])!r} in data row {row + 1} is not an integer")
    return np.where(fold == test_fold, "test", np.where(fold == val_fold, "val", "train"))


def class_targets(df: pd.DataFrame, path: Path) -> tuple[list[str], np.ndarray, bool]:
    """(classes, (records, C) uint8 targets, multiclass) from one `label` column or 0/1 class columns."""
    columns = [c for c in df.columns[1:] if c not in ("split", "fold")]
    if "label" in columns:
        if len(columns) > 1:
            raise UserError(
                f"{path}: a 'label' column (multi-class) and class columns {columns[1:3]}: use one or the other"
            )
        if df["label"].isna().any():
            raise UserError(f"{path}: 'label' is empty in data row {int(np.flatnonzero(df['label'].isna())[0]) + 1}")
        labels = df["label"].astype(str)
        classes = sorted(labels.unique())
        if len(classes) < 2:
            raise UserError(
                f"{path}: the 'label' column holds one class, {classes[0]!r}: a task needs two or more, or there is "
                "nothing to tell apart (and no AUC)"
            )
        return classes, (labels.to_numpy()[:, None] == np.array(classes)[None]).astype(np.uint8), True
    if not columns:
        raise UserError(f"{path}: no class column: add one 0/1 column per class, or a 'label' column")
    for c in columns:
        ok = df[c].isin([0, 1])
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise UserError(
                f"{path}: class column {c!r} holds {str(df[c].iloc[row])!r} in data row {row + 1}; class columns hold "
                "0 or 1 (for one class per record use a single 'label' column)"
            )
    return [str(c) for c in columns], df[columns].to_numpy().astype(np.uint8), False


def read_labels(
    path: str | Path, index: pd.DataFrame, index_name: str, val_fold: int, test_fold: int
) -> tuple[Splits, bool]:
    """The task's Splits (dump rows in dump order within each split) and whether it is multi-class."""
    path = Path(path)
    df = read_csv(path, [], "labels")
    rows = dump_rows(df.iloc[:, 0].rename(df.columns[0]), index, path, index_name)
    split = record_splits(df, path, val_fold, test_fold)
    classes, targets, multiclass = class_targets(df, path)
    out_rows, out_targets = {}, {}
    for name in SPLITS:
        mask = split == name
        if not mask.any():
            raise UserError(f"{path}: no record in the {name} split")
        order = np.argsort(rows[mask], kind="stable")
        out_rows[name], out_targets[name] = rows[mask][order], targets[mask][order]
    check_scorable(classes, out_targets, path)
    return Splits(classes, out_rows, out_targets, folds={}), multiclass


def check_scorable(classes: list[str], targets: dict[str, np.ndarray], path: Path) -> None:
    """Every class can be learnt (the train split has positive and negative records of it), and the val and test
    splits each have a class with both, without which their macro AUC (the best step's pick, the result) is
    undefined."""
    train = targets["train"]
    for kind, count in (("positive", train.sum(0)), ("negative", len(train) - train.sum(0))):
        empty = [c for c, n in zip(classes, count) if n == 0]
        if empty:
            raise UserError(f"{path}: class(es) {', '.join(map(repr, empty))} have no {kind} record in the train split")
    for split in ("val", "test"):
        positives = targets[split].sum(0)
        if not ((positives > 0) & (positives < len(targets[split]))).any():
            raise UserError(
                f"{path}: no class has both positive and negative records in the {split} split, so its macro AUC "
                "is undefined; put records of other classes there"
            )


def load_labels_data(labels: str | Path, dump_path: str | Path, val_fold: int, test_fold: int) -> TaskData:
    """The dump and a user's task from LABELS.csv; the train split's records are the normalisation's."""
    dump = open_dump(dump_path)
    splits, multiclass = read_labels(labels, dump.index, str(sidecars(dump.path)[0]), val_fold, test_fold)
    source = {"kind": "labels", "labels": str(labels)}
    return TaskData(dump, splits, splits.rows["train"], multiclass, list(splits.classes), source)
