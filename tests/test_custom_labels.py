"""`myjepa finetune --labels LABELS.csv`: a user's own task reaches what the same labels reach as a PTB-XL
task; every class is named in the outputs; a bad labels CSV is one clear message."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_finetune import QUICK, data, run  # noqa: F401 (data: the fixture below builds on it)

from myjepa.errors import UserError
from myjepa.evaluate.finetune import main
from myjepa.tasks.ptbxl import load_task_data

LONGER = ["--seed", "3", "--set", "steps=80", "--set", "eval_interval=20"]
MIN_SAMPLES = 10  # rarer rhythm classes may have no positive in the train folds, which --labels refuses


@pytest.fixture(scope="module")
def ptbxl(data):  # noqa: F811
    """test_finetune's 353 real PTB-XL rows with synthetic 100 Hz signals (SR records carry a 1.2 Hz wave)."""
    return data


def task_csv(ptbxl, path: Path, task: str = "rhythm") -> pd.DataFrame:
    """The PTB-XL task's records, folds and classes as a labels CSV (ecg_id, fold, one 0/1 column per class)."""
    task_data = load_task_data(ptbxl["dir"], ptbxl["dump"], task, MIN_SAMPLES, 9, 10)
    splits, db = task_data.splits, ptbxl["db"]
    parts = []
    for split, rows in splits.rows.items():
        part = pd.DataFrame(splits.targets[split], columns=splits.classes)
        parts.append(part.assign(ecg_id=db["ecg_id"].to_numpy()[rows], fold=db["strat_fold"].to_numpy()[rows]))
    labels = pd.concat(parts).sample(frac=1.0, random_state=0)  # any row order
    labels = labels[["ecg_id", "fold", *splits.classes]]
    labels.to_csv(path, index=False)
    return labels


def run_labels(ptbxl, labels: Path, out: Path, *extra) -> dict:
    argv = ["--labels", str(labels), "--dump", str(ptbxl["dump"]), "--encoder", str(ptbxl["encoder"])]
    assert main([*argv, "--config", "linear", "--out", str(out), *QUICK, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_custom_labels_reach_the_ptbxl_tasks_auc(ptbxl, tmp_path):
    reference = run(ptbxl, tmp_path / "ptbxl", *LONGER, "--set", f"min_samples={MIN_SAMPLES}")
    labels = task_csv(ptbxl, tmp_path / "my_rhythm.csv")
    custom = run_labels(ptbxl, tmp_path / "my_rhythm.csv", tmp_path / "custom", *LONGER)
    assert custom["task"] == "my_rhythm"
    assert (
        [c["name"] for c in custom["classes"]] == [c["name"] for c in reference["classes"]] == list(labels.columns[2:])
    )
    assert (custom["n_train"], custom["n_val"], custom["n_test"]) == (
        reference["n_train"],
        reference["n_val"],
        reference["n_test"],
    )
    assert reference["test_auc"] > 0.8
    assert custom["test_auc"] == pytest.approx(reference["test_auc"], abs=0.02)  # normalised on labelled records only
    pred = np.load(tmp_path / "custom" / "predictions.npz")
    assert list(pred["classes"]) == list(labels.columns[2:])
    assert pred["test_scores"].shape == (custom["n_test"], len(labels.columns) - 2)


def test_split_column_and_multiclass_label_column(ptbxl, tmp_path):
    labels = task_csv(ptbxl, tmp_path / "folds.csv")
    split = np.where(labels["fold"] == 10, "test", np.where(labels["fold"] == 9, "val", "train"))
    single = labels[labels.iloc[:, 2:].sum(axis=1) == 1]  # records with exactly one class
    multiclass = pd.DataFrame(
        {
            "ecg_id": single["ecg_id"],
            "split": split[labels.iloc[:, 2:].sum(axis=1).to_numpy() == 1],
            "label": single.iloc[:, 2:].idxmax(axis=1),
        }
    )
    multiclass = multiclass[multiclass["label"].isin(multiclass.loc[multiclass["split"] == "train", "label"])]
    multiclass.to_csv(tmp_path / "single.csv", index=False)
    res = run_labels(ptbxl, tmp_path / "single.csv", tmp_path / "out")
    pred = np.load(tmp_path / "out" / "predictions.npz")
    np.testing.assert_allclose(pred["test_scores"].sum(axis=1), 1.0, atol=1e-5)  # softmax: one class per record
    assert [c["name"] for c in res["classes"]] == sorted(multiclass["label"].unique()) == list(pred["classes"])


def test_bad_labels_are_one_clear_message(ptbxl, tmp_path):
    labels = task_csv(ptbxl, tmp_path / "good.csv")
    name = tmp_path / "bad.csv"

    def fails(frame: pd.DataFrame, message: str, *extra) -> None:
        frame.to_csv(name, index=False)
        with pytest.raises(UserError, match=message):
            run_labels(ptbxl, name, tmp_path / "out", *extra)
        assert not (tmp_path / "out" / "results.json").exists()

    unknown = labels.copy()
    unknown.iloc[0, 0] = 99999
    fails(unknown, r"bad.csv: 1 record id\(s\) not in the dump's 'ecg_id' column, e.g. \['99999'\]")
    no_positive = labels.assign(NEW=0)
    no_positive.loc[no_positive["fold"] == 10, "NEW"] = 1
    fails(no_positive, r"bad.csv: class\(es\) 'NEW' have no positive record in the train split")
    not_binary = labels.copy()
    not_binary.iloc[3, 2] = 2
    fails(
        not_binary, rf"bad.csv: class column '{labels.columns[2]}' holds '2' in data row 4; class columns hold 0 or 1"
    )
    fails(labels.drop(columns="fold"), r"bad.csv: no 'split' column \(train/val/test\) and no 'fold' column")
    fails(labels.rename(columns={"ecg_id": "id"}), r"bad.csv: the first column, 'id', must be the record id")
    fails(labels.assign(split="training"), r"bad.csv: split 'training' in data row 1 is not one of")
    # tasks without an AUC once exited 0 with AUC nan
    one_class = pd.DataFrame({"ecg_id": labels["ecg_id"], "fold": labels["fold"], "label": "SR"})
    fails(one_class, r"bad.csv: the 'label' column holds one class, 'SR': a task needs two or more")
    all_positive = labels.assign(ALL=1)
    fails(all_positive, r"bad.csv: class\(es\) 'ALL' have no negative record in the train split")
    a = np.where(labels["fold"] == 10, 1, np.arange(len(labels)) % 2)  # every test record is A, none is B
    fails(
        pd.DataFrame({"ecg_id": labels["ecg_id"], "fold": labels["fold"], "A": a, "B": 1 - a}),
        r"bad.csv: no class has both positive and negative records in the test split, so its macro AUC is undefined",
    )
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(UserError, match=r"folder.csv: a folder, not a CSV file"):
        run_labels(ptbxl, tmp_path / "folder.csv", tmp_path / "out")
    with pytest.raises(UserError, match="--labels replaces --data-dir and --task"):
        run_labels(ptbxl, tmp_path / "good.csv", tmp_path / "out", "--task", "rhythm")
