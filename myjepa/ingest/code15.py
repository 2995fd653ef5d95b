"""CODE-15% (https://zenodo.org/records/4916206): which exams `myjepa convert code-15` converts, and
how they are read.

`exams.csv` lists the exams (exam_id, patient_id, trace_file, ...); the signals are in HDF5 parts
`exams_part0.hdf5` ... `exams_part17.hdf5`, each with `tracings` (n, 4096, 12) float32 mV at 400 Hz
and `exam_id` (n,). An exam is looked up by its id in every part (the last row of a part can be an
all-zero filler with id 0). Exams are converted in part and row order, so a worker reads a run of
consecutive rows as one slice (whole HDF5 chunks, never one exam at a time) and memory does not
grow with the size of a part. Signals shorter than 4096 samples are zero-padded equally at both
ends; the padding is cut off, so a 7 s exam is shorter than one 10 s window and is skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from myjepa.errors import UserError
from myjepa.ingest.record import Raw, lead_order
from myjepa.ingest.record_list import RecordList, int_column, str_column
from myjepa.ingest.wfdb_io import RecordError
from myjepa.utils.tables import read_csv

LEAD_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
"""The order of the 12 columns of `tracings` (the archive's documentation; the files carry no names)."""

ORDER = lead_order(LEAD_NAMES)
"""Column of `tracings` holding each canonical lead."""

RATE, SAMPLES = 400, 4096
"""Sampling rate in Hz and samples per exam (zero-padded) of every tracing."""


def _part_key(path: Path) -> tuple[int, str]:
    """exams_part2.hdf5 before exams_part10.hdf5."""
    digits = re.findall(r"\d+", path.name)
    return (int(digits[-1]) if digits else -1, path.name)


def _locate(src: Path) -> dict[int, tuple[str, int]]:
    """exam_id -> (part file relative to `src`, row) over every HDF5 part; a malformed part is a UserError."""
    parts = sorted(src.rglob("*.hdf5"), key=_part_key)
    if not parts:
        raise UserError(f"{src}: no HDF5 part (exams_part*.hdf5) found (the CODE-15% layout needs them)")
    where: dict[int, tuple[str, int]] = {}
    for path in parts:
        rel = str(path.relative_to(src))
        try:
            with h5py.File(path, "r") as f:
                missing = [k for k in ("tracings", "exam_id") if k not in f]
                if missing:
                    raise UserError(f"{path}: no dataset {', '.join(missing)} (has: {', '.join(f)})")
                ids, shape = f["exam_id"][:], f["tracings"].shape
        except OSError as e:
            raise UserError(f"{path}: not a readable HDF5 file: {e}") from None
        if shape != (len(ids), SAMPLES, len(LEAD_NAMES)):
            raise UserError(
                f"{path}: tracings has shape {shape}, expected ({len(ids)}, {SAMPLES}, {len(LEAD_NAMES)})"
                f" for its {len(ids)} exam_ids"
            )
        for row, exam in enumerate(ids.tolist()):
            if exam != 0:  # a filler row
                where.setdefault(int(exam), (rel, row))
    return where


def code15_records(src: Path, source_rate: int = RATE) -> RecordList:
    """The exams of exams.csv in part and row order (exams found in no part last); mean/std use all."""
    path = src / "exams.csv"
    df = read_csv(path, ["exam_id", "patient_id", "trace_file"], "CODE-15%")
    exam_id = int_column(df, "exam_id", path)
    if exam_id.duplicated().any():
        raise UserError(f"{path}: column exam_id repeats the value {int(exam_id[exam_id.duplicated()].iloc[0])}")
    where = _locate(src)
    found = [where.get(e) for e in exam_id.tolist()]
    index = pd.DataFrame(
        {
            "exam_id": exam_id,
            "patient_id": int_column(df, "patient_id", path),
            "file": [w[0] if w else t for w, t in zip(found, str_column(df, "trace_file", path))],
        }
    )
    paths = [f"{w[0]}:{w[1]}" if w else "" for w in found]
    unlocated = (1, (0, ""), 0)
    order = sorted(
        range(len(paths)), key=lambda k: (0, _part_key(Path(found[k][0])), found[k][1]) if found[k] else unlocated
    )
    index = index.iloc[order].reset_index(drop=True)
    return RecordList(
        "code-15",
        index,
        index["exam_id"].tolist(),
        [paths[k] for k in order],
        np.ones(len(order), dtype=bool),
        np.full(len(order), SAMPLES / RATE),
    )


def _runs(paths: list[str]) -> Iterator[tuple[int, int, str, int]]:
    """(first, stop, part, first row) of each run of consecutive rows of one part; a run of unlocated exams
    has part ''."""
    i = 0
    while i < len(paths):
        part, _, row = paths[i].rpartition(":")
        row0 = int(row) if part else 0
        j = i + 1
        while j < len(paths) and part and paths[j] == f"{part}:{row0 + j - i}":
            j += 1
        yield i, j, part, row0
        i = j


def _raw(tracing: np.ndarray) -> Raw:
    """One (4096, 12) tracing without its zero padding, as a Raw record in canonical lead order."""
    nonzero = (tracing != 0).ravel()  # argmax finds the first and last nonzero value ~3x faster than any(axis=1)
    first = nonzero.argmax()
    if not nonzero[first]:
        raise RecordError("the tracing is all zeros")
    last = nonzero.size - 1 - nonzero[::-1].argmax()
    leads = tracing.shape[1]
    return Raw(RATE, tracing[first // leads : last // leads + 1].T[ORDER])


def read_code15_records(
    src: str, ids: list[Any], paths: list[str], max_windows: list[int]
) -> Iterator[Raw | RecordError]:
    """Each exam (`paths`: 'PART:ROW'), or why it is unusable; consecutive rows are read as one slice."""
    for first, stop, part, row0 in _runs(paths):
        if not part:
            for exam in ids[first:stop]:
                yield RecordError(f"exam_id {exam} is in no HDF5 part (exams_part*.hdf5)")
            continue
        try:
            with h5py.File(os.path.join(src, part), "r") as f:
                block = f["tracings"][row0 : row0 + stop - first]
        except (OSError, KeyError) as e:
            for _ in range(first, stop):
                yield RecordError(f"cannot read {part}: {e}")
            continue
        for tracing in block:
            try:
                yield _raw(tracing)
            except RecordError as e:
                yield e
