"""MyJEPA: one encoder predicts its own embeddings of masked ECG blocks; SIGReg keeps them Gaussian.

No EMA teacher and no stop-gradient: the target embeddings come from the same encoder pass over the
full record, and SIGReg on the projected record embedding is what prevents collapse.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from myjepa.models.predictor import Predictor
from myjepa.models.sigreg import SIGReg
from myjepa.models.vit import VisionTransformer, gather_tokens


class Losses(NamedTuple):
    """The three losses and the projected record embeddings SIGReg saw (detached, for the collapse alarms):
    unpack them (`loss, pred, sig, z = model(...)`) or index by name (`out["loss"]`)."""

    loss: torch.Tensor
    pred_loss: torch.Tensor
    sigreg_loss: torch.Tensor
    embeddings: torch.Tensor

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


class Projector(nn.Module):
    """MLP dim -> hidden -> out. LayerNorm, not BatchNorm: per-sample, so identical under any DDP split."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MyJEPA(nn.Module):
    def __init__(self, cfg: Any, seed: int = 0) -> None:
        super().__init__()
        self.sigreg_lambda = cfg.sigreg_lambda
        self.encoder = VisionTransformer.from_config(cfg)
        self.encoder.activation_checkpointing = cfg.activation_checkpointing
        self.predictor = Predictor(
            cfg.num_patches, cfg.dim, cfg.pred_dim, cfg.pred_depth, cfg.pred_num_heads, cfg.mlp_ratio
        )
        self.projector = Projector(cfg.dim, cfg.proj_hidden, cfg.proj_dim)
        self.sigreg = SIGReg(cfg.sigreg_slices, cfg.sigreg_points, cfg.sigreg_t_max, seed=seed)

    def forward(self, x: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> Losses:
        """x (B, 12, T), ctx_idx (B, K_ctx), tgt_idx (B, K_tgt) -> Losses(loss, pred_loss, sigreg_loss, embeddings)."""
        tokens = self.encoder.embed(x)  # the patch embedding is shared by both passes
        z_ctx = self.encoder.encode(tokens, keep=ctx_idx)
        z_full = self.encoder.encode(tokens)
        z_tgt = gather_tokens(z_full, tgt_idx)  # no stop-gradient: SIGReg prevents collapse
        z_pred = self.predictor(z_ctx, ctx_idx, tgt_idx)
        pred_loss = F.smooth_l1_loss(z_pred.float(), z_tgt.float())
        embeddings = self.projector(z_full.mean(dim=1))
        sigreg_loss = self.sigreg(embeddings)
        loss = pred_loss + self.sigreg_lambda * sigreg_loss
        return Losses(loss, pred_loss, sigreg_loss, embeddings.detach())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Projected record embeddings (B, proj_dim): what SIGReg sees; used to check for collapse."""
        return self.projector(self.encoder(x).mean(dim=1))
