"""Classifier releases and `myjepa predict`: a finetune run of real PTB-XL records (the 100 Hz sample) exported,
then predict on the test fold gives the run's own predictions.npz test scores, from the dump and from the WFDB
records, for a linear and a finetune run; `myjepa.load_classifier(...).predict` gives predict's numbers; releases
load without pickle; bad input is one clear error."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_finetune import ENCODER  # a random-init 100 Hz encoder: what is exported is the run's, pretrained or not

import myjepa
from myjepa import LEADS
from myjepa.encoders.release import HEAD_WEIGHTS
from myjepa.errors import UserError
from myjepa.evaluate.finetune import main as finetune
from myjepa.ingest.convert import main as convert
from myjepa.ingest.resample import resample
from myjepa.ingest.wfdb_io import read_record, write_record
from myjepa.release import export, predict
from myjepa.tasks.metrics import bootstrap_class_aucs, max_f1_threshold
from myjepa.tasks.ptbxl import load_task_data
from myjepa.utils import checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")
SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample"
QUICK = [
    "--set",
    "eval_interval=4",
    "--set",
    "batch_size=16",
    "--set",
    "bootstrap_samples=50",
    "--set",
    "log_interval=4",
]
PROTOCOLS = {"linear": ["--set", "steps=24"], "finetune": ["--set", "steps=8"]}


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory):
    """The 988 real PTB-XL sample records converted at 100 Hz, and their test fold (10) as a WFDB folder."""
    root = tmp_path_factory.mktemp("ptbxl")
    assert (
        convert(
            ["ptb-xl", "--src", str(SAMPLE), "--source-rate", "100", "--fs", "100"]
            + ["--out", str(root / "p.npy"), "--quiet"]
        )
        == 0
    )
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv")
    for rel in db.loc[db.strat_fold == 10, "filename_lr"]:
        (root / "test10" / rel).parent.mkdir(parents=True, exist_ok=True)
        for ext in (".hea", ".dat"):
            os.symlink(SAMPLE / f"{rel}{ext}", root / "test10" / f"{rel}{ext}")
    (root / "enc.yaml").write_text(yaml.safe_dump(ENCODER))
    return root


def finetune_run(ptbxl: Path, protocol: str, task: str = "rhythm") -> Path:
    out = ptbxl / f"{task}-{protocol}"
    argv = ["--data-dir", str(SAMPLE), "--dump", str(ptbxl / "p.npy"), "--encoder", str(ptbxl / "enc.yaml")]
    argv += ["--task", task, "--config", protocol, "--out", str(out), *QUICK, *PROTOCOLS[protocol]]
    assert finetune(argv) == 0
    return out


@pytest.fixture(scope="module")
def runs(ptbxl):
    """protocol -> (finetune folder, its classifier release)."""
    out = {}
    for protocol in PROTOCOLS:
        run = finetune_run(ptbxl, protocol)
        assert export.main(["--classifier", str(run), "--out", str(ptbxl / f"release-{protocol}")]) == 0
        out[protocol] = (run, ptbxl / f"release-{protocol}")
    return out


def run_predict(model: Path, src: Path, out: Path, *extra: str) -> pd.DataFrame:
    assert (
        predict.main(["--model", str(model), "--src", str(src), "--out", str(out), "--batch-size", "16", *extra]) == 0
    )
    return pd.read_csv(out)


def test_results_name_the_classes_and_the_data(ptbxl, runs):
    results = json.loads((runs["linear"][0] / "results.json").read_text())
    described = {c["name"]: c["description"] for c in results["classes"]}
    assert described["SR"] == "sinus rhythm" and described["AFIB"] == "atrial fibrillation"
    data = results["data"]
    assert (data["kind"], data["task"], data["fs"], data["records"]) == ("PTB-XL", "rhythm", 100, 988)
    assert data["folds"] == {"train": [1, 2, 3, 4, 5, 6, 7, 8], "val": [9], "test": [10]}
    npz = np.load(runs["linear"][0] / "predictions.npz")
    assert data["class_counts"]["test"] == npz["test_targets"].sum(0).tolist()


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("source", ["dump", "WFDB folder"])
def test_predict_on_the_test_fold_reproduces_the_runs_test_scores(ptbxl, runs, protocol, source, tmp_path):
    run, release = runs[protocol]
    src = ptbxl / "p.npy" if source == "dump" else ptbxl / "test10"
    table = run_predict(release, src, tmp_path / "p.csv")
    data = load_task_data(SAMPLE, ptbxl / "p.npy", "rhythm", 1, 9, 10)
    test_ids = data.dump.index["ecg_id"].to_numpy()[data.splits.rows["test"]]
    if source == "WFDB folder":  # rows: the records sorted by path, named by file (00000/00001_lr)
        assert len(table) == 128 and list(table.columns[:2]) == ["record", "file"]
        table["ecg_id"] = table["record"].str.split("_").str[0].astype(int)
    npz = np.load(run / "predictions.npz")
    classes = [str(c) for c in npz["classes"]]
    scores = table.set_index("ecg_id").loc[test_ids, [f"p_{c}" for c in classes]].to_numpy()
    assert scores.shape == npz["test_scores"].shape == (123, 10)
    np.testing.assert_allclose(scores, npz["test_scores"], rtol=0, atol=1e-5)


def test_the_python_call_gives_predicts_numbers(ptbxl, runs, tmp_path):
    release = runs["linear"][1]
    table = run_predict(release, ptbxl / "test10", tmp_path / "p.csv")
    model = myjepa.load_classifier(release)
    x = np.stack([read_record(ptbxl / "test10" / f)[0] for f in table["file"]])
    p = model.predict(x, fs=100)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float32 and p.shape == (128, len(model.classes))
    np.testing.assert_allclose(table[[f"p_{c}" for c in model.classes]].to_numpy(), p.numpy(), rtol=1e-7, atol=1e-8)
    labels = model.labels(p)
    np.testing.assert_array_equal(table[[f"label_{c}" for c in model.classes]].to_numpy(), labels)
    thresholds = np.array([c["threshold"] for c in model.config["classifier"]["classes"]])
    np.testing.assert_array_equal(labels, p.numpy() >= thresholds)
    predicted = [" ".join(c for c, on in zip(model.classes, row) if on) for row in labels]
    assert table["predicted"].fillna("").tolist() == predicted
    # other rates are resampled: the same records at 500 Hz score nearly the same
    at500 = model.predict(resample(x, 100, 500), fs=500).numpy()
    np.testing.assert_allclose(at500, p.numpy(), rtol=0, atol=2e-3)


def test_the_release_describes_itself(ptbxl, runs):
    for protocol, (run, release) in runs.items():
        assert sorted(f.name for f in release.iterdir()) == [
            "MODEL_CARD.md",
            "config.json",
            "head.safetensors",
            "model.safetensors",
        ]
        config = json.loads((release / "config.json").read_text())
        ckpt = checkpoint.load(run / "best_ckpt.pt")
        npz = np.load(run / "predictions.npz")
        clf = config["classifier"]
        assert (config["kind"], clf["task"], clf["multiclass"], clf["activation"]) == (
            "classifier",
            "rhythm",
            False,
            "sigmoid",
        )
        assert clf["token_rounding"] == ("float16" if protocol == "linear" else None)
        assert config["input"]["mean"] == ckpt["norm_mean"] and config["input"]["std"] == ckpt["norm_std"]
        assert (config["input"]["fs"], config["input"]["crop"], config["input"]["stride"]) == (100, 250, 125)
        assert clf["decision"]["rule"] == "max-f1"
        for j, c in enumerate(clf["classes"]):
            found = max_f1_threshold(npz["val_targets"][:, j], npz["val_scores"][:, j])
            assert c["threshold"] == (0.5 if found is None else pytest.approx(found[0]))
        test = config["finetuning"]["test"]
        cis = bootstrap_class_aucs(npz["test_targets"], npz["test_scores"], 50, 0)
        sr = [c["code"] for c in clf["classes"]].index("SR")
        assert test["classes"][sr]["auc_ci"] == pytest.approx(cis[sr].tolist())
        card = (release / "MODEL_CARD.md").read_text()
        row = test["classes"][sr]
        assert f"| `SR` | sinus rhythm | {clf['classes'][sr]['threshold']:.3f} |" in card
        assert f"{row['auc']:.3f} | [{cis[sr, 0]:.3f}, {cis[sr, 1]:.3f}] | {row['positives']} |" in card
        assert "CC BY 4.0" in card and "folds [1, 2, 3, 4, 5, 6, 7, 8] train" in card


def test_releases_load_without_pickle(runs, monkeypatch):
    release = runs["finetune"][1]
    expected = myjepa.load_classifier(release).predict(np.zeros((1, 12, 300), np.float32) + 0.1, fs=100)

    def refuse(*args, **kwargs):
        raise AssertionError("a release was read with pickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    model = myjepa.load_classifier(release)
    np.testing.assert_array_equal(model.predict(np.zeros((1, 12, 300), np.float32) + 0.1, fs=100), expected)
    assert myjepa.load_encoder(release).embed(np.zeros((1, 12, 300), np.float32), fs=100).shape == (1, 32)


def test_a_changed_head_or_a_wrong_kind_of_folder_is_refused(ptbxl, runs, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(runs["linear"][1], bad)
    head = bad / HEAD_WEIGHTS
    data = bytearray(head.read_bytes())
    data[-10] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"head\.safetensors: sha256 .* does not match config\.json"):
        myjepa.load_classifier(bad)
    with pytest.raises(UserError, match=r"a finetune run, not a release; export it first: myjepa export --classifier"):
        myjepa.load_classifier(runs["linear"][0])
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "kind"}))  # a v1 encoder's
    with pytest.raises(UserError, match=r"an encoder release .*myjepa export --classifier FINETUNE_DIR"):
        myjepa.load_classifier(bad)


def test_a_multiclass_task_labels_the_most_probable_class(ptbxl, tmp_path):
    run = finetune_run(ptbxl, "linear", task="ST-MEM")
    assert export.main(["--classifier", str(run), "--out", str(tmp_path / "rel")]) == 0
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    clf = config["classifier"]
    assert (clf["multiclass"], clf["activation"], clf["decision"]["rule"]) == (True, "softmax", "argmax")
    assert [c["description"] for c in clf["classes"]][:2] == ["conduction disturbance", "hypertrophy"]
    table = run_predict(tmp_path / "rel", ptbxl / "test10", tmp_path / "p.csv")
    p = table[[f"p_{c['code']}" for c in clf["classes"]]].to_numpy()
    labels = table[[f"label_{c['code']}" for c in clf["classes"]]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(labels.argmax(1), p.argmax(1))
    assert (labels.sum(1) == 1).all()


# ---- bad input: the rules of `myjepa embed` --------------------------------------------------------


def test_missing_leads_short_records_and_nan_are_named(ptbxl, runs, tmp_path, capsys):
    release = runs["linear"][1]
    x, _ = read_record(SAMPLE / "records100" / "00000" / "00001_lr")
    write_record(tmp_path / "src" / "a", x, 100, list(LEADS))
    write_record(tmp_path / "src" / "b", x[[0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]], 100, [*LEADS[:6], *LEADS[7:]])
    with pytest.raises(UserError, match=r"^b: missing lead\(s\) V1 \(it has I, .*; pass --missing-leads zero"):
        run_predict(release, tmp_path / "src", tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists() and not list(tmp_path.glob(".p.csv.tmp*"))
    table = run_predict(release, tmp_path / "src", tmp_path / "p.csv", "--missing-leads", "zero")
    assert "myjepa predict: warning: b: lead(s) V1 zero-filled" in capsys.readouterr().err
    assert table["record"].tolist() == ["a", "b"]
    (tmp_path / "src" / "b.hea").unlink()
    write_record(tmp_path / "src" / "b", x[:, :200], 100, list(LEADS))  # 2 s: shorter than a 2.5 s crop
    with pytest.raises(UserError, match=r"^b: 200 samples at 100 Hz \(2 s\) is shorter than one crop \(2.5 s"):
        run_predict(release, tmp_path / "src", tmp_path / "q.csv")
    signals = np.load(ptbxl / "p.npy")[:3].copy()
    signals[1, 4, 10] = np.nan
    dump = tmp_path / "nan.npy"
    np.save(dump, signals)
    pd.read_csv(ptbxl / "p.index.csv").head(3).to_csv(tmp_path / "nan.index.csv", index=False)
    shutil.copy(ptbxl / "p.stats.json", tmp_path / "nan.stats.json")
    with pytest.raises(
        UserError, match=r"nan\.npy: holds 1 NaN and 0 infinite values \(the first in record 1, lead aVL, sample 10\)"
    ):
        run_predict(release, dump, tmp_path / "q.csv")
    assert not (tmp_path / "q.csv").exists()
    with pytest.raises(
        UserError, match=r"^predict: x holds 1 NaN and 0 infinite values \(the first in record 1, lead aVL, sample 10\)"
    ):
        myjepa.load_classifier(release).predict(signals, fs=100)


def test_predict_never_writes_over_an_input_and_replaces_only_with_overwrite(ptbxl, runs, tmp_path):
    release = runs["linear"][1]
    src = ptbxl / "test10"
    for name in ("p.npy", "p.index.csv", "p.stats.json"):  # a dump whose index is a .csv
        os.link(ptbxl / name, tmp_path / name.replace("p.", "d."))
    index = tmp_path / "d.index.csv"
    before = index.read_bytes()
    for extra in ([], ["--overwrite"]):  # not even on request
        with pytest.raises(UserError, match=r"^--out .*d\.index\.csv is the input --src .*; an output never replaces"):
            run_predict(release, tmp_path / "d.npy", index, *extra)
    assert index.read_bytes() == before
    with pytest.raises(UserError, match=r"^--out .*config\.json: must end in \.csv$"):
        run_predict(release, src, release / "config.json")
    (tmp_path / "old.csv").write_text("x\n")
    with pytest.raises(UserError, match=r"^--out .*old\.csv exists; pass --overwrite to replace it$"):
        run_predict(release, src, tmp_path / "old.csv")
    assert (tmp_path / "old.csv").read_text() == "x\n"
    assert len(run_predict(release, src, tmp_path / "old.csv", "--overwrite")) == 128


def test_an_encoder_release_is_not_a_classifier(runs, tmp_path):
    encoder_only = tmp_path / "encoder-only"
    shutil.copytree(runs["linear"][1], encoder_only)
    config = json.loads((encoder_only / "config.json").read_text())
    (encoder_only / "config.json").write_text(json.dumps(config | {"kind": "encoder"}))
    with pytest.raises(
        UserError, match=r"encoder-only: an encoder release \(it embeds records: myjepa\.load_encoder\)"
    ):
        run_predict(encoder_only, runs["linear"][0], tmp_path / "e.csv")
    assert not (tmp_path / "e.csv").exists()
