"""The pretraining archives: CODE-15% (HDF5), the Challenge 2021 sets (.hea + MATLAB .mat) and any WFDB
tree; 10 s windows, the high-pass filter, their synthetic layouts and their bad-input messages."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.signal
import wfdb
import wfdb.io.convert.matlab
from data_fixtures import lead_coded

from myjepa import LEADS
from myjepa.dumps import open_dump
from myjepa.errors import UserError
from myjepa.ingest.code15 import LEAD_NAMES as CODE15_LEADS
from myjepa.ingest.code15 import _raw as _code15_raw
from myjepa.ingest.convert import main
from myjepa.ingest.merge import merge
from myjepa.ingest.record import highpass_filter
from myjepa.ingest.resample import resample
from myjepa.ingest.wfdb_io import RecordError, read_record
from myjepa.ingest.writer import convert
from myjepa.synth.code15_challenge import write_mat_record
from myjepa.synth.command import synth

REVERSED = list(reversed(["I", "II", "III", "AVR", "avl", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]))
"""Leads in reverse order, in two more spellings: only a converter that maps by name gets them right."""


def f16_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=2.0**-11 + 1e-6, atol=2.0**-24)


def canonical(x: np.ndarray, names: list[str]) -> np.ndarray:
    lower = [n.lower() for n in names]
    return x[[lower.index(lead.lower()) for lead in LEADS]]


def wfdb_signal(base) -> np.ndarray:
    rec = wfdb.rdrecord(str(base))
    return canonical(rec.p_signal.T, rec.sig_name)


@pytest.fixture(scope="module")
def code15(tmp_path_factory):
    return synth("code-15", tmp_path_factory.mktemp("c") / "code-15", 230, seed=3, progress=False)


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    return synth("challenge-2021", tmp_path_factory.mktemp("ch") / "cpsc", 40, seed=4, progress=False)


# ---- layouts -------------------------------------------------------------------------------------


def test_code15_layout(code15):
    exams = pd.read_csv(code15 / "exams.csv")
    assert {"exam_id", "patient_id", "trace_file"} <= set(exams.columns) and len(exams) == 230
    assert sorted(exams["trace_file"].unique()) == ["exams_part0.hdf5", "exams_part1.hdf5"]
    with h5py.File(code15 / "exams_part1.hdf5") as f:
        tracings, ids = f["tracings"][:], f["exam_id"][:]
    assert tracings.dtype == np.float32 and tracings.shape == (31, 4096, 12)
    assert ids[-1] == 0 and not tracings[-1].any()  # the filler row
    assert ids[:-1].tolist() == exams.loc[exams["trace_file"] == "exams_part1.hdf5", "exam_id"].tolist()
    for t in tracings[:-1]:
        rows = np.flatnonzero(t.any(axis=1))
        assert (rows[0], rows[-1] + 1) in {(48, 4048), (648, 3448)}  # 10 or 7 s, padded equally at both ends


def test_challenge_layout_is_mat_v4_with_a_24_byte_header(challenge):
    hea = (challenge / "g1" / "A0001.hea").read_text().splitlines()
    assert all(line.startswith("A0001.mat 16+24 ") for line in hea[1:13])
    assert [c.split(":")[0] for c in hea[13:16]] == ["#Age", "#Sex", "#Dx"]
    val = scipy.io.loadmat(challenge / "g1" / "A0001.mat")["val"]  # scipy reads MATLAB v4
    rec = wfdb.rdrecord(str(challenge / "g1" / "A0001"), physical=False)
    assert val.dtype == np.int16 and val.shape == (12, rec.sig_len)
    np.testing.assert_array_equal(val, rec.d_signal.T)
    assert (challenge / "g1" / "A0001.mat").stat().st_size == 24 + 2 * val.size


# ---- converters ----------------------------------------------------------------------------------


def test_code15_values_padding_filler_and_short_exams(code15, tmp_path):
    stats = convert("code-15", code15, tmp_path / "c.npy", max_skip_fraction=0.3, progress=False)
    dump = open_dump(tmp_path / "c.npy")
    exams = pd.read_csv(code15 / "exams.csv")
    assert stats["records_listed"] == 230 and stats["source_rate"] == 400 and stats["windows"] == "split"
    short = {s["id"] for s in stats["skipped"]}
    assert all(s["reason"] == "shorter than 10 s: 2800 samples at 400 Hz" for s in stats["skipped"])
    assert len(dump) == stats["records_kept"] == 230 - len(short) and short
    assert sorted(dump.index["exam_id"]) == sorted(set(exams["exam_id"]) - short)
    assert (dump.index["offset_s"] == 0).all() and stats["remainders"]["count"] == 0
    with h5py.File(code15 / "exams_part0.hdf5") as f:
        ids, tracings = f["exam_id"][:].tolist(), f["tracings"]
        for k in (0, 5, len(dump) // 3):
            exam = int(dump.index["exam_id"][k])
            x = tracings[ids.index(exam)][48:4048].T.astype(np.float64)  # without the padding
            f16_close(dump.signals[k], resample(canonical(x, CODE15_LEADS), 400, 500))


def test_code15_infinite_samples_skip_their_exam_with_the_reason(code15, tmp_path):
    """An infinite value is no gap to interpolate: its exam is skipped, named, and the rest converted (it once
    reached the statistics as NaN and ended in a traceback, whatever --max-skip-fraction allowed)."""
    src = tmp_path / "c15"
    shutil.copytree(code15, src)
    with h5py.File(src / "exams_part0.hdf5", "r+") as f:
        exam = int(f["exam_id"][0])
        tracing = f["tracings"][0]
        tracing[1000, CODE15_LEADS.index("aVR")] = np.inf
        f["tracings"][0] = tracing
    for fs in (500, 400):  # resampled, and at the archive's own rate
        stats = convert("code-15", src, tmp_path / f"{fs}.npy", fs=fs, max_skip_fraction=0.5, progress=False)
        bad = [s for s in stats["skipped"] if s["id"] == exam]
        assert bad == [{"id": exam, "file": "exams_part0.hdf5", "reason": "1 infinite value(s) in lead(s) aVR"}]
        assert np.isfinite(stats["mean"]).all() and np.isfinite(open_dump(tmp_path / f"{fs}.npy").signals[:]).all()
    with pytest.raises(UserError, match=rf"first: exams_part0.hdf5 \(record {exam}\): 1 infinite value"):
        main(["code-15", "--src", str(src), "--out", str(tmp_path / "x.npy"), "--quiet", "--max-skip-fraction", "0"])


def test_code15_padding_cut_at_the_first_and_last_nonzero_sample():
    """The padding ends at the first row with any nonzero lead; zeros inside the signal stay."""
    tracing = np.zeros((4096, 12), np.float32)
    tracing[100, 11] = 1.0  # only V6 is nonzero in the first row of the signal
    tracing[3000, 0] = -2.0
    tracing[2000] = 3.0
    raw = _code15_raw(tracing)
    assert raw.signal.shape == (12, 2901) and raw.fs == 400
    np.testing.assert_array_equal(raw.signal, tracing[100:3001].T[[CODE15_LEADS.index(lead) for lead in LEADS]])
    with pytest.raises(RecordError, match="all zeros"):
        _code15_raw(np.zeros((4096, 12), np.float32))


def test_code15_bad_inputs(code15, tmp_path):
    src = tmp_path / "c15"
    src.mkdir()
    exams = pd.read_csv(code15 / "exams.csv")
    exams.drop(columns="trace_file").to_csv(src / "exams.csv", index=False)
    with pytest.raises(UserError, match=r"exams.csv: missing column\(s\) trace_file"):
        convert("code-15", src, tmp_path / "x.npy", progress=False)
    exams.iloc[:3].to_csv(src / "exams.csv", index=False)
    with h5py.File(src / "exams_part0.hdf5", "w") as f:
        f["tracings"] = np.zeros((2, 4000, 12), np.float32)
        f["exam_id"] = np.array([1, 2])
    with pytest.raises(UserError, match=r"exams_part0.hdf5: tracings has shape \(2, 4000, 12\), expected"):
        convert("code-15", src, tmp_path / "x.npy", progress=False)
    with h5py.File(code15 / "exams_part0.hdf5") as f, h5py.File(src / "exams_part0.hdf5", "w") as g:
        g["tracings"], g["exam_id"] = f["tracings"][1:3], f["exam_id"][1:3]  # the first exam is in no part
    stats = convert("code-15", src, tmp_path / "x.npy", max_skip_fraction=0.5, progress=False)
    assert stats["skipped"][-1]["reason"] == f"exam_id {exams['exam_id'][0]} is in no HDF5 part (exams_part*.hdf5)"
    with pytest.raises(UserError, match=rf"1 of 3 records skipped, .* first: record {exams['exam_id'][0]}: exam_id"):
        convert("code-15", src, tmp_path / "y.npy", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c15", "x.index.csv", "x.npy", "x.stats.json"]


def test_mat_written_by_wfdb_equals_wfdb_physical_signal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = lead_coded(REVERSED, 6000, 500, 0)
    wfdb.wrsamp(
        "r",
        fs=500,
        units=["mV"] * 12,
        sig_name=REVERSED,
        p_signal=x.T,
        fmt=["16"] * 12,
        adc_gain=[200] * 12,
        baseline=[0] * 12,
    )
    wfdb.io.convert.matlab.wfdb_to_mat("r")  # writes rm.mat + rm.hea
    (tmp_path / "tree").mkdir()
    for f in ("rm.mat", "rm.hea"):
        (tmp_path / f).rename(tmp_path / "tree" / f)
    convert("wfdb", tmp_path / "tree", tmp_path / "w.npy", progress=False)
    dump = open_dump(tmp_path / "w.npy")
    assert dump.signals.shape == (1, 12, 5000) and dump.stats["remainders"] == {
        "count": 1,
        "seconds": 2.0,
        "reason": "shorter than 10 s after the last window",
    }
    f16_close(dump.signals[0], wfdb_signal(tmp_path / "tree" / "rm")[:, :5000])


@pytest.mark.parametrize("source", ["wfdb", "challenge-2021"])
def test_35_s_record_gives_3_windows_and_a_counted_5_s_remainder_leads_by_name(source, tmp_path):
    """Also fails if leads are mapped by position: the header lists them in reverse, spelled AVR and avl."""
    x = lead_coded(REVERSED, 35 * 250, 250, 1)
    write_mat_record(tmp_path / "src" / "sub" / "Q0001", x, 250, REVERSED, ["Age: 61", "Sex: Female", "Dx: 1,2"])
    fmt = {"fmt": ["212"] * 12, "adc_gain": [200] * 12, "baseline": [0] * 12}
    wfdb.wrsamp("S2", 250, ["mV"] * 12, REVERSED, x[:, :2000].T, write_dir=str(tmp_path / "src"), **fmt)
    stats = convert(source, tmp_path / "src", tmp_path / "w.npy", fs=250, max_skip_fraction=0.5, progress=False)
    dump = open_dump(tmp_path / "w.npy")
    assert stats["skipped"] == [{"id": "S2", "file": "S2", "reason": "shorter than 10 s: 2000 samples at 250 Hz"}]
    assert (stats["count"], stats["records_kept"], stats["remainders"]["count"]) == (3, 1, 1)
    assert stats["remainders"]["seconds"] == 5.0
    assert dump.index["offset_s"].tolist() == [0, 10, 20] and set(dump.index["file"]) == {"sub/Q0001"}
    if source == "challenge-2021":
        assert dump.index[["age", "sex", "dx"]].iloc[0].tolist() == [61, "Female", "1,2"]
    ref = wfdb_signal(tmp_path / "src" / "sub" / "Q0001")
    for w in range(3):
        f16_close(dump.signals[w], ref[:, w * 2500 : (w + 1) * 2500])
    offsets = dump.signals[:].astype(np.float64).mean(axis=(0, 2))
    np.testing.assert_allclose(offsets, 0.1 * np.arange(1, 13), atol=0.03)  # lead j carries 0.1 mV * (j + 1)


def test_format_212_and_first_window(tmp_path):
    x = lead_coded(LEADS, 12 * 500, 500, 2)
    wfdb.wrsamp(
        "a",
        500,
        ["mV"] * 12,
        list(LEADS),
        x.T,
        fmt=["212"] * 12,
        adc_gain=[200] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )
    convert("wfdb", tmp_path, tmp_path / "o" / "w.npy", windows="first", progress=False)
    dump = open_dump(tmp_path / "o" / "w.npy")
    assert dump.stats["windows"] == "first" and dump.stats["remainders"]["count"] == 0
    f16_close(dump.signals[0], wfdb_signal(tmp_path / "a")[:, :5000])


def test_highpass_is_applied_and_recorded(challenge, tmp_path):
    convert("challenge-2021", challenge, tmp_path / "h.npy", fs=250, highpass=0.5, max_skip_fraction=0.5,
            progress=False)  # fmt: skip
    dump = open_dump(tmp_path / "h.npy")
    assert dump.stats["highpass"] == {"hz": 0.5, "filter": "Butterworth order 2, scipy sosfiltfilt"}
    rec = dump.index.iloc[1]
    n = int(rec["offset_s"] + 10) * 250
    windows = int(wfdb.rdheader(str(challenge / rec["file"])).sig_len / 500 // 10)
    x = resample(wfdb_signal(challenge / rec["file"])[:, : windows * 5000], 500, 250)  # the record's whole windows
    x = scipy.signal.sosfiltfilt(highpass_filter(0.5, 250), x, axis=-1)
    f16_close(dump.signals[1], x[:, n - 2500 : n])


def test_split_shards_merge_to_the_unsharded_dump(challenge, tmp_path):
    whole = convert("challenge-2021", challenge, tmp_path / "all.npy", max_skip_fraction=0.5, progress=False)
    parts = []
    for i in (1, 2, 3):
        parts.append(tmp_path / f"p{i}.npy")
        convert("challenge-2021", challenge, parts[-1], shard=(i, 3), max_skip_fraction=0.5, progress=False)
    merged = merge(parts[::-1], tmp_path / "m.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.load(tmp_path / "all.npy"))
    pd.testing.assert_frame_equal(open_dump(tmp_path / "m.npy").index, open_dump(tmp_path / "all.npy").index)
    for key in ("mean", "std", "count", "records_kept", "remainders", "skipped"):
        assert merged[key] == whole[key], key


def test_bad_wfdb_records_are_skipped_with_reasons(tmp_path):
    x = lead_coded(LEADS, 5000, 500, 3)
    for k in range(4):
        write_mat_record(tmp_path / f"R{k}", x, 500, list(LEADS), [])
    mat = tmp_path / "R1.mat"
    mat.write_bytes(mat.read_bytes()[:-24])
    hea = tmp_path / "R2.hea"
    hea.write_text(
        "\n".join(line.rsplit(" ", 1)[0] if " 16+24 " in line else line for line in hea.read_text().split("\n"))
    )
    stats = convert("wfdb", tmp_path, tmp_path / "o" / "w.npy", max_skip_fraction=0.5, progress=False)
    assert [(s["id"], s["reason"]) for s in stats["skipped"]] == [
        ("R1", "R1.mat: 120000 bytes, but 12 x 5000 int16 after a 24-byte header take 120024"),
        ("R2", "the header gives no lead names"),
    ]


def rename_record(base: Path, new: str) -> None:
    """Give WFDB record `base` (its path without extension) the name `new`: its files and its header's lines."""
    old = base.name
    text = base.with_name(f"{old}.hea").read_text()
    for f in list(base.parent.glob(f"{old}.*")):
        f.rename(f.with_name(new + f.name[len(old) :]))
    base.with_name(f"{new}.hea").write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize("source", ["ptb-xl", "mimic-iv-ecg", "challenge-2021", "wfdb"])
def test_every_converter_reads_records_with_non_ascii_names(source, tmp_path):
    """`rä…` once read as `rÃ¤…` (the header decoded as Latin-1): "missing file", every record skipped."""
    src = synth("challenge-2021" if source == "wfdb" else source, tmp_path / "src", 3, seed=5, progress=False)
    for base in sorted(p.with_suffix("") for p in src.rglob("*.hea")):
        rename_record(base, f"rä{base.name}")
        for table in src.glob("*.csv"):  # ptbxl_database.csv and record_list.csv name records by path
            table.write_text(table.read_text().replace(f"/{base.name}", f"/rä{base.name}"), encoding="utf-8")
    stats = convert(source, src, tmp_path / "o.npy", max_skip_fraction=0, progress=False)
    assert stats["skipped"] == [] and stats["records_kept"] == 3
    assert all("/rä" in f"/{file}" for file in open_dump(tmp_path / "o.npy").index["file"])


def test_a_header_without_a_sample_count_is_converted_whole(tmp_path):
    x = lead_coded(LEADS, 35 * 500, 500, 6)
    write_mat_record(tmp_path / "src" / "R1", x, 500, list(LEADS), [])
    full, _ = read_record(tmp_path / "src" / "R1")
    hea = tmp_path / "src" / "R1.hea"
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([" ".join(lines[0].split()[:3]), *lines[1:]]) + "\n")  # `R1 12 500`, no count
    stats = convert("wfdb", tmp_path / "src", tmp_path / "w.npy", progress=False)
    assert (stats["count"], stats["remainders"]["seconds"]) == (3, 5.0)
    f16_close(open_dump(tmp_path / "w.npy").signals[2], full[:, 10000:15000])


def test_cli_options_and_messages(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["code-15", "--help"])
    assert "--windows {split,first}" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"--highpass 300: must be between 0 and half of --fs \(250 Hz\)"):
        main(["wfdb", "--src", str(tmp_path), "--out", str(tmp_path / "x.npy"), "--highpass", "300"])
    with pytest.raises(UserError, match="no WFDB header"):
        main(["wfdb", "--src", str(tmp_path), "--out", str(tmp_path / "x.npy")])
    for fs, why in (("0", "0 Hz is not a sampling rate"), ("1000000", "1e+06 Hz is not a sampling rate (between 1")):
        with pytest.raises(UserError, match=rf"^--fs: {re.escape(why)}"):
            main(["wfdb", "--src", str(tmp_path), "--out", str(tmp_path / "x.npy"), "--fs", fs])
    assert not list(tmp_path.iterdir())
