"""Augmentations of the pretraining crops: circular time shift, lead blanking, amplitude scaling.

Drawn in the batch builder from its per-step generator, so a resumed run sees the augmentations an
uninterrupted one would. They act on the float16 millivolts around each crop's own dump mean, so a
blanked lead normalises to exactly 0 and a scaled one keeps its baseline. All off by default (config
keys `augment_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class Draws(NamedTuple):
    """One batch's augmentation draws: for each crop its shift (samples), amplitude factor and blanked leads."""

    shift: np.ndarray  # (B,) int
    scale: np.ndarray  # (B,) float32
    blank: np.ndarray  # (B, leads) bool

    def rows(self, rows: slice) -> Draws:
        return Draws(*(a[rows] for a in self))


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

    def draw(self, rng: np.random.Generator, batch: int, leads: int) -> Draws:
        """Draws for a whole batch: the batch builder makes them for the global batch, so each rank applies
        its own rows' and the augmentations do not depend on how the batch is split over ranks."""
        shift = rng.integers(-self.shift, self.shift + 1, size=batch) if self.shift else np.zeros(batch, int)
        scale = rng.uniform(1 - self.scale, 1 + self.scale, size=batch) if self.scale else np.ones(batch)
        blank = rng.random((batch, leads)) < self.lead_dropout
        blank[np.arange(batch), rng.integers(leads, size=batch)] = False  # one lead always survives
        return Draws(shift, scale.astype(np.float32), blank)

    @staticmethod
    def apply(x: np.ndarray, mean: np.ndarray, draws: Draws) -> None:
        """Augment crops x (B, 12, C) in place with their draws; mean (B, 12, 1): each crop's dump mean per lead."""
        y = x.astype(np.float32) - mean
        for b in np.flatnonzero(draws.shift):
            y[b] = np.roll(y[b], draws.shift[b], axis=-1)
        y *= draws.scale[:, None, None]
        y[draws.blank] = 0.0
        x[...] = y + mean
