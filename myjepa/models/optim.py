"""AdamW parameter groups, shared by pretraining and finetuning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

NO_DECAY_NAMES = ("registers", "mask_token", "query")
"""Learned tokens (the encoder's registers, the predictor's mask token, the probe's query): not decayed."""


def param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and conv kernels only; biases, norms and learned tokens go without.

    `apply_wd` marks the group whose weight decay a schedule may change.
    """
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            keep = p.ndim < 2 or any(token in name for token in NO_DECAY_NAMES)
            (no_decay if keep else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "apply_wd": True},
        {"params": no_decay, "weight_decay": 0.0, "apply_wd": False},
    ]
