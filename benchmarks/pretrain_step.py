"""Pretraining step speed: step time, samples/s and achieved FLOP/s vs the machine's matmul throughput.

    python benchmarks/pretrain_step.py                 # ViT-XS and ViT-S at B=32 on CPU (+ GPU if present)
    python benchmarks/pretrain_step.py --configs ViTS_mimic --batch 32 --steps 5 --threads 2

Model FLOPs (forward + backward + SIGReg) are counted with torch.utils.flop_counter on the real step;
the reference throughput is a large dense float32 matmul (bfloat16 on GPU) on the same device and
thread count, so the fraction is an MFU against what this machine actually delivers. On a shared
CPU the per-CPU-second fraction (process time, not wall time) is the one that waiting for a core
does not distort.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> tuple[float, float]:
    """Dense matmul FLOP/s of (n x n) @ (n x n): (per wall second, per CPU second), best of `reps`."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    wall = cpu = float("inf")
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        sync(device)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return 2 * n**3 / wall, 2 * n**3 / cpu


def bench_step(config: str, batch: int, steps: int, device: torch.device, amp: torch.dtype | None) -> dict[str, float]:
    cfg = load_config(config, batch_size=batch)
    model = MyJEPA(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    collator = MaskCollator(cfg.patch_size, cfg.min_block_size, cfg.min_keep_ratio, cfg.max_keep_ratio)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 12, cfg.channel_size, device=device)
    # a fixed mid-range mask (keep ratio 0.2) so every step does the same work
    collator.min_keep_ratio = collator.max_keep_ratio = 0.2
    ctx_idx, tgt_idx = (t.to(device) for t in collator.masks(batch, cfg.num_patches, gen))

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = model(x, ctx_idx, tgt_idx)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(2):
        step()
    sync(device)
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    t, c = sorted(times)[len(times) // 2], sorted(cpu_times)[len(cpu_times) // 2]
    return {
        "step_time": t,
        "samples_per_s": batch / t,
        "flops_per_step": flops,
        "flops_per_s": flops / t,
        "flops_per_cpu_s": flops / c,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["ViTXS_mimic", "ViTS_mimic"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--cpu-only", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() and not args.cpu_only else []
    )
    for device in devices:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            peak, _ = matmul_flops(device, torch.bfloat16, 8192, 20)
            amp, label = torch.bfloat16, f"cuda ({torch.cuda.get_device_name()}), bf16 autocast"
        else:
            peak, peak_cpu = matmul_flops(device, torch.float32, 2048, 10)
            amp, label = None, f"cpu, {torch.get_num_threads()} threads, float32"
        print(
            f"{label}: dense matmul {peak / 1e9:.1f} GFLOP/s"
            + (f" ({peak_cpu / 1e9:.1f} per CPU-second)" if device.type == "cpu" else "")
        )
        for config in args.configs:
            r = bench_step(config, args.batch, args.steps, device, amp)
            print(
                f"  {config:<12} B={args.batch}: step {r['step_time'] * 1000:.0f} ms, "
                f"{r['samples_per_s']:.1f} samples/s, {r['flops_per_step'] / 1e9:.1f} GFLOP/step, "
                f"{r['flops_per_s'] / 1e9:.1f} GFLOP/s = {r['flops_per_s'] / peak:.0%} of matmul"
                + (
                    f"; per CPU-second {r['flops_per_cpu_s'] / 1e9:.1f} GFLOP "
                    f"= {r['flops_per_cpu_s'] / peak_cpu:.0%} of matmul"
                    if device.type == "cpu"
                    else ""
                )
            )


if __name__ == "__main__":
    main()
