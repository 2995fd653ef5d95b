"""The input contract of a pretrained encoder: the signal it expects, and how a record becomes its input.

Rate, lead order and units; the per-lead z-scoring (mean/std in mV) pretraining applied; and the
strided crops (length, stride in samples) whose embeddings are averaged into a record embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from myjepa.errors import UserError
from myjepa.utils.checks import rate_problem

CROP_S, STRIDE_S = 2.5, 1.25
"""Seconds per crop and between crop starts of a record embedding: the crops the shipped evaluation
protocols average their scores over (`myjepa/evaluate/configs/`; a test keeps them the same)."""


@dataclass
class InputContract:
    fs: int  # Hz
    leads: list[str]  # the order of the 12 rows of an input
    units: str  # always mV
    crop: int  # samples per crop at fs: the shortest record accepted
    stride: int  # samples between crop starts
    mean: list[float]  # per lead, mV: subtracted before the encoder
    std: list[float]  # per lead, mV: divided by after subtracting the mean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str, encoder_config: dict[str, Any]) -> InputContract:
        """The contract a release's config.json states, checked completely against itself and the encoder it
        belongs to: a release that loads can embed (a wrong value fails here, naming the key, not in `embed`)."""
        keys = list(cls.__dataclass_fields__)
        if not isinstance(data, dict) or any(k not in data for k in keys):
            raise UserError(f"{source}: 'input' must hold {keys}")
        contract = cls(**{k: data[k] for k in keys})
        problem = contract.problem(encoder_config)
        if problem:
            raise UserError(f"{source}: input.{problem}")
        return contract

    def problem(self, encoder: dict[str, Any]) -> str | None:
        """What in this contract cannot be the input of `encoder` (its EncoderConfig), as `key: why`; None if
        nothing."""
        n, patch, length = len(encoder["leads"]), encoder["patch_size"], encoder["channel_size"]
        if rate_problem(self.fs) or self.fs != encoder["fs"]:
            return f"fs: {self.fs!r}, but the encoder takes {encoder['fs']} Hz"
        if self.leads != list(encoder["leads"]):
            return f"leads: {self.leads!r}, but the encoder takes {list(encoder['leads'])}"
        if self.units != "mV":
            return f"units: {self.units!r}; a MyJEPA encoder takes mV"
        if not whole(self.crop) or not patch <= self.crop <= length or self.crop % patch:
            return f"crop: {self.crop!r}, not a multiple of the patch size {patch} up to {length} samples"
        if not whole(self.stride) or self.stride < 1:
            return f"stride: {self.stride!r}, not a positive whole number of samples"
        for key in ("mean", "std"):
            values = getattr(self, key)
            if not isinstance(values, list) or len(values) != n:
                got = f"{len(values)} values" if isinstance(values, list) else repr(values)
                return f"{key}: {n} values expected (one per lead), got {got}"
            if not all(finite(v) and (key == "mean" or v > 0) for v in values):
                return f"{key}: {values} holds a value that is not a finite{' positive' * (key == 'std')} number"
        return None

    def describe(self) -> str:
        return (
            f"{len(self.leads)} leads ({', '.join(self.leads)}) in {self.units} at {self.fs} Hz, "
            f"at least {self.crop} samples ({self.crop / self.fs:g} s)"
        )


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pooled_stats(data: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per-lead mean and std of the mixture pretraining sampled: each dump's stats weighted by its sampling weight.

    With one dump (the usual case) this is exactly that dump's z-scoring.
    """
    w = np.array([d["weight"] for d in data], dtype=np.float64)
    w = w / w.sum()
    mean = np.array([d["mean"] for d in data], dtype=np.float64)
    std = np.array([d["std"] for d in data], dtype=np.float64)
    pooled = w @ mean
    var = w @ (std**2 + mean**2) - pooled**2
    return pooled.tolist(), np.sqrt(np.maximum(var, 1e-12)).tolist()


def contract_for(encoder_config: dict[str, Any], dumps: list[dict[str, Any]]) -> InputContract:
    """The contract of an encoder pretrained on `dumps` (the data summary its checkpoint records)."""
    fs = int(encoder_config["fs"])
    mean, std = pooled_stats(dumps)
    return InputContract(
        fs=fs,
        leads=list(encoder_config["leads"]),
        units="mV",
        crop=int(round(CROP_S * fs)),
        stride=int(round(STRIDE_S * fs)),
        mean=mean,
        std=std,
    )
