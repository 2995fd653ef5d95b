"""Small raw-dataset trees for converter tests, written with the project's own WFDB writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from myjepa import LEADS
from myjepa.ingest.wfdb_io import write_record

MIMIC_NAMES = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def lead_coded(names: list[str], n: int, fs: int, seed: int) -> np.ndarray:
    """(len(names), n) mV: each lead is a sine plus an offset that names its canonical lead (0.1 mV * (index+1)).

    A converter that maps leads by position puts aVF's offset where aVL's belongs, and a test sees it.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    rows = []
    for name in names:
        j = (
            [lead.lower() for lead in LEADS].index(name.lower())
            if name.lower() in [lead.lower() for lead in LEADS]
            else 20
        )
        rows.append(0.1 * (j + 1) + 0.3 * np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * t + rng.uniform(0, 6)))
    return np.array(rows)


def mimic_tree(root: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """A MIMIC-IV-ECG layout with n lead-coded 500 Hz, 10 s records; returns record_list."""
    rows = []
    for k in range(n):
        subject, study = 10_000_000 + 17 * (k // 2), 40_000_000 + 31 * k
        rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
        write_record(root / rel, lead_coded(MIMIC_NAMES, 5000, 500, seed + k), 500, MIMIC_NAMES, gain=200.0)
        rows.append(
            {
                "subject_id": subject,
                "study_id": study,
                "file_name": study,
                "ecg_time": "2180-07-23 08:44:00",
                "path": rel,
            }
        )
    df = pd.DataFrame(rows)
    df.to_csv(root / "record_list.csv", index=False)
    return df
