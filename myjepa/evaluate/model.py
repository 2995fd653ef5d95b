"""The model under evaluation: the encoder and its attentive probe on one device, and the optimizer over
what the protocol trains (the probe alone, or encoder and probe). finetune_after_linear starts from a
linear probe's best_ckpt.pt (`--init`), checked to be of the same task, classes and encoder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from myjepa.errors import UserError
from myjepa.evaluate.config import FinetuneConfig
from myjepa.evaluate.features import Features
from myjepa.evaluate.run import Run
from myjepa.models.heads import AttentiveProbe
from myjepa.models.optim import param_groups
from myjepa.models.vit import VisionTransformer
from myjepa.utils import checkpoint
from myjepa.utils.io import not_a_file


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


@dataclass
class Model:
    encoder: VisionTransformer
    head: AttentiveProbe
    trained: list[nn.Module]  # what the optimizer updates: the head, or encoder and head
    optimizer: torch.optim.Optimizer
    device: torch.device
    cfg: FinetuneConfig
    multiclass: bool  # softmax + cross-entropy (single label) instead of sigmoid + binary cross-entropy

    def snapshot(self) -> dict[str, Any]:
        """Copies of the trained weights (the encoder's only when it is trained)."""
        return {
            "head": copy.deepcopy(self.head.state_dict()),
            "encoder": None if self.cfg.frozen else copy.deepcopy(self.encoder.state_dict()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        if state["encoder"] is not None:
            self.encoder.load_state_dict(state["encoder"])

    def predict(self, features: Features, split: str) -> np.ndarray:
        """(records, C) scores of a split's records."""
        return features.predict(
            self.encoder, self.head, split, self.device, self.multiclass, self.cfg.eval_batch_size, self.cfg.amp
        )


def build_model(run: Run, init: str | None) -> Model:
    """The run's encoder and a new probe (or the --init run's weights), and AdamW over what is trained."""
    cfg = run.cfg
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = run.encoder.encoder.to(device)
    head = AttentiveProbe(encoder.dim, len(run.classes), cfg.head_num_heads, cfg.dropout).to(device)
    if init:
        ckpt = load_init(Path(init), run)
        encoder.load_state_dict(ckpt["encoder"])
        head.load_state_dict(ckpt["head"])
    encoder.requires_grad_(not cfg.frozen)
    trained = [head] if cfg.frozen else [encoder, head]
    optimizer = torch.optim.AdamW(param_groups(trained, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    return Model(encoder, head, trained, optimizer, device, cfg, run.multiclass)


def load_init(path: Path, run: Run) -> dict[str, Any]:
    """A linear probe checkpoint to start finetuning from; it must be for this task, classes and encoder."""
    if not path.is_file():
        raise UserError(f"--init {path}: {not_a_file(path)}")
    ckpt = checkpoint.load(path)
    for key in ("head", "encoder", "classes", "task", "config"):
        if key not in ckpt:
            raise UserError(
                f"--init {path}: no {key!r} entry; expected best_ckpt.pt of a `myjepa finetune --config linear` run"
            )
    if ckpt["task"] != run.task or list(ckpt["classes"]) != run.classes:
        raise UserError(
            f"--init {path}: trained for task {ckpt['task']!r} with classes {list(ckpt['classes'])}, "
            f"not task {run.task!r} with {run.classes}"
        )
    if ckpt["config"] != run.encoder.config:
        raise UserError(f"--init {path}: its encoder config differs from --encoder's")
    encoder_sha = run.encoder_sha256
    if ckpt.get("encoder_sha256") not in (None, encoder_sha):
        raise UserError(
            f"--init {path}: trained on encoder {ckpt.get('encoder_source')} "
            f"(sha256 {str(ckpt['encoder_sha256'])[:12]}), not on the given --encoder (sha256 {encoder_sha[:12]})"
        )
    return ckpt
