"""`myjepa.load_encoder(PATH)`: a release folder, or a pretraining encoder.pt, as a `PretrainedEncoder`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from myjepa.errors import UserError
from myjepa.evaluate.encoder_io import build_encoder, encoder_from_checkpoint, load_state
from myjepa.release.contract import InputContract, contract_from_checkpoint
from myjepa.release.model import PretrainedEncoder
from myjepa.utils import checkpoint
from myjepa.utils.io import sha256_file

FORMAT, FORMAT_VERSION = "myjepa-release", 1
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "MODEL_CARD.md"


def load_encoder(path: str | Path) -> PretrainedEncoder:
    """The encoder of a release folder (config.json + model.safetensors) or of an encoder.pt, on the CPU."""
    p = Path(path)
    if p.is_dir():
        return load_release(p)
    if p.is_file():
        return load_checkpoint(p)
    raise UserError(f"{p}: not found (expected a release folder or an encoder.pt)")


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


def load_release(folder: Path) -> PretrainedEncoder:
    """Build the encoder from config.json and fill it from model.safetensors, whose sha256 must match."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_release_config(folder)
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
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{weights}: cannot read the weights: {e}") from None
    encoder, _ = build_encoder(config.get("encoder", {}), str(folder / CONFIG))
    load_state(encoder, state, str(weights))
    return PretrainedEncoder(encoder, InputContract.from_dict(config.get("input"), str(folder / CONFIG)), config)


def load_checkpoint(path: Path) -> PretrainedEncoder:
    """The encoder of a pretraining checkpoint, with the contract its data summary gives (no release needed)."""
    ckpt = checkpoint.load(path)
    loaded = encoder_from_checkpoint(ckpt, path)
    contract = contract_from_checkpoint(ckpt, loaded.config, str(path))
    return PretrainedEncoder(loaded.encoder, contract, {"encoder": loaded.config, "input": contract.to_dict()})
