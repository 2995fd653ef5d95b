"""Archives that are just folders of WFDB records: `myjepa convert wfdb` (any tree) and
`myjepa convert challenge-2021` (the PhysioNet/CinC Challenge 2021 sets: CPSC, CPSC-Extra, Georgia,
PTB, INCART (St Petersburg), Chapman-Shaoxing, Ningbo; a `.hea` + `.mat` pair per record).

Records are found recursively, in sorted path order, so shards and reruns see the same list. The
listing reads every header once: it gives each record's length (how many 10 s windows it holds)
and, for the Challenge sets, the `#Age:`, `#Sex:` and `#Dx:` comments. A header that cannot be
read is listed anyway; the converter skips it with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from myjepa.errors import UserError
from myjepa.ingest.record_list import RecordList
from myjepa.ingest.wfdb_io import RecordError, header_text, parse_header, read_header, with_length

CHALLENGE_COMMENTS = {"age": "Age", "sex": "Sex", "dx": "Dx"}
"""Index column -> the `#Key:` header comment of the Challenge 2021 sets it comes from."""


def find_headers(src: Path) -> list[str]:
    """Every `X.hea` under `src` as the record path `sub/dir/X`, sorted; none is a UserError."""
    found = []
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(folder, src)
        found += [os.path.normpath(os.path.join(rel, f[:-4])) for f in sorted(files) if f.endswith(".hea")]
    if not found:
        raise UserError(f"{src}: no WFDB header (.hea) found in any folder below it")
    return sorted(found)


def _comments(text: str) -> dict[str, str]:
    """`#Key: value` header comments -> {key: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.lstrip("#").partition(":")
        if line.startswith("#") and sep:
            out[key.strip()] = value.strip()
    return out


def _listing(src: Path, source: str, comments: dict[str, str]) -> RecordList:
    """Each record's name, path, duration (NaN where the header is unreadable) and chosen comments."""
    paths = find_headers(src)
    rows, durations = [], np.full(len(paths), np.nan)
    for k, rel in enumerate(paths):
        name = os.path.basename(rel)
        row = {"record": name, **dict.fromkeys(comments, "")}
        try:
            text = header_text((src / f"{rel}.hea").read_bytes())
            hdr = with_length(parse_header(text, f"{name}.hea"), str((src / rel).parent))
            durations[k] = hdr.n_samples / hdr.fs
            found = _comments(text)
            row.update({col: found.get(key, "") for col, key in comments.items()})
        except (OSError, RecordError):
            pass  # the converter reads the header again and skips the record with the reason
        rows.append(row | {"file": rel})
    index = pd.DataFrame(rows)
    return RecordList(source, index, index["record"].tolist(), paths, np.ones(len(paths), dtype=bool), durations)


def wfdb_records(src: Path, source_rate: int = 500) -> RecordList:
    """Every WFDB record below `src`; mean/std use all. `source_rate` is unused: each header gives its own."""
    return _listing(src, "wfdb", {})


def challenge_records(src: Path, source_rate: int = 500) -> RecordList:
    """Every record of the Challenge 2021 sets below `src`, with age, sex and SNOMED-CT Dx codes."""
    return _listing(src, "challenge-2021", CHALLENGE_COMMENTS)


def header_durations(src: Path, paths: list[str]) -> np.ndarray:
    """Seconds of each record from its header (NaN where unreadable), for archives listed without them."""
    out = np.full(len(paths), np.nan)
    for k, rel in enumerate(paths):
        try:
            hdr = read_header(os.path.join(src, rel) + ".hea")
        except RecordError:
            continue
        out[k] = hdr.n_samples / hdr.fs
    return out
