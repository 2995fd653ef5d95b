"""Checkpoints: written atomically (temp file, then rename), read on the CPU with weights_only=True.

The one checkpoint reader of the package: pretraining's resume, the encoder to evaluate and a
finetuning --init all go through `load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from myjepa.errors import UserError
from myjepa.utils.io import atomic_path


def save(obj: dict[str, Any], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at `path`; a missing, corrupt or foreign file, or not a dict, is a UserError naming it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise UserError(
            f"{path}: cannot load as a checkpoint (damaged, or not written by myjepa): {type(e).__name__}: {e}"
        ) from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    return ckpt


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
