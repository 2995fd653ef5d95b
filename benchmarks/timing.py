"""Shared by the benchmark scripts: CPU time of a process and its workers, and best-of-N timing."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable


def cpu_seconds() -> float:
    """User + system time of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def best_of(
    run: Callable[[], object], repeat: int, cleanup: Callable[[], object] = lambda: None
) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeat` calls by wall clock; `cleanup` runs untimed after each.

    The fastest run is the one least disturbed by the rest of the machine (other processes, a fresh
    VM's first touches of memory); noise only ever adds time, as with `timeit`.
    """
    runs = []
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        run()
        runs.append((time.perf_counter() - t0, cpu_seconds() - c0))
        cleanup()
    return min(runs)


def machine() -> str:
    return f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
