"""`myjepa convert`: raw PTB-XL / MIMIC-IV-ECG downloads -> memory-mappable dumps; `merge` joins shards.

    myjepa convert ptb-xl --src PTBXL_DIR --out ptb-xl.npy [--source-rate 500|100] [--fs 500]
    myjepa convert mimic-iv-ecg --src MIMIC_DIR --out mimic.npy --workers 16 --shard 3/40
    myjepa convert merge mimic.part*.npy --out mimic.npy

Workers read records with the fast format-16 reader (`wfdb_io`) and write each one straight into
its row of an `open_memmap` under a temporary name, so memory does not grow with N and nothing
large passes between processes. Bad records are skipped with a reason. The mean/std sums are
integers (every float16 value is a multiple of 2^-24 mV) added up record by record, so merging
shards reproduces the unsharded statistics bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from myjepa import LEADS
from myjepa.dumps import sidecars
from myjepa.errors import UserError, run_cli
from myjepa.ingest.resample import resample
from myjepa.ingest.wfdb_io import WFDB_INVALID_16, RecordError, mv_per_unit, read_digital, read_header
from myjepa.utils.io import atomic_path
from myjepa.utils.logging import Progress

VERSION = 1
"""Converter version, stored in stats.json; bump when the dump contents change for the same input."""

DURATION_S = 10
SUM_SHIFT, SUMSQ_SHIFT = 24, 48
"""float16 values are integer multiples of 2^-24 mV, their squares of 2^-48 mV^2: sums scaled by these are integers."""

CHUNK = 64
"""Records per worker task (~20 ms of work): enough that the pool's per-task cost in the parent stays
small, few enough for frequent progress and an early stop when too many records are skipped."""

_LEAD_KEYS = {name.lower(): i for i, name in enumerate(LEADS)}


# ---------------------------------------------------------------------------------------------
# record lists


@dataclass
class RecordList:
    """What to convert, in output order: index rows, record paths and which rows enter mean/std."""

    source: str
    index: pd.DataFrame  # the dump's index columns, one row per record
    ids: list[Any]
    paths: list[str]  # relative to src, without extension
    in_stats: np.ndarray  # bool per record

    def __len__(self) -> int:
        return len(self.paths)

    def slice(self, start: int, stop: int) -> RecordList:
        return RecordList(
            self.source,
            self.index.iloc[start:stop].reset_index(drop=True),
            self.ids[start:stop],
            self.paths[start:stop],
            self.in_stats[start:stop],
        )


def _read_csv(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: not found (the {what} layout needs it)")
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read as CSV: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise UserError(f"{path}: lists no records")
    return df


def _int_column(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: column {col} has a non-integer value {df[col].iloc[row]!r} in data row {row + 1}")
    return values.astype(np.int64)


def _str_column(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    bad = df[col].isna()
    if bad.any():
        raise UserError(f"{path}: column {col} is empty in data row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}")
    return df[col].astype(str)


def ptbxl_records(src: Path, source_rate: int = 500, train_folds: Sequence[int] = range(1, 9)) -> RecordList:
    """PTB-XL's ptbxl_database.csv in ecg_id order; mean/std use the train folds only."""
    path = src / "ptbxl_database.csv"
    file_col = {500: "filename_hr", 100: "filename_lr"}[source_rate]
    df = _read_csv(path, ["ecg_id", "patient_id", "scp_codes", "strat_fold", file_col], "PTB-XL")
    ecg_id = _int_column(df, "ecg_id", path)
    if ecg_id.duplicated().any():
        raise UserError(f"{path}: column ecg_id repeats the value {int(ecg_id[ecg_id.duplicated()].iloc[0])}")
    patient = pd.to_numeric(df["patient_id"], errors="coerce").round().astype("Int64")
    index = pd.DataFrame(
        {
            "ecg_id": ecg_id,
            "patient_id": patient,
            "strat_fold": _int_column(df, "strat_fold", path),
            "scp_codes": df["scp_codes"].fillna("{}").astype(str),
            "file": _str_column(df, file_col, path),
        }
    )
    index = index.sort_values("ecg_id", kind="stable").reset_index(drop=True)
    in_stats = index["strat_fold"].isin(list(train_folds)).to_numpy()
    return RecordList("ptb-xl", index, index["ecg_id"].tolist(), index["file"].tolist(), in_stats)


def mimic_records(src: Path) -> RecordList:
    """MIMIC-IV-ECG's record_list.csv in its own order; mean/std use every record."""
    path = src / "record_list.csv"
    df = _read_csv(path, ["subject_id", "study_id", "path"], "MIMIC-IV-ECG")
    index = pd.DataFrame(
        {
            "subject_id": _int_column(df, "subject_id", path),
            "study_id": _int_column(df, "study_id", path),
            "file": _str_column(df, "path", path),
        }
    )
    return RecordList(
        "mimic-iv-ecg", index, index["study_id"].tolist(), index["file"].tolist(), np.ones(len(index), dtype=bool)
    )


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' (1-based) -> (I, N); None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 3/40") from None
    if not (n >= 1 and 1 <= i <= n):
        raise UserError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def shard_bounds(n_records: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Contiguous slice [start, stop) of the I-th of N near-equal shards."""
    i, n = shard
    return (i - 1) * n_records // n, i * n_records // n


# ---------------------------------------------------------------------------------------------
# one record


def interpolate_nans(x: np.ndarray) -> int:
    """Fill NaN runs in place, linearly per lead (edges take the nearest value); returns how many."""
    nan = np.isnan(x)
    count = int(nan.sum())
    if count:
        t = np.arange(x.shape[1])
        for lead in np.flatnonzero(nan.any(axis=1)):
            bad = nan[lead]
            x[lead, bad] = np.interp(t[bad], t[~bad], x[lead, ~bad])
    return count


@lru_cache(maxsize=64)
def _lookup(gain: float, baseline: int, mv: float) -> tuple[np.ndarray, bool]:
    """Every int16 sample's value as float16 mV, indexed by its uint16 bits, and whether all are finite.

    Converting through the table rounds once, from float64 like wfdb's p_signal, and is several
    times faster than numpy's float32 -> float16 cast. Format 16's invalid value maps to NaN.
    """
    digital = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float64)
    with np.errstate(over="ignore"):  # out-of-range entries become inf; records using them are skipped
        f16 = ((digital - baseline) / gain * mv).astype(np.float16)
    f16[WFDB_INVALID_16 & 0xFFFF] = np.nan
    return f16, bool(np.isfinite(np.delete(f16, WFDB_INVALID_16 & 0xFFFF)).all())


def record_sums(x16: np.ndarray) -> tuple[list[int], list[int]]:
    """Per-lead sum (units 2^-24 mV) and sum of squares (units 2^-48 mV^2) of one record, as Python ints.

    Every float16 is a multiple of 2^-24 and its square, exact in float64, one of 2^-48; float64
    sums of such values are integers in these units (the sum itself is exact while a lead's |x|
    sums stay below 2^29 mV; the sum of squares rounds as numpy's float64 reduction does, the same
    on every run with one numpy build and CPU type). Adding the per-record integers is exact, so
    totals do not depend on how records are split over chunks, workers or shards.
    """
    x = x16.astype(np.float64)
    s1 = np.ldexp(x.sum(axis=1), SUM_SHIFT).tolist()
    s2 = np.ldexp(np.einsum("ij,ij->i", x, x), SUMSQ_SHIFT).tolist()
    return [int(v) for v in s1], [int(v) for v in s2]


def load_ecg(
    record_path: str | os.PathLike, fs: int, out: np.ndarray | None = None, duration_s: int = DURATION_S
) -> tuple[np.ndarray, int]:
    """One record as float16 (12, duration*fs) mV in canonical lead order (written into `out`), and its NaN count.

    Leads are matched by header name (case-insensitive); the first 10 s are kept; other rates
    are resampled; NaN runs are interpolated. Raises RecordError for anything that makes the
    record unusable (`out` may then hold part of it).
    """
    base = os.fspath(record_path)
    hdr = read_header(base + ".hea")
    rows: dict[int | None, int] = {}
    for i, s in enumerate(hdr.signals):
        rows.setdefault(_LEAD_KEYS.get(s.name.lower()), i)
    missing = [lead for j, lead in enumerate(LEADS) if j not in rows]
    if missing:
        raise RecordError(f"missing lead(s) {', '.join(missing)} (header has {', '.join(hdr.names)})")
    order = [rows[j] for j in range(len(LEADS))]
    n_in = round(duration_s * hdr.fs)
    if hdr.n_samples < n_in:
        raise RecordError(f"shorter than {duration_s} s: {hdr.n_samples} samples at {hdr.fs:g} Hz")
    digital = read_digital(base, n_samples=n_in, header=hdr)[0][order]
    if out is None:
        out = np.empty((len(LEADS), duration_s * fs), dtype=np.float16)
    sigs = [hdr.signals[i] for i in order]
    mv = mv_per_unit(hdr)[order]
    if hdr.fs == fs and digital.min() != WFDB_INVALID_16:  # the common case: table lookup, no float arithmetic
        keys = [(s.gain, s.baseline, m) for s, m in zip(sigs, mv)]
        bits = digital.view(np.uint16)
        if keys.count(keys[0]) == len(keys):
            table, finite = _lookup(*keys[0])
            np.take(table, bits, out=out)
        else:
            finite = True
            for j, key in enumerate(keys):
                table, ok = _lookup(*key)
                np.take(table, bits[j], out=out[j])
                finite &= ok
        if finite or np.isfinite(out).all():
            return out, 0
        raise RecordError("values beyond the float16 range (|x| > 65504 mV)")
    gain = np.array([s.gain for s in sigs])[:, None]
    baseline = np.array([s.baseline for s in sigs])[:, None]
    invalid = digital == WFDB_INVALID_16
    x = (digital - baseline) / gain * mv[:, None]
    x[invalid] = np.nan
    all_nan = invalid.all(axis=1)
    if all_nan.any():
        raise RecordError(f"lead(s) {', '.join(LEADS[j] for j in np.flatnonzero(all_nan))} entirely NaN")
    n_nan = interpolate_nans(x)
    if hdr.fs != fs:
        x = resample(x, hdr.fs, fs)
    if x.shape[1] < out.shape[1]:
        raise RecordError(f"resampling {hdr.fs:g} -> {fs} Hz gave {x.shape[1]} of {out.shape[1]} samples")
    with np.errstate(over="ignore"):
        out[:] = x[:, : out.shape[1]]
    if not np.isfinite(out).all():
        raise RecordError("values beyond the float16 range (|x| > 65504 mV)")
    return out, n_nan


# ---------------------------------------------------------------------------------------------
# workers


@dataclass
class ChunkResult:
    """What a worker reports for a chunk; the signals themselves are already in the output file."""

    kept: list[int]  # positions (rows of the output file) of the kept records
    skipped: list[dict[str, Any]]
    nan_interpolated: int = 0
    stats_records: int = 0
    sum: list[int] = field(default_factory=lambda: [0] * len(LEADS))  # in units of 2^-24 mV
    sum_sq: list[int] = field(default_factory=lambda: [0] * len(LEADS))  # in units of 2^-48 mV^2


_JOB: dict[str, Any] = {}


def _init_worker(src: str, fs: int, npy: str, offset: int) -> None:
    """`offset`: where the array's data start in the .npy file (after its header)."""
    _JOB.update(src=src, fs=fs, npy=npy, offset=offset)


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
            x, n_nan = load_ecg(os.path.join(src, rel), fs, out=rows[j])
        except RecordError as e:
            res.skipped.append({"id": rec_id, "file": rel, "reason": str(e)})
            continue
        res.kept.append(start + j)
        res.nan_interpolated += n_nan
        if use:
            s1, s2 = record_sums(x)
            res.sum = [a + b for a, b in zip(res.sum, s1)]
            res.sum_sq = [a + b for a, b in zip(res.sum_sq, s2)]
            res.stats_records += 1
    return res


# ---------------------------------------------------------------------------------------------
# output


def set_npy_rows(path: Path, n_rows: int) -> None:
    """Shrink a C-order .npy file in place to its first `n_rows` rows (rewrite header, truncate)."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        new_shape = (n_rows, *shape[1:])
        text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": new_shape})
        prefix = 10 if version == (1, 0) else 12
        room = offset - prefix - 1
        if len(text) > room:
            raise RuntimeError(f"{path}: no room to rewrite the .npy header")
        f.seek(prefix)
        f.write((text.ljust(room) + "\n").encode("latin1"))
        f.truncate(offset + n_rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def finish_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Fill `mean`/`std` (population, per lead) from the exact integer sums."""
    sums = stats["exact_sums"]
    n = sums["samples"]
    if n == 0:
        stats["mean"], stats["std"] = [0.0] * len(LEADS), [1.0] * len(LEADS)
        return stats
    means, stds = [], []
    for s1, s2 in zip(sums["sum"], sums["sum_sq"]):
        mean = Fraction(s1, n << SUM_SHIFT)
        var = Fraction(s2, n << SUMSQ_SHIFT) - mean * mean
        means.append(float(mean))
        stds.append(math.sqrt(max(float(var), 0.0)))
    stats["mean"], stats["std"] = means, stds
    return stats


def _skip_message(
    n_skipped: int | str, n_total: int, max_fraction: float, skipped: list[dict[str, Any]], what: str
) -> str:
    reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:5])
    return f"{what}: {n_skipped} of {n_total} records skipped, more than --max-skip-fraction {max_fraction:g} allows; first: {reasons}"


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
    """Convert (one shard of) a dataset into the dump `out`; returns its stats dict.

    Workers write record i straight into row i of the output file; the parent only gathers the
    small chunk results, in order, and closes the gaps that skipped records leave behind it.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise UserError(f"--src {src}: not a directory")
    records = ptbxl_records(src, source_rate) if source == "ptb-xl" else mimic_records(src)
    n_listed = len(records)
    start, stop = shard_bounds(n_listed, shard)
    records = records.slice(start, stop)
    n, n_time = len(records), DURATION_S * fs
    tasks = [
        (s, records.ids[s : s + CHUNK], records.paths[s : s + CHUNK], records.in_stats[s : s + CHUNK].tolist())
        for s in range(0, n, CHUNK)
    ]
    max_skips = math.floor(max_skip_fraction * n + 1e-9)
    idx_path, stats_path = sidecars(out)
    stats: dict[str, Any] = {
        "fs": fs,
        "leads": list(LEADS),
        "mean": None,
        "std": None,
        "count": 0,
        "nan_interpolated": 0,
        "skipped": [],
        "version": VERSION,
        "source": source,
        "source_rate": source_rate if source == "ptb-xl" else 500,
        "shard": list(shard),
        "records_listed": n_listed,
        "records_in_shard": n,
        "exact_sums": {
            "records": 0,
            "samples": 0,
            "sum": [0] * len(LEADS),
            "sum_sq": [0] * len(LEADS),
            "units": "sum in 2^-24 mV, sum_sq in 2^-48 mV^2",
        },
    }
    sums = stats["exact_sums"]
    kept: list[int] = []  # rows of the kept records, in order
    with contextlib.ExitStack() as stack:
        tmp_stats = stack.enter_context(atomic_path(stats_path))
        tmp_idx = stack.enter_context(atomic_path(idx_path))
        tmp_npy = stack.enter_context(atomic_path(out))
        array = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.float16, shape=(n, len(LEADS), n_time))
        job = (str(src), fs, str(tmp_npy), array.offset)
        if workers > 1 and len(tasks) > 1:
            pool = stack.enter_context(mp.get_context("fork").Pool(min(workers, len(tasks)), _init_worker, job))
            results = pool.imap(convert_chunk, tasks)
        else:
            _init_worker(*job)
            stack.callback(_JOB.clear)
            results = map(convert_chunk, tasks)
        bar = (
            Progress(n, f"convert {source}" + (f" shard {shard[0]}/{shard[1]}" if shard != (1, 1) else ""), unit="rec")
            if progress
            else None
        )
        done = 0
        try:
            for res in results:  # in chunk order: every row before this chunk's is final
                for row in res.kept:
                    if row != len(kept):  # a skipped record left a gap: move the row up
                        array[len(kept)] = array[row]
                    kept.append(row)
                stats["skipped"] += res.skipped
                stats["nan_interpolated"] += res.nan_interpolated
                sums["records"] += res.stats_records
                sums["samples"] += res.stats_records * n_time
                sums["sum"] = [a + b for a, b in zip(sums["sum"], res.sum)]
                sums["sum_sq"] = [a + b for a, b in zip(sums["sum_sq"], res.sum_sq)]
                done += len(res.kept) + len(res.skipped)
                if len(stats["skipped"]) > max_skips:  # stop at once: the run can only fail
                    count = len(stats["skipped"]) if done == n else f"at least {len(stats['skipped'])}"
                    raise UserError(
                        _skip_message(count, n, max_skip_fraction, stats["skipped"], str(src)) + "; no dump written"
                    )
                if bar:
                    bar.update(len(res.kept) + len(res.skipped), skipped=len(stats["skipped"]))
        finally:
            if bar:
                bar.close()
        del array  # no msync: the kernel writes the pages back, as it does for the sidecars
        if len(kept) < n:
            set_npy_rows(tmp_npy, len(kept))
        records.index.iloc[kept].to_csv(tmp_idx, index=False)
        stats["count"] = len(kept)
        tmp_stats.write_text(json.dumps(finish_stats(stats), indent=2) + "\n")
    return stats


# ---------------------------------------------------------------------------------------------
# merge


def merge(parts: Sequence[str | os.PathLike], out: str | os.PathLike, chunk_rows: int = 256) -> dict[str, Any]:
    """Concatenate partial dumps (array, index rows, stats) into `out`, copying in chunks."""
    if not parts:
        raise UserError("merge: no parts given")
    metas = []
    for part in map(Path, parts):
        idx_path, stats_path = sidecars(part)
        for p in (part, idx_path, stats_path):
            if not p.is_file():
                raise UserError(f"merge: {p} not found (a part needs its .npy, .index.csv and .stats.json)")
        try:
            stats = json.loads(stats_path.read_text())
            array = np.load(part, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise UserError(f"merge: cannot read {part}: {e}") from None
        if "exact_sums" not in stats:
            raise UserError(f"merge: {stats_path} has no exact_sums (not written by `myjepa convert`)")
        if array.ndim != 3 or len(array) != stats["count"]:
            raise UserError(f"merge: {part} holds {array.shape} but its stats count {stats['count']} records")
        metas.append((part, idx_path, stats, array))
    first = metas[0][2]
    for part, _, stats, array in metas:
        for key in ("fs", "leads", "source", "source_rate", "records_listed"):
            if stats.get(key) != first.get(key):
                raise UserError(f"merge: {part} has {key}={stats.get(key)!r} but {metas[0][0]} has {first.get(key)!r}")
        if array.shape[1:] != metas[0][3].shape[1:]:
            raise UserError(
                f"merge: {part} has records of shape {array.shape[1:]}, {metas[0][0]} {metas[0][3].shape[1:]}"
            )
    shards = [tuple(m[2].get("shard") or (1, 1)) for m in metas]
    n_shards = {s[1] for s in shards}
    if len(n_shards) == 1 and n_shards != {1}:
        total = n_shards.pop()
        have = sorted(s[0] for s in shards)
        if have != list(range(1, total + 1)):
            missing = sorted(set(range(1, total + 1)) - set(have))
            raise UserError(
                f"merge: parts are shards {have} of {total}" + (f"; missing {missing}" if missing else "; some repeat")
            )
        metas.sort(key=lambda m: m[2]["shard"][0])
    n = sum(len(m[3]) for m in metas)
    idx_out, stats_out = sidecars(out)
    merged = {k: v for k, v in first.items() if k not in ("mean", "std")}
    merged.update(
        count=n,
        nan_interpolated=sum(m[2]["nan_interpolated"] for m in metas),
        skipped=[s for m in metas for s in m[2]["skipped"]],
        shard=[1, 1],
        records_in_shard=sum(m[2]["records_in_shard"] for m in metas),
        version=VERSION,
        merged_from=len(metas),
    )
    merged["exact_sums"] = dict(first["exact_sums"])
    for key in ("records", "samples"):
        merged["exact_sums"][key] = sum(m[2]["exact_sums"][key] for m in metas)
    for key in ("sum", "sum_sq"):
        merged["exact_sums"][key] = [sum(vals) for vals in zip(*(m[2]["exact_sums"][key] for m in metas))]
    with contextlib.ExitStack() as stack:
        tmp_stats = stack.enter_context(atomic_path(stats_out))
        tmp_idx = stack.enter_context(atomic_path(idx_out))
        tmp_npy = stack.enter_context(atomic_path(out))
        array = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.float16, shape=(n, *metas[0][3].shape[1:]))
        row = 0
        for _, _, _, part_array in metas:
            for s in range(0, len(part_array), chunk_rows):
                block = part_array[s : s + chunk_rows]
                array[row : row + len(block)] = block
                row += len(block)
        array.flush()
        del array
        with open(tmp_idx, "w") as f:
            for k, (_, idx_path, _, _) in enumerate(metas):
                lines = idx_path.read_text().splitlines(keepends=True)
                f.writelines(lines if k == 0 else lines[1:])
        tmp_stats.write_text(json.dumps(finish_stats(merged), indent=2) + "\n")
    return merged


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myjepa convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", required=True, metavar="{ptb-xl,mimic-iv-ecg,merge}")
    for name, help_ in (
        ("ptb-xl", "PTB-XL (ptbxl_database.csv, records500/, records100/)"),
        ("mimic-iv-ecg", "MIMIC-IV-ECG (record_list.csv, files/)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--src", required=True, help="the dataset's root folder")
        p.add_argument("--out", required=True, help="output dump PATH.npy (sidecars PATH.index.csv, PATH.stats.json)")
        if name == "ptb-xl":
            p.add_argument(
                "--source-rate",
                type=int,
                choices=(500, 100),
                default=500,
                help="read records500 (filename_hr) or records100 (filename_lr)",
            )
        p.add_argument("--fs", type=int, default=500, help="output sampling rate in Hz (default 500)")
        p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
        p.add_argument("--shard", default=None, help="convert only the I-th of N contiguous slices, e.g. 3/40")
        p.add_argument(
            "--max-skip-fraction",
            type=float,
            default=0.01,
            help="fail when more records than this are skipped (default 0.01)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress output")
    p = sub.add_parser("merge", help="concatenate partial dumps (e.g. shards) into one")
    p.add_argument("parts", nargs="+", help="partial dumps PART.npy")
    p.add_argument("--out", required=True, help="output dump PATH.npy")
    return parser


def main(argv: Sequence[str] | None = None) -> int | None:
    args = build_parser().parse_args(argv)
    if args.source == "merge":
        stats = merge(args.parts, args.out)
        print(f"merged {len(args.parts)} parts: {stats['count']} records -> {args.out}")
        return 0
    if args.fs <= 0:
        raise UserError(f"--fs {args.fs}: must be positive")
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if not 0 <= args.max_skip_fraction <= 1:
        raise UserError(f"--max-skip-fraction {args.max_skip_fraction}: must be between 0 and 1")
    stats = convert(
        args.source,
        args.src,
        args.out,
        getattr(args, "source_rate", 500),
        args.fs,
        args.workers,
        parse_shard(args.shard),
        args.max_skip_fraction,
        progress=not args.quiet,
    )
    print(
        f"converted {stats['count']} of {stats['records_in_shard']} records ({len(stats['skipped'])} skipped, {stats['nan_interpolated']} NaN samples interpolated) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
