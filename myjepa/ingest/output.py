"""Writing a dump (the write side of `myjepa.dumps`): PATH.npy, PATH.index.csv and PATH.stats.json
appear together or not at all, and the .npy can be shrunk in place once the kept rows are known.

Both the converter (`writer`) and `merge` write through here, so a dump looks the same whichever
made it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from myjepa.dumps import sidecars
from myjepa.ingest.stats import finish_stats
from myjepa.utils.io import atomic_path

VERSION = 2
"""Converter version, stored in stats.json; bump when the dump contents change for the same input
(2: one index row per 10 s window, with `offset_s`)."""


@contextlib.contextmanager
def dump_paths(out: str | os.PathLike) -> Iterator[tuple[Path, Path, Path]]:
    """Temporary (npy, index.csv, stats.json) paths for dump `out`: renamed into place when the block
    completes (stats.json last), removed when it fails."""
    idx_path, stats_path = sidecars(out)
    with atomic_path(stats_path) as tmp_stats, atomic_path(idx_path) as tmp_idx, atomic_path(out) as tmp_npy:
        yield tmp_npy, tmp_idx, tmp_stats


def new_array(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A float16 .npy file of `shape` at `path`, memory-mapped for writing."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)


def set_npy_rows(path: Path, n_rows: int) -> None:
    """Shrink a C-order .npy file in place to its first `n_rows` rows (rewrite header, truncate)."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        new_shape = (n_rows, *shape[1:])
        text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": new_shape})
        prefix = 10 if version == (1, 0) else 12
        room = offset - prefix - 1
        if len(text) > room:
            raise RuntimeError(f"{path}: no room to rewrite the .npy header")
        f.seek(prefix)
        f.write((text.ljust(room) + "\n").encode("latin1"))
        f.truncate(offset + n_rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    """Fill in mean/std from the exact sums and write `stats` as stats.json."""
    path.write_text(json.dumps(finish_stats(stats), indent=2) + "\n")
