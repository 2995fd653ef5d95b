"""The input contract of a released encoder: the signal it expects, and how a record becomes its input.

Rate, lead order and units; the per-lead z-scoring (mean/std in mV) pretraining applied; and the
strided crops (length, stride in samples) whose embeddings are averaged into a record embedding,
the same crops the evaluation averages its scores over (`crop_s`/`stride_s` of the shipped linear
protocol).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from myjepa.errors import UserError
from myjepa.evaluate.config import load_finetune_config


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
    def from_dict(cls, data: Any, source: str) -> InputContract:
        keys = list(cls.__dataclass_fields__)
        if not isinstance(data, dict) or any(k not in data for k in keys):
            raise UserError(f"{source}: 'input' must hold {keys}")
        return cls(**{k: data[k] for k in keys})

    def describe(self) -> str:
        return (
            f"{len(self.leads)} leads ({', '.join(self.leads)}) in {self.units} at {self.fs} Hz, "
            f"at least {self.crop} samples ({self.crop / self.fs:g} s)"
        )


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


def contract_from_checkpoint(ckpt: dict[str, Any], encoder_config: dict[str, Any], source: str) -> InputContract:
    """The contract of a pretraining checkpoint (encoder.pt, best/last_ckpt.pt), from the data summary it stores."""
    data = ckpt.get("data") or ckpt.get("sources")
    if not data:
        raise UserError(
            f"{source}: no pretraining data statistics stored (an older myjepa wrote it); delete it and rerun the "
            "same `myjepa pretrain` command: a finished run rewrites encoder.pt from last_ckpt.pt without training"
        )
    linear = load_finetune_config("linear")
    fs = int(encoder_config["fs"])
    mean, std = pooled_stats(data)
    return InputContract(
        fs=fs,
        leads=list(encoder_config["leads"]),
        units="mV",
        crop=int(round(linear.crop_s * fs)),
        stride=int(round(linear.stride_s * fs)),
        mean=mean,
        std=std,
    )
