"""Random crops from several memory-mapped dumps, weighted per dump; normalised per lead on the device.

Global batch `step` is a pure function of (seed, step): the sampler has no state to save, a resumed
run sees exactly the batches an uninterrupted one would, and DataLoader workers can build batches
ahead in any order. Rank r of W keeps rows [r·B/W, (r+1)·B/W) of it, so the samples, their crops and
their masks do not depend on how the batch is split: 1 × 4 and 2 × 2 processes, or one process with
the whole batch, train on the same data (tests/test_multinode.py). Nothing is read at start-up beyond
each dump's header and stats (plus the strat_fold column where there is one), so start-up cost does
not grow with the dump.

Why the workers only copy. A GPU consumes ~16,000 ViT-S samples/s, so a worker must build a batch
with as little CPU work as possible: crops leave it as float16 in the dump's millivolts (half the
bytes of float32 through the worker pipe and to the device), written straight into shared memory,
with the index of the dump each crop came from; `SourceNorm` z-scores them per lead and dump on the
device inside the training step. Dumps hold no NaN (the converters interpolate), so there is no
per-batch NaN scan; one that still gets through makes the loss non-finite, which stops the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from myjepa.dumps import Dump, open_dump, sidecars
from myjepa.errors import UserError
from myjepa.pretrain.augment import Augment, Draws
from myjepa.pretrain.masks import MaskCollator


@dataclass
class Source:
    name: str
    dump: Dump
    rows: np.ndarray | None  # allowed row numbers; None = all rows
    weight: float
    mean: np.ndarray  # (12, 1) float32
    std: np.ndarray  # (12, 1) float32

    @property
    def num_records(self) -> int:
        return len(self.dump) if self.rows is None else len(self.rows)


def parse_data_args(pairs: list[str]) -> list[tuple[str, Path]]:
    """`NAME=PATH.npy` arguments -> [(name, path)]; names must be unique."""
    out: list[tuple[str, Path]] = []
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--data expects NAME=PATH.npy, got {pair!r}")
        if name in dict(out):
            raise UserError(f"--data names dump {name!r} twice")
        out.append((name, Path(path)))
    return out


def dataset_weights(names: list[str], weights: dict[str, float]) -> dict[str, float]:
    """Sampling weight per --data name from the config's `datasets`.

    A single dump, or dumps none of which the config names (e.g. a PTB-XL-only ablation with a MIMIC
    config), are sampled evenly; a mix where only some are named is ambiguous and an error.
    """
    named = [n for n in names if n in weights]
    if not named:
        return {n: 1.0 for n in names}
    missing = [n for n in names if n not in weights]
    if missing:
        raise UserError(
            f"--data {missing[0]!r} has no weight in the config's datasets {weights}; "
            "set one with --set 'datasets={...}'"
        )
    return {n: weights[n] for n in names}


def sampled_datasets(configured: dict[str, float], sources: list[Source]) -> tuple[dict[str, float], str | None]:
    """The weights the dumps are sampled with, which the run records as its config's `datasets` (so that its
    checkpoints and a release made of them name the data they were trained on), and a note when the config's
    `datasets` said something else: it named none of the dumps, or dumps --data does not give."""
    sampled = {s.name: s.weight for s in sources}
    if sampled == configured:
        return sampled, None
    named = [n for n in configured if n in sampled]
    if not named:
        why = f"name none of the --data dumps ({', '.join(sampled)}): each is sampled with weight 1"
    else:
        why = f"also name {', '.join(n for n in configured if n not in sampled)}, which --data does not give"
    return sampled, f"the config's datasets {configured} {why}; the run records datasets {sampled}"


def folds_rows(dump: Dump, folds: list[int]) -> np.ndarray | None:
    """Row numbers of a dump whose index has strat_fold (PTB-XL) that lie in `folds`; None otherwise."""
    idx_path, _ = sidecars(dump.path)
    if not idx_path.is_file():
        return None
    try:
        header = pd.read_csv(idx_path, nrows=0).columns
        if "strat_fold" not in header:
            return None
        fold = pd.read_csv(idx_path, usecols=["strat_fold"])["strat_fold"].to_numpy()
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise UserError(f"{idx_path}: cannot read strat_fold: {e}") from None
    if len(fold) != len(dump):
        raise UserError(f"{idx_path}: {len(fold)} rows but {dump.path} holds {len(dump)} records")
    rows = np.flatnonzero(np.isin(fold, folds))
    if len(rows) == 0:
        raise UserError(f"{idx_path}: no record in folds {folds}")
    return rows


def open_sources(data: list[tuple[str, Path]], cfg: Any) -> list[Source]:
    """Open and check every dump against the config: fs, leads, record length."""
    weights = dataset_weights([n for n, _ in data], cfg.datasets)
    sources = []
    for name, path in data:
        dump = open_dump(path)
        _, stats_path = sidecars(path)
        if dump.fs != cfg.fs:
            raise UserError(f"{stats_path}: fs {dump.fs} but the config expects fs {cfg.fs}")
        if [lead.lower() for lead in dump.leads] != [lead.lower() for lead in cfg.leads]:
            raise UserError(f"{stats_path}: leads {dump.leads} differ from the config's {cfg.leads}")
        if dump.signals.shape[2] < cfg.channel_size:
            raise UserError(
                f"{path}: records hold {dump.signals.shape[2]} samples, shorter than channel_size {cfg.channel_size}"
            )
        if len(dump) == 0:
            raise UserError(f"{path}: the dump holds no records")
        mean = np.asarray(dump.stats["mean"], dtype=np.float32).reshape(12, 1)
        std = np.maximum(np.asarray(dump.stats["std"], dtype=np.float32).reshape(12, 1), 1e-6)
        sources.append(Source(name, dump, folds_rows(dump, cfg.folds), weights[name], mean, std))
    return sources


class SourceNorm:
    """Per-lead z-score with each crop's own dump's stats, on whatever device the batch is on."""

    def __init__(self, sources: list[Source], device: torch.device | str = "cpu") -> None:
        self.mean = torch.from_numpy(np.stack([s.mean for s in sources])).to(device)  # (S, 12, 1)
        self.inv_std = torch.from_numpy(np.stack([1 / s.std for s in sources])).to(device)

    def __call__(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x (B, 12, C) in mV (any float dtype), source (B,) dump index -> float32 z-scores."""
        return (x.float() - self.mean[source]) * self.inv_std[source]


class CropBatches(torch.utils.data.Dataset):
    """Item `step` = rank `rank`'s share of global batch `step`: (x (B/W, 12, C) float16 mV, source (B/W,)
    dump index, ctx_idx, tgt_idx); `SourceNorm` normalises x.

    Which dump, record, crop start and mask each of the B samples gets is drawn for the whole batch (a
    few integers per sample, and B masks: 6 ms at B = 2048); only this rank's rows are read from the
    dumps. The stream is seeded with (seed, 0, step): what rank 0 drew when each rank drew its own
    batch, so a single process trains on exactly the batches it always did.
    """

    def __init__(
        self,
        sources: list[Source],
        batch_size: int,
        channel_size: int,
        collator: MaskCollator,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        length: int = 2**62,
        augment: Augment | None = None,
    ) -> None:
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size} cannot take an equal share of a batch of {batch_size}")
        self.sources = sources
        self.augment = augment
        self.batch_size = batch_size
        self.channel_size = channel_size
        self.collator = collator
        self.seed = seed
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.length = length
        p = np.array([s.weight for s in sources], dtype=np.float64)
        self.probs = p / p.sum()
        self.means = np.stack([s.mean for s in sources])  # (S, 12, 1): what an augmentation is centred on

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.draw(step)
        mine = self.rows
        which, rows, starts = batch.which[mine], batch.rows[mine], batch.starts[mine]
        x = empty_shared((len(which), 12, self.channel_size), torch.float16)
        out = x.numpy()
        for s_id, src in enumerate(self.sources):
            sel = np.flatnonzero(which == s_id)
            windows = np.lib.stride_tricks.sliding_window_view(src.dump.signals, self.channel_size, axis=2)
            crops = windows[rows[sel], :, starts[sel]]  # (k, 12, C): one vectorised gather from the memmap
            if len(sel) == len(which):
                out[...] = crops
            else:
                out[sel] = crops
        if batch.augment is not None:
            Augment.apply(out, self.means[which], batch.augment.rows(mine))
        masks = slice(mine.start * self.collator.num_masks, mine.stop * self.collator.num_masks)  # M rows a record
        return x, torch.from_numpy(which), batch.ctx_idx[masks].clone(), batch.tgt_idx[masks].clone()

    def draw(self, step: int) -> GlobalBatch:
        """The whole global batch `step`: each sample's dump, row and crop start, the masks and augmentations."""
        rng = np.random.default_rng([self.seed, 0, step])
        which = rng.choice(len(self.sources), size=self.batch_size, p=self.probs)
        rows = np.empty(self.batch_size, dtype=np.int64)
        starts = np.empty(self.batch_size, dtype=np.int64)
        for s_id, src in enumerate(self.sources):
            sel = np.flatnonzero(which == s_id)
            picked = rng.integers(src.num_records, size=len(sel))
            rows[sel] = picked if src.rows is None else src.rows[picked]
            starts[sel] = rng.integers(src.dump.signals.shape[2] - self.channel_size + 1, size=len(sel))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        num_masks = self.batch_size * self.collator.num_masks
        ctx_idx, tgt_idx = self.collator.masks(num_masks, self.collator.patches(self.channel_size), gen)
        # drawn after the masks' seed: the masks do not depend on augmenting
        augment = self.augment.draw(rng, self.batch_size, 12) if self.augment is not None else None
        return GlobalBatch(which, rows, starts, ctx_idx, tgt_idx, augment)


class GlobalBatch(NamedTuple):
    """What `CropBatches.draw` decides for every sample of a global batch; no signal is read yet."""

    which: np.ndarray  # (B,) dump index
    rows: np.ndarray  # (B,) row in that dump
    starts: np.ndarray  # (B,) crop start sample
    ctx_idx: torch.Tensor  # (B·M, K_ctx): M masks per record
    tgt_idx: torch.Tensor  # (B·M, K_tgt)
    augment: Draws | None


def empty_shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor, in shared memory inside a DataLoader worker: it then crosses to the main
    process without the copy that sharing an ordinary tensor costs."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = math.prod(shape)
    storage = torch.UntypedStorage._new_shared(numel * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)
