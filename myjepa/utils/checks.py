"""Checks of what a user hands in, in one place for every entry point that takes it: a sampling rate, and
signals that must be finite millivolts.

Each `*_problem` function says in words what is wrong (None when nothing is), so that a caller raises the
error its stage uses (a UserError, or a RecordError that skips one record) with the file or option named.
numpy is imported by the array checks only: the workflow's config checks import this module too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

from myjepa.errors import UserError

if TYPE_CHECKING:
    import numpy as np

MIN_RATE_HZ, MAX_RATE_HZ = 1.0, 100_000.0
"""The sampling rates accepted, in Hz: every ECG rate, and none that would make resampling build filters or
records of absurd size (a rate of 0.001 Hz resampled to 500 Hz is a 500,000-fold upsampling)."""

MAX_PLAUSIBLE_MV = 20.0
"""A lead whose largest |value| is above this many millivolts in most records is not in mV: a QRS complex
is a few mV. ADC counts (gain 200 to 1000 per mV) and microvolts are hundreds of times larger."""


def as_number(value: object) -> float | None:
    """`value` as a float when it is a real number (a numpy or 0-d torch one too), not text nor a boolean."""
    if isinstance(value, (bool, str, bytes)) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):  # an array of several values
        return None


def rate_problem(fs: object) -> str | None:
    """Why `fs` is not a sampling rate in Hz, or None when it is one."""
    hz = as_number(fs)
    if hz is None:
        return f"{fs!r} is not a number of Hz"
    if not math.isfinite(hz) or not MIN_RATE_HZ <= hz <= MAX_RATE_HZ:
        return f"{hz:g} Hz is not a sampling rate (between {MIN_RATE_HZ:g} and {MAX_RATE_HZ:g} Hz)"
    return None


def check_rate(fs: object, what: str) -> float:
    """`fs` as a float when it is a sampling rate, else a UserError naming `what` (an option, a key, a file)."""
    problem = rate_problem(fs)
    if problem:
        raise UserError(f"{what}: {problem}")
    return float(fs)  # type: ignore[arg-type]


def nonfinite_problem(x: np.ndarray, leads: Sequence[str], first: int = 0) -> str | None:
    """Where records x (..., leads, samples) hold NaN or infinite values, in words; None when all are finite.
    `first`: the number of x's first record (a batch of a larger set).

    One sum is the cheap test (finite values sum to a finite number unless they overflow, which is rechecked).
    """
    import numpy as np

    if np.isfinite(x.sum(dtype=np.float64)):
        return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    nan, where = int(np.isnan(x).sum()), np.unravel_index(int(np.argmax(bad)), x.shape)
    record = f"record {first + where[0]}, " if x.ndim == 3 else ""
    return (
        f"{nan} NaN and {int(bad.sum()) - nan} infinite values "
        f"(the first in {record}lead {leads[where[-2]]}, sample {where[-1]})"
    )


def implausible_mv(x: np.ndarray) -> float | None:
    """The median over records and leads of the largest |value| when it is too large for millivolts, else None."""
    import numpy as np

    if x.size == 0:
        return None
    peak = float(np.median(np.abs(x).max(axis=-1)))
    return peak if peak > MAX_PLAUSIBLE_MV else None
