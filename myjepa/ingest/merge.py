"""`myjepa convert merge`: join partial dumps (the shards of one archive) into one dump.

The parts must come from the same archive at the same settings; shards are put back in order.
Their exact integer sums (`stats`) add up to those of an unsharded conversion, so the merged
mean/std equal the unsharded ones bit for bit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from myjepa.dumps import check_npy, sidecars
from myjepa.errors import UserError, stop_on_signals
from myjepa.ingest.output import VERSION, dump_paths, new_array, write_stats
from myjepa.ingest.stats import add_sums
from myjepa.utils.io import not_a_file

_MUST_AGREE = ("fs", "leads", "source", "source_rate", "records_listed", "windows", "highpass")
"""stats.json keys every part must share with the first."""


@dataclass
class _Part:
    path: Path
    index: Path
    stats: dict[str, Any]
    array: np.ndarray  # memory-mapped


def _read_part(path: Path) -> _Part:
    idx_path, stats_path = sidecars(path)
    for p in (path, idx_path, stats_path):
        if not p.is_file():
            raise UserError(f"merge: {p}: {not_a_file(p)} (a part needs its .npy, .index.csv and .stats.json)")
    check_npy(path)
    try:
        stats = json.loads(stats_path.read_text())
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"merge: cannot read {path}: {e}") from None
    if "exact_sums" not in stats:
        raise UserError(f"merge: {stats_path} has no exact_sums (not written by `myjepa convert`)")
    if array.ndim != 3 or len(array) != stats["count"]:
        raise UserError(f"merge: {path} holds {array.shape} but its stats count {stats['count']} records")
    return _Part(path, idx_path, stats, array)


def _check_alike(parts: list[_Part]) -> None:
    """Every part has the first one's archive, settings and record shape."""
    first = parts[0]
    for part in parts:
        for key in _MUST_AGREE:
            mine, theirs = part.stats.get(key), first.stats.get(key)
            if mine != theirs:
                raise UserError(f"merge: {part.path} has {key}={mine!r} but {first.path} has {theirs!r}")
        if part.array.shape[1:] != first.array.shape[1:]:
            raise UserError(
                f"merge: {part.path} has records of shape {part.array.shape[1:]}, {first.path} {first.array.shape[1:]}"
            )


def _in_shard_order(parts: list[_Part]) -> list[_Part]:
    """The parts sorted by shard number where they are the shards 1..N of one N; otherwise as given."""
    shards = [tuple(p.stats.get("shard") or (1, 1)) for p in parts]
    n_shards = {s[1] for s in shards}
    if len(n_shards) != 1 or n_shards == {1}:
        return parts
    total = n_shards.pop()
    have = sorted(s[0] for s in shards)
    if have != list(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - set(have))
        raise UserError(
            f"merge: parts are shards {have} of {total}" + (f"; missing {missing}" if missing else "; some repeat")
        )
    return sorted(parts, key=lambda p: p.stats["shard"][0])


def _merged_stats(first: dict[str, Any], parts: list[_Part]) -> dict[str, Any]:
    """The first part's stats with counts, skips and exact sums over all parts (mean/std still to fill)."""
    merged = {k: v for k, v in first.items() if k not in ("mean", "std")}
    merged.update(
        count=sum(len(p.array) for p in parts),
        nan_interpolated=sum(p.stats["nan_interpolated"] for p in parts),
        skipped=[s for p in parts for s in p.stats["skipped"]],
        shard=[1, 1],
        records_in_shard=sum(p.stats["records_in_shard"] for p in parts),
        records_kept=sum(p.stats.get("records_kept", len(p.array)) for p in parts),
        version=VERSION,
        merged_from=len(parts),
    )
    n_leads = len(first["exact_sums"]["sum"])
    merged["exact_sums"] = dict(first["exact_sums"], records=0, samples=0, sum=[0] * n_leads, sum_sq=[0] * n_leads)
    for p in parts:
        add_sums(merged["exact_sums"], p.stats["exact_sums"])
    if "remainders" in first:
        merged["remainders"] = dict(
            first["remainders"],
            count=sum(p.stats["remainders"]["count"] for p in parts),
            seconds=round(sum(p.stats["remainders"]["seconds"] for p in parts), 6),
        )
    return merged


def _write(parts: list[_Part], stats: dict[str, Any], out: str | os.PathLike, chunk_rows: int) -> None:
    """The parts' rows and index lines one after the other, and `stats`, as dump `out`."""
    with stop_on_signals(), dump_paths(out) as (tmp_npy, tmp_idx, tmp_stats):
        array = new_array(tmp_npy, (stats["count"], *parts[0].array.shape[1:]), out)
        row = 0
        for part in parts:
            for s in range(0, len(part.array), chunk_rows):
                block = part.array[s : s + chunk_rows]
                array[row : row + len(block)] = block
                row += len(block)
        array.flush()
        del array
        with open(tmp_idx, "w") as f:
            for k, part in enumerate(parts):
                lines = part.index.read_text().splitlines(keepends=True)
                f.writelines(lines if k == 0 else lines[1:])
        write_stats(tmp_stats, stats)


def merge(parts: Sequence[str | os.PathLike], out: str | os.PathLike, chunk_rows: int = 256) -> dict[str, Any]:
    """Concatenate partial dumps (array, index rows, stats) into `out`, copying in chunks."""
    if not parts:
        raise UserError("merge: no parts given")
    read = [_read_part(Path(p)) for p in parts]
    _check_alike(read)
    ordered = _in_shard_order(read)
    merged = _merged_stats(read[0].stats, ordered)
    _write(ordered, merged, out, chunk_rows)
    return merged
