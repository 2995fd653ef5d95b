"""A loaded encoder with its input contract: a `torch.nn.Module` whose `embed(x, fs)` turns records into vectors."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from myjepa.encoders.contract import InputContract
from myjepa.encoders.crops import StridedCrops, crop_starts
from myjepa.errors import UserError
from myjepa.ingest.resample import resample
from myjepa.models.vit import VisionTransformer
from myjepa.utils.checks import check_rate, implausible_mv, nonfinite_problem


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
        patch tokens are averaged over each crop, then over the crops. Runs on the device the module is on
        (`model.to("cuda")`). Refused, with the reason: a record shorter than one crop, NaN or infinite
        values, integers (ADC counts are not mV), a rate that is not one; values too large for mV warn.

        Example::

            import numpy as np
            import myjepa

            model = myjepa.load_encoder("results/release/tiny-s0")  # or runs/x/encoder.pt
            x = 0.1 * np.random.randn(4, 12, 1000).astype(np.float32)  # 4 records, 10 s at 100 Hz, mV
            z = model.embed(x, fs=100)  # resampled to model.contract.fs; z.shape == (4, model.dim)
        """
        crops = self.strided_crops(x, fs, "embed")
        if len(crops.signals) == 0:
            return torch.empty(0, self.dim)
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
        """Records x (B, 12, T) in mV at `fs` Hz as the encoder's input: checked (`check_input`), resampled to the
        contract's rate, (with `float16`, rounded to float16 as dumps store them), then z-scored and cut into
        strided crops as their batches are drawn. A record shorter than one crop is an error."""
        c = self.contract
        signals, fs = self.check_input(x, fs, caller)
        if fs != c.fs and len(signals):
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

    def check_input(self, x: np.ndarray | torch.Tensor, fs: float, caller: str) -> tuple[np.ndarray, float]:
        """x as float32 (records, leads, samples) and fs as a float, when x is finite millivolts at the sampling
        rate `fs`; otherwise a UserError that says what is wrong (a warning when the values look too large for
        millivolts)."""
        c = self.contract
        fs = check_rate(fs, f"{caller}: fs")
        array = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
        if array.dtype.kind != "f":
            raise UserError(
                f"{caller}: x holds {array.dtype} values; {caller} takes millivolts as floating-point numbers "
                "(integer ADC counts: subtract the baseline and divide by the gain first)"
            )
        if array.ndim != 3 or array.shape[1] != len(c.leads):
            raise UserError(f"{caller}: x must have shape (records, {len(c.leads)} leads, samples), got {array.shape}")
        signals = array.astype(np.float32, copy=False)
        problem = nonfinite_problem(signals, c.leads)
        if problem:
            raise UserError(
                f"{caller}: x holds {problem}; {caller} takes finite millivolts "
                "(fill gaps first, e.g. by linear interpolation as `myjepa convert` does)"
            )
        peak = implausible_mv(signals)
        if peak is not None:
            warnings.warn(
                f"{caller}: x peaks at {peak:.0f} mV (median over records and leads); {caller} takes millivolts: "
                "are these ADC counts or microvolts?",
                stacklevel=5,  # the caller of embed (check_input < strided_crops < embed < torch.no_grad)
            )
        return signals, fs
