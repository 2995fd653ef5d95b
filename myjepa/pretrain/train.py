"""MyJEPA pretraining: one flat loop, on one GPU, on several GPUs with torchrun, or on the CPU.

    myjepa pretrain --data mimic-iv-ecg=mimic.npy --out runs/vits --config ViTS_mimic
    torchrun --standalone --nproc_per_node=4 -m myjepa.pretrain --data mimic-iv-ecg=mimic.npy \
        --out runs/vits --config ViTS_mimic
    myjepa pretrain --data synth=demo.npy --out runs/tiny --config tiny --set steps=50

Rerunning the same command resumes from DIR/last_ckpt.pt, if it was written with the same settings
(`checkpoints.py`). SIGTERM or SIGUSR1 saves last_ckpt.pt and exits with 128 + the signal number
(143, 138) so the job can be requeued. A non-finite loss or weights stop with exit status 3, and
a collapse alarm (`collapse.py`; config `collapse: stop`) with exit status 4; both leave
last_ckpt.pt at the last good checkpoint. With --probe-data and --probe-labels, a linear probe on frozen embeddings
logs probe/auc every `probe_interval` steps (`probe.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from myjepa.config import parse_overrides
from myjepa.dumps import dump_files
from myjepa.errors import UserError
from myjepa.models.myjepa import MyJEPA
from myjepa.models.optim import param_groups
from myjepa.pretrain import checkpoints
from myjepa.pretrain.augment import Augment
from myjepa.pretrain.batches import CropBatches, SourceNorm, open_sources, parse_data_args, sampled_datasets
from myjepa.pretrain.checkpoints import RunRecord, TrainState
from myjepa.pretrain.collapse import CollapseMonitor, embedding_stats, token_stats
from myjepa.pretrain.config import PretrainConfig, load_config
from myjepa.pretrain.masks import MaskCollator
from myjepa.pretrain.options import ProbeOptions, RunOptions
from myjepa.pretrain.probe import OnlineProbe
from myjepa.pretrain.recorder import Recorder
from myjepa.pretrain.run_folder import RunFolder, prepare
from myjepa.pretrain.signals import StopFlag, ignore_stop_signals
from myjepa.tasks.ptbxl import table_files
from myjepa.utils import distributed
from myjepa.utils.flops import count_flops
from myjepa.utils.io import check_outputs, outputs_of
from myjepa.utils.memory import keep_freed_memory
from myjepa.utils.schedules import cosine, warmup_cosine

EXIT_NONFINITE = 3
EXIT_COLLAPSE = 4
LOSSES = ("loss", "pred_loss", "sigreg_loss")
# on log steps only: of the projected record embeddings, then of the full pass's encoder tokens
EMBEDDING_STATS = ("embed_std", "rankme", "token_std", "token_rankme")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="myjepa pretrain", description="Self-supervised MyJEPA pretraining on ECG dumps.")
    p.add_argument(
        "--data", nargs="+", required=True, metavar="NAME=PATH.npy", help="dumps; weights: config `datasets`"
    )
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoints, metrics.jsonl, config.yaml")
    p.add_argument("--config", required=True, help="shipped config name (ViTS_mimic, ViTXS_mimic, tiny) or a YAML path")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--amp", choices=["bfloat16", "float32"], help="autocast dtype (default: bfloat16 on CUDA, else float32)"
    )
    p.add_argument("--wandb", action="store_true", help="also log to wandb (offline unless an API key is configured)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    p.add_argument("--probe-data", type=Path, metavar="DUMP", help="PTB-XL dump for the online probe (probe.py)")
    p.add_argument("--probe-labels", type=Path, metavar="DIR", help="its ptbxl_database.csv and scp_statements.csv")
    p.add_argument("--probe-val-fold", type=int, default=9, help="the probe's validation fold (default: 9)")
    p.add_argument("--probe-test-fold", type=int, default=10, help="never read by the probe (default: 10)")
    p.add_argument(
        "--restart-on-change",
        action="store_true",
        help="when --out holds checkpoints written with other settings or data, start afresh instead of refusing",
    )
    args = p.parse_args(argv)
    if (args.probe_data is None) != (args.probe_labels is None):
        p.error("--probe-data and --probe-labels go together")
    return args


def run_options(args: argparse.Namespace) -> RunOptions:
    """The command line as the run's options: the one place the namespace is read."""
    probe = None
    if args.probe_data is not None:
        probe = ProbeOptions(args.probe_data, args.probe_labels, args.probe_val_fold, args.probe_test_fold)
    return RunOptions(
        data=tuple(parse_data_args(args.data)),
        out=args.out,
        seed=args.seed,
        amp=args.amp,
        compile=args.compile,
        device=args.device,
        wandb=args.wandb,
        probe=probe,
        restart_on_change=args.restart_on_change,
    )


def input_files(args: argparse.Namespace, options: RunOptions) -> list[tuple[str, Path]]:
    """What the command reads, by option: the run folder's files never replace one of these."""
    files = [("--data", f) for _, dump in options.data for f in dump_files(dump)]
    files += [("--config", Path(args.config))] if Path(args.config).is_file() else []
    if options.probe is not None:
        files += [("--probe-data", f) for f in dump_files(options.probe.data)]
        files += [("--probe-labels", f) for f in table_files(options.probe.labels)]
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, **parse_overrides(args.overrides))
    options = run_options(args)
    # the run folder's files are rewritten as the run goes (rerunning resumes): never over an input
    check_outputs(outputs_of("--out", options.out, RunFolder(options.out).files), input_files(args, options), True)
    dist = distributed.setup(options.device)
    keep_freed_memory()  # a CPU step reuses the previous step's activation memory (utils/memory.py)
    with distributed.run_group(dist):  # a lost peer: one line and exit 5, not a hang
        return train(cfg, options, dist)


def train(cfg: PretrainConfig, options: RunOptions, dist: distributed.DistInfo) -> int:
    """Build the model and its data, resume where the run stopped, then loop."""
    options = options.on_device(dist.device.type)
    local_batch = local_batch_size(cfg, dist.world_size)
    collator = mask_collator(cfg)
    sources = open_sources(list(options.data), cfg)
    datasets, note = sampled_datasets(cfg.datasets, sources)
    if note and dist.is_main:
        print(f"pretrain: {note}", file=sys.stderr, flush=True)
    cfg = replace(cfg, datasets=datasets)
    probe = online_probe(options, cfg) if dist.is_main else None  # bad probe data fails before anything is written
    folder, run = RunFolder(options.out), checkpoints.run_record(cfg, options, sources)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # float32 matmuls on CUDA
    torch.manual_seed(options.seed + dist.rank)
    model = MyJEPA(cfg, seed=options.seed).to(dist.device)
    optimizer = build_optimizer(model, cfg, dist.device)
    state = TrainState(cfg.best_loss_window)
    resumed = checkpoints.resume(folder.last, model, optimizer, state, run, options.restart_on_change)
    distributed.barrier()  # every rank has read last_ckpt.pt before the main process may remove it
    if resumed and dist.is_main:
        print(f"resuming from {folder.last} at step {state.step}", file=sys.stderr)
    if resumed and state.step >= cfg.steps:
        return finish_complete_run(folder, model, cfg, state.step, dist.is_main, run)

    flops = flops_per_sample(model, cfg, collator, dist.device)  # on every rank: SIGReg's all-reduce runs
    autocast = torch.autocast(dist.device.type, dtype=getattr(torch, options.amp), enabled=options.amp != "float32")
    recorder = None
    if dist.is_main:
        prepare(folder, cfg, state.step if resumed else None)
        recorder = Recorder(cfg, folder, run, model, optimizer, state, options, resumed, flops, probe, autocast)
    micro_batch = local_batch * dist.world_size  # every rank draws it whole and keeps its share
    augment = Augment.from_config(cfg)
    batches = CropBatches(
        sources, micro_batch, cfg.channel_size, collator, options.seed, dist.rank, dist.world_size, augment=augment
    )
    loader = device_batches(data_loader(batches, cfg, state.step, dist.device), SourceNorm(sources, dist.device))
    try:
        return loop(cfg, model, optimizer, state, loader, autocast, wrap(model, options.compile, dist), dist, recorder)
    finally:
        if recorder is not None:
            recorder.close()


def loop(
    cfg: PretrainConfig,
    model: MyJEPA,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    batches: Iterator[tuple[torch.Tensor, ...]],
    autocast: contextlib.AbstractContextManager,
    train_model: torch.nn.Module,
    dist: distributed.DistInfo,
    recorder: Recorder | None,
) -> int:
    """The training loop: schedules, accumulated gradients, one optimizer step, record; until `steps`,
    a non-finite loss or weights (exit 3), a collapse alarm under `collapse: stop` (exit 4) or a stop signal
    (checkpoint, exit 128 + signal)."""
    stop, monitor = StopFlag(), CollapseMonitor(cfg.warmup_steps)
    model.train()
    try:
        while state.step < cfg.steps:
            lr, wd = set_schedules(optimizer, cfg, state.step)
            log_step = cfg.logs_at(state.step + 1)
            sums = accumulate_gradients(train_model, batches, cfg.accum_steps, autocast, dist, log_step)
            losses, signum = reduce_across_ranks(sums, stop.signum, dist.world_size)
            if not all(math.isfinite(losses[k]) for k in LOSSES):
                values = ", ".join(f"{k} {losses[k]}" for k in LOSSES)
                return stop_nonfinite(f"non-finite loss at step {state.step + 1} ({values})", recorder)
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if (log_step or signum or state.step % cfg.checkpoint_interval == 0) and not weights_finite(model):
                return stop_nonfinite(f"non-finite weights after step {state.step}", recorder)  # never saved
            state.window.append(losses["loss"])
            alarm = monitor.check(state.step, losses) if log_step else None
            if alarm and recorder is not None:
                print(alarm, file=sys.stderr, flush=True)
            collapsed = alarm is not None and cfg.collapse == "stop"
            if recorder is not None:
                recorder.after_step(losses, lr, wd, grad_norm, stop=bool(signum), collapsed=collapsed)
            if collapsed:
                distributed.barrier()
                return EXIT_COLLAPSE
            if signum:
                distributed.barrier()
                if recorder is not None:
                    print(
                        f"myjepa: received signal {signum}: saved {recorder.folder.last} at step {state.step}; "
                        "rerun the same command to resume",
                        file=sys.stderr,
                    )
                return 128 + signum
        distributed.barrier()
        return 0
    finally:
        stop.restore()


# ---- building blocks of the run, in the order `train` uses them -----------------------------------


def local_batch_size(cfg: PretrainConfig, world: int) -> int:
    """The batch of one rank's micro-step: the global batch split over ranks and accumulation steps."""
    if cfg.batch_size % (world * cfg.accum_steps):
        raise UserError(
            f"batch_size {cfg.batch_size} is not divisible by {world} ranks x accum_steps {cfg.accum_steps}"
        )
    return cfg.batch_size // (world * cfg.accum_steps)


def mask_collator(cfg: PretrainConfig) -> MaskCollator:
    """The block-mask collator; it checks the keep ratios, here turned into a config error."""
    try:
        return MaskCollator(
            cfg.patch_size, cfg.min_block_size, cfg.min_keep_ratio, cfg.max_keep_ratio, cfg.num_patches, cfg.num_masks
        )
    except ValueError as e:
        raise UserError(f"config: {e}") from None


def build_optimizer(model: MyJEPA, cfg: PretrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups([model], cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=device.type == "cuda")


def finish_complete_run(
    folder: RunFolder, model: MyJEPA, cfg: PretrainConfig, step: int, master: bool, run: RunRecord
) -> int:
    """A run already trained to `steps`: write encoder.pt if it is missing (Snakemake deletes it before a
    forced rerun), train nothing."""
    if master:
        if not folder.encoder.is_file():
            checkpoints.save_encoder(folder.encoder, model, step, run)
        print(f"{folder.out}: already trained for {step} >= {cfg.steps} steps; nothing to do", file=sys.stderr)
    return 0


def online_probe(options: RunOptions, cfg: PretrainConfig) -> OnlineProbe | None:
    if options.probe is None:
        return None
    return OnlineProbe(options.probe, cfg, options.seed)


def flops_per_sample(model: MyJEPA, cfg: PretrainConfig, collator: MaskCollator, device: torch.device) -> float:
    """Model FLOPs of one training sample (forward + backward) at the mean mask, by torch's counter."""
    x, ctx_idx, tgt_idx = collator(torch.zeros(2, len(cfg.leads), cfg.channel_size), torch.Generator().manual_seed(0))
    x = x.to(device)
    was_training = model.training
    model.eval()  # SIGReg counts training calls only: keep its step untouched
    flops = count_flops(lambda: model(x, ctx_idx.to(device), tgt_idx.to(device))["loss"].backward())
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return flops / 2


def data_loader(
    batches: CropBatches, cfg: PretrainConfig, start_step: int, device: torch.device
) -> torch.utils.data.DataLoader:
    """Item i is global micro-step i's batch, so a resumed run continues where it stopped."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start_step * cfg.accum_steps, cfg.steps * cfg.accum_steps),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if cfg.num_workers else None,  # per worker; a ViT-S batch is 245 MB
        persistent_workers=cfg.num_workers > 0,
        worker_init_fn=ignore_stop_signals,
    )


def device_batches(loader: torch.utils.data.DataLoader, norm: SourceNorm) -> Iterator[tuple[torch.Tensor, ...]]:
    """(x, ctx_idx, tgt_idx) on the device, x normalised there: the workers ship float16 millivolts."""
    device = norm.mean.device
    for x, source, ctx_idx, tgt_idx in loader:
        x, source, ctx_idx, tgt_idx = (t.to(device, non_blocking=True) for t in (x, source, ctx_idx, tgt_idx))
        yield norm(x, source), ctx_idx, tgt_idx


def wrap(model: MyJEPA, compile_model: bool, dist: distributed.DistInfo) -> torch.nn.Module:
    """The module the loop calls: compiled on request, inside DDP under torchrun."""
    wrapped: torch.nn.Module = torch.compile(model) if compile_model else model
    if dist.enabled:
        wrapped = DDP(wrapped, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    return wrapped


# ---- one step ---------------------------------------------------------------------------------


def set_schedules(optimizer: torch.optim.Optimizer, cfg: PretrainConfig, step: int) -> tuple[float, float]:
    """Learning rate and weight decay of this step, set on the optimizer's groups."""
    lr = warmup_cosine(step, cfg.warmup_steps, cfg.steps, cfg.lr, cfg.min_lr)
    wd = cosine(step, cfg.steps, cfg.weight_decay, cfg.final_weight_decay)
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group["apply_wd"]:
            group["weight_decay"] = wd
    return lr, wd


def accumulate_gradients(
    model: torch.nn.Module,
    batches: Iterator[tuple[torch.Tensor, ...]],
    accum_steps: int,
    autocast: contextlib.AbstractContextManager,
    dist: distributed.DistInfo,
    with_stats: bool,
) -> torch.Tensor:
    """Forward and backward over `accum_steps` micro-batches (DDP syncs gradients on the last one only).

    Returns this rank's losses (LOSSES) averaged over the micro-batches, then, when `with_stats`, the
    EMBEDDING_STATS of its last micro-batch (else zeros).
    """
    sums = torch.zeros(len(LOSSES) + len(EMBEDDING_STATS), device=dist.device)
    for micro in range(accum_steps):
        x, ctx_idx, tgt_idx = next(batches)
        last = micro == accum_steps - 1
        with contextlib.nullcontext() if last or not dist.enabled else model.no_sync():
            with autocast:
                losses = model(x, ctx_idx, tgt_idx)
            (losses["loss"] / accum_steps).backward()
        sums[: len(LOSSES)] += torch.stack([losses[k].detach().float() for k in LOSSES]) / accum_steps
    if with_stats:
        sums[len(LOSSES) :] = torch.cat([embedding_stats(losses["embeddings"]), token_stats(losses["tokens"])])
    return sums


def reduce_across_ranks(sums: torch.Tensor, signum: int, world: int) -> tuple[dict[str, float], int]:
    """Means over ranks of `sums` (LOSSES, EMBEDDING_STATS) and whether any rank got a stop signal, in one
    collective."""
    both = torch.cat([sums, torch.tensor([float(signum)], device=sums.device)])
    distributed.all_reduce_(both)
    losses = dict(zip(LOSSES + EMBEDDING_STATS, (both[:-1] / world).tolist()))
    stopped = both[-1].item() > 0
    return losses, (signum or signal.SIGTERM) if stopped else 0


def weights_finite(model: MyJEPA) -> bool:
    """Checked before any checkpoint is written: a finite loss can still take a step to infinite weights."""
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def stop_nonfinite(what: str, recorder: Recorder | None) -> int:
    """Say what went non-finite and which checkpoint is kept (main process); the exit status."""
    if recorder is not None:
        last = recorder.folder.last
        kept = f"{last} holds step {checkpoints.read(last).step}" if last.is_file() else "no checkpoint was written"
        print(f"myjepa: error: {what}; stopping, {kept}; try a lower lr", file=sys.stderr)
    return EXIT_NONFINITE
