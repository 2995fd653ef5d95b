"""PTB-XL's benchmark tasks (Strodthoff et al. 2021): its tables, labels aggregated from `scp_codes`, then folds.

Any likelihood counts (a code listed with 0.0 is a label). Classes with fewer than `min_samples`
records are dropped, then records left without a label. `ST-MEM` is superdiagnostic restricted to
records with exactly one label, trained as a multi-class problem. `load_task_data` reads the tables
and the dump, checks that they match, and splits the task by folds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from myjepa.dumps import open_dump
from myjepa.errors import UserError
from myjepa.tasks.names import check_task, is_multiclass
from myjepa.tasks.splits import Splits, TaskData
from myjepa.utils.tables import read_csv

SUPERCLASSES = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}
"""PTB-XL's five diagnostic superclasses in words, as Wagner et al. (2020) name them."""


def table_files(folder: str | Path) -> list[Path]:
    """A PTB-XL folder's two tables: ptbxl_database.csv and scp_statements.csv."""
    return [Path(folder) / "ptbxl_database.csv", Path(folder) / "scp_statements.csv"]


def read_statements(path: str | Path) -> pd.DataFrame:
    """scp_statements.csv indexed by SCP code, with the columns the aggregation needs."""
    need = ["diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
    return read_csv(path, need, "PTB-XL", index_col=0)


def read_database(path: str | Path) -> pd.DataFrame:
    """ptbxl_database.csv with `scp_codes` parsed into dicts, in ecg_id order."""
    db = read_csv(path, ["ecg_id", "strat_fold", "scp_codes"], "PTB-XL")
    db = db.sort_values("ecg_id").reset_index(drop=True)
    db["scp_codes"] = [parse_scp_codes(s, f"{Path(path)}: ecg_id {i}") for i, s in zip(db["ecg_id"], db["scp_codes"])]
    return db


def parse_scp_codes(text: str, where: str) -> dict[str, float]:
    try:
        codes = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError):
        codes = None
    if not isinstance(codes, dict):
        raise UserError(f"{where}: scp_codes is not a dict literal: {text!r}")
    return codes


def aggregate(scp_codes: list[dict[str, float]], statements: pd.DataFrame, task: str) -> list[list[str]]:
    """The labels of each record for `task` (sorted, unique), before any class or record filtering."""
    check_task(task)
    if task == "all":
        keep = statements.index
        to_label = {code: code for code in keep}
    elif task in ("diagnostic", "subdiagnostic", "superdiagnostic", "ST-MEM"):
        diag = statements[statements["diagnostic"] == 1.0]
        column = {"diagnostic": None, "subdiagnostic": "diagnostic_subclass"}.get(task, "diagnostic_class")
        to_label = {code: (code if column is None else str(diag.at[code, column])) for code in diag.index}
    else:
        table = statements[statements[task] == 1.0]
        to_label = {code: code for code in table.index}
    return [sorted({to_label[c] for c in codes if c in to_label}) for codes in scp_codes]


def class_descriptions(statements: pd.DataFrame, task: str, classes: list[str]) -> list[str]:
    """Each class of `task` in words: a statement's description (scp_statements.csv), a superclass's name, or
    the statements a subclass groups (PTB-XL's subclass AMI holds ASMI, AMI, ALMI, ...)."""
    described = statements["description"].astype(str) if "description" in statements.columns else pd.Series(dtype=str)
    if task in ("superdiagnostic", "ST-MEM"):
        return [SUPERCLASSES.get(c, c) for c in classes]
    if task != "subdiagnostic":
        return [str(described.get(c, c)) for c in classes]
    diag = statements[statements["diagnostic"] == 1.0]
    out = []
    for c in classes:
        members = [str(m) for m in diag.index[diag["diagnostic_subclass"].astype(str) == c]]
        one = len(members) == 1
        out.append(str(described.get(members[0], c)) if one else f"statements {', '.join(members)}")
    return out


@dataclass
class TaskLabels:
    classes: list[str]
    targets: np.ndarray  # (n_kept, C) uint8 multi-hot (one-hot for ST-MEM)
    keep: np.ndarray  # (n_records,) bool: records that stay in the task


def task_labels(scp_codes: list[dict[str, float]], statements: pd.DataFrame, task: str, min_samples: int) -> TaskLabels:
    """Aggregate, drop classes with fewer than `min_samples` records, drop records left unlabelled."""
    labels = aggregate(scp_codes, statements, task)
    counts = pd.Series([c for ls in labels for c in ls], dtype=object).value_counts()
    classes = sorted(str(c) for c, n in counts.items() if n >= max(min_samples, 1))
    class_set = set(classes)
    labels = [[c for c in ls if c in class_set] for ls in labels]
    keep = np.array([len(ls) == 1 if is_multiclass(task) else len(ls) > 0 for ls in labels], dtype=bool)
    col = {c: j for j, c in enumerate(classes)}
    targets = np.zeros((int(keep.sum()), len(classes)), dtype=np.uint8)
    for row, ls in enumerate(ls for ls, k in zip(labels, keep) if k):
        targets[row, [col[c] for c in ls]] = 1
    if is_multiclass(task):  # single-label filtering can empty a class: drop it
        present = targets.sum(0) > 0
        classes = [c for c, p in zip(classes, present) if p]
        targets = targets[:, present]
    if not classes:
        raise UserError(f"task {task!r}: no class has at least {min_samples} records")
    return TaskLabels(classes, targets, keep)


def make_splits(folds: np.ndarray, labels: TaskLabels, task: str, val_fold: int, test_fold: int) -> Splits:
    """Train on every fold except val and test (1-8 by default), validate on val_fold, test on test_fold."""
    if val_fold == test_fold:
        raise UserError(f"--val-fold and --test-fold are both {val_fold}: they must differ")
    all_folds = sorted(int(f) for f in np.unique(folds))
    fold_sets = {
        "train": [f for f in all_folds if f not in (val_fold, test_fold)],
        "val": [val_fold],
        "test": [test_fold],
    }
    kept_rows = np.flatnonzero(labels.keep)
    kept_folds = folds[kept_rows]
    rows, targets = {}, {}
    for split, fs in fold_sets.items():
        mask = np.isin(kept_folds, fs)
        if not mask.any():
            what = f"fold {fs[0]}" if len(fs) == 1 else f"folds {fs}" if fs else "no fold left"
            raise UserError(f"{split} split ({what}) has no records for task {task!r}; the data has folds {all_folds}")
        rows[split] = kept_rows[mask]
        targets[split] = labels.targets[mask]
    return Splits(labels.classes, rows, targets, fold_sets)


def check_dump_index(
    index: pd.DataFrame, db: pd.DataFrame, skipped_ids: set[int], dump_name: str, db_name: str
) -> None:
    """The dump must hold exactly the database records (minus those the converter skipped), in ecg_id order."""
    if "ecg_id" not in index.columns:
        raise UserError(f"{dump_name}: the dump index has no ecg_id column; is this a PTB-XL dump?")
    expected = db["ecg_id"].to_numpy()
    if skipped_ids:
        expected = expected[~np.isin(expected, list(skipped_ids))]
    got = index["ecg_id"].to_numpy()
    if len(got) != len(expected):
        raise UserError(
            f"{dump_name}: {len(got)} records but {db_name} lists {len(expected)}"
            + (f" (after the {len(skipped_ids)} the converter skipped)" if skipped_ids else "")
            + "; convert the dump from this PTB-XL folder"
        )
    bad = np.flatnonzero(got != expected)
    if len(bad):
        i = int(bad[0])
        raise UserError(
            f"{dump_name}: row {i} holds ecg_id {got[i]} but {db_name} has ecg_id {expected[i]} there; "
            "dump and database do not match"
        )


def load_task_data(
    data_dir: str | Path, dump_path: str | Path, task: str, min_samples: int, val_fold: int, test_fold: int
) -> TaskData:
    """The dump, the task's splits (dump rows + targets) and every dump row of the train folds (for normalisation)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir}: not a folder")
    db_path, statements_path = table_files(data_dir)
    db = read_database(db_path)
    statements = read_statements(statements_path)
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
    descriptions = class_descriptions(statements, task, labels.classes)
    source = {"kind": "PTB-XL", "tables": str(data_dir), "task": task, "folds": splits.folds}
    return TaskData(dump, splits, train_fold_rows, is_multiclass(task), descriptions, source)
