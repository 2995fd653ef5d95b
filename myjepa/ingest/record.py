"""One record -> dump rows: consecutive 10 s windows, float16 (12, 10 s * fs) millivolts in canonical lead order.

Shared by every archive: an archive's reader yields `Raw` records (leads matched by name), and
`to_windows` resamples, interpolates NaN runs, high-pass filters if asked and cuts the windows.
Anything that makes a record unusable raises RecordError, which the writer turns into a skip with
a reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from myjepa.ingest.resample import resample
from myjepa.ingest.wfdb_io import WFDB_INVALID_16, RecordError, mv_per_unit, read_digital, read_header
from myjepa.leads import LEADS

DURATION_S = 10
"""Seconds per dump row (a window)."""

HIGHPASS_ORDER = 2
"""Order of the Butterworth high-pass (`--highpass`); sosfiltfilt runs it twice, forward and back."""

_LEAD_KEYS = {name.lower(): i for i, name in enumerate(LEADS)}
_TOO_LARGE = "values beyond the float16 range (|x| > 65504 mV)"
F16_OVERFLOW = 65520.0
"""The smallest magnitude float16 rounds to infinity (65504 is the largest finite value)."""


def interpolate_nans(x: np.ndarray, names: Sequence[str] = LEADS) -> int:
    """Fill NaN runs in place, linearly per lead (edges take the nearest value); returns how many.

    An infinite value is no gap but a corrupt sample: a RecordError naming its lead (`names`: the rows' leads).
    """
    if np.isfinite(x.sum()):  # no NaN: one sum is ~4x cheaper than isnan (the common case)
        return 0
    inf = np.isinf(x)
    if inf.any():
        leads = ", ".join(names[j] for j in np.flatnonzero(inf.any(axis=1)))
        raise RecordError(f"{int(inf.sum())} infinite value(s) in lead(s) {leads}")
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


def lead_rows(names: list[str]) -> list[int | None]:
    """Position in `names` of each canonical lead, None where absent (matched by name, case-insensitive:
    aVR = AVR; a lead named twice is an error: which of the two is meant cannot be known)."""
    if not any(names):
        raise RecordError("the header gives no lead names")
    rows: dict[int | None, int] = {}
    for i, name in enumerate(names):
        lead = _LEAD_KEYS.get(name.lower())
        if lead is not None and lead in rows:
            raise RecordError(f"lead {LEADS[lead]} appears twice (signals {rows[lead] + 1} and {i + 1} of the header)")
        rows[lead] = i
    return [rows.get(j) for j in range(len(LEADS))]


def lead_order(names: list[str]) -> list[int]:
    """`lead_rows`, with every canonical lead required (the converters keep no record without one)."""
    rows = lead_rows(names)
    missing = [lead for lead, row in zip(LEADS, rows) if row is None]
    if missing:
        raise RecordError(f"missing lead(s) {', '.join(missing)} (header has {', '.join(names)})")
    return rows


@dataclass
class Raw:
    """One record as read, before it is cut into windows: (12, n) samples in canonical lead order at `fs` Hz."""

    fs: float
    signal: np.ndarray  # int16 digital units (WFDB; `keys` scale them) or float millivolts (`keys` None)
    keys: list[tuple[float, int, float]] | None = None  # per lead: gain, baseline, mV per physical unit
    length: int | None = None  # samples of the whole record, where only its first windows were read

    @property
    def seconds(self) -> float:
        return (self.signal.shape[1] if self.length is None else self.length) / self.fs


def read_wfdb(record_path: str | os.PathLike, max_windows: int | None = None) -> Raw:
    """A WFDB record (path without extension), leads by name; only the first `max_windows` windows are read."""
    base = os.fspath(record_path)
    hdr = read_header(base + ".hea")
    order = lead_order(hdr.names)
    n = None if max_windows is None else math.ceil(max_windows * DURATION_S * hdr.fs - 1e-9)
    digital = read_digital(base, n, hdr)[0][order]
    mv = mv_per_unit(hdr)[order]
    keys = [(hdr.signals[i].gain, hdr.signals[i].baseline, float(m)) for i, m in zip(order, mv)]
    return Raw(hdr.fs, digital, keys, hdr.n_samples)


def read_wfdb_records(
    src: str, ids: list[Any], paths: list[str], max_windows: list[int]
) -> Iterator[Raw | RecordError]:
    """Each record of a WFDB archive (`paths` relative to `src`), or the RecordError that makes it unusable."""
    for rel, m in zip(paths, max_windows):
        try:
            yield read_wfdb(os.path.join(src, rel), m)
        except RecordError as e:
            yield e


def highpass_filter(hz: float, fs: int) -> np.ndarray:
    """The baseline-wander filter: a Butterworth high-pass as second-order sections, run forward and back."""
    from scipy.signal import butter  # here: scipy.signal costs seconds to import and most runs do not filter

    return butter(HIGHPASS_ORDER, hz, btype="highpass", fs=fs, output="sos")


def _by_table(digital: np.ndarray, keys: list[tuple[float, int, float]], out: np.ndarray) -> None:
    """The common case (output rate, no invalid samples): table lookup into `out`, no float arithmetic."""
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
    if not (finite or np.isfinite(out).all()):
        raise RecordError(_TOO_LARGE)


def _millivolts(raw: Raw, n: int) -> np.ndarray:
    """The first `n` samples as float mV (float32 signals stay float32, others become float64), NaN where
    invalid; a lead with no valid sample is a RecordError. Float signals are not copied where they need no
    conversion: NaN interpolation then fills `raw.signal` itself, which is read once."""
    if raw.keys is None:
        x = np.ascontiguousarray(raw.signal[:, :n], np.float32 if raw.signal.dtype == np.float32 else np.float64)
    else:
        digital = raw.signal[:, :n]
        gain, baseline, mv = (np.array(v, dtype=np.float64)[:, None] for v in zip(*raw.keys))
        x = (digital - baseline) / gain * mv
        x[digital == WFDB_INVALID_16] = np.nan
    all_nan = np.isnan(x).all(axis=1)
    if all_nan.any():
        raise RecordError(f"lead(s) {', '.join(LEADS[j] for j in np.flatnonzero(all_nan))} entirely NaN")
    return x


def to_windows(raw: Raw, fs: int, max_windows: int, sos: np.ndarray | None, out: np.ndarray) -> tuple[int, int]:
    """Cut `raw` into consecutive 10 s windows at `fs` Hz, at most `max_windows`, into out[0], out[1], ...

    Returns (windows written, NaN samples interpolated). A remainder shorter than 10 s is left out;
    a record shorter than 10 s is a RecordError. `sos`: the high-pass filter, run over the whole kept
    span before it is cut, or None.
    """
    n, per_window, t = raw.signal.shape[1], DURATION_S * raw.fs, out.shape[-1]
    count = min(int(n / per_window + 1e-9), max_windows)
    if count == 0:
        raise RecordError(f"shorter than {DURATION_S} s: {n} samples at {raw.fs:g} Hz")
    if raw.keys is not None and raw.fs == fs and sos is None and raw.signal[:, : count * t].min() != WFDB_INVALID_16:
        for w in range(count):
            _by_table(raw.signal[:, w * t : (w + 1) * t], raw.keys, out[w])
        return count, 0
    x = _millivolts(raw, math.ceil(count * per_window - 1e-9))
    n_nan = interpolate_nans(x)
    if raw.fs != fs:  # in float32: twice as fast, and its error is far below the float16 rounding of the dump
        x = resample(x.astype(np.float32, copy=False), raw.fs, fs)
    if x.shape[1] < count * t:
        raise RecordError(f"resampling {raw.fs:g} -> {fs} Hz gave {x.shape[1]} of {count * t} samples")
    if sos is not None:
        from scipy.signal import sosfiltfilt  # already imported where `sos` was designed

        x = sosfiltfilt(sos, x[:, : count * t], axis=-1)
    x = x[:, : count * t]
    if not np.abs(x).max() < F16_OVERFLOW:  # before the cast: ~5x cheaper than isfinite on the float16 rows
        raise RecordError(_TOO_LARGE)
    out[:count] = x.reshape(len(LEADS), count, t).transpose(1, 0, 2)
    return count, n_nan


def load_ecg(record_path: str | os.PathLike, fs: int, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The first 10 s of a WFDB record as float16 (12, 10 s * fs) mV in canonical lead order, and its NaN count."""
    rows = np.empty((1, len(LEADS), DURATION_S * fs), dtype=np.float16) if out is None else out[None]
    _, n_nan = to_windows(read_wfdb(record_path, 1), fs, 1, None, rows)
    return rows[0], n_nan
