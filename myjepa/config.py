"""YAML configs validated into dataclasses: one loader for every stage's config.

A config file must name every field of its dataclass, and nothing else; overrides
(`--set batch_size=32`) change fields after loading. Each stage keeps its dataclass and its
shipped YAMLs together (`pretrain/config.py` + `pretrain/configs/`, `evaluate/config.py` +
`evaluate/configs/`); a shipped config is addressed by its stem (`ViTS_mimic`), any other by path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from myjepa.errors import UserError
from myjepa.utils.io import not_a_file

T = TypeVar("T")


def check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def check_positive(cfg: Any, *names: str) -> None:
    """Each named field of `cfg` is > 0 (sizes, counts, rates): a zero or negative one is named with its value."""
    for name in names:
        check(getattr(cfg, name) > 0, f"{name} must be positive, got {getattr(cfg, name)}")


def shipped_configs(config_dir: Path) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path, config_dir: Path) -> Path:
    """A shipped name (`ViTS_mimic`) in `config_dir`, or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise UserError(f"config file {p}: {not_a_file(p)}" if p.is_dir() else f"config file not found: {p}")
        return p
    shipped = config_dir / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(
        f"unknown config {str(name_or_path)!r}: not a .yaml path and not one of the shipped configs "
        f"{shipped_configs(config_dir)}"
    )


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
        missing = [
            n
            for n, f in fields.items()
            if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise UserError(
                f"{source}: missing key {missing[0]!r}"
                + (f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else "")
            )
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
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise UserError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):  # no field means anything by nan or inf
            raise UserError(f"{where}: expected a finite number, got {value!r}")
        return number
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


def load(cls: type[T], name_or_path: str | Path, config_dir: Path, overrides: Mapping[str, Any] | None = None) -> T:
    """Load a shipped name (from `config_dir`) or YAML path into `cls`, then apply overrides; all validated."""
    path = resolve_config_path(name_or_path, config_dir)
    data = read_yaml(path)
    base = from_dict(cls, data, str(path), partial=True)
    base.update(from_dict(cls, dict(overrides or {}), "override", partial=True))
    return from_dict(cls, base, str(path))  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
