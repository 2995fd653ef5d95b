"""Reading dumps: `PATH.npy` float16 (N, 12, T) in mV, plus `PATH.index.csv` and `PATH.stats.json`;
and z-scoring their records per lead.

The array is memory-mapped, so opening a 96 GB MIMIC dump costs neither time nor resident memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from myjepa.errors import UserError
from myjepa.utils.checks import rate_problem
from myjepa.utils.io import not_a_file


def sidecars(path: str | Path) -> tuple[Path, Path]:
    """(index.csv, stats.json) paths that belong to dump `path` (`x.npy` -> `x.index.csv`, `x.stats.json`)."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix == ".npy" else p
    return stem.with_name(stem.name + ".index.csv"), stem.with_name(stem.name + ".stats.json")


def dump_files(path: str | Path) -> list[Path]:
    """The three files of dump `path`: the .npy and its sidecars."""
    return [Path(path), *sidecars(path)]


@dataclass
class Dump:
    path: Path
    signals: np.ndarray  # memmap, float16 (N, 12, T), millivolts
    stats: dict[str, Any]
    _index: pd.DataFrame | None = None

    @property
    def index(self) -> pd.DataFrame:
        """The index rows (read on first use: pretraining never needs them)."""
        if self._index is None:
            idx_path, _ = sidecars(self.path)
            try:
                self._index = pd.read_csv(idx_path)
            except (OSError, pd.errors.ParserError) as e:
                raise UserError(f"{idx_path}: cannot read the dump index: {e}") from None
            if len(self._index) != len(self.signals):
                raise UserError(
                    f"{idx_path}: {len(self._index)} rows but {self.path} holds {len(self.signals)} records"
                )
        return self._index

    @property
    def fs(self) -> int:
        return int(self.stats["fs"])

    @property
    def leads(self) -> list[str]:
        return list(self.stats["leads"])

    def __len__(self) -> int:
        return len(self.signals)


def norm_stats(signals: np.ndarray, rows: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead mean and std (12,) over the given records of `signals` (N, 12, T), accumulated in float64
    in chunks: the z-scoring of a task's train records (evaluation, the online probe)."""
    total = np.zeros(signals.shape[1])
    total_sq = np.zeros(signals.shape[1])
    count = 0
    for i in range(0, len(rows), chunk):
        x = np.asarray(signals[np.sort(rows[i : i + chunk])], dtype=np.float64)
        total += x.sum(axis=(0, 2))
        total_sq += (x * x).sum(axis=(0, 2))
        count += x.shape[0] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Records x (..., 12, T) z-scored per lead: float32 (x - mean) / std."""
    return (np.asarray(x, dtype=np.float32) - mean[:, None]) / std[:, None]


def check_npy(path: Path) -> None:
    """`path` starts with the .npy magic: anything else (a text file, a pickle) is named as not a .npy file
    (numpy's own message for it is about "pickled data")."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head != b"\x93NUMPY":
        what = "an empty file" if not head else "a text file" if head.isascii() else "another kind of file"
        raise UserError(f"{path}: not a .npy dump (no .npy header; {what})")


def check_stats(stats_path: Path, stats: dict[str, Any], n_leads: int) -> None:
    """The stats.json keys every reader uses: a readable sampling rate, and one finite mean and one finite,
    non-negative std per lead."""
    for key in ("fs", "leads", "mean", "std"):
        if key not in stats:
            raise UserError(f"{stats_path}: missing key {key!r}")
    problem = rate_problem(stats["fs"])
    if problem:
        raise UserError(f"{stats_path}: key 'fs': {problem}")
    for key in ("leads", "mean", "std"):
        value = stats[key]
        if not isinstance(value, list) or len(value) != n_leads:
            raise UserError(
                f"{stats_path}: key {key!r} must be a list of {n_leads} values (one per lead), got {value!r}"
            )
    for key in ("mean", "std"):
        for lead, v in zip(stats["leads"], stats[key]):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or (key == "std" and v < 0):
                raise UserError(f"{stats_path}: key {key!r} has {v!r} for lead {lead}; expected a finite number")


def open_dump(path: str | Path) -> Dump:
    """Open a dump read-only with memory mapping; a missing or malformed file is a UserError."""
    p = Path(path)
    _, stats_path = sidecars(p)
    if not p.is_file():
        raise UserError(f"dump {p}: {not_a_file(p)}" if p.is_dir() else f"dump not found: {p}")
    if not stats_path.is_file():
        raise UserError(f"dump stats not found: {stats_path} (every dump needs its .stats.json sidecar)")
    check_npy(p)
    try:
        signals = np.load(p, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a readable .npy dump: {e}") from None
    if signals.ndim != 3 or signals.shape[1] != 12:
        raise UserError(f"{p}: expected an array of shape (N, 12, T), got {signals.shape}")
    if signals.dtype.kind != "f":  # integers would be read as millivolts: ADC counts, hundreds of times too large
        raise UserError(f"{p}: holds {signals.dtype} values; a dump holds millivolts as floats (`myjepa convert`)")
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{stats_path}: cannot read: {e}") from None
    if not isinstance(stats, dict):
        raise UserError(f"{stats_path}: expected a JSON object")
    check_stats(stats_path, stats, signals.shape[1])
    return Dump(p, signals, stats)
