"""The encoder's config: the one place that names an encoder's keys (the workflow imports them too).

It is stored in every encoder.pt, so a checkpoint says which signal it expects (rate, leads, crop
length) and how to rebuild the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from myjepa.config import check, check_positive
from myjepa.leads import LEADS
from myjepa.utils.checks import rate_problem


@dataclass
class EncoderConfig:
    """What defines an encoder and the signal it expects."""

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

    def __post_init__(self) -> None:
        check(rate_problem(self.fs) is None, f"fs: {rate_problem(self.fs)}")
        check_positive(self, "channel_size", "patch_size", "dim", "depth", "num_heads", "mlp_ratio")
        check(self.num_registers >= 0, f"num_registers must be 0 or more, got {self.num_registers}")
        check(
            self.channel_size % self.patch_size == 0,
            f"channel_size {self.channel_size} is not a multiple of patch_size {self.patch_size}",
        )
        check(self.dim % self.num_heads == 0, f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        check(
            sorted(lead.lower() for lead in self.leads) == sorted(lead.lower() for lead in LEADS),
            f"leads must be the 12 standard leads, got {self.leads}",
        )

    @property
    def num_patches(self) -> int:
        return self.channel_size // self.patch_size

    def encoder_config(self) -> dict[str, Any]:
        """The encoder's fields alone, as a dict (what encoder.pt stores)."""
        return {k: getattr(self, k) for k in ENCODER_KEYS}


SIGREG_SCALINGS = ("pull", "noise")  # what a fixed λ keeps equal across batches: SIGReg's pull, or its noise

ENCODER_KEYS = tuple(f.name for f in dataclasses.fields(EncoderConfig))
