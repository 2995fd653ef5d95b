"""The raw archives `myjepa convert` reads, by name: `ARCHIVES["ptb-xl"]`, `ARCHIVES["code-15"]`, ...

One entry per archive holds all the converter and its command line need to know about it: how to
list its records, how to read them, the rates they are stored at and whether long records are
split into windows by default. Adding an archive is one module (its record list, and a reader if
its records are not WFDB) and one entry here; nothing else branches on archive names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from myjepa.ingest.code15 import RATE as CODE15_RATE
from myjepa.ingest.code15 import code15_records, read_code15_records
from myjepa.ingest.mimic import mimic_records
from myjepa.ingest.ptbxl import FILE_COLUMNS, ptbxl_records
from myjepa.ingest.record import Raw, read_wfdb_records
from myjepa.ingest.record_list import RecordList
from myjepa.ingest.wfdb_io import RecordError
from myjepa.ingest.wfdb_tree import challenge_records, wfdb_records

Reader = Callable[[str, list[Any], list[str], list[int]], Iterator[Raw | RecordError]]
"""(src, ids, paths, max windows per record) -> each record, or why it cannot be used, in order."""

WINDOWS = ("split", "first")
"""`--windows`: consecutive 10 s windows of every record, or only its first 10 s."""


@dataclass(frozen=True)
class Archive:
    """A raw archive: its one-line description, its record list and reader, and the rates it is stored at."""

    help: str  # for `myjepa convert --help`
    list_records: Callable[[Path, int], RecordList]  # (src, source_rate) -> what to convert, in output order
    source_rates: tuple[int, ...] = (500,)  # Hz; the first is the default, a choice gives `--source-rate`
    source_rate_help: str = ""
    read_records: Reader = read_wfdb_records
    windows: str = "split"  # the default of `--windows`: pretraining sources keep every 10 s

    def source_rate(self, requested: int) -> int:
        """The rate the records are read at: `requested` where the archive offers a choice, else its only rate."""
        return requested if len(self.source_rates) > 1 else self.source_rates[0]


ARCHIVES: dict[str, Archive] = {
    "ptb-xl": Archive(
        "PTB-XL (ptbxl_database.csv, records500/, records100/)",
        ptbxl_records,
        tuple(FILE_COLUMNS),
        "read records500 (filename_hr) or records100 (filename_lr)",
        windows="first",  # the evaluation's records: one row per ECG, as the benchmark defines them
    ),
    "mimic-iv-ecg": Archive("MIMIC-IV-ECG (record_list.csv, files/)", mimic_records),
    "code-15": Archive(
        "CODE-15% (exams.csv, exams_part*.hdf5)", code15_records, (CODE15_RATE,), read_records=read_code15_records
    ),
    "challenge-2021": Archive(
        "a PhysioNet/CinC Challenge 2021 set (X.hea + X.mat per record, found recursively)", challenge_records
    ),
    "wfdb": Archive("any tree of WFDB records (formats 16, 212 and .mat), found recursively", wfdb_records),
}
"""Archive name (the `myjepa convert` subcommand, the dump's stats `source`) -> Archive."""
