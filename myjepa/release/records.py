"""What `myjepa embed` reads: a dump, or a folder of WFDB records of any rate and length, in batches.

Leads are matched by name (case-insensitive) to the encoder's lead order. A missing lead is an error
naming the record and the lead, unless `missing_leads == "zero"`: then it is zero-filled (in mV) with a
warning. A record shorter than one crop (after resampling) is an error naming the record.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from myjepa.dumps import dump_files, open_dump
from myjepa.encoders.contract import InputContract
from myjepa.errors import UserError
from myjepa.ingest.record import interpolate_nans, lead_rows
from myjepa.ingest.wfdb_io import RecordError, read_record
from myjepa.leads import LEADS
from myjepa.utils.checks import nonfinite_problem

MISSING_LEADS = ("error", "zero")
WARNINGS_SHOWN = 5  # zero-filled records named one by one; the rest are counted


class LeadMapper:
    """Puts a record's rows into the contract's lead order; counts the records it zero-filled."""

    def __init__(self, contract: InputContract, missing_leads: str, command: str = "embed") -> None:
        self.contract, self.missing_leads, self.zero_filled, self.command = contract, missing_leads, 0, command

    def __call__(self, x: np.ndarray, names: list[str], record: str) -> np.ndarray:
        """(12, T) float32 mV in contract order from x (len(names), T) (or (R, len(names), T) for a batch)."""
        try:
            canonical = lead_rows(names)  # the converters' matching: by name, a lead named twice refused
        except RecordError as e:
            raise UserError(f"{record}: {e}") from None
        rows = [canonical[[lead.lower() for lead in LEADS].index(lead.lower())] for lead in self.contract.leads]
        missing = [lead for lead, i in zip(self.contract.leads, rows) if i is None]
        if missing and self.missing_leads != "zero":
            raise UserError(
                f"{record}: missing lead(s) {', '.join(missing)} (it has {', '.join(names)}); "
                "pass --missing-leads zero to zero-fill them"
            )
        out = np.zeros((*x.shape[:-2], len(rows), x.shape[-1]), dtype=np.float32)
        for j, i in enumerate(rows):
            if i is not None:
                out[..., j, :] = x[..., i, :]
        if missing:
            self.zero_filled += 1
            if self.zero_filled <= WARNINGS_SHOWN:
                warning = f"myjepa {self.command}: warning: {record}: lead(s) {', '.join(missing)} zero-filled"
                print(warning, file=sys.stderr)
        return out

    def check_length(self, samples: int, fs: float, record: str) -> None:
        c = self.contract
        if math.ceil(samples * c.fs / fs) < c.crop:
            raise UserError(
                f"{record}: {samples} samples at {fs:g} Hz ({samples / fs:g} s) is shorter than one crop "
                f"({c.crop / c.fs:g} s = {c.crop} samples at {c.fs} Hz)"
            )


class DumpRecords:
    """The records of a dump, in its order; the index is the dump's own.

    Batches are read with plain file reads, not through the memory map: pages a map has touched count
    as the process's resident memory until the kernel drops them, which would grow with the dump.
    """

    nan_interpolated = 0  # a dump holds none (the converters filled them)

    def __init__(self, path: Path, mapper: LeadMapper) -> None:
        self.dump, self.mapper = open_dump(path), mapper
        self.index = self.dump.index
        mapper.check_length(self.dump.signals.shape[2], self.dump.fs, f"{path} (every record)")
        if not self.dump.signals.flags.c_contiguous:
            raise UserError(f"{path}: a Fortran-ordered array; dumps are C-ordered (`myjepa convert`)")
        self.offset = self.dump.signals.offset  # bytes before the first record (the .npy header)

    def __len__(self) -> int:
        return len(self.dump)

    def batches(self, size: int) -> Iterator[tuple[int, np.ndarray, float]]:
        """(offset, (R, 12, T) float32 mV in contract order, fs)."""
        signals = self.dump.signals
        row_shape = signals.shape[1:]
        row_bytes = int(np.prod(row_shape)) * signals.dtype.itemsize
        with open(self.dump.path, "rb") as f:
            for i in range(0, len(signals), size):
                n = min(size, len(signals) - i)
                f.seek(self.offset + i * row_bytes)
                x = np.fromfile(f, dtype=signals.dtype, count=n * int(np.prod(row_shape))).reshape(n, *row_shape)
                problem = nonfinite_problem(x, self.dump.leads, i)
                if problem:  # a dump `myjepa convert` wrote never has one; one made by hand may
                    raise UserError(f"{self.dump.path}: holds {problem}")
                yield i, self.mapper(x.astype(np.float32), self.dump.leads, str(self.dump.path)), self.dump.fs


class WfdbRecords:
    """The WFDB records (`*.hea`) under a folder, sorted by path; index: record name and path without extension."""

    def __init__(self, folder: Path, mapper: LeadMapper) -> None:
        self.folder, self.mapper = folder, mapper
        self.nan_interpolated = 0  # NaN samples filled, as the converters fill them
        self.paths = sorted(p.with_suffix("") for p in folder.rglob("*.hea"))
        if not self.paths:
            raise UserError(f"--src {folder}: no WFDB record (*.hea) in this folder or below")
        files = [p.relative_to(folder).as_posix() for p in self.paths]
        self.index = pd.DataFrame({"record": [p.name for p in self.paths], "file": files})

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, path: Path) -> tuple[np.ndarray, float]:
        """One record: (12, T) float32 mV in contract order, NaN runs interpolated, and its rate."""
        record = str(path.relative_to(self.folder))
        try:
            x, hdr = read_record(path)
            self.mapper.check_length(x.shape[1], hdr.fs, record)
            dead = [name for name, row in zip(hdr.names, x) if np.isnan(row).all()]
            if dead:
                raise RecordError(f"lead(s) {', '.join(dead)} hold no valid sample")
            self.nan_interpolated += interpolate_nans(x, hdr.names)
        except RecordError as e:
            raise UserError(f"{record}: {e}") from None
        return self.mapper(x, hdr.names, record), hdr.fs

    def batches(self, size: int) -> Iterator[tuple[int, np.ndarray, float]]:
        """(offset, (R, 12, T), fs): consecutive records of one length and rate, at most `size` of them."""
        pending: list[np.ndarray] = []
        start, key = 0, None
        for i, path in enumerate(self.paths):
            x, fs = self.read(path)
            if pending and (key != (x.shape[1], fs) or len(pending) == size):
                yield start, np.stack(pending), key[1]
                pending, start = [], i
            pending.append(x)
            key = (x.shape[1], fs)
        yield start, np.stack(pending), key[1]


def source_files(src: str | Path) -> list[Path]:
    """What `--src` names: a folder of records, or a dump's three files (an output never replaces one)."""
    source = Path(src)
    return [source] if source.is_dir() else dump_files(source)


def open_records(
    src: str | Path, contract: InputContract, missing_leads: str, command: str = "embed"
) -> DumpRecords | WfdbRecords:
    """A folder of WFDB records, or a dump (PATH.npy); `command` names the command in warnings."""
    p = Path(src)
    mapper = LeadMapper(contract, missing_leads, command)
    if p.is_dir():
        return WfdbRecords(p, mapper)
    if p.suffix == ".npy":
        return DumpRecords(p, mapper)
    raise UserError(f"--src {p}: neither a folder of WFDB records nor a dump PATH.npy")


def add_reading_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that read records this way (`embed`, `predict`): missing leads, batches,
    device, and --overwrite."""
    p.add_argument(
        "--missing-leads",
        choices=MISSING_LEADS,
        default="error",
        help="a record without some of the 12 leads: an error (default), or zero-fill them with a warning",
    )
    p.add_argument("--batch-size", type=int, default=64, help="records read per batch (default 64)")
    p.add_argument("--batch-crops", type=int, default=512, help="crops per encoder forward pass (default 512)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never an input)")


def check_reading_options(args: argparse.Namespace) -> None:
    if args.batch_size < 1 or args.batch_crops < 1:
        raise UserError("--batch-size and --batch-crops must be at least 1")
