"""Pretraining step speed and memory: step time, samples/s and FLOP/s against the machine's matmul peak.

    python benchmarks/pretrain_step.py                      # ViT-XS and ViT-S at B=32 on CPU (+ GPU if present)
    python benchmarks/pretrain_step.py --configs ViTS_mimic --batch 32 --steps 5 --threads 2 --reference
    python benchmarks/pretrain_step.py --configs ViTS_mimic --memory          # peak memory per sample, +/- recompute
    python benchmarks/pretrain_step.py --device cuda --batch 256 512 1024 --compile --max-batch

Model FLOPs (forward + backward + SIGReg) are counted with torch.utils.flop_counter on the real step,
attention on the CPU included (`myjepa.utils.flops`). Like `myjepa pretrain`, the timed steps keep
freed memory for the next step (`myjepa.utils.memory`); the peak-memory processes do not, so that
their peak is what a step holds, not what malloc kept.
The peak is the best of several large square matmuls (float32 on CPU, bf16 on GPU) on the same device
and thread count, so the fraction is an MFU against what this machine delivers. `--reference` times
an ECG-JEPA step (EMA target encoder without gradients, context encoder, predictor; no SIGReg) side by
side, interleaved, and reports MyJEPA's FLOP/s over the reference's. On a shared CPU the per-CPU-second
figures (process time, not wall time) are the ones that waiting for a core does not distort.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from reference_jepa import ReferenceJEPA
from torch import nn

from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain.config import PretrainConfig, load_config
from myjepa.pretrain.masks import MaskCollator
from myjepa.utils.flops import count_flops
from myjepa.utils.memory import keep_freed_memory


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...], reps: int = 5) -> tuple[float, float]:
    """(FLOP/s per wall second, per CPU second): the best (n x n) @ (n x n) over `sizes` and `reps`."""
    wall = cpu = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync(device)
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            a @ b
            sync(device)
            wall = max(wall, 2 * n**3 / (time.perf_counter() - t0))
            cpu = max(cpu, 2 * n**3 / max(time.process_time() - c0, 1e-9))
    return wall, cpu


def make_step(
    model: nn.Module, cfg: PretrainConfig, batch: int, device: torch.device, amp: bool, compiled: bool
) -> Callable[[], None]:
    """One optimizer step of `model` on a fixed batch with a fixed mid-range mask (keep ratio 0.2)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=device.type == "cuda")
    collator = MaskCollator(cfg.patch_size, cfg.min_block_size, 0.2, 0.2)
    ctx_idx, tgt_idx = (t.to(device) for t in collator.masks(batch, cfg.num_patches, torch.Generator().manual_seed(0)))
    x = torch.randn(batch, 12, cfg.channel_size, device=device)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = forward(x, ctx_idx, tgt_idx)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if isinstance(model, ReferenceJEPA):
            model.update_target()

    return step


def time_interleaved(steps: dict[str, Callable[[], None]], reps: int, device: torch.device) -> dict[str, tuple]:
    """Median (wall, CPU) seconds per step of each, timed in turns so that load changes hit all alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync(device)
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return {n: tuple(sorted(col)[len(col) // 2] for col in zip(*t)) for n, t in times.items()}


def build(config: str, batch: int, device: torch.device, **overrides) -> tuple[PretrainConfig, MyJEPA]:
    cfg = load_config(config, batch_size=batch, **overrides)
    return cfg, MyJEPA(cfg).to(device)


def peak_memory(config: str, batch: int, device: torch.device, recompute: bool, amp: bool) -> int:
    """Peak bytes of one forward + backward above what the model and inputs hold, in this process
    (CUDA: the allocator's peak; CPU: VmHWM - VmRSS, with the high-water mark reset first)."""
    cfg, model = build(config, batch, device, activation_checkpointing=recompute)
    collator = MaskCollator(cfg.patch_size, cfg.min_block_size, 0.2, 0.2)
    ctx_idx, tgt_idx = (t.to(device) for t in collator.masks(batch, cfg.num_patches, torch.Generator().manual_seed(0)))
    x = torch.randn(batch, 12, cfg.channel_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = proc_status_bytes("VmRSS")
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = model(x, ctx_idx, tgt_idx)["loss"]
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    return proc_status_bytes("VmHWM") - before


def proc_status_bytes(key: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def memory_per_sample(config: str, batch: int, device: torch.device, recompute: bool, amp: bool) -> float:
    """Bytes per sample: the peak's growth from B to 2B, each in a fresh process (no allocator history);
    what does not grow with the batch (gradients, weights) cancels."""
    peaks = []
    for b in (batch, 2 * batch):
        cmd = [
            sys.executable,
            __file__,
            "--peak-memory",
            config,
            str(b),
            device.type,
            str(int(recompute)),
            str(int(amp)),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        peaks.append(int(out.split()[-1]))
    return (peaks[1] - peaks[0]) / batch


def fits(config: str, batch: int, recompute: bool) -> bool:
    """Whether a bf16 training step at `batch` fits on the GPU."""
    try:
        peak_memory(config, batch, torch.device("cuda"), recompute, amp=True)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def largest_batch(config: str, recompute: bool, start: int = 256) -> int:
    """The largest batch (to within 1/8 of it) whose bf16 step fits: doubling, then bisection."""
    lo, hi = 0, start
    while fits(config, hi, recompute):
        lo, hi = hi, 2 * hi
    while hi - lo > max(lo // 8, 1):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(config, mid, recompute) else (lo, mid)
    return lo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["ViTXS_mimic", "ViTS_mimic"])
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda when present)")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd step")
    p.add_argument("--reference", action="store_true", help="also time the ECG-JEPA reference step, interleaved")
    p.add_argument("--memory", action="store_true", help="peak memory per sample with and without recompute")
    p.add_argument("--max-batch", action="store_true", help="CUDA: the largest batch that fits, +/- recompute")
    p.add_argument("--nominal-tflops", type=float, help="GPU: the vendor's dense bf16 peak, for MFU against it")
    p.add_argument("--peak-memory", nargs=5, help=argparse.SUPPRESS)  # CONFIG B DEVICE RECOMPUTE AMP, one process
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_memory:  # with malloc's defaults: freed blocks go back at once, the peak is what the step holds
        config, b, dev, recompute, amp = args.peak_memory
        print(peak_memory(config, int(b), torch.device(dev), recompute == "1", amp == "1"))
        return
    keep_freed_memory()  # timed steps run as in `myjepa pretrain`: reusing the freed activation memory
    if args.device:
        devices = [torch.device(args.device)]
    else:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        bench_device(device, args)


def bench_device(device: torch.device, args: argparse.Namespace) -> None:
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        peaks = peak, _ = matmul_peak(device, torch.bfloat16, (4096, 8192, 16384), reps=10)
        print(f"cuda ({torch.cuda.get_device_name()}), bf16 autocast: best bf16 matmul {peak / 1e12:.0f} TFLOP/s")
    else:
        peaks = peak, peak_cpu = matmul_peak(device, torch.float32, (2048, 3072, 4096), reps=3)
        print(
            f"cpu, {torch.get_num_threads()} threads, float32: best float32 matmul {peak / 1e9:.1f} GFLOP/s "
            f"({peak_cpu / 1e9:.1f} per CPU-second)"
        )
    for config in args.configs:
        for batch in args.batch:
            variants = [("eager", False)] + ([("compiled", True)] if args.compile else [])
            for label, compiled in variants:
                cfg, model = build(config, batch, device)
                steps = {"myjepa": make_step(model, cfg, batch, device, gpu, compiled)}
                if args.reference:
                    steps["reference"] = make_step(ReferenceJEPA(cfg).to(device), cfg, batch, device, gpu, compiled)
                if not compiled:  # counted eagerly; the compiled step does the same FLOPs
                    flops = {name: count_flops(step) for name, step in steps.items()}
                for step in steps.values():
                    step()  # warm-up; compiles
                    step()
                timed = time_interleaved(steps, args.steps, device)
                for name, (wall, cpu) in timed.items():
                    report(
                        f"{config:<12} B={batch} {label:<8} {name:<9}", batch, flops[name], wall, cpu, peaks, args, gpu
                    )
                if args.reference:
                    ratio = (flops["myjepa"] / timed["myjepa"][1]) / (flops["reference"] / timed["reference"][1])
                    ratio_wall = (flops["myjepa"] / timed["myjepa"][0]) / (flops["reference"] / timed["reference"][0])
                    verdict = "met" if ratio >= 1.0 else "NOT met"
                    print(
                        f"SUMMARY step efficiency {config} B={batch} {label}: target MyJEPA FLOP/s >= 1.0x the "
                        f"reference's; measured {ratio:.2f}x per CPU-second, {ratio_wall:.2f}x wall: {verdict}"
                    )
        if args.memory:
            batch = args.batch[0]
            per = {r: memory_per_sample(config, batch, device, r, gpu) for r in (False, True)}
            print(
                f"SUMMARY memory {config}: peak per sample (from B={batch} to {2 * batch}) "
                f"{per[False] / 2**20:.1f} MiB without activation checkpointing, {per[True] / 2**20:.1f} MiB with "
                f"({per[True] / per[False]:.0%})"
            )
        if args.max_batch and gpu:
            most = {r: largest_batch(config, r) for r in (False, True)}
            print(f"SUMMARY largest batch {config} (bf16 step): {most[False]} without, {most[True]} with checkpointing")


def report(what: str, batch: int, flops: float, wall: float, cpu: float, peaks: tuple, args, gpu: bool) -> None:
    line = (
        f"  {what}: step {wall * 1000:.0f} ms, {batch / wall:.1f} samples/s, {flops / 1e9:.1f} GFLOP/step, "
        f"{flops / wall / 1e9:.1f} GFLOP/s = {flops / wall / peaks[0]:.0%} of matmul"
    )
    if args.nominal_tflops:
        line += f", MFU {flops / wall / (args.nominal_tflops * 1e12):.1%} of {args.nominal_tflops:.0f} TFLOP/s"
    if not gpu:
        line += f"; per CPU-second {flops / cpu / 1e9:.1f} GFLOP = {flops / cpu / peaks[1]:.0%} of matmul"
    print(line)


if __name__ == "__main__":
    main()
