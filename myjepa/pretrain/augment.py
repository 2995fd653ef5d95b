"""Augmentations of the pretraining crops: circular time shift, lead blanking, amplitude scaling.

Drawn in the batch builder from its per-step generator, so a resumed run sees the augmentations an
uninterrupted one would. They act on the float16 millivolts around each crop's own dump mean, so a
blanked lead normalises to exactly 0 and a scaled one keeps its baseline. All off by default (config
keys `augment_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Augment:
    shift: int  # samples: each crop is rolled by a uniform draw in [-shift, shift]
    lead_dropout: float  # probability that a lead is blanked; at least one lead is always kept
    scale: float  # amplitude factor uniform in [1 - scale, 1 + scale] per crop

    @classmethod
    def from_config(cls, cfg: Any) -> Augment | None:
        """The config's augmentations, or None when all are off."""
        augment = cls(round(cfg.augment_shift_s * cfg.fs), cfg.augment_lead_dropout, cfg.augment_scale)
        return augment if augment.shift or augment.lead_dropout or augment.scale else None

    def __call__(self, x: np.ndarray, mean: np.ndarray, rng: np.random.Generator) -> None:
        """Augment crops x (B, 12, C) in place; mean (B, 12, 1): each crop's dump mean per lead."""
        B, leads, _ = x.shape
        y = x.astype(np.float32) - mean
        if self.shift:
            for b, s in enumerate(rng.integers(-self.shift, self.shift + 1, size=B)):
                y[b] = np.roll(y[b], s, axis=-1)
        if self.scale:
            y *= rng.uniform(1 - self.scale, 1 + self.scale, size=(B, 1, 1)).astype(np.float32)
        if self.lead_dropout:
            blank = rng.random((B, leads)) < self.lead_dropout
            blank[np.arange(B), rng.integers(leads, size=B)] = False  # one lead always survives
            y[blank] = 0.0
        x[...] = y + mean
