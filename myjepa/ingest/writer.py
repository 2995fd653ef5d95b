"""The converter: one archive (or one shard of it) -> a dump, in steps: list the records, open the
output, convert the records chunk by chunk, finish the files. `myjepa convert` (`convert.py`) calls it.

Workers read records with the fast format-16 reader (`wfdb_io`) and write each one straight into
its row of an `open_memmap` under a temporary name, so memory does not grow with N and nothing
large passes between processes. Bad records are skipped with a reason. The mean/std sums are
integers (`stats`) added up record by record, so merging shards reproduces the unsharded
statistics bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from myjepa import LEADS
from myjepa.errors import UserError, stop_on_signals
from myjepa.ingest.archives import ARCHIVES
from myjepa.ingest.output import VERSION, dump_paths, new_array, set_npy_rows, write_stats
from myjepa.ingest.record import DURATION_S, load_ecg
from myjepa.ingest.record_list import RecordList, shard_bounds
from myjepa.ingest.stats import add_sums, empty_sums, record_sums
from myjepa.ingest.wfdb_io import RecordError
from myjepa.utils.logging import Progress

CHUNK = 64
"""Records per worker task (~20 ms of work): enough that the pool's per-task cost in the parent stays
small, few enough for frequent progress and an early stop when too many records are skipped."""


# ---------------------------------------------------------------------------------------------
# workers


@dataclass
class ChunkResult:
    """What a worker reports for a chunk; the signals themselves are already in the output file."""

    kept: list[int]  # positions (rows of the output file) of the kept records
    skipped: list[dict[str, Any]]
    nan_interpolated: int = 0
    sums: dict[str, Any] = field(default_factory=empty_sums)  # exact sums of the kept records that enter mean/std


_JOB: dict[str, Any] = {}


def _init_worker(src: str, fs: int, npy: str, offset: int, source_rate: int | None) -> None:
    """`offset`: where the array's data start in the .npy file (after its header); `source_rate`: the
    rate every header must state (the user chose it), or None where records at other rates are resampled."""
    _JOB.update(src=src, fs=fs, npy=npy, offset=offset, source_rate=source_rate)


def _init_pool_worker(*job: Any) -> None:
    """A pool worker leaves Ctrl-C to the parent (which stops the pool) and dies of SIGTERM (a SLURM
    time limit signals every process of the job), instead of running the handlers it inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_worker(*job)


def convert_chunk(task: tuple[int, list[Any], list[str], list[bool]]) -> ChunkResult:
    """Convert records (rows start.., ids, paths, in_stats) straight into their rows of the output file.

    The chunk maps only its own rows. Page faults on a shared file mapping do not take the file's
    lock, so workers do not queue behind one another as they do with write(): on 2 cores, 2
    workers convert ~1.8x as fast as one (BENCHMARKS.md).
    """
    start, ids, paths, in_stats = task
    src, fs = _JOB["src"], _JOB["fs"]
    row_shape = (len(LEADS), DURATION_S * fs)
    row_bytes = math.prod(row_shape) * np.dtype(np.float16).itemsize
    rows = np.memmap(
        _JOB["npy"], np.float16, "r+", offset=_JOB["offset"] + start * row_bytes, shape=(len(paths), *row_shape)
    )
    res = ChunkResult([], [])
    for j, (rec_id, rel, use) in enumerate(zip(ids, paths, in_stats)):
        try:
            x, n_nan = load_ecg(os.path.join(src, rel), fs, out=rows[j], source_rate=_JOB["source_rate"])
        except RecordError as e:
            res.skipped.append({"id": rec_id, "file": rel, "reason": str(e)})
            continue
        res.kept.append(start + j)
        res.nan_interpolated += n_nan
        if use:
            s1, s2 = record_sums(x)
            add_sums(res.sums, {"records": 1, "samples": x.shape[1], "sum": s1, "sum_sq": s2})
    return res


def _chunk_results(
    stack: contextlib.ExitStack, records: RecordList, job: tuple[str, int, str, int, int | None], workers: int
) -> Iterable[ChunkResult]:
    """Convert `records` CHUNK at a time, in a pool of `workers` processes (kept open by `stack`) or in
    this one; `job` is `_init_worker`'s arguments. The results come in chunk order.

    The pool is a ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies (SIGBUS, the OOM
    killer) breaks it with an error instead of losing its task and hanging the parent, and stopping
    early cancels the queued chunks and waits for the running ones (each a fraction of a second)
    instead of Pool.terminate(), which can deadlock against the pool's own threads.
    """
    tasks = [
        (s, records.ids[s : s + CHUNK], records.paths[s : s + CHUNK], records.in_stats[s : s + CHUNK].tolist())
        for s in range(0, len(records), CHUNK)
    ]
    if workers > 1 and len(tasks) > 1:
        pool = ProcessPoolExecutor(min(workers, len(tasks)), mp.get_context("fork"), _init_pool_worker, job)
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        return pool.map(convert_chunk, tasks)
    _init_worker(*job)
    stack.callback(_JOB.clear)
    return map(convert_chunk, tasks)


# ---------------------------------------------------------------------------------------------
# the parent


def _new_stats(
    source: str, source_rate: int, fs: int, shard: tuple[int, int], listed: int, in_shard: int
) -> dict[str, Any]:
    """stats.json before any record is converted (key order as written)."""
    return {
        "fs": fs,
        "leads": list(LEADS),
        "mean": None,
        "std": None,
        "count": 0,
        "nan_interpolated": 0,
        "skipped": [],
        "version": VERSION,
        "source": source,
        "source_rate": source_rate,
        "shard": list(shard),
        "records_listed": listed,
        "records_in_shard": in_shard,
        "exact_sums": empty_sums(),
    }


def _records_to_convert(
    source: str, src: Path, source_rate: int, fs: int, shard: tuple[int, int]
) -> tuple[RecordList, dict[str, Any]]:
    """The records of this shard of archive `source`, in output order, and the stats before any is converted."""
    if not src.is_dir():
        raise UserError(f"--src {src}: not a directory")
    if source not in ARCHIVES:
        raise UserError(f"unknown archive {source!r} (known: {', '.join(ARCHIVES)})")
    archive = ARCHIVES[source]
    source_rate = archive.source_rate(source_rate)
    listed = archive.list_records(src, source_rate)
    records = listed.slice(*shard_bounds(len(listed), shard))
    return records, _new_stats(source, source_rate, fs, shard, len(listed), len(records))


def _finish(
    npy: Path, index: Path, stats_path: Path, records: RecordList, kept: list[int], stats: dict[str, Any]
) -> None:
    """Drop the rows of skipped records from the .npy, write the kept records' index rows and stats.json."""
    if len(kept) < len(records):
        set_npy_rows(npy, len(kept))
    records.index.iloc[kept].to_csv(index, index=False)
    stats["count"] = len(kept)
    write_stats(stats_path, stats)


def _too_many_skips(src: Path, stats: dict[str, Any], done: int, max_skip_fraction: float) -> UserError:
    n, skipped = stats["records_in_shard"], stats["skipped"]
    count = len(skipped) if done == n else f"at least {len(skipped)}"
    reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:5])
    return UserError(
        f"{src}: {count} of {n} records skipped, more than --max-skip-fraction {max_skip_fraction:g} allows;"
        f" first: {reasons}; no dump written"
    )


def _unbroken(results: Iterable[ChunkResult]) -> Iterable[ChunkResult]:
    """`results`, with a dead pool worker reported as the UserError it is for the user."""
    try:
        yield from results
    except BrokenProcessPool:
        raise UserError(
            "a conversion worker died (killed, out of memory, or a bus error writing the output); no dump written"
        ) from None


def _gather(
    results: Iterable[ChunkResult],
    array: np.ndarray,
    stats: dict[str, Any],
    src: Path,
    max_skip_fraction: float,
    bar: Progress | None,
) -> list[int]:
    """Add the chunk results into `stats` and close the gaps skipped records leave in `array`; returns
    the kept rows. Stops with a UserError at the first chunk that skips more than the limit allows."""
    max_skips = math.floor(max_skip_fraction * stats["records_in_shard"] + 1e-9)
    kept: list[int] = []  # rows of the kept records, in order
    done = 0
    try:
        for res in _unbroken(results):  # in chunk order: every row before this chunk's is final
            for row in res.kept:
                if row != len(kept):  # a skipped record left a gap: move the row up
                    array[len(kept)] = array[row]
                kept.append(row)
            stats["skipped"] += res.skipped
            stats["nan_interpolated"] += res.nan_interpolated
            add_sums(stats["exact_sums"], res.sums)
            done += len(res.kept) + len(res.skipped)
            if len(stats["skipped"]) > max_skips:  # stop at once: the run can only fail
                raise _too_many_skips(src, stats, done, max_skip_fraction)
            if bar:
                bar.update(len(res.kept) + len(res.skipped), skipped=len(stats["skipped"]))
    finally:
        if bar:
            bar.close()
    return kept


def convert(
    source: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    source_rate: int = 500,
    fs: int = 500,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    max_skip_fraction: float = 0.01,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert (one shard of) archive `source` (a key of ARCHIVES) into the dump `out`; returns its stats dict.

    Workers write record i straight into row i of the output file; the parent only gathers the
    small chunk results, in order, and closes the gaps that skipped records leave behind it.
    SIGTERM or Ctrl-C stops it with the temporary files removed (`stop_on_signals`).
    """
    src = Path(src)
    records, stats = _records_to_convert(source, src, source_rate, fs, shard)
    with stop_on_signals(), dump_paths(out) as (tmp_npy, tmp_idx, tmp_stats), contextlib.ExitStack() as stack:
        array = new_array(tmp_npy, (len(records), len(LEADS), DURATION_S * fs), out)
        chosen_rate = stats["source_rate"] if len(ARCHIVES[source].source_rates) > 1 else None
        job = (str(src), fs, str(tmp_npy), array.offset, chosen_rate)
        results = _chunk_results(stack, records, job, workers)
        desc = f"convert {source}" + (f" shard {shard[0]}/{shard[1]}" if shard != (1, 1) else "")
        bar = Progress(len(records), desc, unit="rec") if progress else None
        kept = _gather(results, array, stats, src, max_skip_fraction, bar)
        del array  # no msync: the kernel writes the pages back, as it does for the sidecars
        _finish(tmp_npy, tmp_idx, tmp_stats, records, kept, stats)
    return stats
