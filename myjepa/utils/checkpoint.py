"""Checkpoints written atomically (temp file, then rename) and read with weights_only=True."""

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
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except Exception as e:  # truncated or foreign file: say which
        raise UserError(f"{path}: cannot load checkpoint: {e}") from None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
