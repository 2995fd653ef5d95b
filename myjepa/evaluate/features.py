"""The frozen-encoder feature cache, and scoring records by their crops.

Evaluation splits each record into strided crops (2.5 s every 1.25 s: 7 per 10 s record;
`myjepa.encoders.crops`), normalised with the train folds' statistics, and averages the crop
scores. With a frozen encoder those crops are encoded once into a float16 cache (records, crops,
tokens, dim) and the probe trains on it, drawing training crops from the cached
ones, instead of pushing every training batch through the encoder. `Features` is what the head
trains and predicts on, either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from myjepa.encoders.crops import StridedCrops, random_crops
from myjepa.evaluate.config import FinetuneConfig
from myjepa.ingest.output import new_array
from myjepa.models.heads import normalise_tokens, record_scores
from myjepa.utils.logging import Progress

MEMORY_CACHE_LIMIT = 16 * 2**30  # larger caches go to a memmap next to the outputs


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when asked; CPU always runs float32 (bfloat16 is slow on most CPUs)."""
    if device.type == "cuda" and amp == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_cache(
    encoder: nn.Module,
    crops: StridedCrops,
    rows: np.ndarray,
    device: torch.device,
    batch_crops: int = 512,
    amp: str = "float32",
    memmap_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Encode every strided crop of `rows` once: float16 (len(rows), len(starts), tokens, dim).

    Stores the tokens after the probe's fixed input norm (`normalise_tokens`): the probe skips it
    with `normed=True`, and unit-scale values keep float16's relative precision.

    Held in memory, or in a memmap under `memmap_dir` when larger than MEMORY_CACHE_LIMIT.
    """
    encoder.eval()
    n_crops = len(crops.starts)
    probe = encoder(torch.zeros(1, crops.signals.shape[1], crops.crop, device=device))
    shape = (len(rows), n_crops, probe.shape[1], probe.shape[2])
    nbytes = int(np.prod(shape)) * 2
    if memmap_dir is not None and nbytes > MEMORY_CACHE_LIMIT:
        memmap_dir.mkdir(parents=True, exist_ok=True)
        cache = new_array(memmap_dir / f"features_{len(rows)}.npy", shape, memmap_dir)  # a full disk: no SIGBUS
    else:
        cache = np.empty(shape, dtype=np.float16)
    for i, chunk, x in crops.batches(rows, batch_crops, device):
        with autocast(device, amp):
            tokens = normalise_tokens(encoder(x).float())
        cache[i : i + len(chunk)] = (
            tokens.float().view(len(chunk), n_crops, *tokens.shape[1:]).cpu().numpy().astype(np.float16)
        )
        if progress is not None:
            progress(len(chunk))
    return cache


@torch.no_grad()
def predict_cached(
    head: nn.Module, cache: np.ndarray, device: torch.device, multiclass: bool, batch_records: int = 256
) -> np.ndarray:
    """(records, C) scores from cached crop tokens: the mean over each record's crop scores."""
    head.eval()
    out = []
    for i in range(0, len(cache), batch_records):
        feats = torch.from_numpy(np.asarray(cache[i : i + batch_records], dtype=np.float32)).to(device)
        out.append(record_scores(head(feats.flatten(0, 1), normed=True), len(feats), multiclass).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def predict_encoded(
    encoder: nn.Module,
    head: nn.Module,
    crops: StridedCrops,
    rows: np.ndarray,
    device: torch.device,
    multiclass: bool,
    batch_crops: int = 512,
    amp: str = "float32",
) -> np.ndarray:
    """(records, C) scores, encoding the strided crops on the fly (finetuning, or no cache)."""
    encoder.eval()
    head.eval()
    out = []
    for _, chunk, x in crops.batches(rows, batch_crops, device):
        with autocast(device, amp):
            logits = head(encoder(x))
        out.append(record_scores(logits, len(chunk), multiclass).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


@dataclass
class Features:
    """What the head trains and predicts on: the cached crop tokens of each split, or crops encoded on the fly."""

    crops: StridedCrops
    rows: dict[str, np.ndarray]  # split -> dump rows
    caches: dict[str, np.ndarray] | None  # split -> encode_cache() output; None: no cache

    @property
    def cached(self) -> bool:
        return self.caches is not None

    def train_tokens(
        self, encoder: nn.Module, idx: np.ndarray, rng: np.random.Generator, device: torch.device, frozen: bool
    ) -> torch.Tensor:
        """Tokens of the training records `idx` (positions in rows["train"]), one crop each at a random place."""
        if self.caches is not None:
            crop_idx = rng.integers(0, len(self.crops.starts), size=len(idx))
            return torch.from_numpy(np.asarray(self.caches["train"][idx, crop_idx], dtype=np.float32)).to(device)
        c = self.crops
        x = torch.from_numpy(random_crops(c.signals, self.rows["train"][idx], c.crop, c.mean, c.std, rng)).to(device)
        with torch.set_grad_enabled(not frozen):
            return encoder(x)

    def predict(
        self,
        encoder: nn.Module,
        head: nn.Module,
        split: str,
        device: torch.device,
        multiclass: bool,
        batch_crops: int,
        amp: str,
    ) -> np.ndarray:
        """(records, C) scores of a split's records: the mean over their strided crops."""
        if self.caches is not None:
            return predict_cached(head, self.caches[split], device, multiclass)
        return predict_encoded(encoder, head, self.crops, self.rows[split], device, multiclass, batch_crops, amp)


def encode_features(
    encoder: nn.Module,
    crops: StridedCrops,
    rows: dict[str, np.ndarray],
    device: torch.device,
    cfg: FinetuneConfig,
    memmap_dir: Path,
) -> Features:
    """The linear protocol's feature cache, split by split (when cfg.feature_cache); otherwise no cache."""
    if not (cfg.frozen and cfg.feature_cache):
        return Features(crops, rows, None)
    bar = Progress(sum(len(r) for r in rows.values()), "encoding crops", "records")
    caches = {
        split: encode_cache(encoder, crops, r, device, cfg.eval_batch_size, cfg.amp, memmap_dir, bar.update)
        for split, r in rows.items()
    }
    bar.close()
    return Features(crops, rows, caches)
