"""A dump's per-lead mean/std, from exact integer sums: every float16 value is a multiple of 2^-24 mV
and its square one of 2^-48 mV^2, so record sums scaled by these are integers, and adding them is
exact in any order. Chunks, workers and shards therefore merge into the unsharded statistics bit
for bit. The sums are kept in stats.json (`exact_sums`) so that `merge` can add them up.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from myjepa.leads import LEADS

SUM_SHIFT, SUMSQ_SHIFT = 24, 48
"""float16 values are integer multiples of 2^-24 mV, their squares of 2^-48 mV^2: sums scaled by these are integers."""


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


def empty_sums() -> dict[str, Any]:
    """Exact sums over no records: stats.json's `exact_sums` before anything is added."""
    return {
        "records": 0,
        "samples": 0,
        "sum": [0] * len(LEADS),
        "sum_sq": [0] * len(LEADS),
        "units": "sum in 2^-24 mV, sum_sq in 2^-48 mV^2",
    }


def add_sums(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add the exact sums `part` (records, samples, per-lead sum and sum_sq) into `total`, in place."""
    total["records"] += part["records"]
    total["samples"] += part["samples"]
    total["sum"] = [a + b for a, b in zip(total["sum"], part["sum"])]
    total["sum_sq"] = [a + b for a, b in zip(total["sum_sq"], part["sum_sq"])]


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
