"""Keep the memory a training step frees for the next step, instead of handing it back to the kernel.

A CPU training step allocates and frees the same gigabytes of activations every step. glibc's malloc
maps large blocks (over 128 KiB, a threshold that rises to at most 32 MiB) straight from the kernel,
unmaps them when freed, and gives back the top of its heap once twice that is free, so each step got
its pages afresh: one page fault and a page of zeroes per 4 KiB. For MyJEPA's ViT-S step at batch 32
on one core that was 0.16–0.4 million faults and 0.7–3.5 s of system time per 10 s step, most of it
in the full-record pass and its backward, whose activations the reference's gradient-free target
pass never keeps (BENCHMARKS.md, "Step efficiency"). With mmap only for blocks over 1 GiB and no
trimming, freed blocks stay in the heap: after two or three steps it holds the step's peak, new
blocks reuse it and nothing faults. The peak resident memory stayed the same (ViT-S, B = 32), 10 %
higher with activation checkpointing. CUDA tensors do not use malloc; they have their own caching
allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_ABOVE = 1 << 30
NEVER_TRIM = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks; False where the C library is not glibc (nothing set:
    macOS has no mallopt, musl's accepts nothing)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
