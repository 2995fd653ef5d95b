"""Label aggregation and folds on real PTB-XL rows (tests/data/ptb-xl-sample)."""

from pathlib import Path

import numpy as np
import pytest

from myjepa.errors import UserError
from myjepa.tasks.names import check_task
from myjepa.tasks.ptbxl import (
    aggregate,
    check_dump_index,
    class_descriptions,
    make_splits,
    read_database,
    read_statements,
    task_labels,
)

SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample"


@pytest.fixture(scope="module")
def db():
    return read_database(SAMPLE / "ptbxl_database.csv")


@pytest.fixture(scope="module")
def statements():
    return read_statements(SAMPLE / "scp_statements.csv")


def labels_of(db, statements, ecg_id, task):
    row = db.index[db["ecg_id"] == ecg_id][0]
    return aggregate([db.at[row, "scp_codes"]], statements, task)[0]


def test_record_1_norm_lvolt_sr(db, statements):
    assert db.loc[db.ecg_id == 1, "scp_codes"].item() == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert labels_of(db, statements, 1, "superdiagnostic") == ["NORM"]
    assert labels_of(db, statements, 1, "subdiagnostic") == ["NORM"]
    assert labels_of(db, statements, 1, "diagnostic") == ["NORM"]
    assert labels_of(db, statements, 1, "form") == ["LVOLT"]  # likelihood 0 still counts
    assert labels_of(db, statements, 1, "rhythm") == ["SR"]
    assert labels_of(db, statements, 1, "all") == ["LVOLT", "NORM", "SR"]


def test_record_8_imi(db, statements):
    assert db.loc[db.ecg_id == 8, "scp_codes"].item() == {"IMI": 35.0, "ABQRS": 0.0, "SR": 0.0}
    assert labels_of(db, statements, 8, "superdiagnostic") == ["MI"]
    assert labels_of(db, statements, 8, "subdiagnostic") == ["IMI"]
    assert labels_of(db, statements, 8, "diagnostic") == ["IMI"]
    assert labels_of(db, statements, 8, "form") == ["ABQRS"]
    assert labels_of(db, statements, 8, "rhythm") == ["SR"]


def test_record_17_rhythm_only_is_excluded_from_diagnostic_tasks(db, statements):
    assert db.loc[db.ecg_id == 17, "scp_codes"].item() == {"AFLT": 100.0, "ABQRS": 0.0, "AFIB": 0.0}
    assert labels_of(db, statements, 17, "rhythm") == ["AFIB", "AFLT"]
    row = int(np.flatnonzero(db.ecg_id.to_numpy() == 17)[0])
    for task in ("diagnostic", "subdiagnostic", "superdiagnostic", "ST-MEM"):
        assert labels_of(db, statements, 17, task) == []
        assert not task_labels(list(db.scp_codes), statements, task, 1).keep[row]
    rhythm = task_labels(list(db.scp_codes), statements, "rhythm", 1)
    assert rhythm.keep[row]
    kept_row = int(rhythm.keep[:row].sum())
    assert {rhythm.classes[j] for j in np.flatnonzero(rhythm.targets[kept_row])} == {"AFIB", "AFLT"}


def test_superdiagnostic_classes_and_targets(db, statements):
    labels = task_labels(list(db.scp_codes), statements, "superdiagnostic", 1)
    assert labels.classes == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert labels.targets.shape == (labels.keep.sum(), 5)
    assert labels.targets.sum(1).min() >= 1  # no record without a label stays
    assert labels.targets[0].tolist() == [0, 0, 0, 1, 0]  # ecg_id 1: NORM


def test_min_samples_drops_rare_classes_then_unlabelled_records(db, statements):
    full = task_labels(list(db.scp_codes), statements, "rhythm", 1)
    counts = dict(zip(full.classes, full.targets.sum(0)))
    threshold = 10
    pruned = task_labels(list(db.scp_codes), statements, "rhythm", threshold)
    assert pruned.classes == sorted(c for c, n in counts.items() if n >= threshold)
    assert set(pruned.classes) < set(full.classes)
    assert pruned.keep.sum() < full.keep.sum()
    assert pruned.targets.sum(1).min() >= 1


def test_st_mem_is_single_label_superdiagnostic(db, statements):
    st = task_labels(list(db.scp_codes), statements, "ST-MEM", 1)
    sup = task_labels(list(db.scp_codes), statements, "superdiagnostic", 1)
    assert (st.targets.sum(1) == 1).all()
    assert st.classes == sup.classes
    single = sup.keep.copy()
    single[sup.keep] = sup.targets.sum(1) == 1
    assert (st.keep == single).all()
    assert 0 < st.keep.sum() < sup.keep.sum()


def test_folds_train_1_to_8_val_9_test_10(db, statements):
    labels = task_labels(list(db.scp_codes), statements, "superdiagnostic", 1)
    folds = db.strat_fold.to_numpy()
    splits = make_splits(folds, labels, "superdiagnostic", 9, 10)
    assert splits.folds == {"train": [1, 2, 3, 4, 5, 6, 7, 8], "val": [9], "test": [10]}
    assert set(folds[splits.rows["train"]]) == set(range(1, 9))
    assert set(folds[splits.rows["val"]]) == {9}
    assert set(folds[splits.rows["test"]]) == {10}
    n = sum(len(r) for r in splits.rows.values())
    assert n == labels.keep.sum()
    assert not set(splits.rows["train"]) & set(splits.rows["test"])
    # targets line up with rows: record 1 (row 0, fold 3) is NORM
    first = int(np.flatnonzero(splits.rows["train"] == 0)[0])
    assert splits.targets["train"][first].tolist() == [0, 0, 0, 1, 0]
    other = make_splits(folds, labels, "superdiagnostic", 1, 2)
    assert other.folds["train"] == [3, 4, 5, 6, 7, 8, 9, 10]


def test_empty_fold_and_same_folds_are_errors(db, statements):
    labels = task_labels(list(db.scp_codes), statements, "rhythm", 1)
    with pytest.raises(UserError, match=r"val split \(fold 11\) has no records for task 'rhythm'"):
        make_splits(db.strat_fold.to_numpy(), labels, "rhythm", 11, 10)
    with pytest.raises(UserError, match="must differ"):
        make_splits(db.strat_fold.to_numpy(), labels, "rhythm", 9, 9)


def test_unknown_task():
    assert check_task("rhythm") == "rhythm"
    with pytest.raises(UserError, match=r"unknown task 'Rhythm' \(did you mean 'rhythm'\?\)"):
        check_task("Rhythm")
    with pytest.raises(UserError, match="unknown task 'bogus'"):
        check_task("bogus")


def test_dump_index_must_match_database(db):
    index = db[["ecg_id"]].copy()
    check_dump_index(index, db, set(), "d.npy", "db.csv")
    with pytest.raises(UserError, match="d.npy: 987 records but db.csv lists 988"):
        check_dump_index(index.iloc[1:], db, set(), "d.npy", "db.csv")
    swapped = index.copy()
    swapped.iloc[[3, 4]] = swapped.iloc[[4, 3]].to_numpy()
    with pytest.raises(UserError, match="row 3 holds ecg_id 5 but db.csv has ecg_id 4"):
        check_dump_index(swapped, db, set(), "d.npy", "db.csv")
    check_dump_index(index[index.ecg_id != 2], db, {2}, "d.npy", "db.csv")  # a record the converter skipped
    with pytest.raises(UserError, match="no ecg_id column"):
        check_dump_index(index.rename(columns={"ecg_id": "study_id"}), db, set(), "d.npy", "db.csv")


def test_classes_are_described_in_words(statements):
    assert class_descriptions(statements, "rhythm", ["AFIB", "SR"]) == ["atrial fibrillation", "sinus rhythm"]
    assert class_descriptions(statements, "superdiagnostic", ["CD", "NORM"]) == ["conduction disturbance", "normal ECG"]
    assert class_descriptions(statements, "ST-MEM", ["MI"]) == ["myocardial infarction"]
    # a subclass that is one statement takes its description; one that groups several names them
    assert class_descriptions(statements, "subdiagnostic", ["LVH", "_AVB"]) == [
        "left ventricular hypertrophy",
        "statements 1AVB, 3AVB, 2AVB",
    ]
