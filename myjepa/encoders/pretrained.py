"""A loaded encoder with its input contract: a `torch.nn.Module` whose `embed(x, fs)` turns records into vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from myjepa.encoders.contract import InputContract
from myjepa.encoders.crops import StridedCrops, crop_starts
from myjepa.errors import UserError
from myjepa.ingest.resample import resample
from myjepa.models.vit import VisionTransformer


class PretrainedEncoder(nn.Module):
    """A MyJEPA encoder and the input it expects (`contract`); `config` is the release's config.json (for a
    checkpoint: its `encoder` and `input` sections)."""

    def __init__(self, encoder: VisionTransformer, contract: InputContract, config: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        self.contract = contract
        self.config = config
        self.eval()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, crop / patch_size, dim) of already normalised crops (B, 12, crop)."""
        return self.encoder(crops)

    @torch.no_grad()
    def embed(self, x: np.ndarray | torch.Tensor, fs: float, batch_crops: int = 256) -> torch.Tensor:
        """Record embeddings (B, dim), float32 on the CPU, of x (B, 12, T) in mV sampled at `fs` Hz.

        The leads must be in `self.contract.leads` order (I, II, III, aVR, aVL, aVF, V1-V6). Each record
        is resampled to the encoder's rate when `fs` differs, z-scored per lead with the pretraining
        statistics, cut into strided crops (2.5 s every 1.25 s, as the evaluation does); the encoder's
        patch tokens are averaged over each crop, then over the crops. A record shorter than one crop
        is an error. Runs on the device the module is on (`model.to("cuda")`).

        Example::

            import numpy as np
            import myjepa

            model = myjepa.load_encoder("results/release/tiny-s0")  # or runs/x/encoder.pt
            x = 0.1 * np.random.randn(4, 12, 1000).astype(np.float32)  # 4 records, 10 s at 100 Hz, mV
            z = model.embed(x, fs=100)  # resampled to model.contract.fs; z.shape == (4, model.dim)
        """
        crops = self.strided_crops(x, fs, "embed")
        device = next(self.parameters()).device
        self.eval()
        out = []
        for _, chunk, batch in crops.batches(np.arange(len(crops.signals)), batch_crops, device):
            per_crop = self.encoder(batch).float().mean(dim=1)  # (records * crops, dim)
            out.append(per_crop.view(len(chunk), len(crops.starts), -1).mean(dim=1).cpu())
        return torch.cat(out)

    def strided_crops(
        self, x: np.ndarray | torch.Tensor, fs: float, caller: str, float16: bool = False
    ) -> StridedCrops:
        """Records x (B, 12, T) in mV at `fs` Hz as the encoder's input: checked, resampled to the contract's rate,
        (with `float16`, rounded to float16 as dumps store them), then z-scored and cut into strided crops as
        their batches are drawn. A record shorter than one crop is an error."""
        c = self.contract
        signals = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        if signals.ndim != 3 or signals.shape[1] != len(c.leads):
            raise UserError(
                f"{caller}: x must have shape (records, {len(c.leads)} leads, samples), got {signals.shape}"
            )
        if fs != c.fs:
            signals = resample(signals, fs, c.fs).astype(np.float32)
        if float16:
            signals = signals.astype(np.float16)
        length = signals.shape[2]
        if length < c.crop:
            raise UserError(
                f"{caller}: records of {length} samples at {c.fs} Hz are shorter than one crop ({c.crop} samples)"
            )
        mean, std = np.asarray(c.mean, dtype=np.float32), np.asarray(c.std, dtype=np.float32)
        return StridedCrops(signals, crop_starts(length, c.crop, c.stride), c.crop, mean, std)
