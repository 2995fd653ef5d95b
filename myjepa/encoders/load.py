"""Loading an encoder from whatever holds one, with what the file says about it.

An encoder comes from a pretraining checkpoint (`encoder.pt`, `last_ckpt.pt`, `best_ckpt.pt`, any version:
`myjepa.pretrain.checkpoints` reads them), a finetuning `best_ckpt.pt`, a release folder (`myjepa export`),
or a model config (shipped name or YAML) for a randomly initialised encoder: the baseline a pretrained
encoder must beat (`encoder_or_baseline`, what `myjepa finetune --encoder` takes). `load_encoder` is
`myjepa.load_encoder`: a pretrained encoder with its input contract, ready to embed records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from myjepa.config import read_yaml, resolve_config_path
from myjepa.encoders.build import build_encoder, load_state
from myjepa.encoders.contract import InputContract, contract_for
from myjepa.encoders.pretrained import PretrainedEncoder
from myjepa.encoders.release import (
    CONFIG,
    ENCODER,
    WEIGHTS,
    read_release_config,
    read_release_weights,
    release_files,
    release_kind,
)
from myjepa.errors import UserError
from myjepa.models.config import ENCODER_KEYS
from myjepa.models.vit import VisionTransformer
from myjepa.pretrain import checkpoints
from myjepa.pretrain.checkpoints import RunRecord
from myjepa.pretrain.config import CONFIG_DIR as PRETRAIN_CONFIG_DIR
from myjepa.pretrain.config import load_config
from myjepa.utils import checkpoint
from myjepa.utils.io import not_a_file


@dataclass
class LoadedEncoder:
    """An encoder and what the file it came from says about it."""

    encoder: VisionTransformer
    config: dict[str, Any]  # its EncoderConfig as a dict
    path: Path  # the file it came from: a checkpoint, a release's model.safetensors, or a model config
    pretrained: bool
    step: int | None  # the training step of its weights, when the file says
    contract: InputContract | None = None  # the input it expects; None when the file does not say
    run: RunRecord | None = None  # a pretraining checkpoint's record of its run (what a release is made from)
    release: dict[str, Any] | None = None  # a release's config.json

    def require_contract(self) -> InputContract:
        """The input contract; a UserError naming the file when it holds none."""
        if self.contract is not None:
            return self.contract
        if self.run is None:
            raise UserError(
                f"{self.path}: holds no pretraining statistics (not a pretraining checkpoint or a release); "
                "give the encoder.pt of the pretraining run, or a release"
            )
        raise UserError(
            f"{self.path}: no pretraining data statistics stored (an older myjepa wrote it); delete it and rerun the "
            "same `myjepa pretrain` command: a finished run rewrites encoder.pt from last_ckpt.pt without training"
        )


def load_encoder(path: str | Path) -> PretrainedEncoder:
    """The encoder of a release folder (config.json + model.safetensors) or of a pretraining checkpoint, on the
    CPU, with the input contract its `embed` follows."""
    p = Path(path)
    if p.is_dir():
        loaded = from_release(p)
    elif p.is_file():
        loaded = from_checkpoint(p)
    else:
        raise UserError(f"{p}: not found (expected a release folder or an encoder.pt)")
    contract = loaded.require_contract()
    config = loaded.release or {"encoder": loaded.config, "input": contract.to_dict()}
    return PretrainedEncoder(loaded.encoder, contract, config)


def encoder_or_baseline(spec: str | Path, seed: int = 0) -> LoadedEncoder:
    """Pretrained weights from a .pt file or a release folder, or a fresh encoder (seeded) from a model config."""
    p = Path(spec)
    if p.is_dir():
        return from_release(p)
    if p.suffix == ".pt" or (p.is_file() and p.suffix not in (".yaml", ".yml")):
        return from_checkpoint(p)
    return random_encoder(spec, seed)


def encoder_files(spec: str | Path) -> list[Path]:
    """The files an encoder is read from (`encoder_or_baseline`): a release's, or the file itself; a shipped
    model config's name reads no file of the user's."""
    p = Path(spec)
    return release_files(p) if p.is_dir() else [p] if p.is_file() else []


def from_checkpoint(path: Path) -> LoadedEncoder:
    """The encoder of a pretraining checkpoint, or of a finetuning best_ckpt.pt (its `head` tells them apart)."""
    if not path.is_file():
        raise UserError(f"encoder checkpoint {path}: {not_a_file(path)}")
    raw = checkpoint.load(path)
    if "head" in raw:
        return finetuned_encoder(raw, path)
    ckpt = checkpoints.from_dict(raw, path)
    encoder, cfg = build_encoder(ckpt.run.encoder_config, str(path))
    load_state(encoder, ckpt.encoder, str(path))
    contract = contract_for(cfg, ckpt.run.dumps) if ckpt.run.dumps else None
    return LoadedEncoder(encoder, cfg, path, True, ckpt.step, contract, ckpt.run)


def finetuned_encoder(raw: dict[str, Any], path: Path) -> LoadedEncoder:
    """A `myjepa finetune` best_ckpt.pt (`evaluate/outputs.py` writes it): the encoder's weights under
    `encoder`, its EncoderConfig under `config`, the best step under `step`."""
    config = raw.get("config")
    if not isinstance(config, dict) or not isinstance(raw.get("encoder"), dict):
        raise UserError(f"{path}: a finetuning checkpoint without 'encoder' weights and their 'config'")
    encoder, cfg = build_encoder(config, str(path))
    load_state(encoder, raw["encoder"], str(path))
    step = raw.get("step")
    return LoadedEncoder(encoder, cfg, path, True, int(step) if isinstance(step, (int, float)) else None)


def from_release(folder: Path) -> LoadedEncoder:
    """The encoder of a release folder; its model.safetensors stands for it (path and sha256 in results.json)."""
    config = read_release_config(folder)
    state = read_release_weights(folder, config)
    encoder, cfg = build_encoder(config.get("encoder", {}), str(folder / CONFIG))
    load_state(encoder, state, str(folder / WEIGHTS))
    contract = InputContract.from_dict(config.get("input"), str(folder / CONFIG), cfg)
    check_release_config(config, cfg, folder / CONFIG)
    step = config["pretraining"].get("step") if release_kind(config) == ENCODER else None
    return LoadedEncoder(encoder, cfg, folder / WEIGHTS, True, step, contract, release=config)


def check_release_config(config: dict[str, Any], encoder: dict[str, Any], path: Path) -> None:
    """The rest of a release's config.json that its readers use: the embedding's size and, for an encoder
    release, the pretraining step (a classifier release describes its finetuning instead)."""
    embedding = config.get("embedding")
    if not isinstance(embedding, dict) or embedding.get("dim") != encoder["dim"]:
        raise UserError(f"{path}: embedding.dim must be the encoder's dim {encoder['dim']}, got {embedding!r}")
    if release_kind(config) != ENCODER:
        return
    pretraining = config.get("pretraining")
    if not isinstance(pretraining, dict):
        raise UserError(f"{path}: no 'pretraining' section")
    step = pretraining.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        raise UserError(f"{path}: pretraining.step must be a step number, got {step!r}")


def random_encoder(spec: str | Path, seed: int) -> LoadedEncoder:
    """A freshly initialised encoder (seeded) from an encoder-only YAML or a pretraining config."""
    path = resolve_config_path(spec, PRETRAIN_CONFIG_DIR)
    data = read_yaml(path)
    if not set(data) <= set(ENCODER_KEYS):
        data = load_config(path).encoder_config()
    torch.manual_seed(seed)
    encoder, cfg = build_encoder(data, str(path))
    return LoadedEncoder(encoder, cfg, path, False, None)
