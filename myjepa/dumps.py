"""Reading dumps: `PATH.npy` float16 (N, 12, T) in mV, plus `PATH.index.csv` and `PATH.stats.json`.

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


def sidecars(path: str | Path) -> tuple[Path, Path]:
    """(index.csv, stats.json) paths that belong to dump `path` (`x.npy` -> `x.index.csv`, `x.stats.json`)."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix == ".npy" else p
    return stem.with_name(stem.name + ".index.csv"), stem.with_name(stem.name + ".stats.json")


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

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Per-lead z-score with the dump's own stats; x (..., 12, T) float."""
        mean = np.asarray(self.stats["mean"], dtype=np.float32)[:, None]
        std = np.asarray(self.stats["std"], dtype=np.float32)[:, None]
        return (x - mean) / np.maximum(std, 1e-6)


def open_dump(path: str | Path) -> Dump:
    """Open a dump read-only with memory mapping; a missing or malformed file is a UserError."""
    p = Path(path)
    _, stats_path = sidecars(p)
    if not p.is_file():
        raise UserError(f"dump not found: {p}")
    if not stats_path.is_file():
        raise UserError(f"dump stats not found: {stats_path} (every dump needs its .stats.json sidecar)")
    try:
        signals = np.load(p, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a readable .npy dump: {e}") from None
    if signals.ndim != 3 or signals.shape[1] != 12:
        raise UserError(f"{p}: expected an array of shape (N, 12, T), got {signals.shape}")
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{stats_path}: cannot read: {e}") from None
    for key in ("fs", "leads", "mean", "std"):
        if key not in stats:
            raise UserError(f"{stats_path}: missing key {key!r}")
    return Dump(p, signals, stats)
