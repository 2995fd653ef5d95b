"""ECG-JEPA block masking as a collator: (x, ctx_idx, tgt_idx), vectorised over the batch.

A batch shares one context size K_ctx = ceil(keep_ratio * N), keep_ratio ~ U(min, max). Per sample,
the N - K_ctx target patches form r contiguous blocks, each at least min_block_size long, separated
by context patches. r is uniform over the feasible range and, given r, block lengths and gaps are
random compositions, so each mask is one draw: no rejection loop, no sort, no loop over patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def random_compositions(
    total: torch.Tensor, parts: torch.Tensor, max_parts: int, gen: torch.Generator | None
) -> torch.Tensor:
    """Per row, `total` split into `parts` non-negative integers that sum to it exactly.

    Proportions are Dirichlet(1, ..., 1) (uniform on the simplex), rounded cumulatively, which is
    close to uniform over compositions and needs no sort. total, parts: (B,) long, parts >= 1.
    Returns (B, max_parts) long; columns >= parts are 0.
    """
    B = total.size(0)
    # Exp(1) weights. rand returns exactly 0 once in 2**24 draws (about 18 draws a record are used: a 1,200-step
    # run at batch 32 meets one with chance ~4 %, a 100,000-step run at batch 2048 hundreds of times); its log,
    # -inf, made the proportions NaN and the mask indices garbage. 2**-24 is rand's smallest positive value,
    # so every other draw, and so every earlier mask, stays what it was.
    w = -torch.rand(B, max_parts, generator=gen).clamp_min_(2.0**-24).log_()
    w[torch.arange(max_parts) >= parts[:, None]] = 0.0
    frac = w.cumsum(dim=1)
    frac = frac / frac[:, -1:]
    bounds = torch.round(frac * total[:, None]).long()
    bounds[:, -1] = total  # guard against float rounding at the end
    return bounds.diff(dim=1, prepend=torch.zeros(B, 1, dtype=torch.long))


def select(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted column indices of the True entries of mask (B, N), which has `count` per row (no sort)."""
    B, N = mask.shape
    slot = torch.where(mask, mask.cumsum(dim=1, dtype=torch.int32) - 1, count).long()  # False -> spare column
    out = torch.empty(B, count + 1, dtype=torch.long)
    out.scatter_(1, slot, torch.arange(N).expand(B, -1))
    return out[:, :count]


class MaskCollator:
    """Collate (12, T) tensors into (x (B, 12, T), ctx_idx (B·M, K_ctx), tgt_idx (B·M, N - K_ctx)), sorted:
    `num_masks` M independent masks per record, record b's in rows b·M to b·M + M - 1."""

    def __init__(
        self,
        patch_size: int = 25,
        min_block_size: int = 10,
        min_keep_ratio: float = 0.15,
        max_keep_ratio: float = 0.25,
        num_patches: int | None = None,
        num_masks: int = 1,
    ) -> None:
        if not 0 < min_keep_ratio <= max_keep_ratio < 1:
            raise ValueError("need 0 < min_keep_ratio <= max_keep_ratio < 1")
        self.patch_size = patch_size
        self.min_block_size = min_block_size
        self.min_keep_ratio = min_keep_ratio
        self.max_keep_ratio = max_keep_ratio
        self.num_patches = num_patches
        self.num_masks = num_masks

    def patches(self, length: int) -> int:
        """Patches of a record of `length` samples: `num_patches` when set, else length // patch_size."""
        return self.num_patches or length // self.patch_size

    def masks(
        self, batch_size: int, num_patches: int, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ctx_idx, tgt_idx) for a batch of batch_size records of num_patches patches."""
        B, N, L = batch_size, num_patches, self.min_block_size
        u = torch.rand((), generator=gen).item()
        keep_ratio = self.min_keep_ratio + (self.max_keep_ratio - self.min_keep_ratio) * u
        K = min(math.ceil(keep_ratio * N), N - L)  # at least one full target block
        M = N - K
        if K < 1 or M < L:
            raise ValueError(f"{N} patches cannot hold a context and a target block of {L}")
        # r blocks need r*L target patches and r-1 separating context patches
        r_max = min(M // L, K + 1)
        r = torch.randint(1, r_max + 1, (B,), generator=gen)
        extra = random_compositions(M - r * L, r, r_max, gen)  # (B, r_max) lengths beyond L
        lengths = torch.where(torch.arange(r_max) < r[:, None], extra + L, 0)
        gaps = random_compositions(K - (r - 1), r + 1, r_max + 1, gen)  # context runs, interior ones +1
        interior = (torch.arange(r_max + 1) >= 1) & (torch.arange(r_max + 1) < r[:, None])
        gaps = gaps + interior.long()
        # run lengths interleaved: gap0, block1, gap1, block2, ... ; unused blocks have length 0
        runs = torch.stack([gaps[:, :-1], lengths], dim=2).reshape(B, 2 * r_max)
        starts = runs.cumsum(dim=1)[:, 0::2]  # end of gap j = start of block j
        delta = torch.zeros(B, N + 1, dtype=torch.int32)
        ones = torch.ones(starts.shape, dtype=torch.int32)
        delta.scatter_add_(1, starts, ones)
        delta.scatter_add_(1, starts + lengths, -ones)
        is_tgt = delta.cumsum(dim=1, dtype=torch.int32)[:, :N] > 0
        return select(~is_tgt, K), select(is_tgt, M)

    def __call__(
        self, batch: Sequence[torch.Tensor] | torch.Tensor, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = batch if isinstance(batch, torch.Tensor) else torch.stack(list(batch))
        ctx_idx, tgt_idx = self.masks(x.size(0) * self.num_masks, self.patches(x.size(-1)), gen)
        return x, ctx_idx, tgt_idx
