"""PTB-XL (https://physionet.org/content/ptb-xl/): which records `myjepa convert ptb-xl` converts.

Its ptbxl_database.csv lists every record twice, at 500 Hz (filename_hr, records500/) and at
100 Hz (filename_lr, records100/); the dump keeps the columns the evaluation tasks need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from myjepa.errors import UserError
from myjepa.ingest.record_list import RecordList, int_column, str_column
from myjepa.utils.tables import read_csv

FILE_COLUMNS = {500: "filename_hr", 100: "filename_lr"}
"""Source rate in Hz -> the ptbxl_database.csv column naming the records stored at that rate."""


def ptbxl_records(src: Path, source_rate: int = 500, train_folds: Sequence[int] = range(1, 9)) -> RecordList:
    """PTB-XL's ptbxl_database.csv in ecg_id order; mean/std use the train folds only."""
    path = src / "ptbxl_database.csv"
    file_col = FILE_COLUMNS[source_rate]
    df = read_csv(path, ["ecg_id", "patient_id", "scp_codes", "strat_fold", file_col], "PTB-XL")
    ecg_id = int_column(df, "ecg_id", path)
    if ecg_id.duplicated().any():
        raise UserError(f"{path}: column ecg_id repeats the value {int(ecg_id[ecg_id.duplicated()].iloc[0])}")
    patient = pd.to_numeric(df["patient_id"], errors="coerce").round().astype("Int64")
    index = pd.DataFrame(
        {
            "ecg_id": ecg_id,
            "patient_id": patient,
            "strat_fold": int_column(df, "strat_fold", path),
            "scp_codes": df["scp_codes"].fillna("{}").astype(str),
            "file": str_column(df, file_col, path),
        }
    )
    index = index.sort_values("ecg_id", kind="stable").reset_index(drop=True)
    in_stats = index["strat_fold"].isin(list(train_folds)).to_numpy()
    return RecordList("ptb-xl", index, index["ecg_id"].tolist(), index["file"].tolist(), in_stats)
