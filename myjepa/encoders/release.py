"""Reading a release folder (`myjepa export` writes it; its format is described in `myjepa.release`):
config.json checked to be one, and each safetensors file checked against the digest config.json records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from myjepa.errors import UserError
from myjepa.utils.io import sha256_file

FORMAT, FORMAT_VERSION = "myjepa-release", 1
CONFIG, WEIGHTS, CARD, HEAD_WEIGHTS = "config.json", "model.safetensors", "MODEL_CARD.md", "head.safetensors"
ENCODER, CLASSIFIER = "encoder", "classifier"
"""The kinds of release (config.json `kind`; a release without one is an encoder release)."""


def release_files(folder: Path, kind: str = ENCODER) -> list[Path]:
    """The files of a release folder of `kind`."""
    return [folder / WEIGHTS, folder / CONFIG, folder / CARD] + ([folder / HEAD_WEIGHTS] if kind == CLASSIFIER else [])


def release_kind(config: dict[str, Any]) -> str:
    return config.get("kind", ENCODER)


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
    if release_kind(config) not in (ENCODER, CLASSIFIER):
        raise UserError(f"{path}: release kind {config['kind']!r} is not {ENCODER!r} or {CLASSIFIER!r}")
    return config


def read_release_weights(folder: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """model.safetensors of a release (the encoder), whose sha256 must be the one its config.json records."""
    return read_safetensors(folder / WEIGHTS, (config.get("weights") or {}).get("sha256"))


def read_safetensors(path: Path, expected_sha256: Any) -> dict[str, torch.Tensor]:
    """A release's safetensors file (no pickle), refused unless its sha256 is `expected_sha256` (config.json's)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: not found; a release needs {CONFIG} and the weights it names")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise UserError(
            f"{path}: sha256 {actual[:16]}... does not match {CONFIG}'s {str(expected_sha256)[:16]}...; "
            "the file is damaged, truncated or was changed after export"
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the weights: {e}") from None
