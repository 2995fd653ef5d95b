"""MyJEPA pretraining: one flat loop, one GPU, several GPUs with torchrun, or the CPU.

    myjepa pretrain --data mimic-iv-ecg=mimic.npy --out runs/vits --config ViTS_mimic
    torchrun --standalone --nproc_per_node=4 -m myjepa.pretrain --data mimic-iv-ecg=mimic.npy --out runs/vits --config ViTS_mimic
    myjepa pretrain --data synth=demo.npy --out runs/tiny --config tiny --set steps=50

Rerunning the same command resumes from DIR/last_ckpt.pt. SIGTERM or SIGUSR1 (SLURM's warning before
a time limit or preemption) saves last_ckpt.pt and exits with 128 + the signal number (143 for
SIGTERM, 138 for SIGUSR1) so the job can be requeued. A non-finite loss stops with exit status 3 and
leaves last_ckpt.pt at the last good checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP

from myjepa.config import parse_overrides, to_dict
from myjepa.errors import UserError, run_cli
from myjepa.models.myjepa import MyJEPA
from myjepa.models.optim import param_groups
from myjepa.pretrain.batches import CropBatches, ignore_stop_signals, open_sources, parse_data_args
from myjepa.pretrain.config import PretrainConfig, load_config
from myjepa.pretrain.masks import MaskCollator
from myjepa.utils import checkpoint, distributed
from myjepa.utils.io import atomic_path
from myjepa.utils.logging import MetricsLogger, Progress, plain_items
from myjepa.utils.schedules import cosine, warmup_cosine

EXIT_NONFINITE = 3
# keys that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"steps", "log_interval", "checkpoint_interval", "num_workers"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="myjepa pretrain", description="Self-supervised MyJEPA pretraining on ECG dumps.")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="NAME=PATH.npy",
        help="dumps to sample from; weights come from the config's `datasets`",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoints, metrics.jsonl, config.yaml")
    p.add_argument("--config", required=True, help="shipped config name (ViTS_mimic, ViTXS_mimic, tiny) or a YAML path")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys",
    )
    p.add_argument(
        "--amp",
        choices=["bfloat16", "float32"],
        default=None,
        help="autocast dtype (default: bfloat16 on CUDA, float32 on CPU)",
    )
    p.add_argument("--wandb", action="store_true", help="also log to wandb (offline unless an API key is configured)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    return p.parse_args(argv)


def check_resumable(stored: dict[str, Any], cfg: PretrainConfig, seed: int, stored_seed: int, path: Path) -> None:
    current = to_dict(cfg)
    diff = [k for k in current if k not in RESUMABLE_CHANGES and stored.get(k) != current[k]]
    if diff:
        raise UserError(
            f"{path} was written with a different config ({diff[0]}: {stored.get(diff[0])!r} there, {current[diff[0]]!r} now); use another --out or the same config"
        )
    if seed != stored_seed:
        raise UserError(f"{path} was written with --seed {stored_seed}, not {seed}; use another --out or the same seed")


def save_encoder(model: MyJEPA, cfg: PretrainConfig, step: int, path: Path) -> None:
    """encoder.pt: the encoder's weights and config, all that evaluation needs."""
    checkpoint.save(
        {
            "encoder": model.encoder.state_dict(),
            "config": cfg.encoder_config(),
            "pretrain_config": to_dict(cfg),
            "step": step,
        },
        path,
    )


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


def flops_per_sample(model: MyJEPA, cfg: PretrainConfig, collator: MaskCollator, device: torch.device) -> float:
    """Model FLOPs of one training sample (forward + backward) at the mean mask, by torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, len(cfg.leads), cfg.channel_size, device=device)
    ctx_idx, tgt_idx = collator.masks(2, cfg.num_patches, torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()  # SIGReg counts training calls only: keep its step untouched
    with FlopCounterMode(display=False) as counter:
        model(x, ctx_idx.to(device), tgt_idx.to(device))["loss"].backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / 2


class StopFlag:
    """Remembers a SIGTERM/SIGUSR1 so the loop can checkpoint at the next step boundary."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self.previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, **parse_overrides(args.overrides))
    data = parse_data_args(args.data)
    dist_info = distributed.setup(args.device)
    try:
        return train(cfg, data, args, dist_info)
    finally:
        distributed.cleanup()


def train(
    cfg: PretrainConfig, data: list[tuple[str, Path]], args: argparse.Namespace, dist_info: distributed.DistInfo
) -> int:
    master, device, world = dist_info.is_main, dist_info.device, dist_info.world_size
    if cfg.batch_size % (world * cfg.accum_steps):
        raise UserError(
            f"batch_size {cfg.batch_size} is not divisible by {world} ranks x accum_steps {cfg.accum_steps}"
        )
    local_batch = cfg.batch_size // (world * cfg.accum_steps)
    amp_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[
        args.amp or ("bfloat16" if device.type == "cuda" else "float32")
    ]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32)
    out: Path = args.out
    last_path, best_path, encoder_path = out / "last_ckpt.pt", out / "best_ckpt.pt", out / "encoder.pt"

    sources = open_sources(data, cfg)
    torch.manual_seed(args.seed + dist_info.rank)
    model = MyJEPA(cfg, seed=args.seed).to(device)
    optimizer = torch.optim.AdamW(
        param_groups([model], cfg.weight_decay),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )

    start_step, best_loss, window = 0, math.inf, deque(maxlen=cfg.best_loss_window)
    if last_path.is_file():
        ckpt = checkpoint.load(last_path)
        check_resumable(ckpt["config"], cfg, args.seed, ckpt.get("seed", args.seed), last_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_step, best_loss = int(ckpt["step"]), float(ckpt["best_loss"])
        window.extend(ckpt["loss_window"])
        checkpoint.set_rng_state(ckpt["rng"])
        if master:
            print(f"resuming from {last_path} at step {start_step}", file=sys.stderr)
        if start_step >= cfg.steps:
            if master:
                if not encoder_path.is_file():  # e.g. deleted by Snakemake before a forced rerun
                    save_encoder(model, cfg, start_step, encoder_path)
                print(f"{out}: already trained for {start_step} >= {cfg.steps} steps; nothing to do", file=sys.stderr)
            return 0
    if master:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        if start_step:
            truncate_metrics(out / "metrics.jsonl", start_step)

    collator = MaskCollator(cfg.patch_size, cfg.min_block_size, cfg.min_keep_ratio, cfg.max_keep_ratio, cfg.num_patches)
    sample_flops = flops_per_sample(model, cfg, collator, device)
    batches = CropBatches(sources, local_batch, cfg.channel_size, collator, args.seed, dist_info.rank)
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start_step * cfg.accum_steps, cfg.steps * cfg.accum_steps),  # item = global micro-step
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers else None,
        worker_init_fn=ignore_stop_signals,
    )
    train_model: torch.nn.Module = torch.compile(model) if args.compile else model
    if dist_info.enabled:
        train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    logger = (
        MetricsLogger(out, use_wandb=args.wandb, name=out.name, config=to_dict(cfg), resume=start_step > 0)
        if master
        else None
    )
    progress = Progress(cfg.steps, "pretrain", "step", initial=start_step) if master else None

    def state(step: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "config": to_dict(cfg),
            "seed": args.seed,
            "best_loss": best_loss,
            "loss_window": list(window),
            "rng": checkpoint.rng_state(),
        }

    def save_last(step: int) -> None:
        checkpoint.save(state(step), last_path)
        save_encoder(model, cfg, step, encoder_path)

    stop = StopFlag()
    model.train()
    batch_iter = iter(loader)
    step = start_step
    t_last = time.perf_counter()
    try:
        while step < cfg.steps:
            lr = warmup_cosine(step, cfg.warmup_steps, cfg.steps, cfg.lr, cfg.min_lr)
            wd = cosine(step, cfg.steps, cfg.weight_decay, cfg.final_weight_decay)
            for group in optimizer.param_groups:
                group["lr"] = lr
                if group["apply_wd"]:
                    group["weight_decay"] = wd
            sums = torch.zeros(4, device=device)
            for micro in range(cfg.accum_steps):
                x, ctx_idx, tgt_idx = (t.to(device, non_blocking=True) for t in next(batch_iter))
                sync = (
                    contextlib.nullcontext()
                    if micro == cfg.accum_steps - 1 or not dist_info.enabled
                    else train_model.no_sync()
                )
                with sync:
                    with autocast:
                        losses = train_model(x, ctx_idx, tgt_idx)
                    (losses["loss"] / cfg.accum_steps).backward()
                sums[:3] += (
                    torch.stack([losses[k].detach().float() for k in ("loss", "pred_loss", "sigreg_loss")])
                    / cfg.accum_steps
                )
            sums[3] = float(stop.signum)
            distributed.all_reduce_(sums)
            loss, pred_loss, sigreg_loss = (sums[:3] / world).tolist()
            signum = int(sums[3].item() > 0) and (stop.signum or signal.SIGTERM)
            if not all(math.isfinite(v) for v in (loss, pred_loss, sigreg_loss)):
                if master:
                    kept = (
                        f"{last_path} holds step {checkpoint.load(last_path)['step']}"
                        if last_path.is_file()
                        else "no checkpoint was written yet"
                    )
                    print(
                        f"myjepa: error: non-finite loss at step {step + 1} (loss {loss}, pred_loss {pred_loss}, sigreg_loss {sigreg_loss}); stopping, {kept}",
                        file=sys.stderr,
                    )
                return EXIT_NONFINITE
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.append(loss)

            if master:
                now = time.perf_counter()
                step_time, t_last = now - t_last, now
                if step % cfg.log_interval == 0 or step == cfg.steps:
                    metrics = {
                        "train/loss": loss,
                        "train/pred_loss": pred_loss,
                        "train/sigreg_loss": sigreg_loss,
                        "train/lr": lr,
                        "train/weight_decay": wd,
                        "train/step_time": step_time,
                        "train/throughput": cfg.batch_size / step_time,
                        "train/tflops": sample_flops * cfg.batch_size / step_time / 1e12,
                        "gradients/norm": float(grad_norm),
                    }
                    if device.type == "cuda":
                        metrics["system/gpu_memory_allocated"] = torch.cuda.memory_allocated(device)
                        metrics["system/gpu_memory_reserved"] = torch.cuda.memory_reserved(device)
                    logger.log(metrics, step)
                    print(
                        f"step {step}/{cfg.steps} "
                        + plain_items((k.split("/")[1], v) for k, v in list(metrics.items())[:8]),
                        file=sys.stderr,
                        flush=True,
                    )
                    if len(window) == window.maxlen or step == cfg.steps:
                        mean = sum(window) / len(window)
                        if mean < best_loss:
                            best_loss = mean
                            checkpoint.save(state(step), best_path)
                if step % cfg.checkpoint_interval == 0 or step == cfg.steps or signum:
                    save_last(step)
                progress.update(1, loss=f"{loss:.4f}")
            if signum:
                distributed.barrier()
                if master:
                    print(
                        f"myjepa: received signal {signum}: saved {last_path} at step {step}; rerun the same command to resume",
                        file=sys.stderr,
                    )
                return 128 + signum
        distributed.barrier()
        return 0
    finally:
        stop.restore()
        if progress is not None:
            progress.close()
        if logger is not None:
            logger.summary({"train/best_loss": best_loss})
            logger.close()


if __name__ == "__main__":
    run_cli(main)
