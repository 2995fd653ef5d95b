"""Checkpoints: written atomically (temp file, then rename), read on the CPU with weights_only=True.

The one checkpoint reader of the package: pretraining's resume, the encoder to evaluate and a
finetuning --init all go through `load`.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from myjepa.errors import UserError
from myjepa.utils.io import atomic_path, not_a_file


def save(obj: dict[str, Any], path: str | Path) -> None:
    """Write `obj` to `path` atomically. A failed write (on a full disk torch.save raises a RuntimeError
    about zip positions) is a UserError naming the path and the free space; the previous file stays."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not any(w in str(e) for w in ("inline_container", "PytorchStreamWriter")):
            raise  # not the zip writer's failure to write: a bug to see in full
        why = e.strerror if isinstance(e, OSError) and e.strerror else "the write failed"
        with contextlib.suppress(OSError):
            why += f", {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free in {path.parent}"
        kept = f"the previous {path.name} is kept" if path.is_file() else "nothing written"
        raise UserError(f"{path}: cannot save ({why}); {kept}") from None


def load(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at `path`; a missing, corrupt or foreign file, or not a dict, is a UserError naming it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"checkpoint {path}: {not_a_file(Path(path))}") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise UserError(f"{path}: cannot load as a checkpoint: {_why_not(Path(path), e)}") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    return ckpt


def _why_not(path: Path, error: Exception) -> str:
    """Why torch.load refused `path`, in words, never with torch's advice to retry with weights_only=False:
    that advice is how a pickle payload gets to run."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty (0 bytes)"
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip archive, or its legacy pickle
        return "not written by torch.save" + (" (a text file)" if head.isascii() else "")
    if isinstance(error, pickle.UnpicklingError):
        unsafe = re.search(r"GLOBAL (\S+)", str(error))
        what = unsafe.group(1) if unsafe else "a Python object"
        return f"refused: it would build {what}, which a myjepa checkpoint never holds and which can run code"
    first = str(error).strip().split("\n")[0].split(". ")[0]
    if "weights_only" in first:
        first = "holds something other than tensors and plain values"
    return f"damaged or truncated ({type(error).__name__}: {first})"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
