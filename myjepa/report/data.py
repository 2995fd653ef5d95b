"""The report's data table: what each dump holds, from its stats.json (records, 10 s windows, hours,
what was skipped and why, rates, filter), so a reader sees what the encoders were trained on."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from myjepa.dumps import sidecars
from myjepa.errors import UserError
from myjepa.report.markup import esc, fmt, table

DATA_HEADER = ["dump", "source", "records", "windows", "hours", "skipped", "remainders", "rate (Hz)", "filter"]


def reason_kind(reason: str) -> str:
    """A skip reason without the record's details ('shorter than 10 s: 2800 samples at 400 Hz' -> its kind)."""
    return reason.split(":", 1)[0] if not reason.startswith("missing lead") else "missing lead(s)"


def dump_row(npy: Path) -> dict[str, Any]:
    """One dump's line of the table, from its stats.json."""
    _, stats_path = sidecars(npy)
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{stats_path}: cannot read: {e}") from None
    windows = int(stats["count"])
    reasons = Counter(reason_kind(s["reason"]) for s in stats.get("skipped", []))
    remainders = stats.get("remainders") or {"count": 0, "seconds": 0.0}
    highpass = stats.get("highpass")
    return {
        "dump": npy.stem,
        "source": stats.get("source", ""),
        "records": int(stats.get("records_kept", windows)),
        "windows": windows,
        "hours": windows * int(stats.get("window_s", 10)) / 3600,
        "skipped": dict(reasons),
        "remainders": remainders["count"],
        "remainder_hours": remainders["seconds"] / 3600,
        "source_rate": stats.get("source_rate"),
        "fs": stats["fs"],
        "filter": f"high-pass {highpass['hz']:g} Hz ({highpass['filter']})" if highpass else "none",
        "windows_mode": stats.get("windows", "first"),
    }


def data_table(dumps: Sequence[Path]) -> str:
    """The table over `dumps` (their .npy paths); empty when there are none."""
    if not dumps:
        return ""
    rows = []
    for r in map(dump_row, dumps):
        skipped = "; ".join(f"{n} {esc(kind)}" for kind, n in sorted(r["skipped"].items())) or "0"
        rows.append(
            [
                esc(r["dump"]),
                esc(r["source"]),
                r["records"],
                f"{r['windows']} ({esc(r['windows_mode'])})",
                fmt(r["hours"], 2),
                skipped,
                f"{r['remainders']} ({fmt(r['remainder_hours'], 2)} h)",
                f"{r['source_rate']} → {r['fs']}",
                esc(r["filter"]),
            ]
        )
    return table(DATA_HEADER, rows)
