"""Reading a release folder (`myjepa export` writes it; its format is described in `myjepa.release`):
config.json checked to be one, and model.safetensors checked against the digest config.json records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from myjepa.errors import UserError
from myjepa.utils.io import sha256_file

FORMAT, FORMAT_VERSION = "myjepa-release", 1
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "MODEL_CARD.md"


def release_files(folder: Path) -> list[Path]:
    """The files of a release folder."""
    return [folder / WEIGHTS, folder / CONFIG, folder / CARD]


def read_release_config(folder: Path) -> dict[str, Any]:
    """config.json of a release, checked to be one."""
    path = folder / CONFIG
    if not path.is_file():
        raise UserError(f"{folder}: no {CONFIG}; not a release folder (write one with `myjepa export`)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not readable JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f'{path}: not a MyJEPA release config (no "format": "{FORMAT}")')
    if config.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: release format version {config.get('format_version')}, this myjepa reads {FORMAT_VERSION}"
        )
    return config


def read_release_weights(folder: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """model.safetensors of a release, whose sha256 must be the one its config.json records."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = folder / WEIGHTS
    if not weights.is_file():
        raise UserError(f"{weights}: not found; a release needs {CONFIG} and {WEIGHTS}")
    expected = config.get("weights", {}).get("sha256")
    actual = sha256_file(weights)
    if actual != expected:
        raise UserError(
            f"{weights}: sha256 {actual[:16]}... does not match {CONFIG}'s {str(expected)[:16]}...; "
            "the file is damaged, truncated or was changed after export"
        )
    try:
        return load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{weights}: cannot read the weights: {e}") from None
