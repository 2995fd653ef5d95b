"""Training with early stopping: AdamW steps on one random crop per sampled training record, the
validation macro AUC every `eval_interval` steps, and a copy of the best step's weights in memory.
Training stops early after `patience` evaluations without a better validation macro AUC.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from myjepa.errors import UserError
from myjepa.evaluate.features import Features, autocast
from myjepa.evaluate.model import Model
from myjepa.tasks.metrics import macro_auc
from myjepa.tasks.splits import Splits
from myjepa.utils.logging import MetricsLogger, Progress
from myjepa.utils.schedules import warmup_cosine


@dataclass
class Best:
    """The best validation evaluation so far."""

    auc: float = float("nan")
    step: int = 0
    state: dict[str, Any] | None = None  # Model.snapshot()
    val_scores: np.ndarray | None = None
    evals_since: int = 0  # evaluations since it

    def update(self, val_auc: float, step: int, val_scores: np.ndarray, model: Model) -> None:
        """Keep this evaluation if it is the first, or better (a NaN AUC is never better than a number)."""
        if self.state is None or (math.isfinite(val_auc) and (not math.isfinite(self.auc) or val_auc > self.auc)):
            self.auc, self.step, self.val_scores = val_auc, step, val_scores
            self.state = model.snapshot()
            self.evals_since = 0
        else:
            self.evals_since += 1


@dataclass
class Training:
    best: Best
    steps: int  # steps run: fewer than cfg.steps after an early stop
    train_s: float
    eval_s: float  # of train_s, spent predicting the validation fold


def train_step(model: Model, features: Features, targets: torch.Tensor, rng: np.random.Generator, lr: float) -> float:
    """One optimizer step on `batch_size` random training records; returns the loss."""
    cfg, device = model.cfg, model.device
    for group in model.optimizer.param_groups:
        group["lr"] = lr
    idx = rng.integers(0, len(features.rows["train"]), size=cfg.batch_size)
    model.head.train()
    model.encoder.train(not cfg.frozen)
    with autocast(device, cfg.amp):
        tokens = features.train_tokens(model.encoder, idx, rng, device, cfg.frozen)
        logits = model.head(tokens, normed=features.cached).float()
    y = targets[idx].to(device)
    loss = F.cross_entropy(logits, y.argmax(1)) if model.multiclass else F.binary_cross_entropy_with_logits(logits, y)
    model.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for m in model.trained for p in m.parameters() if p.requires_grad], cfg.grad_clip
        )
    model.optimizer.step()
    return loss.item()


def train(
    model: Model, features: Features, splits: Splits, rng: np.random.Generator, logger: MetricsLogger, task: str
) -> Training:
    """Train for cfg.steps steps or until early stopping; the model keeps the last step's weights."""
    cfg = model.cfg
    targets = torch.from_numpy(splits.targets["train"].astype(np.float32))
    best = Best()
    loss_sum, loss_count, step, eval_s = 0.0, 0, 0, 0.0
    t_train = time.time()
    bar = Progress(cfg.steps, f"{cfg.protocol} {task}", "steps")
    for step in range(1, cfg.steps + 1):
        lr = warmup_cosine(step - 1, cfg.warmup_steps, cfg.steps, cfg.lr, cfg.min_lr)
        loss = train_step(model, features, targets, rng, lr)
        if not math.isfinite(loss):
            raise UserError(
                f"training loss is {loss} at step {step}; lower lr (now {lr:.3g}) or check the dump for bad values"
            )
        loss_sum, loss_count = loss_sum + loss, loss_count + 1
        if step % cfg.log_interval == 0 or step == cfg.steps:
            logger.log({"train/loss": loss_sum / loss_count, "train/lr": lr}, step)
            loss_sum, loss_count = 0.0, 0
        bar.update(1, loss=f"{loss:.4f}")
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            t_eval = time.time()
            val_scores = model.predict(features, "val")
            eval_s += time.time() - t_eval
            val_auc = macro_auc(splits.targets["val"], val_scores)
            best.update(val_auc, step, val_scores, model)
            logger.log({"val/auc": val_auc, "val/best_auc": best.auc}, step)
            if cfg.patience and best.evals_since >= cfg.patience:
                print(
                    f"finetune: early stop at step {step}: no better val macro AUC in {cfg.patience} evaluations "
                    f"(best {best.auc:.4f} at step {best.step})",
                    flush=True,
                )
                break
    bar.close()
    return Training(best, step, time.time() - t_train, eval_s)
