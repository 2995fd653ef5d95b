"""Writing a dump (the write side of `myjepa.dumps`): PATH.npy, PATH.index.csv and PATH.stats.json
appear together or not at all, and the .npy can be shrunk in place once the kept rows are known.

Both the converter (`writer`) and `merge` write through here, so a dump looks the same whichever
made it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from myjepa.dumps import sidecars
from myjepa.errors import UserError
from myjepa.ingest.stats import finish_stats
from myjepa.utils.io import check_file_path, name_the_output, remove_stale_temporaries, tmp_path

VERSION = 2
"""Converter version, stored in stats.json; bump when the dump contents change for the same input
(2: one index row per 10 s window, with `offset_s`)."""


@contextlib.contextmanager
def dump_paths(out: str | os.PathLike) -> Iterator[tuple[Path, Path, Path]]:
    """Temporary (npy, index.csv, stats.json) paths for dump `out`, renamed into place when the block
    completes and removed when it fails.

    stats.json marks a complete dump (every reader needs it): the old one goes first and the new one
    is renamed last, and a rename that fails takes the whole set with it, so a new .npy never sits
    beside an old stats.json.
    """
    finals = (Path(out), *sidecars(out))
    check_file_path(finals[0], "--out")
    temporaries = tuple(tmp_path(p) for p in finals)
    finals[0].parent.mkdir(parents=True, exist_ok=True)
    for final in finals:
        remove_stale_temporaries(final)
    renaming = False
    try:
        yield temporaries
        renaming = True
        finals[2].unlink(missing_ok=True)
        for tmp, final in zip(temporaries, finals):
            os.replace(tmp, final)
    except BaseException as e:
        for p in (*temporaries, *(finals if renaming else ())):
            with contextlib.suppress(OSError):  # on a read-only disk a missing file is EROFS
                p.unlink()
        name_the_output(e, dict(zip(temporaries, finals)))
        raise


def new_array(path: Path, shape: tuple[int, ...], out: str | os.PathLike, dtype: type = np.float16) -> np.memmap:
    """A .npy file of `shape` at `path` (the temporary for dump `out`; float16, or `dtype`), memory-mapped for
    writing, after a check for free space and with its disk blocks reserved.

    A store into a mapped page that the filesystem cannot back kills the process with SIGBUS, which
    no handler can turn into a message; reserving the blocks makes a full disk an error here instead.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize + 128  # + the .npy header
    free = shutil.disk_usage(path.parent).free
    if free < size:
        raise UserError(f"{out}: needs {_size(size)} but {path.parent} has only {_size(free)} free")
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, path.stat().st_size)
    except OSError as e:
        raise UserError(f"{out}: cannot write {_size(size)} in {path.parent}: {e.strerror or e}") from None
    return array


def _size(n_bytes: int) -> str:
    if n_bytes < 1e5:
        return f"{n_bytes / 1e3:.1f} kB"
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


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
