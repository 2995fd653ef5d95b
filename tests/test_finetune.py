"""`myjepa finetune` on small dumps written here: outputs, cache equivalence, normalisation, bad input."""

import json
import os
import signal
from pathlib import Path

import conftest
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from myjepa import LEADS
from myjepa.dumps import norm_stats
from myjepa.encoders.crops import StridedCrops, crop_starts
from myjepa.encoders.load import encoder_or_baseline
from myjepa.errors import Stopped, UserError
from myjepa.evaluate import training
from myjepa.evaluate.config import CONFIG_DIR
from myjepa.evaluate.features import encode_cache, predict_cached, predict_encoded
from myjepa.evaluate.finetune import main
from myjepa.evaluate.run import check_compatible
from myjepa.models.heads import AttentiveProbe
from myjepa.models.vit import VisionTransformer

SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample"
FS, SECONDS = 100, 10
ENCODER = {
    "fs": FS,
    "leads": list(LEADS),
    "channel_size": 1000,
    "patch_size": 25,
    "dim": 32,
    "depth": 1,
    "num_heads": 2,
    "mlp_ratio": 2.0,
    "num_registers": 1,
}
QUICK = [
    "--set",
    "steps=12",
    "--set",
    "eval_interval=4",
    "--set",
    "batch_size=16",
    "--set",
    "bootstrap_samples=50",
    "--set",
    "log_interval=4",
]


def write_dump(path: Path, db: pd.DataFrame, signals: np.ndarray) -> Path:
    """A 100 Hz PTB-XL-layout dump of `signals` for the database rows `db`."""
    index = db[["ecg_id", "patient_id", "strat_fold", "scp_codes"]].assign(file=db["filename_lr"])
    return conftest.write_dump(path, signals, index, {"fs": FS})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """353 real PTB-XL rows with synthetic 100 Hz signals; SR records carry a regular 1.2 Hz wave."""
    root = tmp_path_factory.mktemp("ptbxl")
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv")
    db = db[db.ecg_id <= 360].reset_index(drop=True)
    db.to_csv(root / "ptbxl_database.csv", index=False)
    (root / "scp_statements.csv").write_bytes((SAMPLE / "scp_statements.csv").read_bytes())
    rng = np.random.default_rng(0)
    t = np.arange(FS * SECONDS) / FS
    sr = db.scp_codes.str.contains("'SR'").to_numpy()
    signals = rng.normal(0, 0.3, (len(db), 12, FS * SECONDS))
    signals[sr] += np.sin(2 * np.pi * 1.2 * t)[None, None]
    signals[db.strat_fold.isin([9, 10]).to_numpy()] += 5.0  # val/test offset: must not leak into the normalisation
    dump = write_dump(root / "ptb-xl.npy", db, signals)
    enc_yaml = root / "enc.yaml"
    enc_yaml.write_text(yaml.safe_dump(ENCODER))
    return {"dir": root, "dump": dump, "encoder": enc_yaml, "db": db, "signals": signals}


def run(data, out, *extra, task="rhythm", config="linear", encoder=None):
    argv = [
        "--data-dir",
        str(data["dir"]),
        "--dump",
        str(data["dump"]),
        "--encoder",
        str(encoder or data["encoder"]),
        "--task",
        task,
        "--config",
        config,
        "--out",
        str(out),
        *QUICK,
        *extra,
    ]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def linear_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("linear")
    return out, run(data, out, "--seed", "3", "--set", "steps=80", "--set", "eval_interval=20")


def test_linear_outputs_follow_the_contract(data, linear_run):
    out, res = linear_run
    for key in (
        "task",
        "protocol",
        "seed",
        "encoder",
        "encoder_sha256",
        "config",
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
    ):
        assert key in res, key
    assert res["task"] == "rhythm" and res["protocol"] == "linear" and res["seed"] == 3
    assert res["encoder"] == str(data["encoder"]) and len(res["encoder_sha256"]) == 64
    assert res["config"]["steps"] == 80 and res["steps"] <= 80 and res["device"] == "cpu"
    rhythm_codes = {"SR", "AFIB", "STACH", "SARRH", "SBRAD", "PACE", "SVARR", "BIGU", "AFLT", "SVTAC", "PSVT", "TRIGU"}
    labelled = data["db"].scp_codes.map(lambda s: bool(rhythm_codes & set(eval(s))))
    folds = data["db"].strat_fold[labelled]
    assert 0 < labelled.sum() < len(labelled)  # records without a rhythm label are dropped
    assert res["n_val"] == (folds == 9).sum() and res["n_test"] == (folds == 10).sum()
    assert res["n_train"] == folds.between(1, 8).sum()
    lo, hi = res["test_auc_ci"]
    assert 0 <= lo <= res["test_auc"] <= hi <= 1
    names = [c["name"] for c in res["classes"]]
    assert "SR" in names and names == sorted(names)
    defined = [c["auc"] for c in res["classes"] if c["auc"] is not None]
    assert res["test_auc"] == pytest.approx(np.mean(defined))
    # rare rhythm classes have no positive in fold 10 of 350 records: null AUC with a note, no crash
    undefined = [c for c in res["classes"] if c["auc"] is None]
    assert undefined and all(c["note"] and c["n_pos"] == 0 for c in undefined)
    sr = next(c for c in res["classes"] if c["name"] == "SR")
    assert sr["auc"] > 0.9  # the SR wave is easy to find
    pred = np.load(out / "predictions.npz")
    assert list(pred["classes"]) == names
    assert pred["test_scores"].shape == pred["test_targets"].shape == (res["n_test"], len(names))
    assert pred["val_scores"].shape == pred["val_targets"].shape == (res["n_val"], len(names))
    assert ((pred["test_scores"] >= 0) & (pred["test_scores"] <= 1)).all()
    assert pred["test_targets"][:, names.index("SR")].sum() == sr["n_pos"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    assert {"step", "train/loss", "train/lr", "val/auc", "val/best_auc", "test/auc", "test/auc/SR"} <= keys
    ckpt = torch.load(out / "best_ckpt.pt", weights_only=True)
    assert ckpt["classes"] == names and ckpt["task"] == "rhythm" and ckpt["config"] == ENCODER
    assert not (out / ".feature_cache").exists()


def test_normalisation_uses_train_folds_only(data, linear_run):
    out, _ = linear_run
    ckpt = torch.load(out / "best_ckpt.pt", weights_only=True)
    x = data["signals"].astype(np.float16).astype(np.float64)
    train = x[data["db"].strat_fold.between(1, 8).to_numpy()]
    np.testing.assert_allclose(ckpt["norm_mean"], train.mean((0, 2)), atol=1e-4)
    np.testing.assert_allclose(ckpt["norm_std"], train.std((0, 2)), rtol=1e-4)
    assert abs(np.mean(ckpt["norm_mean"]) - x.mean()) > 1.0  # val/test (offset by 5 mV) would have shifted it


def test_cached_and_uncached_predictions_match(data):
    torch.manual_seed(0)
    signals = np.load(data["dump"], mmap_mode="r")
    rows = np.arange(20, 45)
    mean, std = norm_stats(signals, np.arange(0, 200))
    encoder = VisionTransformer.from_config(ENCODER).eval()
    head = AttentiveProbe(ENCODER["dim"], 4, num_heads=2)
    starts = crop_starts(signals.shape[2], 250, 125)
    assert starts.tolist() == [0, 125, 250, 375, 500, 625, 750]
    crops = StridedCrops(signals, starts, 250, mean, std)
    cache = encode_cache(encoder, crops, rows, torch.device("cpu"), batch_crops=50)
    assert cache.dtype == np.float16 and cache.shape == (25, 7, 10, ENCODER["dim"])
    for multiclass in (False, True):
        cached = predict_cached(head, cache, torch.device("cpu"), multiclass, batch_records=8)
        direct = predict_encoded(encoder, head, crops, rows, torch.device("cpu"), multiclass, batch_crops=64)
        np.testing.assert_allclose(cached, direct, atol=2e-3)
        assert np.abs(cached - direct).max() < 0.05 * cached.std()


def test_uncached_linear_protocol_equals_the_cached_run(data, linear_run, tmp_path):
    """The same seed and steps without the feature cache: the same probe, up to the cache's float16 tokens."""
    cached_out, cached = linear_run
    res = run(
        data, tmp_path, "--seed", "3", "--set", "steps=80", "--set", "eval_interval=20", "--set", "feature_cache=false"
    )
    assert res["config"]["feature_cache"] is False and cached["config"]["feature_cache"] is True
    assert (res["steps"], res["n_test"]) == (cached["steps"], cached["n_test"])
    uncached_scores = np.load(tmp_path / "predictions.npz")["test_scores"]
    cached_scores = np.load(cached_out / "predictions.npz")["test_scores"]
    np.testing.assert_allclose(uncached_scores, cached_scores, atol=5e-3)
    assert res["test_auc"] == pytest.approx(cached["test_auc"], abs=5e-3)


def test_finetune_then_finetune_after_linear(data, linear_run, tmp_path):
    linear_out, _ = linear_run
    res = run(data, tmp_path / "ft", config="finetune", task="rhythm")
    assert res["protocol"] == "finetune" and res["config"]["dropout"] == 0.05
    res2 = run(
        data,
        tmp_path / "fal",
        "--init",
        str(linear_out / "best_ckpt.pt"),
        "--seed",
        "3",
        config="finetune_after_linear",
    )
    assert res2["protocol"] == "finetune_after_linear"
    # a step too small to move anything: the predictions are the linear run's, so --init loaded its head and encoder
    still = ["--set", "steps=1", "--set", "eval_interval=1", "--set", "lr=1e-12", "--set", "min_lr=1e-12"]
    init = ["--init", str(linear_out / "best_ckpt.pt"), "--seed", "3"]
    run(data, tmp_path / "still", *init, *still, config="finetune_after_linear")
    linear_scores = np.load(linear_out / "predictions.npz")["test_scores"]
    after = np.load(tmp_path / "still" / "predictions.npz")["test_scores"]
    run(data, tmp_path / "fresh", "--seed", "3", *still, config="finetune")  # the same, with a new head
    fresh = np.load(tmp_path / "fresh" / "predictions.npz")["test_scores"]
    np.testing.assert_allclose(after, linear_scores, atol=1e-3)
    assert np.abs(fresh - linear_scores).max() > 0.1
    with pytest.raises(UserError, match="needs --init"):
        run(data, tmp_path / "x", config="finetune_after_linear")
    with pytest.raises(UserError, match="trained for task 'rhythm'"):
        run(
            data,
            tmp_path / "y",
            "--init",
            str(linear_out / "best_ckpt.pt"),
            config="finetune_after_linear",
            task="form",
        )


def test_st_mem_is_multiclass(data, tmp_path):
    res = run(data, tmp_path, task="ST-MEM")
    pred = np.load(tmp_path / "predictions.npz")
    assert (pred["test_targets"].sum(1) == 1).all()
    np.testing.assert_allclose(pred["test_scores"].sum(1), 1.0, atol=1e-5)
    assert [c["name"] for c in res["classes"]] == list(pred["classes"])


def test_encoder_checkpoint_formats(data, tmp_path):
    enc = VisionTransformer.from_config(ENCODER)
    torch.save(
        {"encoder": enc.state_dict(), "config": ENCODER, "pretrain_config": {}, "step": 7}, tmp_path / "encoder.pt"
    )
    model = {f"encoder.{k}": v for k, v in enc.state_dict().items()} | {"predictor.w": torch.zeros(2)}
    torch.save(
        {"model": model, "optimizer": {}, "step": 9, "config": dict(ENCODER, lr=1e-3)}, tmp_path / "last_ckpt.pt"
    )
    for name, step in (("encoder.pt", 7), ("last_ckpt.pt", 9)):
        loaded = encoder_or_baseline(tmp_path / name)
        assert loaded.pretrained and loaded.step == step and loaded.config == ENCODER
        for k, v in enc.state_dict().items():
            assert torch.equal(loaded.encoder.state_dict()[k], v)
    res = run(data, tmp_path / "out", encoder=tmp_path / "encoder.pt")
    assert res["encoder"] == str(tmp_path / "encoder.pt")
    assert not encoder_or_baseline("tiny").pretrained  # a shipped pretraining config: random init


def test_bad_input_is_a_clear_error(data, tmp_path):
    with pytest.raises(UserError, match="unknown task 'rythm'"):
        run(data, tmp_path, task="rythm")
    with pytest.raises(UserError, match=r"unknown key 'stepz' \(did you mean 'steps'\?\)"):
        run(data, tmp_path, "--set", "stepz=3")
    with pytest.raises(UserError, match=r"val split \(fold 12\) has no records"):
        run(data, tmp_path, "--val-fold", "12")
    # a checkpoint of another architecture
    other = VisionTransformer.from_config(dict(ENCODER, depth=2))
    torch.save({"encoder": other.state_dict(), "config": ENCODER}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other.pt: the stored encoder weights do not fit.*unexpected weights"):
        run(data, tmp_path, encoder=tmp_path / "other.pt")
    torch.save({"model": {"conv1.weight": torch.zeros(3)}, "config": ENCODER}, tmp_path / "resnet.pt")
    with pytest.raises(UserError, match="no 'encoder.' weights"):
        run(data, tmp_path, encoder=tmp_path / "resnet.pt")
    # a dump that does not match the database
    db = data["db"]
    bad = write_dump(tmp_path / "bad.npy", db.iloc[:-1], data["signals"][:-1])
    with pytest.raises(UserError, match=r"bad.npy: 352 records but .*ptbxl_database.csv lists 353"):
        main(
            [
                "--data-dir",
                str(data["dir"]),
                "--dump",
                str(bad),
                "--encoder",
                str(data["encoder"]),
                "--task",
                "rhythm",
                "--config",
                "linear",
                "--out",
                str(tmp_path),
            ]
        )
    assert not (tmp_path / "results.json").exists()


def test_a_failed_run_leaves_nothing_behind(data, tmp_path):
    """A training loss that is not finite (an lr far too high) fails after metrics.jsonl is open: the run
    removes its folder, so running it again with a sane lr needs no --overwrite."""
    with pytest.raises(UserError, match="training loss is (nan|inf) at step [0-9]+; lower lr"):
        run(data, tmp_path / "out", "--set", "lr=1e30")
    assert not (tmp_path / "out").exists()
    assert run(data, tmp_path / "out")["test_auc"] > 0.5


def test_a_stopped_run_removes_its_files_and_keeps_the_folder_it_found(data, tmp_path, monkeypatch):
    """SIGTERM (a SLURM time limit) at step 6, after metrics.jsonl got its first lines: the folder the user
    made stays, with only what was there before."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    schedule, logged = training.warmup_cosine, []

    def stop_at_step_6(step, *args):
        if step == 5:
            logged.append((out / "metrics.jsonl").read_text())
            os.kill(os.getpid(), signal.SIGTERM)
        return schedule(step, *args)

    monkeypatch.setattr(training, "warmup_cosine", stop_at_step_6)
    with pytest.raises(Stopped, match="stopped by SIGTERM; unfinished output removed"):
        run(data, out)
    assert '"train/loss"' in logged[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    assert run(data, out)["test_auc"] > 0.5


def test_encoder_must_fit_the_data():
    cfg = dict(ENCODER)
    assert check_compatible(cfg, "enc", "dump", 100, list(LEADS), 1000, 2.5, 1.25) == (250, 125)
    with pytest.raises(UserError, match="enc expects 100 Hz but dump is sampled at 500 Hz"):
        check_compatible(cfg, "enc", "dump", 500, list(LEADS), 5000, 2.5, 1.25)
    with pytest.raises(UserError, match="expects leads"):
        check_compatible(cfg, "enc", "dump", 100, list(LEADS[::-1]), 1000, 2.5, 1.25)
    with pytest.raises(UserError, match="not a multiple of the encoder's patch_size 25"):
        check_compatible(cfg, "enc", "dump", 100, list(LEADS), 1000, 2.2, 1.0)
    with pytest.raises(UserError, match="not a positive whole number of samples"):
        check_compatible(cfg, "enc", "dump", 100, list(LEADS), 1000, 2.505, 1.25)


def test_probe_forward_equals_textbook_cross_attention():
    torch.manual_seed(0)
    head = AttentiveProbe(48, 5, num_heads=4).double()
    with torch.no_grad():
        head.kv.bias.normal_()  # key bias must not matter, value bias must
        head.query.normal_()
    tokens = torch.randn(6, 11, 48, dtype=torch.float64)
    torch.testing.assert_close(head(tokens), head.reference_forward(tokens), rtol=1e-10, atol=1e-10)
    grad_fast = torch.autograd.grad(head(tokens).square().sum(), head.kv.weight)[0]
    grad_ref = torch.autograd.grad(head.reference_forward(tokens).square().sum(), head.kv.weight)[0]
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-8, atol=1e-10)


def test_results_name_the_encoder_and_protocol(data, tmp_path):
    """encoder_name and protocol_name: the report's names, given or derived from --encoder and --config."""
    (tmp_path / "vits").mkdir()
    enc = VisionTransformer.from_config(ENCODER)
    torch.save({"encoder": enc.state_dict(), "config": ENCODER}, tmp_path / "vits" / "encoder.pt")
    res = run(data, tmp_path / "pretrained", encoder=tmp_path / "vits" / "encoder.pt")
    assert res["encoder_name"] == "vits" and res["protocol_name"] == "linear"  # the checkpoint's folder
    protocol = tmp_path / "x.yaml"
    protocol.write_text((CONFIG_DIR / "linear.yaml").read_text())
    res = run(data, tmp_path / "random", config=str(protocol))
    assert res["encoder_name"] == f"random-{data['encoder'].stem}" and res["protocol_name"] == "x"
    assert res["protocol"] == "linear"
    res = run(data, tmp_path / "named", "--encoder-name", "ViT-S mimic", "--protocol-name", "probe")
    assert res["encoder_name"] == "ViT-S mimic" and res["protocol_name"] == "probe"
    assert res["encoder"] == str(data["encoder"]) and res["protocol"] == "linear"
    with pytest.raises(UserError, match="--encoder-name: the name is empty"):
        run(data, tmp_path / "empty", "--encoder-name", "")
