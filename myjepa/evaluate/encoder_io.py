"""Load the encoder to evaluate, and check that it fits the data.

`--encoder` is a pretraining output (`encoder.pt`, or `best_ckpt.pt` / `last_ckpt.pt` with the
encoder under the `encoder.` prefix), a finetuning `best_ckpt.pt`, a release folder (`myjepa export`),
or a model config (shipped name or YAML) for a randomly initialised encoder: the baseline a
pretrained encoder must beat.
The encoder's keys and their checks are `myjepa.models.config.EncoderConfig`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from myjepa.config import from_dict, read_yaml, resolve_config_path
from myjepa.errors import UserError
from myjepa.models.config import ENCODER_KEYS, EncoderConfig
from myjepa.models.vit import VisionTransformer
from myjepa.pretrain.config import CONFIG_DIR as PRETRAIN_CONFIG_DIR
from myjepa.pretrain.config import load_config
from myjepa.utils import checkpoint


@dataclass
class LoadedEncoder:
    encoder: VisionTransformer
    config: dict[str, Any]  # EncoderConfig as a dict (encoder_config())
    path: Path  # the checkpoint or YAML it came from
    pretrained: bool
    step: int | None


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


def stored_encoder_config(data: Any, source: str) -> dict[str, Any]:
    """The encoder keys of the config a checkpoint stores (a pretraining config holds more)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: no encoder config stored (expected a mapping under 'config')")
    missing = [k for k in ENCODER_KEYS if k not in data]
    if missing:
        raise UserError(f"{source}: encoder config lacks {missing}; not a MyJEPA encoder")
    return {k: data[k] for k in ENCODER_KEYS}


def load_state(encoder: VisionTransformer, state: dict[str, Any], source: str) -> None:
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


def pretrained_encoder(path: Path) -> LoadedEncoder:
    """The encoder stored in encoder.pt, a finetuning best_ckpt.pt or a pretraining best/last_ckpt.pt."""
    if not path.is_file():
        raise UserError(f"encoder checkpoint not found: {path}")
    return encoder_from_checkpoint(checkpoint.load(path), path)


def encoder_from_checkpoint(ckpt: dict[str, Any], path: Path) -> LoadedEncoder:
    """The encoder of a checkpoint dict already loaded from `path` (see `pretrained_encoder`)."""
    if isinstance(ckpt.get("encoder"), dict):  # encoder.pt, or a finetuning best_ckpt.pt
        state = ckpt["encoder"]
    elif isinstance(ckpt.get("model"), dict):  # pretraining best_ckpt.pt / last_ckpt.pt
        state = {k[len("encoder.") :]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
        if not state:
            raise UserError(f"{path}: the model holds no 'encoder.' weights; is this a MyJEPA pretraining checkpoint?")
    else:
        raise UserError(
            f"{path}: neither an 'encoder' nor a 'model' entry; "
            "expected encoder.pt, best_ckpt.pt or last_ckpt.pt from `myjepa pretrain`"
        )
    encoder, cfg = build_encoder(stored_encoder_config(ckpt.get("config"), str(path)), str(path))
    load_state(encoder, state, str(path))
    step = ckpt.get("step")
    return LoadedEncoder(encoder, cfg, path, True, int(step) if isinstance(step, (int, float)) else None)


def released_encoder(folder: Path) -> LoadedEncoder:
    """The encoder of a release folder; its model.safetensors stands for it (path and sha256 in results.json)."""
    from myjepa.release.load import WEIGHTS, load_release  # here: myjepa.release.load imports this module

    model = load_release(folder)
    cfg = {k: model.config["encoder"][k] for k in ENCODER_KEYS}
    return LoadedEncoder(model.encoder, cfg, folder / WEIGHTS, True, model.config["pretraining"].get("step"))


def random_encoder(spec: str | Path, seed: int) -> LoadedEncoder:
    """A freshly initialised encoder (seeded) from an encoder-only YAML or a pretraining config."""
    path = resolve_config_path(spec, PRETRAIN_CONFIG_DIR)
    data = read_yaml(path)
    if not set(data) <= set(ENCODER_KEYS):
        data = load_config(path).encoder_config()
    torch.manual_seed(seed)
    encoder, cfg = build_encoder(data, str(path))
    return LoadedEncoder(encoder, cfg, path, False, None)


def load_encoder(spec: str | Path, seed: int = 0) -> LoadedEncoder:
    """Pretrained weights from a .pt file or a release folder, or a fresh encoder (seeded) from a model config."""
    p = Path(spec)
    if p.is_dir():
        return released_encoder(p)
    if p.suffix == ".pt" or (p.is_file() and p.suffix not in (".yaml", ".yml")):
        return pretrained_encoder(p)
    return random_encoder(spec, seed)


def check_compatible(
    cfg: dict[str, Any],
    source: str,
    dump_name: str,
    fs: int,
    leads: list[str],
    length: int,
    crop_s: float,
    stride_s: float,
) -> tuple[int, int]:
    """Sampling rate, lead order and crop geometry must fit; returns (crop, stride) in samples."""
    if int(cfg["fs"]) != int(fs):
        raise UserError(
            f"{source} expects {cfg['fs']} Hz but {dump_name} is sampled at {fs} Hz; "
            f"convert the dump with --fs {cfg['fs']}"
        )
    if list(cfg["leads"]) != list(leads):
        raise UserError(f"{source} expects leads {list(cfg['leads'])} but {dump_name} holds {list(leads)}")
    crop, stride = crop_s * fs, stride_s * fs
    for name, seconds, samples in (("crop_s", crop_s, crop), ("stride_s", stride_s, stride)):
        if samples <= 0 or abs(samples - round(samples)) > 1e-6:
            raise UserError(f"config key {name!r}: {seconds} s is not a positive whole number of samples at {fs} Hz")
    crop, stride = int(round(crop)), int(round(stride))
    patch = int(cfg["patch_size"])
    if crop % patch:
        raise UserError(
            f"config key 'crop_s': {crop_s} s = {crop} samples is not a multiple of the encoder's patch_size "
            f"{patch} ({source})"
        )
    if crop > int(cfg["channel_size"]):
        raise UserError(
            f"config key 'crop_s': {crop} samples is longer than the encoder's channel_size "
            f"{cfg['channel_size']} ({source})"
        )
    if crop > length:
        raise UserError(
            f"config key 'crop_s': {crop} samples is longer than the records of {dump_name} ({length} samples)"
        )
    return crop, stride
