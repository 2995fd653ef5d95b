"""SIGReg (LeJEPA): push embeddings towards an isotropic Gaussian with random 1-D Epps–Pulley tests.

Why the value is REFERENCE_BATCH x an unbiased distance, not N x the distance. The published
statistic is N·∫|φ̂ − φ|²w: a test statistic, whose expected gradient grows with the N samples it
sees, while the prediction loss is a mean over samples. So one λ meant a 64 times weaker regulariser
at batch 32 than at 2048, and `accum_steps` (N = the micro-batch) weakened it too: real ECGs at batch
32 collapsed with the published λ. Here the distance D = ∫|φ̂ − φ|²w is estimated without bias
(|φ̂|² over distinct pairs of samples, whose expectation is |φ|² of the true distribution at any N),
so its expected gradient is the same at any batch, any DDP split and any accumulation, and it is
scaled by the published batch of 2048: λ means what it meant at batch 2048 (up to the O(1/2048) bias
the old statistic had there), at every batch. Near a Gaussian the value is about 0 and can be
slightly negative.

`scaling="noise"` instead scales D by sqrt(REFERENCE_BATCH · N): at N = 2048 the same, at smaller N the
pull shrinks with the estimate's noise (whose std goes as 1/sqrt(N)), so λ·noise, not λ·pull, is what
stays fixed: at batch 32, 1/8 of the pull.

Three more things beyond the published snippet: the empirical characteristic function is summed over
all DDP ranks (so N is the global batch and the value equals a single-process run); the slice
directions are drawn from (seed, step) so every rank, and a resumed run, uses the same ones; and when
cos/sin of every sample, slice and point would exceed CHUNK_ELEMENTS (SIGReg on all tokens at a large
batch: 2048 records x 200 tokens x 1024 slices x 17 points is 7.1e9 floats, three tensors of 28 GB),
the sums are taken over chunks of samples that are recomputed in the backward instead of stored.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

from myjepa.models.config import SIGREG_SCALINGS

REFERENCE_BATCH = 2048  # the global batch at which the published λ = 0.02 was set
CHUNK_ELEMENTS = 2**28  # samples x slices x points above which the sums go chunk by chunk (1 GiB a tensor)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks in forward; backward sums the gradients too, because every rank's loss depends on
    every rank's samples. After DDP averages parameter gradients this gives the single-process gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Autograd-aware sum over DDP ranks; the identity without an initialised process group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _AllReduceSum.apply(x)
    return x


def call_seed(seed: int, step: int) -> int:
    """The generator seed of SIGReg's `step`-th training call: the same on every rank and after a resume."""
    return seed * 1_000_003 + step


def ecf_sums(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(2, S, P): the sums over samples of cos(t·x) and sin(t·x), x (n, S) projected samples, t (P,) points."""
    x_t = x.unsqueeze(-1) * t  # (n, S, P)
    return torch.stack([x_t.cos().sum(0), x_t.sin().sum(0)])


def chunked_ecf_sums(x: torch.Tensor, t: torch.Tensor, max_elements: int) -> torch.Tensor:
    """ecf_sums in one go when n·S·P <= max_elements; otherwise over chunks of samples, each recomputed in the
    backward, so memory holds x and one chunk's (rows, S, P) instead of three (n, S, P) tensors."""
    rows = max(1, max_elements // (x.size(1) * t.numel()))
    if x.size(0) <= rows:
        return ecf_sums(x, t)
    return sum(checkpoint(ecf_sums, chunk, t, use_reentrant=False) for chunk in x.split(rows))


def random_directions(dim: int, num_slices: int, seed: int, step: int) -> torch.Tensor:
    """(dim, num_slices) unit columns from a CPU generator seeded by (seed, step): identical everywhere."""
    gen = torch.Generator().manual_seed(call_seed(seed, step))
    a = torch.randn(dim, num_slices, generator=gen)
    return a / a.norm(dim=0, keepdim=True)


class SIGReg(nn.Module):
    """REFERENCE_BATCH x the mean over random slices of an unbiased estimate of ∫|φ(t) − e^(−t²/2)|² e^(−t²/2) dt,
    φ the characteristic function of the projected z (N, D), N ≥ 2 over all ranks."""

    def __init__(
        self, num_slices: int = 1024, num_points: int = 17, t_max: float = 3.0, seed: int = 0, scaling: str = "pull"
    ) -> None:
        super().__init__()
        if scaling not in SIGREG_SCALINGS:
            raise ValueError(f"scaling must be one of {SIGREG_SCALINGS}, not {scaling!r}")
        self.num_slices = num_slices
        self.seed = seed
        self.scaling = scaling
        t = torch.linspace(0, t_max, num_points, dtype=torch.float32)
        dt = t_max / (num_points - 1)
        # trapezoid on [0, t_max], doubled for the symmetric half-line [-t_max, 0]
        weights = torch.full((num_points,), 2 * dt)
        weights[[0, -1]] = dt
        window = torch.exp(-t.square() / 2)
        self.register_buffer("t", t, persistent=False)
        self.register_buffer("phi", window, persistent=False)  # characteristic function of N(0, 1)
        self.register_buffer("weights", weights * window, persistent=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # forward calls: picks the directions

    def call_seed(self) -> int:
        """The seed of the next training call's directions, for other draws that must be as reproducible."""
        return call_seed(self.seed, int(self.step))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """float32 whatever the autocast: cos/sin of t·x and the squared ECF differences need the precision."""
        step = int(self.step)
        if self.training:
            self.step += 1
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            a = random_directions(z.size(1), self.num_slices, self.seed, step).to(z.device)
            n = torch.tensor([float(z.size(0))], device=z.device)
            sums = chunked_ecf_sums(z @ a, self.t, CHUNK_ELEMENTS)  # (2, S, P)
            sums, n = all_reduce_sum(sums), all_reduce_sum(n)
            ecf = sums / n
            # |φ̂|² = (1/N²)Σ_ij cos(t(x_i − x_j)) holds N diagonal ones; over pairs i ≠ j it is unbiased
            ecf_sq = (n * ecf.square().sum(0) - 1) / (n - 1)
            err = ecf_sq - 2 * self.phi * ecf[0] + self.phi.square()
            scale = REFERENCE_BATCH if self.scaling == "pull" else (REFERENCE_BATCH * n).sqrt().squeeze()
            return (err @ self.weights).mean() * scale
