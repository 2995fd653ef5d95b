"""What the main process records while training: metrics (metrics.jsonl, wandb), the progress bar,
best_ckpt.pt, and last_ckpt.pt with encoder.pt."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import torch

from myjepa.config import to_dict
from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain import checkpoints
from myjepa.pretrain.checkpoints import RunRecord, TrainState
from myjepa.pretrain.collapse import NarrowingWatch
from myjepa.pretrain.config import PretrainConfig
from myjepa.pretrain.options import RunOptions
from myjepa.pretrain.probe import OnlineProbe
from myjepa.pretrain.run_folder import RunFolder
from myjepa.utils.logging import MetricsLogger, Progress, logged_lines, plain_items


class Recorder:
    """Logs every `log_interval` steps, keeps the best running-mean loss, checkpoints every `checkpoint_interval`."""

    def __init__(
        self,
        cfg: PretrainConfig,
        folder: RunFolder,
        run: RunRecord,
        model: MyJEPA,
        optimizer: torch.optim.Optimizer,
        state: TrainState,
        options: RunOptions,
        resumed: bool,
        sample_flops: float,
        probe: OnlineProbe | None = None,
        autocast: contextlib.AbstractContextManager | None = None,
    ) -> None:
        self.cfg, self.folder, self.run = cfg, folder, run
        self.probe, self.autocast = probe, autocast or contextlib.nullcontext()
        self.model, self.optimizer, self.state = model, optimizer, state
        self.sample_flops = sample_flops
        self.device = next(model.parameters()).device
        self.logger = MetricsLogger(
            folder.out, options.wandb, name=folder.out.name, config=to_dict(cfg), resume=resumed
        )
        self.bar = Progress(cfg.steps, "pretrain", "step", initial=state.step)
        self.narrowing = NarrowingWatch()
        for line in logged_lines(folder.metrics) if resumed else []:  # the peak and step 0 logged before
            self.narrowing.check(line.get("step", 0), line)
        if probe is not None and state.step == 0:  # the initialised encoder: what the curve must rise above
            self.logger.log(probed := self.run_probe(), 0)
            self.narrowing.check(0, probed)
        self.t_last = time.perf_counter()

    def run_probe(self) -> dict[str, float]:
        probed = self.probe(self.model.encoder, self.autocast)
        print(f"step {self.state.step}/{self.cfg.steps} {plain_items(probed.items())}", file=sys.stderr, flush=True)
        return probed

    def after_step(
        self,
        losses: dict[str, float],
        lr: float,
        wd: float,
        grad_norm: torch.Tensor,
        stop: bool,
        collapsed: bool = False,
    ) -> None:
        """Called once `state.step` counts the step just taken; `stop`: checkpoint now (a stop signal);
        `collapsed`: the run stops at a collapse alarm, so log it but keep the checkpoints as they are."""
        step, cfg = self.state.step, self.cfg
        step_time = time.perf_counter() - self.t_last
        probed: dict[str, float] = {}
        if self.probe is not None and (step % cfg.probe_interval == 0 or step == cfg.steps):
            probed = self.run_probe()
        if cfg.logs_at(step):
            self.log(losses | {"lr": lr, "weight_decay": wd}, step_time, grad_norm, probed)
            if not collapsed and update_best(self.state, cfg.steps):
                checkpoints.save_training(self.folder.best, self.model, self.optimizer, self.state, self.run)
        if collapsed:
            return
        if step % cfg.checkpoint_interval == 0 or step == cfg.steps or stop:
            checkpoints.save_training(self.folder.last, self.model, self.optimizer, self.state, self.run)
            checkpoints.save_encoder(self.folder.encoder, self.model, step, self.run)
        self.bar.update(1, loss=f"{losses['loss']:.4f}")
        self.t_last = time.perf_counter()  # the next step's time leaves out probes and checkpoints

    def log(self, train: dict[str, float], step_time: float, grad_norm: torch.Tensor, probed: dict[str, float]) -> None:
        """One metrics line: the train/ values, speed, gradient norm, memory, and the probe's if it ran."""
        batch = self.cfg.batch_size
        metrics: dict[str, Any] = {f"train/{k}": v for k, v in train.items()}
        metrics["train/step_time"] = step_time
        metrics["train/throughput"] = batch / step_time
        metrics["train/tflops"] = self.sample_flops * batch / step_time / 1e12
        metrics["gradients/norm"] = float(grad_norm)
        if self.model.context_grad is not None:  # the context pass's say (models/context_grad.py)
            metrics["gradients/context_ratio"] = float(self.model.context_grad.ratio())
            metrics["gradients/context_scale"] = float(self.model.context_grad.scale())
        if self.device.type == "cuda":
            metrics["system/gpu_memory_allocated"] = torch.cuda.memory_allocated(self.device)
            metrics["system/gpu_memory_reserved"] = torch.cuda.memory_reserved(self.device)
        metrics |= probed
        self.logger.log(metrics, self.state.step)
        shown = plain_items((k.split("/")[1], v) for k, v in list(metrics.items())[:8])
        print(f"step {self.state.step}/{self.cfg.steps} {shown}", file=sys.stderr, flush=True)
        if warning := self.narrowing.check(self.state.step, metrics):  # warn only (collapse.py)
            print(warning, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
        self.logger.summary({"train/best_loss": self.state.best_loss})
        self.logger.close()


def update_best(state: TrainState, total_steps: int) -> bool:
    """Take the running mean of the last losses as `state.best_loss` if it is the best yet (judged once
    the window is full, and at the last step); returns whether it was."""
    if len(state.window) < (state.window.maxlen or 0) and state.step != total_steps:
        return False
    mean = sum(state.window) / len(state.window)
    if mean >= state.best_loss:
        return False
    state.best_loss = mean
    return True
