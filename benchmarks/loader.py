"""Input pipeline speed: ViT-S crop batches per second, per worker and through the DataLoader.

    python benchmarks/loader.py                               # B = 2048, ViT-S crops, 1 and 2 workers
    python benchmarks/loader.py --workers 8 16 --device cuda  # on a GPU node: pinned, to the device, normalised
    python benchmarks/loader.py --ranks 8 --workers 1          # one rank's share of B = 2048 over 8 GPUs

Writes a synthetic dump (float16 mV, `--records` x 12 x 5000) to a temporary folder and reads it once,
so it is page-cached like a dump that training has touched. Then it times
  (1) a worker's job, `CropBatches[step]`, in this process: samples/s by wall clock and per CPU-second;
  (2) the DataLoader with each `--workers` count, as `myjepa pretrain` builds it (`train.data_loader`);
      on CUDA each batch is also pinned, moved to the GPU and normalised there (`train.device_batches`).
The per-worker figure judged against the target is the 1-worker DataLoader's (it pays for the shared
memory and the pipe), else the in-process one.
The FLOPs of one ViT-S training sample come from torch.utils.flop_counter (`train.flops_per_sample`),
and from them the samples/s a GPU at `--mfu` of its dense bf16 peak consumes, and so how many workers
at the measured per-worker speed keep it fed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import cpu_seconds, machine

from myjepa.leads import LEADS
from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain import train
from myjepa.pretrain.batches import CropBatches, SourceNorm, open_sources
from myjepa.pretrain.config import load_config

GPU_PEAK = {"H100 SXM": 989e12, "A100": 312e12}  # dense bf16 FLOP/s, from the vendors' data sheets
TARGET_PER_WORKER = 3000  # samples/s (issue #12)


def write_dump(folder: Path, records: int, length: int) -> Path:
    """A page-cached float16 dump of noise in mV with its stats sidecar (contents do not affect speed)."""
    path = folder / "bench.npy"
    signals = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(records, 12, length))
    rng = np.random.default_rng(0)
    for i in range(0, records, 256):
        signals[i : i + 256] = rng.normal(0, 0.3, size=signals[i : i + 256].shape)
    signals.flush()
    stats = {"fs": 500, "leads": list(LEADS), "mean": [0.0] * 12, "std": [0.3] * 12}
    (folder / "bench.stats.json").write_text(json.dumps(stats))
    np.load(path, mmap_mode="r").sum(dtype=np.float64)  # read once: page-cached
    return path


def time_worker(batches: CropBatches, count: int) -> tuple[float, float]:
    """(wall, CPU) seconds per batch of this process building batches 0..count-1 (one warm-up batch first)."""
    batches[count]
    c0, t0 = cpu_seconds(), time.perf_counter()
    for step in range(count):
        batches[step]
    return (time.perf_counter() - t0) / count, (cpu_seconds() - c0) / count


def time_loader(batches: CropBatches, cfg, workers: int, count: int, device: torch.device) -> float:
    """Seconds per batch through the training DataLoader with `workers` workers, after its first batch.

    On CUDA each batch is also pinned, copied to the GPU and normalised there, as in training; on the CPU
    the batches are only received (normalising on the CPU is the CPU training step's work, not the loader's).
    """
    cfg = dataclasses.replace(cfg, num_workers=workers, steps=count + 1)
    loader = iter(train.data_loader(batches, cfg, 0, device))
    if device.type == "cuda":
        loader = train.device_batches(loader, SourceNorm(batches.sources, device))
    next(loader)  # workers started, first batch through
    t0 = time.perf_counter()
    for _ in range(count):
        next(loader)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="ViTS_mimic", help="crop length and FLOPs from this config")
    p.add_argument("--batch", type=int, default=2048, help="the global batch")
    p.add_argument("--ranks", type=int, default=1, help="DDP ranks sharing it: time rank 0's share")
    p.add_argument("--records", type=int, default=4000, help="records in the synthetic dump")
    p.add_argument("--batches", type=int, default=10, help="timed batches per measurement")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts to time")
    p.add_argument("--device", default="cpu", help="where batches go (cuda: pinned memory, as in training)")
    p.add_argument("--mfu", type=float, default=0.4, help="fraction of the GPU's peak the training step reaches")
    args = p.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    cfg = load_config(args.config, batch_size=args.batch)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_dump(Path(tmp), args.records, cfg.channel_size)
        sources = open_sources([("bench", path)], load_config(args.config, datasets={"bench": 1.0}))
        collator = train.mask_collator(cfg)
        batches = CropBatches(sources, args.batch, cfg.channel_size, collator, seed=0, world_size=args.ranks)
        local = args.batch // args.ranks  # samples per item: rank 0's share
        wall, cpu = time_worker(batches, args.batches)
        print(
            f"{args.config} B={args.batch} (rank 0 of {args.ranks}: {local}) crops of {cfg.channel_size}, "
            f"{args.records}-record page-cached dump: CropBatches in this process {wall * 1000:.0f} ms/batch = "
            f"{local / wall:,.0f} samples/s wall, {local / cpu:,.0f} per CPU-second"
        )
        rates = {}
        for workers in args.workers:
            rates[workers] = local / time_loader(batches, cfg, workers, args.batches, device)
            print(f"DataLoader, {workers} workers -> {device}: {rates[workers]:,.0f} samples/s")
    # one worker's rate through the real pipe (shared memory, the main process) when measured
    per_worker = rates.get(1, local / wall)
    flops = train.flops_per_sample(MyJEPA(cfg), cfg, train.mask_collator(cfg), torch.device("cpu"))
    print(f"{args.config}: {flops / 1e9:.1f} GFLOP per training sample (forward + backward, flop_counter)")
    for gpu, peak in GPU_PEAK.items():
        need = args.mfu * peak / flops
        workers = math.ceil(need / per_worker)
        print(
            f"{gpu} at {args.mfu:.0%} MFU consumes {need:,.0f} samples/s: "
            f"{workers} worker{'s' if workers > 1 else ''} at {per_worker:,.0f} samples/s each"
        )
    verdict = "met" if per_worker >= TARGET_PER_WORKER else "NOT met"
    measured = ", ".join(f"{w} workers {r:,.0f}/s" for w, r in rates.items())
    print(
        f"SUMMARY loader: target >= {TARGET_PER_WORKER:,} samples/s per worker; measured {per_worker:,.0f} per "
        f"worker ({measured}; in-process {local / cpu:,.0f} per CPU-second): {verdict}; {machine()}"
    )


if __name__ == "__main__":
    main()
