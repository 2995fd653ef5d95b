"""SIGReg (LeJEPA): push embeddings towards an isotropic Gaussian with random 1-D Epps–Pulley tests.

Two things beyond the published snippet: the empirical characteristic function is summed over all
DDP ranks (so N is the global batch and the value equals a single-process run), and the slice
directions are drawn from (seed, step) so every rank, and a resumed run, uses the same ones.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


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


def random_directions(dim: int, num_slices: int, seed: int, step: int) -> torch.Tensor:
    """(dim, num_slices) unit columns from a CPU generator seeded by (seed, step): identical everywhere."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    a = torch.randn(dim, num_slices, generator=gen)
    return a / a.norm(dim=0, keepdim=True)


class SIGReg(nn.Module):
    """Mean over random slices of N·∫|φ̂(t) − e^(−t²/2)|² e^(−t²/2) dt for z of shape (N, D)."""

    def __init__(self, num_slices: int = 1024, num_points: int = 17, t_max: float = 3.0, seed: int = 0) -> None:
        super().__init__()
        self.num_slices = num_slices
        self.seed = seed
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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        step = int(self.step)
        if self.training:
            self.step += 1
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            a = random_directions(z.size(1), self.num_slices, self.seed, step).to(z.device)
            x_t = (z @ a).unsqueeze(-1) * self.t  # (N, S, P)
            n = torch.tensor([float(z.size(0))], device=z.device)
            sums = torch.stack([x_t.cos().sum(0), x_t.sin().sum(0)])  # (2, S, P)
            sums, n = all_reduce_sum(sums), all_reduce_sum(n)
            ecf = sums / n
            err = (ecf[0] - self.phi).square() + ecf[1].square()
            return (err @ self.weights).mean() * n[0]
