"""`myjepa convert`: real PTB-XL sample, MIMIC lead order, shards + merge, bad records and metadata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from data_fixtures import MIMIC_NAMES, lead_coded, mimic_tree

from myjepa import LEADS
from myjepa.dumps import open_dump
from myjepa.errors import UserError
from myjepa.ingest.convert import main
from myjepa.ingest.merge import merge
from myjepa.ingest.output import set_npy_rows
from myjepa.ingest.resample import resample
from myjepa.ingest.stats import SUM_SHIFT
from myjepa.ingest.wfdb_io import write_record
from myjepa.ingest.writer import convert

SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample"
SPOT_CHECK = [1, 2, 3, 136, 138, 144, 146, 455, 457, 463, 700, 1000]


def f16_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to rounding to float16 (half an ulp, plus float32-vs-float64 noise)."""
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=2.0**-11 + 1e-6, atol=2.0**-24)


@pytest.fixture(scope="module")
def ptbxl100(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ptbxl") / "ptb-xl.npy"
    convert("ptb-xl", SAMPLE, out, source_rate=100, fs=100, workers=2, progress=False)
    return out


def test_ptbxl_values_order_and_folds_match_the_real_files(ptbxl100):
    dump = open_dump(ptbxl100)
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv").sort_values("ecg_id")
    assert dump.signals.dtype == np.float16 and dump.signals.shape == (len(db), 12, 1000)
    assert dump.stats["fs"] == 100 and dump.stats["leads"] == list(LEADS) and dump.stats["count"] == len(db)
    assert dump.stats["skipped"] == [] and dump.stats["nan_interpolated"] == 0
    index = dump.index
    assert list(index.columns) == ["ecg_id", "patient_id", "strat_fold", "scp_codes", "file", "offset_s"]
    assert (index["offset_s"] == 0).all()
    assert index["ecg_id"].tolist() == sorted(db["ecg_id"]) and index["ecg_id"].is_monotonic_increasing
    assert index["strat_fold"].tolist() == db["strat_fold"].tolist()
    assert index["patient_id"].tolist() == db["patient_id"].astype(int).tolist()
    assert index["scp_codes"].tolist() == db["scp_codes"].tolist()
    row_of = {e: i for i, e in enumerate(index["ecg_id"])}
    for ecg_id in SPOT_CHECK:
        if ecg_id not in row_of:  # the sample lacks a dozen ids
            continue
        rec = wfdb.rdrecord(str(SAMPLE / f"records100/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_lr"))
        ref = rec.p_signal.T[[[n.lower() for n in rec.sig_name].index(lead.lower()) for lead in LEADS]]
        f16_close(dump.signals[row_of[ecg_id]], ref)


def test_ptbxl_stats_use_train_folds_only_in_float64(ptbxl100):
    dump = open_dump(ptbxl100)
    train = dump.index["strat_fold"].between(1, 8).to_numpy()
    assert 0 < train.sum() < len(train)
    x = dump.signals[train].astype(np.float64)
    np.testing.assert_allclose(dump.stats["mean"], x.mean(axis=(0, 2)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dump.stats["std"], x.std(axis=(0, 2)), rtol=1e-10)
    all_std = dump.signals[:].astype(np.float64).std(axis=(0, 2))
    assert not np.allclose(dump.stats["std"], all_std, rtol=1e-6)
    assert dump.stats["exact_sums"]["records"] == int(train.sum())


def test_ptbxl_resampled_to_500_equals_wfdb_resampled(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv")
    db[db["ecg_id"].isin([1, 2, 3, 4])].to_csv(src / "ptbxl_database.csv", index=False)
    (src / "records100").symlink_to(SAMPLE / "records100")
    convert("ptb-xl", src, tmp_path / "d.npy", source_rate=100, fs=500, progress=False)
    dump = open_dump(tmp_path / "d.npy")
    assert dump.signals.shape == (4, 12, 5000) and dump.fs == 500
    from scipy.signal import resample_poly

    for row, ecg_id in enumerate([1, 2, 3, 4]):
        rec = wfdb.rdrecord(str(SAMPLE / f"records100/00000/{ecg_id:05d}_lr"))
        ref = resample_poly(rec.p_signal.T, 5, 1, axis=-1)
        f16_close(dump.signals[row], ref)
        f16_close(dump.signals[row], resample(rec.p_signal.T, 100, 500))


def test_mimic_leads_are_mapped_by_header_name_not_position(tmp_path):
    mimic_tree(tmp_path / "mimic", 6)
    convert("mimic-iv-ecg", tmp_path / "mimic", tmp_path / "m.npy", progress=False)
    dump = open_dump(tmp_path / "m.npy")
    assert dump.signals.shape == (6, 12, 5000)
    assert list(dump.index.columns) == ["subject_id", "study_id", "file", "offset_s"]
    offsets = dump.signals[:].astype(np.float64).mean(axis=(0, 2))
    # each lead carries 0.1 mV * (canonical index + 1); position mapping would swap aVL (4) and aVF (5)
    np.testing.assert_allclose(offsets, 0.1 * np.arange(1, 13), atol=0.02)
    for k in range(6):
        ref = lead_coded(MIMIC_NAMES, 5000, 500, k)[[MIMIC_NAMES.index(lead) for lead in LEADS]]
        np.testing.assert_allclose(dump.signals[k].astype(np.float64), ref, atol=0.5 / 200 + 2.0**-8)
    np.testing.assert_allclose(dump.stats["mean"], offsets, rtol=1e-6)  # MIMIC: stats over every record


def test_shards_merge_to_exactly_the_unsharded_dump_and_workers_do_not_matter(tmp_path):
    src = tmp_path / "mimic"
    mimic_tree(src, 40, seed=3)
    convert("mimic-iv-ecg", src, tmp_path / "full.npy", workers=1, progress=False)
    convert("mimic-iv-ecg", src, tmp_path / "full2.npy", workers=2, progress=False)
    parts = []
    for i in (3, 1, 2):  # any order: merge sorts by shard
        parts.append(tmp_path / f"part{i}.npy")
        convert("mimic-iv-ecg", src, parts[-1], workers=2, shard=(i, 3), progress=False)
    assert [len(np.load(p, mmap_mode="r")) for p in sorted(parts)] == [13, 13, 14]
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / "merged.npy")]) == 0
    full, full2, merged = (open_dump(tmp_path / f"{n}.npy") for n in ("full", "full2", "merged"))
    for other in (full2, merged):
        np.testing.assert_array_equal(other.signals, full.signals)
        pd.testing.assert_frame_equal(other.index, full.index)
        for key in ("mean", "std", "count", "skipped", "nan_interpolated", "exact_sums", "fs", "leads"):
            assert other.stats[key] == full.stats[key], key
    with pytest.raises(UserError, match=r"shards \[1, 3\] of 3; missing \[2\]"):
        merge([parts[0], parts[1]], tmp_path / "bad.npy")
    assert not (tmp_path / "bad.npy").exists()


def test_exact_sums_are_integers_in_units_of_2_pow_minus_24(tmp_path):
    mimic_tree(tmp_path / "mimic", 3)
    stats = convert("mimic-iv-ecg", tmp_path / "mimic", tmp_path / "m.npy", progress=False)
    x = np.load(tmp_path / "m.npy").astype(np.float64)
    assert stats["exact_sums"]["sum"] == [int(v) for v in np.ldexp(x.sum(axis=(0, 2)), SUM_SHIFT)]
    assert stats["exact_sums"]["samples"] == 3 * 5000


@pytest.fixture()
def bad_tree(tmp_path) -> tuple[Path, dict[int, str]]:
    """A MIMIC tree with one record per kind of damage; returns (root, study_id -> expected outcome)."""
    root = tmp_path / "bad"
    rl = mimic_tree(root, 12, seed=7)
    study = rl["study_id"].tolist()
    path = {s: root / p for s, p in zip(study, rl["path"])}
    fix = {}
    path[study[0]].with_suffix(".dat").unlink()
    fix[study[0]] = "missing file"
    dat = path[study[1]].with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1000])
    fix[study[1]] = "truncated file"
    path[study[2]].with_suffix(".hea").write_text("garbage\n")
    fix[study[2]] = "unreadable header"
    write_record(path[study[3]], lead_coded(MIMIC_NAMES, 4000, 500, 3), 500, MIMIC_NAMES, gain=200.0)
    fix[study[3]] = "shorter than 10 s"
    write_record(path[study[4]], lead_coded(MIMIC_NAMES[:11], 5000, 500, 4), 500, MIMIC_NAMES[:11], gain=200.0)
    fix[study[4]] = "missing lead(s) V6"
    x = lead_coded(MIMIC_NAMES, 5000, 500, 5)
    x[4] = np.nan
    write_record(path[study[5]], x, 500, MIMIC_NAMES, gain=200.0)
    fix[study[5]] = "lead(s) aVF entirely NaN"  # header position 4 is aVF in MIMIC's order
    x = lead_coded(MIMIC_NAMES, 5000, 500, 6)
    x[1, 100:150] = np.nan
    x[7, :10] = np.nan
    write_record(path[study[6]], x, 500, MIMIC_NAMES, gain=200.0)
    fix[study[6]] = "kept: 60 NaN"
    write_record(path[study[7]], lead_coded(MIMIC_NAMES, 7000, 500, 7), 500, MIMIC_NAMES, gain=200.0)
    fix[study[7]] = "kept: longer"
    write_record(path[study[8]], lead_coded(MIMIC_NAMES, 2500, 250, 8), 250, MIMIC_NAMES, gain=200.0)
    fix[study[8]] = "kept: 250 Hz"
    return root, fix


@pytest.mark.parametrize("chunk", [16, 3])  # one chunk in-process; four chunks, kept rows moved up across them
def test_bad_records_are_skipped_with_reasons_or_repaired(bad_tree, tmp_path, monkeypatch, chunk):
    import myjepa.ingest.writer as convert_module

    monkeypatch.setattr(convert_module, "CHUNK", chunk)
    root, fix = bad_tree
    out = tmp_path / "d.npy"
    stats = convert("mimic-iv-ecg", root, out, workers=2, max_skip_fraction=0.5, progress=False)
    skipped = {s["id"]: s for s in stats["skipped"]}
    for study, outcome in fix.items():
        if outcome.startswith("kept"):
            assert study not in skipped
        else:
            assert outcome in skipped[study]["reason"], (outcome, skipped[study])
            assert skipped[study]["file"].endswith(str(study))
    assert len(skipped) == 6 and stats["count"] == 6 and stats["nan_interpolated"] == 60
    dump = open_dump(out)
    assert len(dump.signals) == 6 and len(dump.index) == 6
    row = {s: i for i, s in enumerate(dump.index["study_id"])}
    studies = list(fix)
    # NaN runs: linear interpolation between the neighbours, edge runs take the nearest value
    x6 = dump.signals[row[studies[6]]].astype(np.float64)
    ref6 = lead_coded(MIMIC_NAMES, 5000, 500, 6)[[MIMIC_NAMES.index(lead) for lead in LEADS]]
    q = lambda v: np.round(v * 200) / 200  # noqa: E731 (the 200 adu/mV quantisation)
    expected = np.interp(np.arange(100, 150), [99, 150], q(ref6[1, [99, 150]]))
    np.testing.assert_allclose(x6[1, 100:150], expected, atol=2e-3)
    np.testing.assert_allclose(x6[7, :10], q(ref6[7, 10]), atol=2e-3)
    # longer than 10 s: the first 10 s
    ref7 = lead_coded(MIMIC_NAMES, 7000, 500, 7)[[MIMIC_NAMES.index(lead) for lead in LEADS]][:, :5000]
    np.testing.assert_allclose(dump.signals[row[studies[7]]].astype(np.float64), ref7, atol=0.5 / 200 + 2.0**-8)
    # 250 Hz: resampled to 500 Hz
    ref8 = lead_coded(MIMIC_NAMES, 2500, 250, 8)[[MIMIC_NAMES.index(lead) for lead in LEADS]]
    np.testing.assert_allclose(dump.signals[row[studies[8]]].astype(np.float64), resample(q(ref8), 250, 500), atol=3e-3)


def test_too_many_skips_fail_and_leave_nothing_behind(bad_tree, tmp_path):
    root, _ = bad_tree
    out = tmp_path / "out" / "d.npy"
    with pytest.raises(UserError) as err:
        main(["mimic-iv-ecg", "--src", str(root), "--out", str(out), "--quiet"])
    message = str(err.value)
    assert (
        "skipped, more than --max-skip-fraction 0.01" in message
        and "missing file" in message
        and "no dump written" in message
    )
    assert list(out.parent.iterdir()) == []
    # the full count appears when the limit only breaks at the end
    with pytest.raises(UserError, match=r": 6 of 12 records skipped"):
        convert("mimic-iv-ecg", root, out, max_skip_fraction=0.45, progress=False)
    assert list(out.parent.iterdir()) == []


def test_conversion_stops_at_the_first_chunk_that_breaks_the_limit(bad_tree, tmp_path, monkeypatch):
    import myjepa.ingest.writer as convert_module

    root, _ = bad_tree
    monkeypatch.setattr(convert_module, "CHUNK", 2)  # the first chunk holds the missing and the truncated file
    with pytest.raises(UserError, match=r"at least 2 of 12 records skipped.*missing file.*truncated file"):
        convert("mimic-iv-ecg", root, tmp_path / "d.npy", workers=2, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]  # no dump, no sidecar, no temporary file


def test_unusable_metadata_names_the_file_and_column(tmp_path):
    with pytest.raises(UserError, match=r"ptbxl_database.csv: not found"):
        convert("ptb-xl", tmp_path, tmp_path / "d.npy", progress=False)
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv").head(3)
    db.drop(columns=["strat_fold"]).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(UserError, match=r"ptbxl_database.csv: missing column\(s\) strat_fold"):
        convert("ptb-xl", tmp_path, tmp_path / "d.npy", progress=False)
    db.head(0).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(UserError, match=r"ptbxl_database.csv: lists no records"):
        convert("ptb-xl", tmp_path, tmp_path / "d.npy", progress=False)
    db.assign(strat_fold=["1", "x", "3"]).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(UserError, match=r"column strat_fold has a non-integer value 'x' in data row 2"):
        convert("ptb-xl", tmp_path, tmp_path / "d.npy", progress=False)
    pd.DataFrame({"subject_id": [1], "study_id": [2]}).to_csv(tmp_path / "record_list.csv", index=False)
    with pytest.raises(UserError, match=r"record_list.csv: missing column\(s\) path"):
        convert("mimic-iv-ecg", tmp_path, tmp_path / "d.npy", progress=False)
    with pytest.raises(UserError, match=r"--shard '4/3'"):
        main(["mimic-iv-ecg", "--src", str(tmp_path), "--out", str(tmp_path / "d.npy"), "--shard", "4/3"])
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".*tmp*"))


def test_cli_reports_bad_data_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "myjepa", "convert", "ptb-xl", "--src", str(tmp_path), "--out", str(tmp_path / "d.npy")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("myjepa: error: ") and "ptbxl_database.csv: not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_set_npy_rows_shrinks_a_dump_in_place(tmp_path):
    path = tmp_path / "a.npy"
    a = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(1000, 12, 50))
    a[:] = np.arange(1000, dtype=np.float16)[:, None, None]
    a.flush()
    del a
    set_npy_rows(path, 7)
    b = np.load(path)
    assert b.shape == (7, 12, 50) and (b[:, 0, 0] == np.arange(7)).all()
    assert path.stat().st_size == len(open(path, "rb").read(256).split(b"\n")[0]) + 1 + 7 * 12 * 50 * 2


def test_values_beyond_float16_are_skipped_not_stored_as_inf(tmp_path):
    from myjepa.ingest.record import load_ecg
    from myjepa.ingest.wfdb_io import RecordError

    write_record(tmp_path / "r", np.full((12, 5000), 30.0), 500, list(LEADS), gain=1000.0)
    x, n_nan = load_ecg(tmp_path / "r", 500)
    assert x.dtype == np.float16 and (x == 30.0).all() and n_nan == 0
    hea = tmp_path / "r.hea"
    hea.write_text(hea.read_text().replace("1000.0(0)/mV", "0.0001(0)/mV"))  # 30000 adu -> 3e8 mV
    with pytest.raises(RecordError, match="beyond the float16 range"):
        load_ecg(tmp_path / "r", 500)
