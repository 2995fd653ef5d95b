"""Fast WFDB reading and writing for the formats PhysioNet ECG archives use: 16, 212 and the MATLAB
variant (format 16 in a .mat file after its MAT header, `X.mat 16+24` in the CinC 2021 headers).

`wfdb.rdrecord` spends most of its time in generic parsing; a 12-lead record is one header of a
dozen lines and one interleaved sample file, so parsing the header once and decoding the samples
with numpy is several times faster. Anything unusual raises `RecordError`, whose message becomes
the `reason` of a skipped record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WFDB_INVALID_16 = -32768
"""Format 16's 'no sample' value; wfdb turns it into NaN in the physical signal."""

WFDB_INVALID_212 = -2048
"""Format 212's 'no sample' value; `read_digital` returns it as WFDB_INVALID_16, so callers see one code."""

MAT_V4_INT16 = 30
"""A MATLAB v4 matrix's type word for little-endian int16 (M=0, O=0, P=3, T=0)."""

DEFAULT_GAIN = 200.0
"""Gain (adu per physical unit) that the WFDB spec assumes when a header gives 0 or none."""


class RecordError(Exception):
    """One record cannot be used; the message says why (it is shown as the skip reason)."""


@dataclass
class Signal:
    file: str
    fmt: str
    gain: float
    baseline: int
    units: str
    adc_zero: int
    byte_offset: int
    name: str


@dataclass
class Header:
    record: str
    fs: float
    n_samples: int
    signals: list[Signal]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.signals]


_FMT_RE = re.compile(r"^(\d+)(?:x\d+)?(?::\d+)?(?:\+(\d+))?$")
_GAIN_RE = re.compile(r"^([-+0-9.eE]+)(?:\(([-+]?\d+)\))?(?:/(\S+))?$")


def _signal(ln: str, where: str) -> Signal:
    """One signal line: `file format gain(baseline)/units resolution adc_zero init checksum block name`."""
    f = ln.split(maxsplit=8)
    if len(f) < 2:
        raise RecordError(f"unreadable header {where}: bad signal line {ln!r}")
    fmt, byte_offset = f[1], 0
    if not fmt.isdigit():  # 16x2:5+24 style modifiers are rare: leave them to the regex
        m = _FMT_RE.match(fmt)
        if not m:
            raise RecordError(f"unreadable header {where}: bad format field {fmt!r}")
        fmt, byte_offset = m.group(1), int(m.group(2) or 0)
    gain, baseline, units, adc_zero = DEFAULT_GAIN, None, "mV", 0
    try:
        if len(f) > 2:
            g = _GAIN_RE.match(f[2])
            if not g:
                raise ValueError(f[2])
            gain = float(g.group(1)) or DEFAULT_GAIN
            baseline = int(g.group(2)) if g.group(2) is not None else None
            units = g.group(3) or "mV"
        if len(f) > 4:
            adc_zero = int(f[4])
    except ValueError:
        raise RecordError(f"unreadable header {where}: bad signal line {ln!r}") from None
    name = f[8].strip() if len(f) > 8 else ""
    return Signal(f[0], fmt, gain, adc_zero if baseline is None else baseline, units, adc_zero, byte_offset, name)


def parse_header(text: str, where: str = "header") -> Header:
    """Parse a WFDB header (single-segment records); raise RecordError naming what is wrong."""
    lines = [ln for ln in map(str.strip, text.splitlines()) if ln and ln[0] != "#"]
    if not lines:
        raise RecordError(f"unreadable header {where}: empty")
    rec = lines[0].split()
    if len(rec) < 2 or "/" in rec[0]:
        raise RecordError(f"unreadable header {where}: bad record line {lines[0]!r}")
    try:
        n_sig = int(rec[1])
        fs = float(rec[2].split("/")[0].split("(")[0]) if len(rec) > 2 else 250.0
        n_samples = int(rec[3]) if len(rec) > 3 else 0
    except ValueError:
        raise RecordError(f"unreadable header {where}: bad record line {lines[0]!r}") from None
    if n_sig <= 0 or fs <= 0 or n_samples < 0:
        raise RecordError(f"unreadable header {where}: bad record line {lines[0]!r}")
    if len(lines) - 1 < n_sig:
        raise RecordError(f"unreadable header {where}: declares {n_sig} signals but has {len(lines) - 1} signal lines")
    return Header(rec[0], fs, n_samples, [_signal(ln, where) for ln in lines[1 : 1 + n_sig]])


def _read_bytes(path: str, what: str, offset: int = 0, size: int = -1) -> bytes:
    """`size` bytes of a file from `offset`; a missing or unreadable file is a RecordError."""
    try:
        with open(path, "rb", buffering=0) as fh:
            if offset:
                fh.seek(offset)
            return fh.read(size)
    except FileNotFoundError:
        raise RecordError(f"missing file {what}") from None
    except OSError as e:
        raise RecordError(f"cannot read {what}: {e.strerror}") from None


def read_header(hea_path: str | os.PathLike) -> Header:
    """Read and parse `RECORD.hea`; a missing or unreadable file is a RecordError."""
    name = os.path.basename(hea_path)
    return parse_header(_read_bytes(os.fspath(hea_path), name).decode("latin-1"), name)


def _decode_212(buf: bytes, count: int) -> np.ndarray:
    """Format 212: two 12-bit two's-complement samples in every 3 bytes -> int16; invalid -> WFDB_INVALID_16."""
    available = len(buf) * 2 // 3  # whole samples in the bytes read (a truncated file may end mid-group)
    b = np.frombuffer(buf + b"\0" * (-len(buf) % 3), dtype=np.uint8).reshape(-1, 3).astype(np.int16)
    pairs = np.empty((len(b), 2), dtype=np.int16)
    pairs[:, 0] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    pairs[:, 1] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    samples = pairs.reshape(-1)[: min(count, available)]
    samples[samples >= 2048] -= 4096
    samples[samples == WFDB_INVALID_212] = WFDB_INVALID_16
    return samples


def _check_mat(path: str, name: str, head: bytes, offset: int, n_sig: int, n_samples: int) -> None:
    """The MAT header (v4, or v5 as wfdb's `wfdb_to_mat` writes) agrees with the WFDB header and the file size."""
    data = 2 * n_sig * n_samples
    if head[:10] == b"MATLAB 5.0" and len(head) >= 168:
        rows, cols = np.frombuffer(head[160:168], dtype="<u4").tolist()
        padded = {offset + data, offset + -(-data // 8) * 8}  # v5 pads the data to 8 bytes (wfdb's writer does not)
    elif len(head) >= 20 and np.frombuffer(head[:4], dtype="<i4")[0] == MAT_V4_INT16:
        rows, cols = np.frombuffer(head[4:12], dtype="<i4").tolist()
        padded = {offset + data}
    else:
        raise RecordError(f"{name}: not a MATLAB v4/v5 int16 matrix file")
    if (rows, cols) != (n_sig, n_samples):
        raise RecordError(f"{name}: holds a {rows} x {cols} matrix, the header says {n_sig} x {n_samples}")
    size = os.path.getsize(path)
    if size not in padded:
        raise RecordError(
            f"{name}: {size} bytes, but {n_sig} x {n_samples} int16 after a {offset}-byte header take {min(padded)}"
        )


def read_digital(
    record_path: str | os.PathLike, n_samples: int | None = None, header: Header | None = None
) -> tuple[np.ndarray, Header]:
    """Raw samples (n_sig, n) int16 (a transposed view of the file's order) of a format 16 or 212 record,
    the .mat variant included; invalid samples are WFDB_INVALID_16 whatever the format.

    Reads only the first `n_samples` samples when given (e.g. 10 s of a longer record); pass the
    already parsed `header` to avoid reading it twice.
    """
    base = os.fspath(record_path)
    hdr = header or read_header(base + ".hea")
    sigs = hdr.signals
    fmt = sigs[0].fmt
    if fmt not in ("16", "212") or any(s.fmt != fmt for s in sigs):
        raise RecordError(f"unsupported WFDB format {sorted({s.fmt for s in sigs})} (16 and 212 are read)")
    if len({s.file for s in sigs}) != 1 or len({s.byte_offset for s in sigs}) != 1:
        raise RecordError("signals spread over several .dat files are not supported")
    n_sig, n = len(sigs), hdr.n_samples
    if n_samples is not None:
        n = min(n, n_samples)
    dat, offset = sigs[0].file, sigs[0].byte_offset
    path = os.path.join(os.path.dirname(base), dat)
    size = 2 * n * n_sig if fmt == "16" else -(-3 * n * n_sig // 2)
    if dat.lower().endswith(".mat"):
        buf = _read_bytes(path, dat, 0, offset + size)
        _check_mat(path, dat, buf[:offset], offset, n_sig, hdr.n_samples)
        buf = buf[offset:]
    else:
        buf = _read_bytes(path, dat, offset, size)
    if fmt == "16":
        raw = np.frombuffer(buf, dtype="<i2", count=len(buf) // 2)  # a truncated file may end mid-sample
    else:
        raw = _decode_212(buf, n * n_sig)
    if raw.size < n * n_sig:
        raise RecordError(f"truncated file {dat}: {raw.size // n_sig} of {n} samples per signal")
    return raw.reshape(n, n_sig).T, hdr


UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "v": 1e3}
"""Physical units WFDB ECG headers use, in millivolts."""


def mv_per_unit(hdr: Header) -> np.ndarray:
    """(n_sig,) factor from each signal's units to mV; unknown units are a RecordError."""
    try:
        return np.array([UNIT_SCALE[s.units.lower()] for s in hdr.signals])
    except KeyError:
        raise RecordError(f"unsupported units {sorted({s.units for s in hdr.signals})}") from None


def read_record(
    record_path: str | os.PathLike, n_samples: int | None = None, header: Header | None = None
) -> tuple[np.ndarray, Header]:
    """Physical signal (n_sig, n) float32 in mV of a record (path without extension); NaN where invalid."""
    digital, hdr = read_digital(record_path, n_samples, header)
    sigs = hdr.signals
    gain = np.array([s.gain for s in sigs], dtype=np.float32)[:, None]
    baseline = np.array([s.baseline for s in sigs], dtype=np.float32)[:, None]
    physical = (digital.astype(np.float32) - baseline) / gain
    invalid = digital == WFDB_INVALID_16
    if invalid.any():
        physical[invalid] = np.nan
    scale = mv_per_unit(hdr)
    if (scale != 1.0).any():
        physical *= scale[:, None].astype(np.float32)
    return physical, hdr


def write_record(
    record_path: str | os.PathLike,
    signal_mv: np.ndarray,
    fs: int,
    lead_names: list[str],
    gain: float = 1000.0,
    comments: list[str] | None = None,
    base_time: str = "",
) -> None:
    """Write (n_sig, n) millivolts as a format-16 WFDB record (`.hea` + interleaved `.dat`).

    Samples are rounded to int16 after scaling by `gain`; out-of-range values are clipped, and NaN
    becomes the format's invalid value (so readers see NaN again).
    """
    base = Path(record_path)
    base.parent.mkdir(parents=True, exist_ok=True)
    scaled = np.rint(np.asarray(signal_mv, dtype=np.float64).T * gain)  # (n, n_sig): the file's sample order
    np.clip(scaled, WFDB_INVALID_16 + 1, 32767, out=scaled)  # real samples never read back as 'invalid'
    nan = np.isnan(scaled)
    if nan.any():
        scaled[nan] = WFDB_INVALID_16
    samples = scaled.astype("<i2")
    n, n_sig = samples.shape
    name = base.name
    base.with_name(name + ".dat").write_bytes(samples.tobytes())
    digital = samples.T
    checksums = samples.sum(axis=0, dtype=np.int64) % 65536
    lines = [f"{name} {n_sig} {fs} {n}" + (f" {base_time}" if base_time else "")]
    for i, lead in enumerate(lead_names):
        lines.append(
            f"{name}.dat 16 {gain:.1f}(0)/mV 16 0 {int(digital[i, 0]) if n else 0} {int(checksums[i])} 0 {lead}"
        )
    lines += [f"# {c}" for c in comments or []]
    base.with_name(name + ".hea").write_text("\n".join(lines) + "\n")
