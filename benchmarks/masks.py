"""Mask generation speed: MaskCollator.masks for B=2048, N=200 on one CPU thread (target: <= 20 ms).

python benchmarks/masks.py [--batch 2048] [--patches 200] [--reps 50]
"""

from __future__ import annotations

import argparse
import time

import torch

from myjepa.pretrain.masks import MaskCollator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--patches", type=int, default=200)
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    torch.set_num_threads(1)
    collator = MaskCollator(patch_size=25, min_block_size=10, min_keep_ratio=0.15, max_keep_ratio=0.25)
    gen = torch.Generator().manual_seed(0)
    collator.masks(args.batch, args.patches, gen)
    wall, cpu = [], []
    for _ in range(args.reps):
        t0, c0 = time.perf_counter(), time.process_time()
        collator.masks(args.batch, args.patches, gen)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    wall.sort()
    cpu.sort()
    # CPU time is what one core spends; wall time also counts waiting for a core on a shared machine
    print(
        f"masks B={args.batch} N={args.patches}, 1 thread, {args.reps} reps: "
        f"wall median {wall[len(wall) // 2] * 1000:.1f} ms (best {wall[0] * 1000:.1f}), "
        f"CPU time median {cpu[len(cpu) // 2] * 1000:.1f} ms (best {cpu[0] * 1000:.1f})"
    )


if __name__ == "__main__":
    main()
