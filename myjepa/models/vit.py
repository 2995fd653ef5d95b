"""The ECG Vision Transformer: Conv1d patches over all 12 leads, 1-D sin-cos positions, registers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from myjepa.models.config import ENCODER_KEYS, EncoderConfig


def sincos_pos_embed(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sine-cosine embeddings (num_positions, dim): sin in the first half, cos in the second."""
    assert dim % 2 == 0, "positional embedding dim must be even"
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx (B, K) of x (B, N, D) -> (B, K, D)."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module, depth: int) -> None:
    """Truncated-normal linears, unit LayerNorms, residual projections scaled down with depth."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for layer_id, blk in enumerate(b for b in module.modules() if isinstance(b, Block)):
        blk.attn.proj.weight.data.div_(math.sqrt(2.0 * (layer_id % depth + 1)))
        blk.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (layer_id % depth + 1)))


class VisionTransformer(nn.Module):
    """Encoder: (B, 12, T) ECG -> (B, N, dim) patch embeddings, or only the patches in `keep`."""

    def __init__(
        self,
        num_leads: int = 12,
        channel_size: int = 5000,
        patch_size: int = 25,
        dim: int = 384,
        depth: int = 8,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        num_registers: int = 1,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = channel_size // patch_size
        self.dim = dim
        self.num_registers = num_registers
        self.patch_embed = nn.Conv1d(num_leads, dim, kernel_size=patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_pos_embed(self.num_patches, dim)[None], persistent=False)
        self.registers = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers > 0 else None
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.activation_checkpointing = False  # a training option (PretrainConfig), not part of the encoder
        init_weights(self, depth)
        if self.registers is not None:
            nn.init.trunc_normal_(self.registers, std=0.02)

    @classmethod
    def from_config(cls, cfg: EncoderConfig | Mapping[str, Any]) -> VisionTransformer:
        """Build from an EncoderConfig (a PretrainConfig extends it) or the dict encoder.pt stores.

        The EncoderConfig checks the geometry (crop length a multiple of the patch size, ...).
        """
        if isinstance(cfg, Mapping):
            cfg = EncoderConfig(**{k: cfg[k] for k in ENCODER_KEYS})
        return cls(
            num_leads=len(cfg.leads),
            channel_size=cfg.channel_size,
            patch_size=cfg.patch_size,
            dim=cfg.dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            num_registers=cfg.num_registers,
        )

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, return_registers: bool = False
    ) -> torch.Tensor:
        """x (B, 12, T) with T any multiple of patch_size up to channel_size; keep (B, K) patch indices.

        Returns (B, K or N, dim), with the register tokens first when return_registers.
        """
        return self.encode(self.embed(x), keep, return_registers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions (B, N, dim): computed once when several views share a record."""
        tokens = self.patch_embed(x).transpose(1, 2)
        return tokens + self.pos_embed[:, : tokens.size(1)]

    def encode(
        self, tokens: torch.Tensor, keep: torch.Tensor | None = None, return_registers: bool = False
    ) -> torch.Tensor:
        """Run the transformer on embedded tokens (B, N, dim), or only on the patches in `keep`."""
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        if self.registers is not None:
            tokens = torch.cat([self.registers.expand(tokens.size(0), -1, -1), tokens], dim=1)
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for blk in self.blocks:
            # recompute: keep only each block's input for the backward, not its attention and MLP activations
            tokens = torch.utils.checkpoint.checkpoint(blk, tokens, use_reentrant=False) if recompute else blk(tokens)
        tokens = self.norm(tokens)
        return tokens if return_registers else tokens[:, self.num_registers :]
