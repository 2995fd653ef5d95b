"""What `myjepa convert` converts: a `RecordList` (records in output order), the checked reading of
its columns, and the `--shard I/N` slice of it.

Archives differ in their metadata files (`ptbxl.py`, `mimic.py`); what they produce is the same
`RecordList`, so the writer never asks which archive it is converting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from myjepa.errors import UserError


@dataclass
class RecordList:
    """What to convert, in output order: index rows, record paths and which rows enter mean/std."""

    source: str
    index: pd.DataFrame  # the dump's index columns, one row per record
    ids: list[Any]
    paths: list[str]  # relative to src, without extension
    in_stats: np.ndarray  # bool per record
    durations: np.ndarray | None = None  # seconds per record (NaN: unknown); None: not listed, read the headers

    def __len__(self) -> int:
        return len(self.paths)

    def slice(self, start: int, stop: int) -> RecordList:
        return RecordList(
            self.source,
            self.index.iloc[start:stop].reset_index(drop=True),
            self.ids[start:stop],
            self.paths[start:stop],
            self.in_stats[start:stop],
            None if self.durations is None else self.durations[start:stop],
        )


def int_column(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """Column `col` as int64, or a UserError naming the first data row that is not an integer."""
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: column {col} has a non-integer value {df[col].iloc[row]!r} in data row {row + 1}")
    return values.astype(np.int64)


def str_column(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """Column `col` as strings, or a UserError naming the first empty data row."""
    bad = df[col].isna()
    if bad.any():
        raise UserError(f"{path}: column {col} is empty in data row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}")
    return df[col].astype(str)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' (1-based) -> (I, N); None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 3/40") from None
    if not (n >= 1 and 1 <= i <= n):
        raise UserError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def shard_bounds(n_records: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Contiguous slice [start, stop) of the I-th of N near-equal shards."""
    i, n = shard
    return (i - 1) * n_records // n, i * n_records // n


def max_windows(durations: np.ndarray, window_s: int) -> np.ndarray:
    """Rows to reserve per record: the whole windows its duration holds, and 1 where that is 0 or unknown
    (the converter then reads the record and skips it with the reason)."""
    with np.errstate(invalid="ignore"):
        whole = np.floor(durations / window_s + 1e-9)
    return np.where(np.isfinite(whole) & (whole >= 1), whole, 1).astype(np.int64)
