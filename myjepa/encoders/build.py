"""Building an encoder: the `VisionTransformer` an EncoderConfig describes, filled strictly with stored weights.

The encoder's keys and their checks are `myjepa.models.config.EncoderConfig`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from myjepa.config import from_dict
from myjepa.errors import UserError
from myjepa.models.config import EncoderConfig
from myjepa.models.vit import VisionTransformer


def build_encoder(data: Mapping[str, Any], source: str) -> tuple[VisionTransformer, dict[str, Any]]:
    """The encoder an EncoderConfig mapping describes, and the validated config as a dict.

    Whatever is wrong with the config (a key, a type, the geometry) is one UserError naming `source`.
    """
    try:
        cfg = from_dict(EncoderConfig, data, source)
        return VisionTransformer.from_config(cfg), asdict(cfg)  # type: ignore[arg-type]
    except (UserError, ValueError, RuntimeError) as e:
        message = str(e)
        if not message.startswith(f"{source}:"):
            message = f"{source}: invalid encoder config: {message}"
        raise UserError(message) from None


def load_state(encoder: VisionTransformer, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load with a readable message when the weights come from another architecture."""
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weights (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[:3]})")
        if mismatched:
            parts.append(f"{len(mismatched)} with other shapes (e.g. {mismatched[:2]})")
        raise UserError(
            f"{source}: the stored encoder weights do not fit a VisionTransformer built from its config: "
            + "; ".join(parts)
            + ". Is this a checkpoint of another architecture?"
        )
    encoder.load_state_dict(state)
