"""`myjepa synth --layout code-15|challenge-2021`: synthetic archives in the CODE-15% and the
PhysioNet/CinC Challenge 2021 layouts, from the same simulator as the PTB-XL and MIMIC demos.

CODE-15%: `exams.csv` and HDF5 parts `exams_partK.hdf5` with `tracings` (n, 4096, 12) float32 mV at
400 Hz (7 s and 10 s exams, zero-padded equally at both ends) and `exam_id`, the last row of each
part an all-zero filler with id 0. Challenge 2021: per record a WFDB header `X.hea` whose signal
lines read `X.mat 16+24 ...` and a MATLAB v4 file `X.mat` (a 20-byte header, the name `val`, then
the 12 x n int16 matrix column by column: the interleaved samples of format 16), with `#Age:`,
`#Sex:` and `#Dx:` comments, in subfolders of 500 records; records last 6 to 60 s, like CPSC's.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from myjepa.ingest.code15 import LEAD_NAMES as CODE15_LEADS
from myjepa.ingest.code15 import RATE as CODE15_RATE
from myjepa.ingest.code15 import SAMPLES as CODE15_SAMPLES
from myjepa.ingest.wfdb_io import MAT_V4_INT16
from myjepa.leads import LEADS
from myjepa.synth.parallel import run_tasks
from myjepa.synth.profiles import sample_profile
from myjepa.synth.simulator import simulate

CODE15_COLUMNS = ["exam_id", "age", "is_male", "nn_predicted_age", "1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"]
CODE15_COLUMNS += ["patient_id", "death", "timey", "normal_ecg", "trace_file"]
"""exams.csv's columns, in the archive's order."""

CODE15_PART_EXAMS = 200
"""Exams per synthetic HDF5 part (the real parts hold ~20,000)."""

CHALLENGE_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
CHALLENGE_GAIN, CHALLENGE_FS = 1000.0, 500
SNOMED = {
    "SR": 426783006,
    "STACH": 427084000,
    "SBRAD": 426177001,
    "SARRH": 427393009,
    "AFIB": 164889003,
    "AFLT": 164890007,
}
"""SNOMED-CT codes of the simulated rhythms, as the Challenge's `#Dx:` lines give them."""


def _padded(x: np.ndarray) -> np.ndarray:
    """(12, n) -> (4096, 12) float32, zero-padded equally at both ends as CODE-15% stores shorter exams."""
    left = (CODE15_SAMPLES - x.shape[1]) // 2
    out = np.zeros((CODE15_SAMPLES, len(LEADS)), dtype=np.float32)
    out[left : left + x.shape[1]] = x[[LEADS.index(name) for name in CODE15_LEADS]].T
    return out


def _code15_exam(seed: int, exam_id: int, short_fraction: float) -> tuple[np.ndarray, dict[str, Any]]:
    r = np.random.default_rng([seed, exam_id])
    male = int(r.integers(0, 2))
    age = int(np.clip(round(r.normal(55, 17)), 16, 95))
    prof = sample_profile(r, 1 - male, float(age))
    seconds = 7.0 if r.random() < short_fraction else 10.0
    x = simulate(prof.heart, CODE15_RATE, seconds, r)
    labels = {"1dAVb": "1AVB" in prof.codes, "RBBB": "CRBBB" in prof.codes, "LBBB": "CLBBB" in prof.codes}
    labels |= {"SB": prof.rhythm == "SBRAD", "ST": prof.rhythm == "STACH", "AF": prof.rhythm == "AFIB"}
    row = {"exam_id": exam_id, "age": age, "is_male": bool(male), "nn_predicted_age": float(age + r.normal(0, 8))}
    return _padded(x), row | labels | {"normal_ecg": prof.group == "NORM" and prof.rhythm == "SR"}


def write_code15(
    out: Path, n_records: int, seed: int, workers: int = 1, progress: bool = True, short_fraction: float = 0.05
) -> pd.DataFrame:
    """CODE-15% layout: exams.csv and exams_part0.hdf5, exams_part1.hdf5, ... (`workers`, `progress`: unused,
    the exams are quick to simulate)."""
    rng = np.random.default_rng(seed)
    exam_ids = np.sort(rng.choice(np.arange(1, 4_000_000), size=n_records, replace=False))
    patients = rng.integers(1, 2_000_000, size=n_records)
    rows = []
    for part, start in enumerate(range(0, n_records, CODE15_PART_EXAMS)):
        ids = exam_ids[start : start + CODE15_PART_EXAMS]
        exams = [_code15_exam(seed, int(e), short_fraction) for e in ids]
        with h5py.File(out / f"exams_part{part}.hdf5", "w") as f:
            f["tracings"] = np.stack([t for t, _ in exams] + [np.zeros_like(exams[0][0])])  # + the filler row
            f["exam_id"] = np.append(ids, 0).astype(np.int64)
        rows += [row | {"trace_file": f"exams_part{part}.hdf5"} for _, row in exams]
    df = pd.DataFrame(rows).assign(patient_id=patients, death=False, timey=np.round(rng.uniform(0, 8, n_records), 2))
    df[CODE15_COLUMNS].to_csv(out / "exams.csv", index=False)
    return df


def write_mat_record(base: Path, signal_mv: np.ndarray, fs: int, names: list[str], comments: list[str]) -> None:
    """A Challenge 2021 record: `base.mat` (MATLAB v4 int16 `val`, 12 x n) and `base.hea` (`X.mat 16+24`)."""
    digital = np.clip(np.rint(signal_mv * CHALLENGE_GAIN), -32767, 32767).astype("<i2")  # (n_sig, n)
    n_sig, n = digital.shape
    name = base.name
    base.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack("<5i", MAT_V4_INT16, n_sig, n, 0, 4) + b"val\0"  # type, rows, cols, imagf, namlen
    base.with_name(name + ".mat").write_bytes(header + digital.T.tobytes())  # column-major: sample by sample
    checksums = digital.sum(axis=1, dtype=np.int64) % 65536
    lines = [f"{name} {n_sig} {fs} {n}"]
    lines += [
        f"{name}.mat 16+24 {CHALLENGE_GAIN:g}/mV 16 0 {int(digital[i, 0])} {int(checksums[i])} 0 {lead}"
        for i, lead in enumerate(names)
    ]
    base.with_name(name + ".hea").write_text("\n".join(lines + [f"#{c}" for c in comments]) + "\n")


def _challenge_record(task: tuple[Path, int, int]) -> dict[str, Any]:
    """Simulate and write one record of 6 to 60 s; returns its name and length."""
    out, seed, k = task
    r = np.random.default_rng([seed, k])
    male = int(r.integers(0, 2))
    age = int(np.clip(round(r.normal(58, 18)), 1, 95))
    prof = sample_profile(r, 1 - male, float(age))
    seconds = int(r.integers(6, 61))
    x = simulate(prof.heart, CHALLENGE_FS, float(seconds), r)
    name = f"A{k:04d}"
    base = out / f"g{(k - 1) // 500 + 1}" / name
    sex = "Male" if male else "Female"
    comments = [f"Age: {age}", f"Sex: {sex}", f"Dx: {SNOMED[prof.rhythm]}", "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
    write_mat_record(base, x[[LEADS.index(n) for n in CHALLENGE_LEADS]], CHALLENGE_FS, CHALLENGE_LEADS, comments)
    return {"record": name, "seconds": seconds}


def write_challenge(out: Path, n_records: int, seed: int, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """One Challenge 2021 set: g1/A0001.{hea,mat}, ..., 500 records per subfolder."""
    tasks = [(out, seed, k) for k in range(1, n_records + 1)]
    return pd.DataFrame(run_tasks(_challenge_record, tasks, workers, "synth challenge-2021", progress))
