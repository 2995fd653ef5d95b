"""Releases: export -> load -> the encoder's own embeddings; a damaged release is refused; `myjepa embed`
on real PTB-XL records at 100 Hz equals embed on the same records resampled to 500 Hz beforehand."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import conftest
import numpy as np
import pandas as pd
import pytest
import torch
from test_reliability import in_namespace

import myjepa
from myjepa import LEADS
from myjepa.dumps import dump_files, sidecars
from myjepa.encoders.contract import CROP_S, STRIDE_S
from myjepa.encoders.load import encoder_or_baseline
from myjepa.errors import UserError
from myjepa.evaluate import finetune
from myjepa.evaluate.config import load_finetune_config
from myjepa.ingest.resample import resample
from myjepa.ingest.wfdb_io import read_record, write_record
from myjepa.pretrain import train as pretrain
from myjepa.release import embed, export

pytestmark = pytest.mark.usefixtures("single_thread")
SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample" / "records100"
TINY = ["dim=32", "depth=1", "batch_size=16", "log_interval=1", "checkpoint_interval=4", "warmup_steps=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny encoder pretrained for 4 steps on 48 synthetic 10 s records at 500 Hz."""
    root = tmp_path_factory.mktemp("run")
    dump = conftest.write_dump(root / "mimic.npy", conftest.synthetic_ecg(48, seed=3))
    out = root / "pretrain"
    argv = ["--data", f"mimic-iv-ecg={dump}", "--out", str(out), "--config", "tiny", "--set", *TINY, "steps=4"]
    assert pretrain.main(argv) == 0
    return {"root": root, "dump": dump, "encoder": out / "encoder.pt"}


@pytest.fixture(scope="module")
def release(run):
    out = run["root"] / "release"
    assert export.main(["--encoder", str(run["encoder"]), "--out", str(out)]) == 0
    return out


def reference_embedding(run, x: np.ndarray) -> np.ndarray:
    """By hand: z-score with the dump's stats, 2.5 s crops every 1.25 s, tokens averaged per crop, then over crops."""
    enc = encoder_or_baseline(run["encoder"]).encoder.eval()
    stats = json.loads(run["dump"].with_name("mimic.stats.json").read_text())
    z = (x - np.array(stats["mean"])[:, None]) / np.array(stats["std"])[:, None]
    crops = [z[:, :, s : s + 1250] for s in range(0, x.shape[2] - 1250 + 1, 625)]
    with torch.no_grad():
        per_crop = [enc(torch.tensor(c, dtype=torch.float32)).mean(1).numpy() for c in crops]
    return np.mean(per_crop, axis=0)


def test_export_writes_a_self_describing_release(run, release):
    assert sorted(p.name for p in release.iterdir()) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    config = json.loads((release / "config.json").read_text())
    stats = json.loads(run["dump"].with_name("mimic.stats.json").read_text())
    assert config["format"] == "myjepa-release" and config["encoder"]["dim"] == 32
    inp = config["input"]
    assert (inp["fs"], inp["leads"], inp["units"], inp["crop"], inp["stride"]) == (500, list(LEADS), "mV", 1250, 625)
    np.testing.assert_allclose(inp["mean"], stats["mean"], rtol=1e-6)
    np.testing.assert_allclose(inp["std"], stats["std"], rtol=1e-6)
    pre = config["pretraining"]
    assert (pre["step"], pre["steps"], pre["batch_size"], pre["seed"]) == (4, 4, 16, 42)  # the default --seed
    assert pre["data"][0]["records"] == 48 and pre["data"][0]["hours"] == pytest.approx(48 * 10 / 3600)
    logged = [json.loads(line) for line in (run["encoder"].parent / "metrics.jsonl").read_text().splitlines()]
    assert pre["final_loss"]["loss"] == logged[-1]["train/loss"]
    card = (release / "MODEL_CARD.md").read_text()
    assert "| mimic-iv-ecg | 48 | 0.1 |" in card and "ODbL" in card
    assert f"{pre['final_loss']['loss']:.4f}" in card and "No evaluation results" in card


def test_export_reads_the_final_loss_past_a_cut_metrics_line(run, tmp_path):
    """A run killed mid-write (or on a full disk) leaves a cut last line in metrics.jsonl: the release says
    the last whole line's loss instead of failing on it."""
    shutil.copytree(run["encoder"].parent, tmp_path / "pretrain")
    with (tmp_path / "pretrain" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "train/lo')
    assert export.main(["--encoder", str(tmp_path / "pretrain" / "encoder.pt"), "--out", str(tmp_path / "rel")]) == 0
    logged = [json.loads(line) for line in (run["encoder"].parent / "metrics.jsonl").read_text().splitlines()]
    final = json.loads((tmp_path / "rel" / "config.json").read_text())["pretraining"]["final_loss"]
    assert final["step"] == 4 and final["loss"] == logged[-1]["train/loss"]


def test_export_load_embed_equals_the_encoders_own(run, release):
    x = conftest.synthetic_ecg(5, length=3000, seed=9)  # 6 s: 3 crops
    from_release = myjepa.load_encoder(release).embed(x, fs=500).numpy()
    from_checkpoint = myjepa.load_encoder(run["encoder"]).embed(torch.from_numpy(x), fs=500).numpy()
    assert from_release.shape == (5, 32) and from_release.dtype == np.float32
    np.testing.assert_allclose(from_release, from_checkpoint, rtol=0, atol=1e-6)
    np.testing.assert_allclose(from_release, reference_embedding(run, x), rtol=1e-4, atol=1e-5)
    model = myjepa.load_encoder(release)
    assert isinstance(model, torch.nn.Module) and model.dim == 32
    with pytest.raises(UserError, match="shorter than one crop"):
        model.embed(x[:, :, :1000], fs=500)


def test_a_release_loads_without_the_run_folder(run, release, tmp_path):
    x = conftest.synthetic_ecg(3, length=2500, seed=4)
    expected = myjepa.load_encoder(release).embed(x, fs=500).numpy()
    moved = tmp_path / "moved"
    shutil.copytree(release, moved)
    shutil.copytree(run["root"], tmp_path / "backup")
    try:
        shutil.rmtree(run["root"] / "pretrain")
        np.testing.assert_array_equal(myjepa.load_encoder(moved).embed(x, fs=500).numpy(), expected)
    finally:
        shutil.copytree(tmp_path / "backup" / "pretrain", run["root"] / "pretrain")


def test_a_changed_or_truncated_weights_file_is_refused(release, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(release, bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # one weight changed; the file still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"model.safetensors: sha256 .* does not match config.json"):
        myjepa.load_encoder(bad)
    weights.write_bytes(release.joinpath("model.safetensors").read_bytes()[:500])
    with pytest.raises(UserError, match="damaged, truncated or was changed"):
        myjepa.load_encoder(bad)
    # truncated, and config.json's digest edited to match: safetensors' own error, as one UserError
    config = json.loads((bad / "config.json").read_text())
    config["weights"]["sha256"] = __import__("hashlib").sha256(weights.read_bytes()).hexdigest()
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="cannot read the weights"):
        myjepa.load_encoder(bad)
    weights.unlink()
    with pytest.raises(UserError, match="model.safetensors: not found"):
        myjepa.load_encoder(bad)


def test_importing_myjepa_does_not_import_torch():
    code = (
        "import sys, myjepa; assert callable(myjepa.load_encoder) and callable(myjepa.load_classifier); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- myjepa embed -------------------------------------------------------------------------------


def ptbxl_records(dest: Path, fs: int, n: int = 6) -> list[str]:
    """The first `n` real PTB-XL sample records under `dest`, at 100 Hz as shipped or resampled to `fs` first."""
    names = []
    for hea in sorted(SAMPLE.rglob("*.hea"))[:n]:
        rel = hea.relative_to(SAMPLE).with_suffix("")
        x, hdr = read_record(hea.with_suffix(""))
        if fs != hdr.fs:
            x = resample(x, hdr.fs, fs)
        write_record(dest / rel, x, fs, hdr.names)
        names.append(rel.as_posix())
    return names


def run_embed(encoder, src, out, *extra):
    assert (
        embed.main(["--encoder", str(encoder), "--src", str(src), "--out", str(out), "--batch-size", "4", *extra]) == 0
    )
    return np.load(out), pd.read_csv(out.with_name(out.stem + ".index.csv"))


def test_embed_at_100_hz_equals_embed_of_the_records_resampled_to_500_hz(release, tmp_path):
    names = ptbxl_records(tmp_path / "hz100", 100)
    assert names == ptbxl_records(tmp_path / "hz500", 500)
    emb100, index100 = run_embed(release, tmp_path / "hz100", tmp_path / "e100.npy")
    emb500, index500 = run_embed(release, tmp_path / "hz500", tmp_path / "e500.npy")
    assert emb100.shape == (6, 32) and emb100.dtype == np.float32
    assert list(index100["file"]) == names == list(index500["file"])
    assert list(index100["record"]) == [Path(n).name for n in names]
    scale = np.abs(emb500).max()
    np.testing.assert_allclose(emb100, emb500, rtol=0, atol=2e-3 * scale)  # 1 µV WFDB rounding of the 500 Hz copy
    # row i is record i of the index
    model = myjepa.load_encoder(release)
    for i in (0, 5):
        x, _ = read_record(tmp_path / "hz100" / index100["file"][i])
        np.testing.assert_allclose(emb100[i], model.embed(x[None], fs=100).numpy()[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(emb100[0], emb100[1])


def test_embed_a_dump_keeps_its_index(run, release, tmp_path):
    emb, index = run_embed(release, run["dump"], tmp_path / "emb.npy")
    dump = np.load(run["dump"]).astype(np.float32)
    np.testing.assert_allclose(emb, myjepa.load_encoder(release).embed(dump, fs=500).numpy(), rtol=1e-5, atol=1e-6)
    assert list(index["file"]) == [f"r{i}" for i in range(48)]


def test_short_records_and_missing_leads_are_named(release, tmp_path, capsys):
    x = conftest.synthetic_ecg(1, length=1000, fs=100, seed=2)[0]
    write_record(tmp_path / "src" / "a", x, 100, list(LEADS))
    write_record(tmp_path / "src" / "b", x[:, :200], 100, list(LEADS))  # 2 s: shorter than a 2.5 s crop
    with pytest.raises(UserError, match=r"^b: 200 samples at 100 Hz \(2 s\) is shorter than one crop \(2.5 s"):
        run_embed(release, tmp_path / "src", tmp_path / "emb.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no temporary file left
    (tmp_path / "src" / "b.hea").unlink()
    write_record(tmp_path / "src" / "b", x[[0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]], 100, [*LEADS[:6], *LEADS[7:]])
    with pytest.raises(UserError, match=r"^b: missing lead\(s\) V1 \(it has I, .*; pass --missing-leads zero"):
        run_embed(release, tmp_path / "src", tmp_path / "emb.npy")
    emb, _ = run_embed(release, tmp_path / "src", tmp_path / "emb.npy", "--missing-leads", "zero")
    assert "warning: b: lead(s) V1 zero-filled" in capsys.readouterr().err
    x, _ = read_record(tmp_path / "src" / "a")  # as stored: 1 µV steps
    zeroed = x.copy()
    zeroed[6] = 0
    expected = myjepa.load_encoder(release).embed(np.stack([x, zeroed]), fs=100).numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-4, atol=1e-5)


def test_a_lead_named_twice_is_refused_as_the_converters_refuse_it(release, tmp_path):
    x = conftest.synthetic_ecg(1, length=1000, fs=100, seed=2)[0]
    write_record(tmp_path / "src" / "a", x, 100, [*LEADS[:6], "avl", *LEADS[7:]])  # aVL twice, no V1
    with pytest.raises(UserError, match=r"^a: lead aVL appears twice \(signals 5 and 7 of the header\)$"):
        run_embed(release, tmp_path / "src", tmp_path / "emb.npy", "--missing-leads", "zero")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_finetune_on_your_own_labels_with_a_release(run, release, tmp_path):
    rng = np.random.default_rng(0)
    split = np.array(["train"] * 32 + ["val"] * 8 + ["test"] * 8)
    labels = pd.DataFrame({"file": [f"r{i}" for i in range(48)], "split": split, "a": rng.integers(0, 2, 48)})
    labels.assign(b=1 - labels["a"]).to_csv(tmp_path / "mine.csv", index=False)
    argv = ["--labels", str(tmp_path / "mine.csv"), "--dump", str(run["dump"]), "--encoder", str(release)]
    quick = ["--set", "steps=4", "--set", "eval_interval=2", "--set", "bootstrap_samples=20"]
    assert finetune.main([*argv, "--config", "linear", "--out", str(tmp_path / "out"), *quick]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["task"] == "mine" and res["encoder_name"] == "release" and res["encoder_pretrained"]
    assert res["encoder"] == str(release / "model.safetensors")
    assert [c["name"] for c in res["classes"]] == ["a", "b"] and (res["n_train"], res["n_test"]) == (32, 8)


@pytest.mark.parametrize("protocol", ["linear", "finetune", "finetune_after_linear"])
def test_an_embedding_averages_the_crops_the_shipped_protocols_score(protocol):
    """The release's crops are its own (the input contract), and the same as every shipped protocol's."""
    cfg = load_finetune_config(protocol)
    assert (cfg.crop_s, cfg.stride_s) == (CROP_S, STRIDE_S)


def copy_dump(dump: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in dump_files(dump):
        shutil.copy(f, folder / f.name.replace(dump.stem, "x"))
    return folder / "x.npy"


def spell(spelling: str, tmp_path: Path) -> str:
    """--out naming same/x.npy (or its index) in another way; links made here."""
    same = tmp_path / "same"
    if spelling == "symlink":
        (tmp_path / "link.npy").symlink_to(same / "x.npy")
    elif spelling == "hard link":
        os.link(same / "x.npy", tmp_path / "hard.npy")
    elif spelling == "linked folder":
        (tmp_path / "alias").symlink_to(same, target_is_directory=True)
    elif spelling == "its index is the input's":
        os.link(same / "x.index.csv", tmp_path / "y.index.csv")
    return {
        "as given": "same/x.npy",
        "./ and ..": "./same/../same/x.npy",
        "absolute": str(same / "x.npy"),
        "symlink": "link.npy",
        "hard link": "hard.npy",
        "linked folder": "alias/x.npy",
        "its index is the input's": "y.npy",
    }[spelling]


@pytest.mark.parametrize(
    "spelling",
    ["as given", "./ and ..", "absolute", "symlink", "hard link", "linked folder", "its index is the input's"],
)
def test_embed_never_replaces_its_input_however_the_path_is_spelled(release, run, tmp_path, monkeypatch, spelling):
    """`myjepa embed --src same/x.npy --out same/x.npy` once replaced the dump and its index with the embeddings."""
    monkeypatch.chdir(tmp_path)
    src = copy_dump(run["dump"], tmp_path / "same")
    before = {f: f.read_bytes() for f in dump_files(src)}
    out = spell(spelling, tmp_path)
    argv = ["--encoder", str(release), "--src", "same/x.npy", "--out", out]
    for extra in ([], ["--overwrite"]):  # not even on request
        with pytest.raises(UserError, match=r"^--out .* is the input --src same/x\.(npy|index\.csv); an output never"):
            embed.main(argv + extra)
        assert {f: f.read_bytes() for f in dump_files(src)} == before


def test_embed_replaces_an_existing_output_only_with_overwrite(release, run, tmp_path):
    old = conftest.write_dump(tmp_path / "old.npy", conftest.synthetic_ecg(2, seed=1))  # a dump where --out points
    before = {f: f.read_bytes() for f in dump_files(old)}
    with pytest.raises(UserError, match=r"^--out .*old\.npy exists; pass --overwrite to replace it$"):
        run_embed(release, run["dump"], old)
    assert {f: f.read_bytes() for f in dump_files(old)} == before
    (tmp_path / "new.index.csv").write_text("left by an earlier run\n")
    with pytest.raises(UserError, match=r"^--out .*new\.npy: new\.index\.csv exists; pass --overwrite"):
        run_embed(release, run["dump"], tmp_path / "new.npy")
    emb, index = run_embed(release, run["dump"], old, "--overwrite")
    assert emb.shape == (48, 32) and len(index) == 48
    assert not sidecars(old)[1].exists()  # the replaced dump's stats.json no longer claims old.npy is a dump


def test_export_replaces_a_release_only_with_overwrite_and_never_an_input(run, release, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(release, again)
    before = {f.name: f.read_bytes() for f in again.iterdir()}
    argv = ["--encoder", str(run["encoder"]), "--out", str(again)]
    with pytest.raises(UserError, match=r"^--out .*again: model\.safetensors exists; pass --overwrite to replace it$"):
        export.main(argv)
    assert {f.name: f.read_bytes() for f in again.iterdir()} == before
    assert export.main([*argv, "--overwrite"]) == 0
    myjepa.load_encoder(again)
    results = tmp_path / "evaluated"  # a results.json saved under the name the release's config.json takes
    results.mkdir()
    (results / "config.json").write_text(json.dumps({"task": "rhythm", "test_auc": 0.9}))
    with pytest.raises(UserError, match=r"^--out .*evaluated: config\.json is the input --results .*config\.json"):
        export.main(
            ["--encoder", str(run["encoder"]), "--out", str(results), "--results", str(results / "config.json")]
            + ["--overwrite"]
        )
    assert json.loads((results / "config.json").read_text())["task"] == "rhythm"


# ---- hostile input (issue 23) -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["last_ckpt.pt", "best_ckpt.pt"])
def test_load_export_and_embed_take_the_runs_other_checkpoints(run, tmp_path, name):
    """Every entry point that takes an encoder takes last_ckpt.pt and best_ckpt.pt as finetune does (they once
    ended in `TypeError: string indices must be integers`)."""
    ckpt = run["encoder"].parent / name
    x = conftest.synthetic_ecg(3, length=2500, seed=6)
    model = myjepa.load_encoder(ckpt)
    assert model.contract == myjepa.load_encoder(run["encoder"]).contract
    expected = model.embed(x, fs=500).numpy()
    assert export.main(["--encoder", str(ckpt), "--out", str(tmp_path / "rel")]) == 0
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["pretraining"]["step"] == torch.load(ckpt, weights_only=True)["step"]
    np.testing.assert_array_equal(myjepa.load_encoder(tmp_path / "rel").embed(x, fs=500).numpy(), expected)
    emb, _ = run_embed(ckpt, run["dump"], tmp_path / "emb.npy")
    dump = np.load(run["dump"]).astype(np.float32)
    np.testing.assert_allclose(emb, model.embed(dump, fs=500).numpy(), rtol=1e-5, atol=1e-6)
    if name == "last_ckpt.pt":  # written at the run's last step, as encoder.pt: the same weights
        np.testing.assert_array_equal(expected, myjepa.load_encoder(run["encoder"]).embed(x, fs=500).numpy())


@pytest.mark.parametrize("fs", [0, -1, float("nan"), float("inf"), 1e-3, 1e9, "500", True, None])
def test_embed_refuses_a_rate_that_is_not_one(release, fs):
    x = conftest.synthetic_ecg(2, length=2500, seed=1)
    with pytest.raises(UserError, match=r"^embed: fs: .* is not (a sampling rate \(between 1 and|a number of Hz)"):
        myjepa.load_encoder(release).embed(x, fs=fs)


def test_embed_takes_any_real_number_as_fs(release):
    x = conftest.synthetic_ecg(2, length=2500, seed=1)
    model = myjepa.load_encoder(release)
    expected = model.embed(x, fs=500).numpy()
    for fs in (500.0, np.int64(500), np.float32(500), torch.tensor(500)):
        np.testing.assert_array_equal(model.embed(x, fs=fs).numpy(), expected)
    with pytest.raises(UserError, match=r"^embed: fs: array\(\[500, 250\]\) is not a number of Hz$"):
        model.embed(x, fs=np.array([500, 250]))


def test_embed_of_no_records_is_empty(release, tmp_path):
    z = myjepa.load_encoder(release).embed(np.zeros((0, 12, 2500), np.float32), fs=250)
    assert z.shape == (0, 32) and z.dtype == torch.float32
    stats = {"mean": [0.0] * 12, "std": [1.0] * 12}
    empty = conftest.write_dump(tmp_path / "empty.npy", np.zeros((0, 12, 2500), np.float32), stats=stats)
    emb, index = run_embed(release, empty, tmp_path / "e.npy")
    assert emb.shape == (0, 32) and len(index) == 0 and list(index.columns) == ["subject_id", "study_id", "file"]


@pytest.mark.parametrize("value, counts", [(np.nan, "1 NaN and 0"), (np.inf, "0 NaN and 1"), (-np.inf, "0 NaN and 1")])
def test_embed_refuses_nan_and_infinite_values_naming_the_first(release, value, counts):
    """They once came back as a row of NaN, without a word."""
    x = conftest.synthetic_ecg(3, length=2500, seed=1)
    x[2, 4, 100] = value
    where = r"\(the first in record 2, lead aVL, sample 100\); embed takes finite millivolts"
    for given in (x, torch.from_numpy(x), x.astype(np.float64)):
        with pytest.raises(UserError, match=rf"^embed: x holds {counts} infinite values {where}"):
            myjepa.load_encoder(release).embed(given, fs=500)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, bool])
def test_embed_refuses_integers_which_are_no_millivolts(release, dtype):
    x = np.ones((2, 12, 2500), dtype=dtype)
    with pytest.raises(UserError, match=rf"^embed: x holds {np.dtype(dtype)} values; embed takes millivolts as float"):
        myjepa.load_encoder(release).embed(x, fs=500)


def test_embed_warns_when_the_values_are_too_large_for_millivolts(release):
    model = myjepa.load_encoder(release)
    x = conftest.synthetic_ecg(3, length=2500, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.embed(x, fs=500)  # millivolts: no warning
    with pytest.warns(UserWarning, match=r"^embed: x peaks at \d+ mV .*are these ADC counts or microvolts\?$"):
        model.embed(x * 1000, fs=500)  # microvolts


def test_embed_names_a_dump_row_with_nan_and_says_what_it_interpolated(release, tmp_path, capsys):
    x = conftest.synthetic_ecg(5, length=2500, seed=1)
    stats = {"mean": x.mean(axis=(0, 2)).tolist(), "std": x.std(axis=(0, 2)).tolist()}  # a hand-made dump's
    x[3, 1, 7] = np.nan
    dump = conftest.write_dump(tmp_path / "d.npy", x, stats=stats)
    with pytest.raises(UserError, match=r"d\.npy: holds 1 NaN and 0 infinite values \(the first in record 3, lead II"):
        run_embed(release, dump, tmp_path / "e.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.index.csv", "d.npy", "d.stats.json"]
    write_record(tmp_path / "src" / "a", x[3], 500, list(LEADS))  # WFDB keeps NaN as 'no sample': filled
    emb, _ = run_embed(release, tmp_path / "src", tmp_path / "e.npy")
    assert "embed: 1 NaN samples interpolated linearly (as the converters do)" in capsys.readouterr().out
    assert np.isfinite(emb).all()


def test_embed_reads_records_with_non_ascii_names(release, tmp_path):
    """`rä1` once read as `rÃ¤1` (its header decoded as Latin-1): "missing file". A name that is not UTF-8 at
    all is read too, and written into the index with escapes."""
    x = conftest.synthetic_ecg(3, length=1000, fs=100, seed=2)
    write_record(tmp_path / "src" / "données" / "rä1", x[0], 100, list(LEADS))
    write_record(tmp_path / "src" / "r2", x[1], 100, list(LEADS))
    latin1 = os.fsdecode(b"r\xe43")  # the bytes of `rä3` in Latin-1: no UTF-8
    write_record(tmp_path / "src" / latin1, x[2], 100, list(LEADS))
    emb, index = run_embed(release, tmp_path / "src", tmp_path / "e.npy")
    assert list(index["file"]) == ["données/rä1", "r2", "r\\udce43"]
    expected = myjepa.load_encoder(release).embed(np.stack([read_record(tmp_path / "src" / f)[0] for f in
                                                             ("données/rä1", "r2", latin1)]), fs=100)  # fmt: skip
    np.testing.assert_allclose(emb, expected.numpy(), rtol=1e-5, atol=1e-6)


def edit_release(release: Path, folder: Path, edit) -> Path:
    shutil.copytree(release, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["input"].update(mean=c["input"]["mean"][:11]), r"input\.mean: 12 values expected .*got 11"),
        (lambda c: c["input"].update(std=[0.0] * 12), r"input\.std: .* not a finite positive number"),
        (lambda c: c["input"].update(mean=[float("nan")] * 12), r"input\.mean: .* not a finite number"),
        (lambda c: c["input"].update(fs=250), r"input\.fs: 250, but the encoder takes 500 Hz"),
        (lambda c: c["input"].update(crop=1251), r"input\.crop: 1251, not a multiple of the patch size 25"),
        (lambda c: c["input"].update(crop=10**6), r"input\.crop: 1000000, not a multiple of the patch size 25 up to"),
        (lambda c: c["input"].update(stride=0), r"input\.stride: 0, not a positive whole number"),
        (lambda c: c["input"].update(leads=c["input"]["leads"][::-1]), r"input\.leads: \['V6', .*encoder takes"),
        (lambda c: c["input"].update(units="uV"), r"input\.units: 'uV'; a MyJEPA encoder takes mV"),
        (lambda c: c["embedding"].update(dim=7), r"embedding\.dim must be the encoder's dim 32"),
        (lambda c: c["pretraining"].update(step="last"), r"pretraining\.step must be a step number, got 'last'"),
    ],
)
def test_a_release_is_checked_completely_when_it_is_loaded(release, tmp_path, edit, message):
    """A config.json with 11 means once loaded, and `embed` crashed later."""
    bad = edit_release(release, tmp_path / "bad", edit)
    with pytest.raises(UserError, match=rf"^{bad / 'config.json'}: {message}"):
        myjepa.load_encoder(bad)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_releases_files_follow_the_umask(run, tmp_path, umask):
    """model.safetensors was written 0600: colleagues on a cluster could not read a shared release."""
    previous = os.umask(umask)
    try:
        assert export.main(["--encoder", str(run["encoder"]), "--out", str(tmp_path / "rel")]) == 0
    finally:
        os.umask(previous)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "rel").iterdir()}
    assert modes == dict.fromkeys(["MODEL_CARD.md", "config.json", "model.safetensors"], 0o666 & ~umask)


def test_exports_of_the_same_encoder_are_the_same_bytes(run, tmp_path):
    digests = set()
    for i in range(4):
        out = tmp_path / f"r{i}"
        assert export.main(["--encoder", str(run["encoder"]), "--out", str(out), "--name", "same"]) == 0
        digests.add(tuple(hashlib.sha256((out / f).read_bytes()).hexdigest() for f in sorted(os.listdir(out))))
    assert len(digests) == 1


@pytest.mark.parametrize("device", ["cuda:99", "nonsense"])
def test_embed_refuses_a_device_this_torch_cannot_use(run, release, tmp_path, device):
    with pytest.raises(UserError, match=rf"^--device {device}: not usable here \(.*; torch .*, \d+ GPU\(s\)\)$"):
        run_embed(release, run["dump"], tmp_path / "e.npy", "--device", device)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "size, message",
    [
        ("8k", "{mnt}/e.npy: needs 25.7 kB but {mnt} has only 8.2 kB free"),  # was a Bus error and a temporary file
        ("28k", "{mnt}/e.index.csv: No space left on device"),  # room for the embeddings only; was no file named
    ],
)
def test_embed_into_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(release, tmp_path, size, message):
    dump = conftest.write_dump(tmp_path / "d.npy", conftest.synthetic_ecg(200, length=1250, seed=2))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = [sys.executable, "-m", "myjepa", "embed", "--encoder", str(release), "--src", str(dump)]
    proc = in_namespace(f"mount -t tmpfs -o size={size} tmpfs {mnt}", f"ls -A {mnt}", *cmd, "--out", f"{mnt}/e.npy")
    assert proc.returncode == 2 and proc.stdout.splitlines()[-1].startswith("embed: ")  # ls: nothing left
    assert proc.stderr.splitlines()[-1] == "myjepa: error: " + message.format(mnt=mnt)
