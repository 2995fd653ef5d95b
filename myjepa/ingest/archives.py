"""The raw archives `myjepa convert` reads, by name: `ARCHIVES["ptb-xl"]`, `ARCHIVES["mimic-iv-ecg"]`.

One entry per archive holds all the converter and its command line need to know about it: how to
list its records and the rates its records are stored at. Adding an archive is one module (its
record list) and one entry here; nothing else branches on archive names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from myjepa.ingest.mimic import mimic_records
from myjepa.ingest.ptbxl import FILE_COLUMNS, ptbxl_records
from myjepa.ingest.record_list import RecordList


@dataclass(frozen=True)
class Archive:
    """A raw archive: its one-line description, its record list and the rates it is stored at."""

    help: str  # for `myjepa convert --help`
    list_records: Callable[[Path, int], RecordList]  # (src, source_rate) -> what to convert, in output order
    source_rates: tuple[int, ...] = (500,)  # Hz; the first is the default, a choice gives `--source-rate`
    source_rate_help: str = ""

    def source_rate(self, requested: int) -> int:
        """The rate the records are read at: `requested` where the archive offers a choice, else its only rate."""
        return requested if len(self.source_rates) > 1 else self.source_rates[0]


ARCHIVES: dict[str, Archive] = {
    "ptb-xl": Archive(
        "PTB-XL (ptbxl_database.csv, records500/, records100/)",
        ptbxl_records,
        tuple(FILE_COLUMNS),
        "read records500 (filename_hr) or records100 (filename_lr)",
    ),
    "mimic-iv-ecg": Archive("MIMIC-IV-ECG (record_list.csv, files/)", mimic_records),
}
"""Archive name (the `myjepa convert` subcommand, the dump's stats `source`) -> Archive."""
