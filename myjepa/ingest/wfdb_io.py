"""Fast WFDB reading and writing for the formats PhysioNet ECG archives use: 16, 212 and the MATLAB
variant (format 16 in a .mat file after its MAT header, `X.mat 16+24` in the CinC 2021 headers).

`wfdb.rdrecord` spends most of its time in generic parsing; a 12-lead record is one header of a
dozen lines and one interleaved sample file, so parsing the header once and decoding the samples
with numpy is several times faster. Anything unusual raises `RecordError`, whose message becomes
the `reason` of a skipped record.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from myjepa.utils.checks import rate_problem

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
    n_samples: int | None  # None: the header gives none (WFDB allows it): the signal file's size says
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
            if not math.isfinite(gain):
                raise ValueError(f[2])
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
        n_samples = int(rec[3]) if len(rec) > 3 else None
    except ValueError:
        raise RecordError(f"unreadable header {where}: bad record line {lines[0]!r}") from None
    if n_sig <= 0 or (n_samples is not None and n_samples < 0):
        raise RecordError(f"unreadable header {where}: bad record line {lines[0]!r}")
    problem = rate_problem(fs)
    if problem:
        raise RecordError(f"unreadable header {where}: sampling frequency {problem}")
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


def header_text(data: bytes) -> str:
    """A header's bytes as text. File names in it are decoded as the file system decodes names (UTF-8, any other
    byte kept as itself), so that `rä1.dat` names the file `rä1.dat`, whatever bytes spell it."""
    return data.decode("utf-8", "surrogateescape")


def read_header(hea_path: str | os.PathLike) -> Header:
    """Read and parse `RECORD.hea`, with the sample count from the signal file's size where the header gives
    none; a missing or unreadable file is a RecordError."""
    name = os.path.basename(hea_path)
    hdr = parse_header(header_text(_read_bytes(os.fspath(hea_path), name)), name)
    return with_length(hdr, os.path.dirname(os.fspath(hea_path)))


def with_length(hdr: Header, folder: str) -> Header:
    """`hdr` with its sample count; where the header gives none, the whole samples its signal file holds after
    the byte offset (WFDB's rule for a header without one)."""
    if hdr.n_samples is not None:
        return hdr
    sig = hdr.signals[0]
    try:
        size = os.path.getsize(os.path.join(folder, sig.file)) - sig.byte_offset
    except FileNotFoundError:
        raise RecordError(f"missing file {sig.file}") from None
    except OSError as e:
        raise RecordError(f"cannot read {sig.file}: {e.strerror}") from None
    per_sample = 1.5 * len(hdr.signals) if sig.fmt == "212" else 2 * len(hdr.signals)
    return replace(hdr, n_samples=max(int(size // per_sample), 0))


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


MAT_HEAD_BYTES = 512
"""Bytes read to find where a .mat file's matrix starts (its v4 or v5 header, the variable's name included)."""

MAT5_INT16, MAT5_INT32, MAT5_MATRIX, MAT5_COMPRESSED = 3, 5, 14, 15
"""MATLAB v5 data types: int16, int32, matrix, compressed."""
MAT5_NUMBERS = {1: "int8", 2: "uint8", 3: "int16", 4: "uint16", 5: "int32", 6: "uint32", 7: "single", 9: "double"}
"""The v5 data types of numbers, by name, for messages."""


def _mat5_element(head: bytes, pos: int) -> tuple[int, int, int, int]:
    """(type, size, where its data start, where the next element starts) of the v5 data element at `pos`; a
    small element (size < 5) packs its tag and data into 8 bytes."""
    word, size = np.frombuffer(head[pos : pos + 8], dtype="<u4").tolist()
    if word >> 16:
        return word & 0xFFFF, word >> 16, pos + 4, pos + 8
    return word, size, pos + 8, pos + 8 + -(-size // 8) * 8


def _mat_layout(head: bytes, name: str) -> tuple[int, int, int]:
    """(rows, columns, where the int16 data start) of the matrix in a MATLAB v4 or v5 file (`head`: its first
    bytes); anything else is a RecordError saying what the file holds."""
    if head[:10] == b"MATLAB 5.0" and len(head) >= 136:
        if head[126:128] != b"IM":
            raise RecordError(f"{name}: a big-endian MATLAB v5 file (only little-endian files are read)")
        kind, _, pos, _ = _mat5_element(head, 128)
        if kind == MAT5_COMPRESSED:
            raise RecordError(f"{name}: a compressed MATLAB v5 file, which WFDB cannot read: write it uncompressed")
        if kind != MAT5_MATRIX:
            raise RecordError(f"{name}: a MATLAB v5 file whose first variable is not a matrix")
        try:
            pos = _mat5_element(head, pos)[3]  # array flags (the class MATLAB converts to on loading)
            kind, size, data, pos = _mat5_element(head, pos)  # dimensions
            dims = np.frombuffer(head[data : data + size], dtype="<i4").tolist() if kind == MAT5_INT32 else []
            pos = _mat5_element(head, pos)[3]  # the variable's name
            stored, _, data, _ = _mat5_element(head, pos)  # the real part: its tag says how the values are stored
        except ValueError:  # np.frombuffer of a slice past the bytes read
            raise RecordError(f"{name}: the MATLAB v5 header does not fit in {MAT_HEAD_BYTES} bytes") from None
        if stored != MAT5_INT16 or len(dims) != 2:
            raise RecordError(
                f"{name}: a MATLAB v5 file whose first variable is not the 2-D matrix of int16 values WFDB's format "
                f"16 reads ({len(dims)} dimensions, {MAT5_NUMBERS.get(stored, f'data type {stored}')} values)"
            )
        return dims[0], dims[1], data
    if len(head) >= 20:
        kind, rows, cols, _, name_len = np.frombuffer(head[:20], dtype="<i4").tolist()
        if kind == MAT_V4_INT16:
            return rows, cols, 20 + name_len
    raise RecordError(f"{name}: neither a MATLAB v4 int16 matrix nor a MATLAB v5 file")


def _check_mat(path: str, name: str, head: bytes, offset: int, n_sig: int, n_samples: int) -> None:
    """The MAT header (v4, or v5 as wfdb's `wfdb_to_mat` or scipy's `savemat` write it) agrees with the WFDB
    header (its byte offset, signals and samples) and with the file size."""
    rows, cols, data_at = _mat_layout(head, name)
    if data_at != offset:
        raise RecordError(
            f"{name}: its int16 matrix starts at byte {data_at}, but the header's format field says +{offset} "
            f"(write `{name} 16+{data_at}`)"
        )
    if (rows, cols) != (n_sig, n_samples):
        raise RecordError(f"{name}: holds a {rows} x {cols} matrix, the header says {n_sig} x {n_samples}")
    data = 2 * n_sig * n_samples
    size = os.path.getsize(path)
    if size not in (offset + data, offset + -(-data // 8) * 8):  # v5 pads the data to 8 bytes (wfdb's writer does not)
        raise RecordError(
            f"{name}: {size} bytes, but {n_sig} x {n_samples} int16 after a {offset}-byte header take {offset + data}"
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
        buf = _read_bytes(path, dat, 0, max(offset, MAT_HEAD_BYTES) + size)
        _check_mat(path, dat, buf[:MAT_HEAD_BYTES], offset, n_sig, hdr.n_samples)
        buf = buf[offset : offset + size]
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
    base.with_name(name + ".hea").write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
