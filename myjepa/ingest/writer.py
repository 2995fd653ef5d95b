"""The converter: one archive (or one shard of it) -> a dump, in steps: list the records, open the
output, convert the records chunk by chunk, finish the files. `myjepa convert` (`convert.py`) calls it.

Workers read records with the archive's reader (WFDB: the fast reader `wfdb_io`; CODE-15%: HDF5
slices) and write each record's 10 s windows straight into their rows of the .npy file (one pwrite) under
a temporary name, so memory does not grow with N and nothing large passes between processes. Rows are
reserved per record from its listed length; bad records are skipped with a reason. The mean/std sums are
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
from threadpoolctl import threadpool_limits

from myjepa.errors import UserError, stop_on_signals
from myjepa.ingest.archives import ARCHIVES
from myjepa.ingest.output import VERSION, dump_paths, new_array, set_npy_rows, write_stats
from myjepa.ingest.record import DURATION_S, HIGHPASS_ORDER, highpass_filter, to_windows
from myjepa.ingest.record_list import RecordList, max_windows, shard_bounds
from myjepa.ingest.stats import add_sums, empty_sums, record_sums
from myjepa.ingest.wfdb_io import RecordError
from myjepa.ingest.wfdb_tree import header_durations
from myjepa.leads import LEADS
from myjepa.utils.logging import Progress

CHUNK = 64
"""Records per worker task (~20 ms of work): enough that the pool's per-task cost in the parent stays
small, few enough for frequent progress and an early stop when too many records are skipped."""


# ---------------------------------------------------------------------------------------------
# workers


@dataclass
class ChunkResult:
    """What a worker reports for a chunk; the signals themselves are already in the output file."""

    kept: list[int]  # rows of the output file holding kept windows
    windows: list[tuple[int, int]]  # per kept row: (position of its record in the list, offset in seconds)
    skipped: list[dict[str, Any]]
    nan_interpolated: int = 0
    remainders: list[float] = field(default_factory=list)  # seconds left after the last window (split only)
    records: int = 0  # records read (kept or skipped)
    sums: dict[str, Any] = field(default_factory=empty_sums)  # exact sums of the kept records that enter mean/std


_JOB: dict[str, Any] = {}


def _init_worker(
    src: str, fs: int, npy: str, offset: int, source: str, split: bool, sos: Any, source_rate: int | None
) -> None:
    """`offset`: where the array's data start in the .npy file (after its header); `sos`: the high-pass or
    None; `source_rate`: the rate every header must state (the user chose it), or None where records at
    other rates are resampled."""
    _JOB.update(src=src, fs=fs, npy=npy, offset=offset, source=source, split=split, sos=sos, source_rate=source_rate)


def _init_pool_worker(*job: Any) -> None:
    """A pool worker leaves Ctrl-C to the parent (which stops the pool) and dies of SIGTERM (a SLURM
    time limit signals every process of the job), instead of running the handlers it inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_worker(*job)


Task = tuple[int, int, list[Any], list[str], list[bool], list[int]]
"""(position of the first record, its first row, ids, paths, in_stats, rows reserved per record)."""


def convert_chunk(task: Task) -> ChunkResult:
    """Convert records straight into their reserved rows of the output file.

    Each record's windows are cast into a small reused buffer and written with one pwrite: ~1.5x
    cheaper per row than storing into a mapping of the file, where every new page faults. (A pwrite
    of a record holds the file's lock for ~20 us, so workers hardly queue behind one another.)
    """
    first, start, ids, paths, in_stats, reserved = task
    src, fs = _JOB["src"], _JOB["fs"]
    row_shape = (len(LEADS), DURATION_S * fs)
    row_bytes = math.prod(row_shape) * np.dtype(np.float16).itemsize
    buffer = np.empty((max(reserved, default=0), *row_shape), np.float16)
    read = ARCHIVES[_JOB["source"]].read_records(src, ids, paths, reserved)
    res = ChunkResult([], [], [])
    row = 0
    fd = os.open(_JOB["npy"], os.O_WRONLY)
    try:
        for j, (rec_id, rel, use, n_rows, raw) in enumerate(zip(ids, paths, in_stats, reserved, read)):
            try:
                if isinstance(raw, RecordError):
                    raise raw
                if _JOB["source_rate"] is not None and raw.fs != _JOB["source_rate"]:
                    raise RecordError(f"header says {raw.fs:g} Hz but --source-rate is {_JOB['source_rate']}")
                count, n_nan = to_windows(raw, fs, n_rows, _JOB["sos"], buffer[:n_rows])
            except RecordError as e:
                res.skipped.append({"id": rec_id, "file": index_file(rel), "reason": str(e)})
                row += n_rows
                continue
            _write_rows(fd, buffer[:count], _JOB["offset"] + (start + row) * row_bytes)
            if _JOB["split"]:
                res.remainders.append(raw.seconds - count * DURATION_S)
            for w in range(count):
                res.kept.append(start + row + w)
                res.windows.append((first + j, w * DURATION_S))
                if use:
                    s1, s2 = record_sums(buffer[w])
                    add_sums(res.sums, {"records": 1, "samples": row_shape[1], "sum": s1, "sum_sq": s2})
            res.nan_interpolated += n_nan
            row += n_rows
    finally:
        os.close(fd)
    res.records = len(ids)
    return res


def _write_rows(fd: int, rows: np.ndarray, offset: int) -> None:
    """pwrite `rows` at `offset`; a short write (the disk blocks are reserved, so it should not happen) is an error."""
    if os.pwrite(fd, rows, offset) != rows.nbytes:
        raise UserError(f"{_JOB['npy']}: short write of {rows.nbytes} bytes at offset {offset}")


def index_file(path: str) -> str:
    """The source file a record path names in skip entries (CODE-15%'s 'PART:ROW' -> PART)."""
    return path.rpartition(":")[0] or path


def _chunk_results(
    stack: contextlib.ExitStack, records: RecordList, reserved: np.ndarray, job: tuple[Any, ...], workers: int
) -> Iterable[ChunkResult]:
    """Convert `records` CHUNK at a time, in a pool of `workers` processes (kept open by `stack`) or in
    this one; `reserved`: rows per record; `job` is `_init_worker`'s arguments. The results come in chunk order.

    The pool is a ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies (SIGBUS, the OOM
    killer) breaks it with an error instead of losing its task and hanging the parent, and stopping
    early cancels the queued chunks and waits for the running ones (each a fraction of a second)
    instead of Pool.terminate(), which can deadlock against the pool's own threads.

    BLAS runs one thread per worker (set before the fork, restored by `stack`): the workers are the
    parallelism, and OpenBLAS's own threads spin between the resampler's small products, doubling
    the CPU time per record.
    """
    stack.enter_context(threadpool_limits(1, user_api="blas"))
    first_row = np.concatenate([[0], np.cumsum(reserved)])
    tasks = [
        (
            s,
            int(first_row[s]),
            records.ids[s : s + CHUNK],
            records.paths[s : s + CHUNK],
            records.in_stats[s : s + CHUNK].tolist(),
            reserved[s : s + CHUNK].tolist(),
        )
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
    source: str,
    source_rate: int,
    fs: int,
    shard: tuple[int, int],
    listed: int,
    in_shard: int,
    windows: str = "first",
    highpass: float | None = None,
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
        "records_kept": 0,
        "windows": windows,
        "window_s": DURATION_S,
        "remainders": {"count": 0, "seconds": 0.0, "reason": f"shorter than {DURATION_S} s after the last window"},
        "highpass": highpass and {"hz": highpass, "filter": f"Butterworth order {HIGHPASS_ORDER}, scipy sosfiltfilt"},
        "exact_sums": empty_sums(),
    }


def _records_to_convert(
    source: str, src: Path, source_rate: int, fs: int, shard: tuple[int, int], windows: str, highpass: float | None
) -> tuple[RecordList, np.ndarray, dict[str, Any]]:
    """The records of this shard of archive `source`, in output order, the rows reserved for each, and the
    stats before any is converted."""
    if not src.is_dir():
        raise UserError(f"--src {src}: not a directory")
    if source not in ARCHIVES:
        raise UserError(f"unknown archive {source!r} (known: {', '.join(ARCHIVES)})")
    archive = ARCHIVES[source]
    source_rate = archive.source_rate(source_rate)
    listed = archive.list_records(src, source_rate)
    records = listed.slice(*shard_bounds(len(listed), shard))
    if windows == "first":
        reserved = np.ones(len(records), dtype=np.int64)
    else:
        durations = records.durations
        reserved = max_windows(header_durations(src, records.paths) if durations is None else durations, DURATION_S)
    stats = _new_stats(source, source_rate, fs, shard, len(listed), len(records), windows, highpass)
    return records, reserved, stats


def _finish(
    npy: Path,
    index: Path,
    stats_path: Path,
    records: RecordList,
    windows: list[tuple[int, int]],
    reserved_rows: int,
    stats: dict[str, Any],
) -> None:
    """Drop the unused rows from the .npy, write an index row per window (its record's row and the window's
    offset in seconds) and stats.json."""
    if len(windows) < reserved_rows:
        set_npy_rows(npy, len(windows))
    positions = [pos for pos, _ in windows]
    rows = records.index.iloc[positions].reset_index(drop=True)
    rows["offset_s"] = [offset for _, offset in windows]
    rows.to_csv(index, index=False, errors="backslashreplace")  # a file name that is not UTF-8 gets escapes
    stats["count"] = len(windows)
    stats["records_kept"] = len(set(positions))
    write_stats(stats_path, stats)


def _too_many_skips(src: Path, stats: dict[str, Any], done: int, max_skip_fraction: float) -> UserError:
    n, skipped = stats["records_in_shard"], stats["skipped"]
    count = len(skipped) if done == n else f"at least {len(skipped)}"
    reasons = "; ".join(f"{skip_label(s)}: {s['reason']}" for s in skipped[:5])
    return UserError(
        f"{src}: {count} of {n} records skipped, more than --max-skip-fraction {max_skip_fraction:g} allows;"
        f" first: {reasons}; no dump written"
    )


def skip_label(skip: dict[str, Any]) -> str:
    """How a message names a skipped record: its file, with its id where the file's name is not it (a CODE-15%
    exam in an HDF5 part, a PTB-XL ecg_id), or its id alone where no file holds it."""
    file, record = skip["file"], str(skip["id"])
    if not file:
        return f"record {record}"
    return file if os.path.basename(file) == record else f"{file} (record {record})"


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
    array: np.memmap,
    stats: dict[str, Any],
    src: Path,
    max_skip_fraction: float,
    bar: Progress | None,
) -> list[int]:
    """Add the chunk results into `stats` and close the gaps skipped records leave in `array`; returns
    the kept rows. Stops with a UserError at the first chunk that skips more than the limit allows.

    Rows move by pread/pwrite, ~2.5x cheaper than a copy through a mapping of the file, whose first
    touch of each page faults.
    """
    max_skips = math.floor(max_skip_fraction * stats["records_in_shard"] + 1e-9)
    kept: list[int] = []  # rows of the kept windows, in order
    windows: list[tuple[int, int]] = []  # per kept row: (record position, offset in seconds)
    done = 0
    row_bytes = array.nbytes // max(len(array), 1)
    fd = os.open(array.filename, os.O_RDWR)
    try:
        for res in _unbroken(results):  # in chunk order: every row before this chunk's is final
            for row in res.kept:
                if row != len(kept):  # a skipped record left a gap: move the row up
                    data = os.pread(fd, row_bytes, array.offset + row * row_bytes)
                    os.pwrite(fd, data, array.offset + len(kept) * row_bytes)
                kept.append(row)
            windows += res.windows
            stats["skipped"] += res.skipped
            stats["nan_interpolated"] += res.nan_interpolated
            add_remainders(stats["remainders"], res.remainders)
            add_sums(stats["exact_sums"], res.sums)
            done += res.records
            if len(stats["skipped"]) > max_skips:  # stop at once: the run can only fail
                raise _too_many_skips(src, stats, done, max_skip_fraction)
            if bar:
                bar.update(res.records, skipped=len(stats["skipped"]))
    finally:
        os.close(fd)
        if bar:
            bar.close()
    return windows


def add_remainders(total: dict[str, Any], seconds: list[float]) -> None:
    """Count the remainders longer than a rounding error (CODE-15%'s 10 s exams have none)."""
    left = [s for s in seconds if s > 1e-6]
    total["count"] += len(left)
    total["seconds"] = round(total["seconds"] + sum(left), 6)


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
    windows: str | None = None,
    highpass: float | None = None,
) -> dict[str, Any]:
    """Convert (one shard of) archive `source` (a key of ARCHIVES) into the dump `out`; returns its stats dict.

    `windows`: "split" (every whole 10 s window of a record) or "first" (its first 10 s); None takes
    the archive's default. `highpass`: cut-off in Hz of the baseline-wander filter, or None.
    Workers write each record's windows straight into the rows reserved for it; the parent only
    gathers the small chunk results, in order, and closes the gaps that skips leave behind it.
    SIGTERM or Ctrl-C stops it with the temporary files removed (`stop_on_signals`).
    """
    src = Path(src)
    windows = windows or (ARCHIVES[source].windows if source in ARCHIVES else "split")
    records, reserved, stats = _records_to_convert(source, src, source_rate, fs, shard, windows, highpass)
    sos = None if highpass is None else highpass_filter(highpass, fs)  # before the fork: workers share scipy
    with stop_on_signals(), dump_paths(out) as (tmp_npy, tmp_idx, tmp_stats), contextlib.ExitStack() as stack:
        n_rows = int(reserved.sum())
        array = new_array(tmp_npy, (n_rows, len(LEADS), DURATION_S * fs), out)
        chosen_rate = stats["source_rate"] if source in ARCHIVES and len(ARCHIVES[source].source_rates) > 1 else None
        job = (str(src), fs, str(tmp_npy), array.offset, source, windows == "split", sos, chosen_rate)
        results = _chunk_results(stack, records, reserved, job, workers)
        desc = f"convert {source}" + (f" shard {shard[0]}/{shard[1]}" if shard != (1, 1) else "")
        bar = Progress(len(records), desc, unit="rec") if progress else None
        kept_windows = _gather(results, array, stats, src, max_skip_fraction, bar)
        del array  # no msync: the kernel writes the pages back, as it does for the sidecars
        _finish(tmp_npy, tmp_idx, tmp_stats, records, kept_windows, n_rows, stats)
    return stats
