"""The JEPA predictor: from context tokens and target positions to predicted target embeddings."""

from __future__ import annotations

import torch
from torch import nn

from myjepa.models.vit import Block, gather_tokens, init_weights, sincos_pos_embed


class Predictor(nn.Module):
    """Narrow transformer over [context tokens, one mask token per target]; returns (B, K_tgt, dim)."""

    def __init__(
        self, num_patches: int, dim: int, pred_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        self.register_buffer("pos_embed", sincos_pos_embed(num_patches, pred_dim)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(pred_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(pred_dim)
        self.proj = nn.Linear(pred_dim, dim)
        init_weights(self, depth)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, z_ctx: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> torch.Tensor:
        B, K_ctx, _ = z_ctx.shape
        pos = self.pos_embed.expand(B, -1, -1)
        ctx = self.embed(z_ctx) + gather_tokens(pos, ctx_idx)
        tgt = self.mask_token + gather_tokens(pos, tgt_idx)
        x = torch.cat([ctx, tgt], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.proj(self.norm(x[:, K_ctx:]))
