"""SIGReg on many samples (all tokens of a batch): peak memory of one forward and backward, whole vs chunked.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sigreg_memory.py [--samples 12800] [--slices 1024]

12,800 samples are 64 records x 200 tokens. Each measurement runs in a fresh process and prints its peak
resident memory (VmHWM) above what the process held before SIGReg ran, and the seconds it took: once with
the default CHUNK_ELEMENTS (the whole (samples, slices, points) tensors when they fit under it), once with
a limit that forces chunks of --chunk-samples samples.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from pretrain_step import proc_status_bytes

from myjepa.models import sigreg


def one_run(samples: int, slices: int, limit: int) -> None:
    """Child process: SIGReg forward + backward on (samples, 64) embeddings with CHUNK_ELEMENTS = limit."""
    sigreg.CHUNK_ELEMENTS = limit
    z = torch.randn(samples, 64, requires_grad=True)
    reg = sigreg.SIGReg(num_slices=slices)
    before = proc_status_bytes("VmHWM")
    t0 = time.perf_counter()
    reg(z).backward()
    print(f"{(proc_status_bytes('VmHWM') - before) / 2**20:.0f} {time.perf_counter() - t0:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=12800)
    p.add_argument("--slices", type=int, default=1024)
    p.add_argument("--chunk-samples", type=int, default=1024)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        return one_run(args.samples, args.slices, args.child)
    points = 17
    elements = args.samples * args.slices * points
    print(f"{args.samples} samples x {args.slices} slices x {points} points = {elements / 1e6:.0f} M floats "
          f"({elements * 4 / 2**20:.0f} MB a tensor)")  # fmt: skip
    limits = {"whole": max(sigreg.CHUNK_ELEMENTS, elements), "chunked": args.chunk_samples * args.slices * points}
    for name, limit in limits.items():
        out = subprocess.run(
            [sys.executable, __file__, "--samples", str(args.samples), "--slices", str(args.slices), "--child",
             str(limit)], capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        print(f"{name:8s} peak +{out[0]} MB, {out[1]} s")


if __name__ == "__main__":
    main()
