"""The fast WFDB reader/writer agrees with the wfdb package; the resampler agrees with scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb

from myjepa.ingest.resample import resample_poly
from myjepa.ingest.wfdb_io import RecordError, parse_header, read_header, read_record, write_record
from myjepa.synth.code15_challenge import write_mat_record

SAMPLE = Path(__file__).parent / "data" / "ptb-xl-sample"


def test_header_of_real_ptbxl_record():
    hdr = read_header(SAMPLE / "records100/00000/00001_lr.hea")
    assert (hdr.record, hdr.fs, hdr.n_samples) == ("00001_lr", 100.0, 1000)
    assert hdr.names == ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert {s.gain for s in hdr.signals} == {1000.0} and {s.baseline for s in hdr.signals} == {0}


@pytest.mark.parametrize("ecg_id", [1, 2, 500, 999])
def test_read_record_equals_wfdb_physical_signal(ecg_id):
    base = SAMPLE / f"records100/00000/{ecg_id:05d}_lr"
    x, hdr = read_record(base)
    ref = wfdb.rdrecord(str(base)).p_signal.T
    assert x.shape == ref.shape == (12, 1000)
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-7)
    head, _ = read_record(base, n_samples=300)
    np.testing.assert_array_equal(head, x[:, :300])


def test_write_record_round_trips_through_wfdb(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.5, (12, 2500))
    x[2, 100:130] = np.nan
    x[4, 7] = -500.0  # beyond int16 at gain 200: clipped, but not to the NaN code
    names = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    write_record(tmp_path / "r", x, 250, names, gain=200.0, base_time="08:44:00 23/07/2180")
    rec = wfdb.rdrecord(str(tmp_path / "r"))
    assert (rec.fs, rec.sig_len, rec.sig_name, rec.fmt[0]) == (250, 2500, names, "16")
    ref = rec.p_signal.T
    assert np.isnan(ref[2, 100:130]).all() and np.isnan(ref).sum() == 30
    assert ref[4, 7] == pytest.approx(-32767 / 200)
    ok = ~np.isnan(x)
    ok[4, 7] = False
    assert np.abs(ref[ok] - x[ok]).max() <= 0.5 / 200 + 1e-12
    mine, _ = read_record(tmp_path / "r")
    np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=1e-7, equal_nan=True)
    digital = np.fromfile(tmp_path / "r.dat", dtype="<i2").reshape(2500, 12)
    hdr = wfdb.rdheader(str(tmp_path / "r"))
    assert hdr.checksum == (digital.astype(np.int64).sum(axis=0) % 65536).tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("rec twelve 500 5000\n", "bad record line"),
        ("rec 12 500 5000\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "declares 12 signals but has 1"),
        ("rec 1 500 5000\nrec.dat 16 abc/mV 16 0 0 0 0 I\n", "bad signal line"),
        ("rec 1 500 5000\nrec.dat sixteen 200/mV 16 0 0 0 0 I\n", "bad format field"),
        ("rec 1 500 5000\nrec.dat 16 1e999/mV 16 0 0 0 0 I\n", "bad signal line"),  # an infinite gain
    ],
)
def test_bad_headers_raise_record_errors(text, message):
    with pytest.raises(RecordError, match=message):
        parse_header(text, "rec.hea")


@pytest.mark.parametrize("rate", ["nan", "inf", "-inf", "0", "-500", "0.0001", "1e9"])
def test_a_header_whose_rate_is_not_one_is_a_record_error(rate):
    with pytest.raises(RecordError, match=r"unreadable header rec.hea: sampling frequency .* is not a sampling rate"):
        parse_header(f"rec 1 {rate} 5000\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "rec.hea")


@pytest.mark.parametrize("fmt", ["16", "212", "mat"])
def test_a_header_without_a_sample_count_reads_the_whole_signal_file(tmp_path, fmt):
    """WFDB allows a record line without the number of samples: the signal file's size gives it."""
    x = np.random.default_rng(1).normal(0, 0.5, (12, 2345))
    names = [f"L{i}" for i in range(12)]
    if fmt == "mat":
        write_mat_record(tmp_path / "r", x, 500, names, [])
    else:
        wfdb.wrsamp("r", 500, ["mV"] * 12, names, x.T, fmt=[fmt] * 12, adc_gain=[200] * 12, baseline=[0] * 12,
                    write_dir=str(tmp_path))  # fmt: skip
    full, _ = read_record(tmp_path / "r")
    hea = tmp_path / "r.hea"
    lines = hea.read_text().splitlines()
    assert lines[0].split()[:4] == ["r", "12", "500", "2345"]
    hea.write_text("\n".join(["r 12 500", *lines[1:]]) + "\n")
    assert read_header(hea).n_samples == 2345
    got, hdr = read_record(tmp_path / "r")
    np.testing.assert_array_equal(got, full)


def test_header_defaults_follow_the_wfdb_spec():
    hdr = parse_header("rec 2 360 100\nrec.dat 16 0(5)/uV 16 3 0 0 0 I\nrec.dat 16\n")
    assert hdr.signals[0].gain == 200.0 and hdr.signals[0].baseline == 5 and hdr.signals[0].units == "uV"
    assert hdr.signals[1].gain == 200.0 and hdr.signals[1].baseline == 0 and hdr.signals[1].name == ""


def test_missing_and_truncated_files_raise_record_errors(tmp_path):
    write_record(tmp_path / "r", np.zeros((12, 1000)), 100, [f"L{i}" for i in range(12)])
    dat = tmp_path / "r.dat"
    dat.write_bytes(dat.read_bytes()[: 12 * 2 * 400])
    with pytest.raises(RecordError, match=r"truncated file r.dat: 400 of 1000"):
        read_record(tmp_path / "r")
    dat.unlink()
    with pytest.raises(RecordError, match="missing file r.dat"):
        read_record(tmp_path / "r")
    with pytest.raises(RecordError, match="missing file nothing.hea"):
        read_record(tmp_path / "nothing")
    (tmp_path / "f.hea").write_text("f 1 100 10\nf.dat 80 200 12 0 0 0 0 I\n")
    with pytest.raises(RecordError, match="unsupported WFDB format"):
        read_record(tmp_path / "f")


def test_a_non_ascii_record_name_names_its_files(tmp_path):
    """The header's file names are the file system's (UTF-8), not Latin-1: `rä1` reads `rä1.dat`."""
    x = np.random.default_rng(2).normal(0, 0.5, (12, 1000))
    write_record(tmp_path / "rä1", x, 500, [f"L{i}" for i in range(12)])
    assert (tmp_path / "rä1.dat").is_file() and "rä1.dat 16" in (tmp_path / "rä1.hea").read_text(encoding="utf-8")
    got, hdr = read_record(tmp_path / "rä1")
    assert hdr.record == "rä1" and hdr.signals[0].file == "rä1.dat"
    np.testing.assert_allclose(got, x, atol=0.5 / 1000 + 1e-6)


@pytest.mark.parametrize(
    "how, offset, message",
    [
        ({}, 184, None),  # savemat's v5 layout: 128-byte header, matrix tag, flags, dims, name 'val', data tag
        ({"format": "4"}, 24, None),
        (
            {},
            24,
            r"its int16 matrix starts at byte 184, but the header's format field says \+24 \(write `r.mat 16\+184`\)",
        ),
        ({"do_compression": True}, 184, "a compressed MATLAB v5 file, which WFDB cannot read: write it uncompressed"),
        (
            {"as": np.float64},
            184,
            r"a MATLAB v5 file whose first variable is not the 2-D matrix of int16 values "
            r"WFDB's format 16 reads \(2 dimensions, double values\)",
        ),
    ],
    ids=["v5", "v4", "v5-wrong-offset", "v5-compressed", "v5-double"],
)
def test_mat_files_written_by_scipy_are_read_or_refused_with_the_reason(tmp_path, how, offset, message):
    digital = np.random.default_rng(3).integers(-2000, 2000, (12, 700)).astype(np.int16)
    how = dict(how)
    scipy.io.savemat(tmp_path / "r.mat", {"val": digital.astype(how.pop("as", np.int16))}, **how)
    names = [f"L{i}" for i in range(12)]
    (tmp_path / "r.hea").write_text(
        "\n".join(["r 12 500 700"] + [f"r.mat 16+{offset} 1000/mV 16 0 0 0 0 {n}" for n in names])
    )
    if message is None:
        got, _ = read_record(tmp_path / "r")
        np.testing.assert_allclose(got, digital / 1000, rtol=1e-6)
    else:
        with pytest.raises(RecordError, match=f"r.mat: {message}"):
            read_record(tmp_path / "r")


@pytest.mark.parametrize(
    "n, up, down", [(1000, 5, 1), (5000, 1, 5), (3600, 25, 18), (5000, 1, 2), (2570, 500, 257), (7, 3, 2)]
)
def test_resample_poly_equals_scipy(n, up, down):
    from scipy.signal import resample_poly as scipy_resample_poly

    x = np.random.default_rng(n).normal(size=(3, n))
    ours = resample_poly(x, up, down)
    ref = scipy_resample_poly(x, up, down, axis=-1)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, up, down", [(4000, 5, 4), (1000, 5, 1), (2570, 500, 257)])
def test_resample_poly_in_float32_is_far_inside_float16_rounding(n, up, down):
    """float32 input (the converter's dump path) is resampled in float32: within 1e-6 of the signal's scale
    of scipy's float64 result, 500x below float16's half-ulp of 2^-12 relative."""
    from scipy.signal import resample_poly as scipy_resample_poly

    x = np.cumsum(np.random.default_rng(n).normal(size=(12, n)), axis=-1)
    ours = resample_poly(x.astype(np.float32), up, down)
    ref = scipy_resample_poly(x.astype(np.float32).astype(np.float64), up, down, axis=-1)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
