"""MIMIC-IV-ECG (https://physionet.org/content/mimic-iv-ecg/): which records `myjepa convert mimic-iv-ecg`
converts. Its record_list.csv names every record, all stored at 500 Hz, under files/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from myjepa.ingest.record_list import RecordList, int_column, str_column
from myjepa.utils.tables import read_csv


def mimic_records(src: Path, source_rate: int = 500) -> RecordList:
    """MIMIC-IV-ECG's record_list.csv in its own order; mean/std use every record.

    `source_rate` is there for the common signature of record-list functions: the archive has one rate.
    """
    path = src / "record_list.csv"
    df = read_csv(path, ["subject_id", "study_id", "path"], "MIMIC-IV-ECG")
    index = pd.DataFrame(
        {
            "subject_id": int_column(df, "subject_id", path),
            "study_id": int_column(df, "study_id", path),
            "file": str_column(df, "path", path),
        }
    )
    return RecordList(
        "mimic-iv-ecg", index, index["study_id"].tolist(), index["file"].tolist(), np.ones(len(index), dtype=bool)
    )
