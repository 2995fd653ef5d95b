import math

import numpy as np
import pytest
import torch

from myjepa.models import sigreg
from myjepa.models.sigreg import REFERENCE_BATCH, SIGReg, random_directions

pytestmark = pytest.mark.usefixtures("single_thread")


def test_small_for_gaussian_large_for_collapsed_or_shrunk():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(512, 64, generator=gen)
    gaussian = SIGReg(num_slices=256, seed=1)(z).item()
    collapsed = SIGReg(num_slices=256, seed=1)(torch.zeros(512, 64) + torch.randn(1, 64, generator=gen)).item()
    shrunk = SIGReg(num_slices=256, seed=1)(0.1 * z).item()
    rank_one = SIGReg(num_slices=256, seed=1)(torch.randn(512, 1, generator=gen) * torch.ones(1, 64)).item()
    assert abs(gaussian) < 2.0
    assert min(collapsed, shrunk) > 50 * abs(gaussian) and rank_one > 10 * abs(gaussian)


def test_one_dimension_matches_direct_epps_pulley_integral():
    z = torch.randn(300, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float32) * 1.3 + 0.2
    sig = SIGReg(num_slices=4, num_points=2001, t_max=3.0)
    value = sig(z).item()
    # 2048 x integral over [-3, 3] of |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt, by a fine Riemann sum,
    # with |ecf|^2 over distinct pairs of samples (i != j) only
    t = np.linspace(-3.0, 3.0, 20001)
    x = z.double().numpy()[:, 0]
    n = len(x)
    e = np.exp(1j * np.outer(t, x))
    pairs = (np.abs(e.sum(axis=1)) ** 2 - n) / (n * (n - 1))
    phi = np.exp(-(t**2) / 2)
    integrand = (pairs - 2 * phi * e.mean(axis=1).real + phi**2) * phi
    direct = REFERENCE_BATCH * float(np.sum(integrand[:-1] + integrand[1:]) / 2 * (t[1] - t[0]))
    assert math.isclose(value, direct, rel_tol=1e-4)


def test_published_17_point_rule_is_close_to_the_integral():
    z = torch.randn(400, 1, generator=torch.Generator().manual_seed(5)) * 0.7
    coarse, fine = SIGReg(num_slices=2, num_points=17)(z).item(), SIGReg(num_slices=2, num_points=2001)(z).item()
    assert math.isclose(coarse, fine, rel_tol=0.02)


def test_float32_under_bfloat16_autocast():
    sig = SIGReg(num_slices=64)
    lin = torch.nn.Linear(16, 16)
    x = torch.randn(64, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = lin(x)
        assert z.dtype == torch.bfloat16
        out = sig(z)
    assert out.dtype == torch.float32
    ref = SIGReg(num_slices=64)(z.float())
    assert torch.allclose(out, ref)


def test_directions_follow_seed_and_forward_count():
    z = torch.randn(128, 8)
    a, b = SIGReg(num_slices=32, seed=7), SIGReg(num_slices=32, seed=7)
    first = a(z)
    assert torch.equal(first, b(z))  # same seed, same step: same slices
    assert int(a.step) == 1
    second = a(z)
    assert not torch.equal(first, second)  # a new step draws new slices
    at_one = SIGReg(num_slices=32, seed=7)
    at_one.step.fill_(1)
    assert torch.equal(second, at_one(z))  # the value depends on (seed, step) only
    other_seed = SIGReg(num_slices=32, seed=8)
    assert not torch.equal(first, other_seed(z))
    evaluated = SIGReg(num_slices=32, seed=7).eval()
    evaluated(z)
    assert int(evaluated.step) == 0  # eval calls do not advance the step
    assert int(a.state_dict()["step"]) == 2  # the step is checkpointed with the model
    d = random_directions(8, 32, 7, 3)
    assert torch.allclose(d.norm(dim=0), torch.ones(32))


def test_gradient_flows_to_inputs():
    z = torch.randn(64, 8, requires_grad=True)
    (SIGReg(num_slices=16)(0.2 * z)).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_chunked_sums_give_the_same_value_and_gradient(monkeypatch):
    """Above CHUNK_ELEMENTS the sums go chunk by chunk (recomputed in the backward): the same loss and gradient."""
    z = torch.randn(300, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.5, 2.0, 8)
    results = {}
    calls = []
    whole_sums = sigreg.ecf_sums

    def counted(x, t):
        calls.append(len(x))
        return whole_sums(x, t)

    monkeypatch.setattr(sigreg, "ecf_sums", counted)
    for limit in (sigreg.CHUNK_ELEMENTS, 64 * 16 * 17):  # the second: 64 samples a chunk
        monkeypatch.setattr(sigreg, "CHUNK_ELEMENTS", limit)
        calls.clear()
        x = z.clone().requires_grad_()
        loss = SIGReg(num_slices=16)(x)
        loss.backward()
        results[limit] = (loss.detach(), x.grad, list(calls))
    (whole, whole_grad, whole_calls), (chunked, chunked_grad, chunked_calls) = results.values()
    assert whole_calls == [300]
    assert chunked_calls[:5] == [64, 64, 64, 64, 44]  # the forward's chunks; the backward recomputes them
    assert sorted(chunked_calls) == sorted([64, 64, 64, 64, 44] * 2)
    assert torch.allclose(chunked, whole, rtol=1e-5) and torch.allclose(chunked_grad, whole_grad, rtol=1e-4, atol=1e-7)


def regulariser_pull(batch: int, accum_steps: int, draws: int) -> torch.Tensor:
    """The SIGReg gradient on a shared linear map W (what the optimiser sees) for a global batch split into
    `accum_steps` micro-batches as the training loop splits it, averaged over `draws` independent batches.

    The embeddings are W x with x from one fixed non-Gaussian distribution (exponential, skewed, with unequal
    scales), so the regulariser has a real pull to exert."""
    gen = torch.Generator().manual_seed(batch * 100 + accum_steps)
    dim = 8
    scales = torch.linspace(0.5, 2.0, dim)
    w = torch.eye(dim, requires_grad=True)
    sig = SIGReg(num_slices=512, seed=0)
    for _ in range(draws):
        x = torch.empty(batch, dim).exponential_(generator=gen) * scales
        for micro in x.chunk(accum_steps):
            (sig(micro @ w) / accum_steps).backward()
    return w.grad / draws


def test_regulariser_pull_is_the_same_at_any_batch_and_accumulation():
    """λ must mean the same at any batch: the expected gradient may not depend on how many samples SIGReg sees."""
    reference = regulariser_pull(2048, 1, draws=16)
    for batch, accum_steps, draws in ((32, 1, 1024), (256, 1, 128), (2048, 8, 16)):
        pull = regulariser_pull(batch, accum_steps, draws)
        relative = float((pull - reference).norm() / reference.norm())
        assert relative < 0.2, (batch, accum_steps, relative)
