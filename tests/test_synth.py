"""`myjepa synth`: real layouts, learnable labels in every fold, determinism, waveform effects."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from myjepa import LEADS
from myjepa.dumps import open_dump
from myjepa.errors import UserError
from myjepa.ingest.resample import resample_poly
from myjepa.ingest.writer import convert
from myjepa.synth.command import main, synth
from myjepa.synth.profiles import sample_profile
from myjepa.synth.simulator import Heart, beat_times, simulate

SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample"
N_PTBXL = 300


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory) -> Path:
    return synth("ptb-xl", tmp_path_factory.mktemp("synth") / "ptb-xl", N_PTBXL, seed=0, workers=2, progress=False)


def task_labels(codes: dict[str, float], task: str, table: pd.DataFrame) -> set[str]:
    """PTB-XL's label aggregation (as in the benchmark of Strodthoff et al.)."""
    known = [c for c in codes if c in table.index]
    if task == "all":
        return set(known)
    if task in ("diagnostic", "form", "rhythm"):
        return {c for c in known if table.loc[c, task] == 1}
    column = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}[task]
    return {table.loc[c, column] for c in known if table.loc[c, "diagnostic"] == 1}


def test_ptbxl_layout_matches_the_real_one(ptbxl):
    db = pd.read_csv(ptbxl / "ptbxl_database.csv")
    real = pd.read_csv(SAMPLE / "ptbxl_database.csv", nrows=2)
    assert list(db.columns) == list(real.columns)
    assert db["ecg_id"].tolist() == list(range(1, N_PTBXL + 1)) and db["patient_id"].is_unique
    assert (ptbxl / "scp_statements.csv").read_bytes() == (SAMPLE / "scp_statements.csv").read_bytes()
    row = db.iloc[41]
    assert row["filename_hr"] == "records500/00000/00042_hr" and row["filename_lr"] == "records100/00000/00042_lr"
    hr, lr = wfdb.rdrecord(str(ptbxl / row["filename_hr"])), wfdb.rdrecord(str(ptbxl / row["filename_lr"]))
    assert (hr.fs, hr.sig_len, lr.fs, lr.sig_len) == (500, 5000, 100, 1000)
    assert hr.sig_name == ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"] == lr.sig_name
    assert hr.fmt == ["16"] * 12 and hr.adc_gain == [1000.0] * 12 and hr.baseline == [0] * 12
    # the 100 Hz record is the 500 Hz one low-passed and decimated (up to the 1 uV quantisation)
    np.testing.assert_allclose(lr.p_signal.T, resample_poly(hr.p_signal.T, 1, 5), atol=2e-3)
    assert all(isinstance(ast.literal_eval(c), dict) for c in db["scp_codes"])


def test_every_task_has_two_classes_in_every_fold_and_folds_are_balanced(ptbxl):
    db = pd.read_csv(ptbxl / "ptbxl_database.csv")
    table = pd.read_csv(ptbxl / "scp_statements.csv", index_col=0)
    counts = db["strat_fold"].value_counts()
    assert sorted(counts.index) == list(range(1, 11)) and counts.max() - counts.min() <= 2
    codes = db["scp_codes"].map(ast.literal_eval)
    for task in ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"):
        labels = codes.map(lambda c: task_labels(c, task, table))
        assert (labels.map(len) > 0).mean() > (0.25 if task == "form" else 0.95), task
        for fold in range(1, 11):
            present = set().union(*labels[db["strat_fold"] == fold])
            assert len(present) >= 2, (task, fold, present)
    rhythm = codes.map(lambda c: [k for k in c if table.loc[k, "rhythm"] == 1])
    assert (rhythm.map(len) == 1).all()
    assert set(rhythm.str[0]) == {"SR", "STACH", "SBRAD", "SARRH", "AFIB", "AFLT"}
    assert all(v == 0.0 for c in codes for k, v in c.items() if table.loc[k, "diagnostic"] != 1)
    assert {v for c in codes for k, v in c.items() if table.loc[k, "diagnostic"] == 1} <= {
        100.0,
        80.0,
        50.0,
        35.0,
        15.0,
    }


def test_synth_is_deterministic_per_seed_and_independent_of_workers(ptbxl, tmp_path):
    again = synth("ptb-xl", tmp_path / "again", 12, seed=0, workers=1, progress=False)
    for rel in ("records500/00000/00007_hr.dat", "records100/00000/00012_lr.dat", "records500/00000/00003_hr.hea"):
        assert (again / rel).read_bytes() == (ptbxl / rel).read_bytes()
    other = synth("ptb-xl", tmp_path / "other", 12, seed=1, progress=False)
    assert (other / "records500/00000/00007_hr.dat").read_bytes() != (
        ptbxl / "records500/00000/00007_hr.dat"
    ).read_bytes()


def test_mimic_layout_lead_order_and_conversion(tmp_path):
    root = synth("mimic-iv-ecg", tmp_path / "mimic", 30, seed=2, progress=False)
    rl = pd.read_csv(root / "record_list.csv")
    assert list(rl.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert rl["study_id"].is_unique and rl["subject_id"].is_monotonic_increasing and rl["subject_id"].nunique() < 30
    for _, r in rl.iterrows():
        assert re.fullmatch(rf"files/p{str(r.subject_id)[:4]}/p{r.subject_id}/s{r.study_id}/{r.study_id}", r.path)
        assert r.file_name == r.study_id
    rec = wfdb.rdrecord(str(root / rl["path"][0]))
    assert rec.sig_name == ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert (rec.fs, rec.sig_len, rec.adc_gain[0]) == (500, 5000, 200.0)
    # Einthoven holds per header name: III = II - I, aVL = (I - III) / 2, aVF = (II + III) / 2
    s = {n: rec.p_signal[:, i] for i, n in enumerate(rec.sig_name)}
    for lead, value in (("III", s["II"] - s["I"]), ("aVL", (s["I"] - s["III"]) / 2), ("aVF", (s["II"] + s["III"]) / 2)):
        np.testing.assert_allclose(s[lead], value, atol=3 / 200, err_msg=lead)  # exact up to quantisation
    convert("mimic-iv-ecg", root, tmp_path / "m.npy", progress=False)
    dump = open_dump(tmp_path / "m.npy")
    assert dump.signals.shape == (30, 12, 5000) and dump.index["study_id"].tolist() == rl["study_id"].tolist()
    np.testing.assert_allclose(
        dump.signals[0].astype(np.float64), rec.p_signal.T[[rec.sig_name.index(n) for n in LEADS]], atol=2e-3
    )


def test_mimic_nan_runs_are_written_as_wfdb_invalid_samples(tmp_path):
    from myjepa.synth.ptbxl_mimic import write_mimic

    (tmp_path / "m").mkdir()
    rl = write_mimic(tmp_path / "m", 4, seed=0, nan_fraction=1.0, progress=False)
    assert all(np.isnan(wfdb.rdrecord(str(tmp_path / "m" / p)).p_signal).any() for p in rl["path"])
    stats = convert("mimic-iv-ecg", tmp_path / "m", tmp_path / "m.npy", progress=False)
    assert stats["count"] == 4 and stats["nan_interpolated"] > 0


def peaks(x: np.ndarray, fs: int = 500) -> np.ndarray:
    """R-peak times of a clean lead: local maxima above 60 % of the maximum, 0.25 s apart."""
    thr = 0.6 * x.max()
    idx = np.flatnonzero((x[1:-1] > thr) & (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:])) + 1
    keep = [idx[0]] if len(idx) else []
    for i in idx[1:]:
        if i - keep[-1] > 0.25 * fs:
            keep.append(i)
    return np.array(keep) / fs


def clean(**kw) -> Heart:
    return Heart(noise_mv=0.0, wander_mv=0.0, **kw)


def test_rhythms_change_rate_and_regularity():
    rng = np.random.default_rng(0)
    for rhythm, rate, lo, hi in (("STACH", 130, 115, 145), ("SBRAD", 45, 38, 52), ("SR", 75, 67, 83)):
        rr = np.diff(peaks(simulate(clean(rhythm=rhythm, heart_rate=rate), rng=rng)[1]))
        assert lo < 60 / rr.mean() < hi, rhythm
    sr = np.diff(beat_times(clean(rhythm="SR", heart_rate=80, rr_jitter=0.02), 10, rng))
    afib = np.diff(beat_times(clean(rhythm="AFIB", heart_rate=80, rr_jitter=0.25), 10, rng))
    assert afib.std() / afib.mean() > 3 * sr.std() / sr.mean()
    aflt = simulate(clean(rhythm="AFLT", flutter_rate=300, flutter_conduction=4, heart_rate=75), rng=rng)[2]
    spectrum = np.abs(np.fft.rfft(aflt - aflt.mean()))
    freqs = np.fft.rfftfreq(len(aflt), 1 / 500)
    assert abs(freqs[np.argmax(spectrum * (freqs > 3) * (freqs < 8))] - 5.0) < 0.2  # 300/min flutter waves
    sr_ii = simulate(clean(rhythm="SR"), rng=np.random.default_rng(1))[1]
    af_ii = simulate(clean(rhythm="AFIB", f_wave_amp=0.0), rng=np.random.default_rng(1))[1]
    pr_window = lambda x: np.abs(
        np.concatenate([x[int((t - 0.2) * 500) : int((t - 0.08) * 500)] for t in peaks(x)[1:]])
    ).max()  # noqa: E731
    assert pr_window(sr_ii) > 0.08 > pr_window(af_ii)  # P waves only in sinus rhythm


def test_labels_change_the_waveform_where_they_should():
    base = dict(rhythm="SR", heart_rate=60, rr_jitter=0.0, resp_modulation=0.0)

    def beat(**kw) -> np.ndarray:
        """12 leads from 0.35 s before to 0.55 s after the R peak nearest 3 s."""
        h = clean(**{**base, **kw})
        x = simulate(h, rng=np.random.default_rng(5))
        times = beat_times(h, 10.0, np.random.default_rng(5))  # the same draws: the same beats
        t = times[np.argmin(np.abs(times - 3.0))]
        return x[:, int(round((t - 0.35) * 500)) : int(round((t + 0.55) * 500))]

    def qrs_ms(x: np.ndarray) -> float:
        energy = np.abs(np.diff(x, axis=1)).sum(axis=0)
        qrs = np.flatnonzero(energy[100:250] > 0.2 * energy[100:250].max())
        return (qrs[-1] - qrs[0]) * 2.0

    normal = beat()
    assert qrs_ms(beat(bundle_branch="L")) > qrs_ms(beat(bundle_branch="R")) > 1.6 * qrs_ms(normal)
    lvh, low = beat(voltage=2.2), beat(voltage=0.3)
    assert np.ptp(lvh[10]) > 1.8 * np.ptp(normal[10]) and np.ptp(low[1]) < 0.5 * np.ptp(normal[1])
    imi = beat(q_inferior=0.6)
    assert imi[2, 150:175].min() < normal[2, 150:175].min() - 0.3  # Q wave in III before R (at sample 175)
    st = beat(st_vector=(-0.09, -0.09, -0.03))
    assert st[10, 220:260].mean() < normal[10, 220:260].mean() - 0.07  # ST depression in V5
    inv = beat(t_amp=-0.3)
    assert inv[1, 250:400].min() < -0.1 < normal[1, 250:400].min() + 0.2
    assert beat(pr=0.3)[1, :75].max() > 0.08 > beat()[1, :75].max()  # long PR: P wave moves earlier


def test_sample_profile_sets_waveform_parameters_from_labels():
    rng = np.random.default_rng(0)
    profiles = [sample_profile(rng) for _ in range(600)]
    by = lambda code: [p.heart for p in profiles if code in p.codes]  # noqa: E731
    assert all(h.bundle_branch == "L" for h in by("CLBBB")) and all(h.bundle_branch == "R" for h in by("CRBBB"))
    assert all(h.heart_rate > 100 for h in by("STACH")) and all(h.heart_rate < 60 for h in by("SBRAD"))
    assert all(h.voltage < 0.5 for h in by("LVOLT")) and all(h.voltage > 1.5 for h in by("LVH"))
    assert all(h.q_inferior > 0 for h in by("IMI")) and all(h.q_anterior > 0 for h in by("ASMI"))
    assert all(h.axis_deg < -30 for h in by("LAFB")) and all(h.pr > 0.24 for h in by("1AVB"))
    assert all(h.pvc_count > 0 for h in by("PVC"))


def test_cli_replaces_only_a_synthetic_dataset_and_validates(tmp_path):
    """`--overwrite` once removed whatever --out named (a home folder, a project)."""
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "keep").write_text("mine")
    for extra in ([], ["--overwrite"]):
        with pytest.raises(UserError, match=r"x: holds files `myjepa synth` did not write \(no \.myjepa-synth\.json\)"):
            main(["--layout", "ptb-xl", "--out", str(mine), "--records", "3", *extra])
    (tmp_path / "file").write_text("mine too")
    (tmp_path / "link").symlink_to(mine, target_is_directory=True)
    for name, what in (("file", "a file"), ("link", "a symbolic link")):
        with pytest.raises(UserError, match=rf"^--out .*{name}: {what}; give a new or empty folder$"):
            main(["--layout", "ptb-xl", "--out", str(tmp_path / name), "--records", "3", "--overwrite"])
    assert (mine / "keep").read_text() == "mine" and (tmp_path / "file").read_text() == "mine too"
    with pytest.raises(UserError, match="--records 0"):
        main(["--layout", "ptb-xl", "--out", str(tmp_path / "y"), "--records", "0"])
    (tmp_path / "empty").mkdir()
    assert main(["--layout", "mimic-iv-ecg", "--out", str(tmp_path / "empty"), "--records", "3", "--quiet"]) == 0
    synthetic = tmp_path / "empty"
    assert json.loads((synthetic / ".myjepa-synth.json").read_text()) == {
        "layout": "mimic-iv-ecg",
        "records": 3,
        "seed": 0,
    }
    with pytest.raises(UserError, match=r"empty: holds a synthetic dataset; pass --overwrite to replace it"):
        main(["--layout", "ptb-xl", "--out", str(synthetic), "--records", "3"])
    assert main(["--layout", "ptb-xl", "--out", str(synthetic), "--records", "3", "--overwrite", "--quiet"]) == 0
    assert (synthetic / "ptbxl_database.csv").is_file() and not (synthetic / "record_list.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
