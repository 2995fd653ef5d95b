"""How noisy is one step's SIGReg gradient at a given batch? Its mean is batch-invariant; its spread is not.

    python benchmarks/sigreg_noise.py

Embeddings W x with W = I (8 dims) and x drawn from a distribution near the N(0, I) that SIGReg pulls
towards (Gaussian, per-dimension std 0.8 to 1.2) or far from it (exponential, scales 0.5 to 2). For
each batch it prints the norm of the mean gradient on W over many draws (the pull, the same at every
batch by construction) and the mean distance of one draw's gradient from that mean, relative to it.
"""

from __future__ import annotations

import torch

from myjepa.models.sigreg import SIGReg

DIM = 8
BATCHES = ((32, 400), (256, 100), (2048, 25))  # (batch, draws)


def gradients(sample, batch: int, draws: int) -> torch.Tensor:
    """(draws, DIM * DIM) SIGReg gradients on W, one per independent batch."""
    gen = torch.Generator().manual_seed(batch)
    sig = SIGReg(num_slices=512, seed=0)
    out = []
    for _ in range(draws):
        w = torch.eye(DIM, requires_grad=True)
        sig(sample(batch, gen) @ w).backward()
        out.append(w.grad.flatten())
    return torch.stack(out)


def main() -> None:
    torch.set_num_threads(1)
    near = torch.linspace(0.8, 1.2, DIM)
    far = torch.linspace(0.5, 2.0, DIM)
    samples = {
        "near N(0, I)": lambda n, g: torch.randn(n, DIM, generator=g) * near,
        "far (exponential)": lambda n, g: torch.empty(n, DIM).exponential_(generator=g) * far,
    }
    print("distribution        batch  pull (mean gradient norm)  one step's noise / pull")
    for name, sample in samples.items():
        for batch, draws in BATCHES:
            g = gradients(sample, batch, draws)
            mean = g.mean(0)
            noise = float((g - mean).norm(dim=1).mean() / mean.norm())
            print(f"{name:18s}  {batch:5d}  {float(mean.norm()):25.1f}  {noise:23.2f}")


if __name__ == "__main__":
    main()
