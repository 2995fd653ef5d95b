"""YAML configs validated into dataclasses: one system for the command line and the workflow.

A config file must name every field of its dataclass, and nothing else; overrides
(`load_config(name, batch_size=32)` or `--set batch_size=32`) change fields after loading.
Shipped configs live in `myjepa/configs/<kind>/` and are addressed by their stem (`ViTS_mimic`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from myjepa import LEADS
from myjepa.errors import UserError

CONFIG_ROOT = Path(__file__).parent / "configs"
PRETRAIN_DIR = CONFIG_ROOT / "pretrain"
T = TypeVar("T")


@dataclass
class EncoderConfig:
    """What defines an encoder and the signal it expects: stored in encoder.pt, checked against the data at evaluation."""

    # signal
    fs: int
    leads: list[str]
    channel_size: int  # crop length in samples (5000 = 10 s at 500 Hz)
    patch_size: int
    # encoder
    dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    num_registers: int

    def encoder_config(self) -> dict[str, Any]:
        """The encoder's fields alone, as a dict (what `VisionTransformer.from_config` takes)."""
        return {k: getattr(self, k) for k in ENCODER_KEYS}


ENCODER_KEYS = tuple(f.name for f in dataclasses.fields(EncoderConfig))


@dataclass
class PretrainConfig(EncoderConfig):
    """Everything that defines a pretraining run: the encoder's fields, then predictor, SIGReg, masking, optimisation."""

    # predictor
    pred_dim: int
    pred_depth: int
    pred_num_heads: int
    # projector and SIGReg
    proj_hidden: int
    proj_dim: int
    sigreg_lambda: float
    sigreg_slices: int
    sigreg_points: int
    sigreg_t_max: float
    # masking
    min_block_size: int
    min_keep_ratio: float
    max_keep_ratio: float
    # optimisation
    batch_size: int  # global batch, split over DDP ranks
    steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    final_weight_decay: float
    betas: list[float]
    grad_clip: float  # 0 disables clipping
    accum_steps: int
    # data sampling: dump name -> sampling weight
    datasets: dict[str, float]
    folds: list[int]  # dumps with a strat_fold column (PTB-XL) contribute only these folds
    num_workers: int
    # bookkeeping
    log_interval: int
    checkpoint_interval: int
    best_loss_window: int  # steps in the running mean that picks best_ckpt.pt

    def __post_init__(self) -> None:
        check(self.channel_size % self.patch_size == 0, f"channel_size {self.channel_size} is not a multiple of patch_size {self.patch_size}")
        check(self.dim % self.num_heads == 0, f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        check(self.pred_dim % self.pred_num_heads == 0, f"pred_dim {self.pred_dim} is not divisible by pred_num_heads {self.pred_num_heads}")
        check(0 < self.min_keep_ratio <= self.max_keep_ratio < 1, "need 0 < min_keep_ratio <= max_keep_ratio < 1")
        check(len(self.betas) == 2, "betas must have two values")
        check(sorted(l.lower() for l in self.leads) == sorted(l.lower() for l in LEADS), f"leads must be the 12 standard leads, got {self.leads}")
        check(self.batch_size > 0 and self.steps > 0 and self.accum_steps > 0, "batch_size, steps and accum_steps must be positive")
        check(bool(self.datasets) and all(w > 0 for w in self.datasets.values()), "datasets needs at least one name with a positive weight")
        check(min(self.log_interval, self.checkpoint_interval, self.best_loss_window) > 0, "log_interval, checkpoint_interval and best_loss_window must be positive")

    @property
    def num_patches(self) -> int:
        return self.channel_size // self.patch_size


def check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def shipped_configs(config_dir: Path = PRETRAIN_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path, config_dir: Path = PRETRAIN_DIR) -> Path:
    """A shipped name (`ViTS_mimic`) in `config_dir`, or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        return p
    shipped = config_dir / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(f"unknown config {str(name_or_path)!r}: not a .yaml path and not one of the shipped configs {shipped_configs(config_dir)}")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def from_dict(cls: type[T], data: Mapping[str, Any], source: str, partial: bool = False) -> T | dict[str, Any]:
    """Validate `data` against dataclass `cls`: unknown keys, missing keys and wrong types are errors.

    With partial=True, returns the coerced dict without requiring every field (for overrides).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{source}: unknown key {key!r}{hint}")
    if not partial:
        missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise UserError(f"{source}: missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else ""))
    values = {k: coerce(v, hints[k], f"{source}: key {k!r}") for k, v in data.items()}
    return values if partial else cls(**values)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against a simple type annotation, converting int -> float and str -> number where lossless."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: expected {tp}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [coerce(v, arg, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        karg, varg = typing.get_args(tp)
        return {coerce(k, karg, where): coerce(v, varg, where) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{where}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where}: expected a string, got {value!r}")
    return value


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; values are parsed as YAML (`lr=3e-4`, `betas=[0.9,0.95]`, `datasets={a: 1}`)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise UserError(f"--set {pair!r}: value is not valid YAML: {e}") from None
    return out


def load(cls: type[T], name_or_path: str | Path, overrides: Mapping[str, Any] | None = None, config_dir: Path = PRETRAIN_DIR) -> T:
    """Load a shipped name (from `config_dir`) or YAML path into `cls`, then apply overrides; all validated."""
    path = resolve_config_path(name_or_path, config_dir)
    data = read_yaml(path)
    base = from_dict(cls, data, str(path), partial=True)
    base.update(from_dict(cls, dict(overrides or {}), "override", partial=True))
    return from_dict(cls, base, str(path))  # type: ignore[return-value]


def load_config(name_or_path: str | Path, **overrides: Any) -> PretrainConfig:
    """The validated pretraining config: `load_config('ViTS_mimic', batch_size=32)`."""
    return load(PretrainConfig, name_or_path, overrides)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
