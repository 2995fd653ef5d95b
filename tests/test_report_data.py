"""The report's data table: records, windows, hours, skips by reason, remainders, rates and filter per dump."""

from __future__ import annotations

import pytest

from myjepa.errors import UserError
from myjepa.ingest.writer import convert
from myjepa.report.data import data_table, dump_row, reason_kind
from myjepa.synth.command import synth


def test_a_converted_dump_row_and_table(tmp_path):
    src = synth("challenge-2021", tmp_path / "cpsc", 30, seed=5, progress=False)
    stats = convert("challenge-2021", src, tmp_path / "cpsc.npy", highpass=0.5, max_skip_fraction=0.5, progress=False)
    row = dump_row(tmp_path / "cpsc.npy")
    assert (row["dump"], row["source"], row["windows_mode"]) == ("cpsc", "challenge-2021", "split")
    assert row["records"] == stats["records_kept"] == 30 - len(stats["skipped"])
    assert row["windows"] == stats["count"] > row["records"]  # records of 6-60 s give several windows
    assert row["hours"] == pytest.approx(stats["count"] * 10 / 3600)
    assert row["skipped"] == ({"shorter than 10 s": len(stats["skipped"])} if stats["skipped"] else {})
    assert row["remainders"] == stats["remainders"]["count"] > 0
    assert row["filter"] == "high-pass 0.5 Hz (Butterworth order 2, scipy sosfiltfilt)"
    html = data_table([tmp_path / "cpsc.npy"])
    assert "<td>cpsc</td><td>challenge-2021</td>" in html and "500 → 500" in html
    assert f"<td>{stats['count']} (split)</td>" in html
    assert data_table([]) == ""


def test_reason_kinds_and_missing_stats(tmp_path):
    assert reason_kind("shorter than 10 s: 2800 samples at 400 Hz") == "shorter than 10 s"
    assert reason_kind("missing lead(s) V6 (header has I, II)") == "missing lead(s)"
    with pytest.raises(UserError, match=r"x.stats.json: cannot read"):
        dump_row(tmp_path / "x.npy")
