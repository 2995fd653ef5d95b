"""Records cut into crops for an encoder: strided (evaluation, embeddings) or at random places (training a probe),
z-scored per lead on the way."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from myjepa.dumps import normalise


def crop_starts(length: int, crop: int, stride: int) -> np.ndarray:
    """Start samples of the strided crops over a record of `length` samples (the last one ends by `length`)."""
    return np.arange(0, length - crop + 1, stride)


def strided_crops(
    signals: np.ndarray, rows: np.ndarray, starts: np.ndarray, crop: int, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """(len(rows) * len(starts), 12, crop) normalised crops, record-major."""
    x = normalise(signals[rows], mean, std)
    return np.stack([x[:, :, s : s + crop] for s in starts], axis=1).reshape(-1, x.shape[1], crop)


def random_crops(
    signals: np.ndarray, rows: np.ndarray, crop: int, mean: np.ndarray, std: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(len(rows), 12, crop) normalised crops at uniformly random offsets."""
    x = normalise(signals[rows], mean, std)
    offsets = rng.integers(0, x.shape[2] - crop + 1, size=len(rows))
    return np.stack([r[:, o : o + crop] for r, o in zip(x, offsets)])


@dataclass
class StridedCrops:
    """How evaluation sees a dump: crops of `crop` samples at `starts`, normalised with the train folds' mean/std."""

    signals: np.ndarray  # (N, 12, T) float16 dump
    starts: np.ndarray
    crop: int
    mean: np.ndarray
    std: np.ndarray

    def batches(
        self, rows: np.ndarray, batch_crops: int, device: torch.device
    ) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
        """(offset in rows, the records, their crops record-major on `device`), about `batch_crops` crops at a time."""
        per = max(1, batch_crops // len(self.starts))
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            yield (
                i,
                chunk,
                torch.from_numpy(strided_crops(self.signals, chunk, self.starts, self.crop, self.mean, self.std)).to(
                    device
                ),
            )
