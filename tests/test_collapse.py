"""Collapse alarms: the statistics, the rule, and a real run that collapses without SIGReg."""

import numpy as np
import pytest
import torch
from test_pretrain import metrics, run

from myjepa.pretrain import checkpoints
from myjepa.pretrain.collapse import (
    FLAT_LOGS,
    STD_FLOOR,
    CollapseMonitor,
    effective_rank,
    embedding_stats,
    token_stats,
)
from myjepa.pretrain.train import EXIT_COLLAPSE

pytestmark = pytest.mark.usefixtures("single_thread")


def test_embedding_std_and_rankme_match_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 16)) * np.linspace(0.1, 2.0, 16) + rng.normal(size=16)
    std, rankme = embedding_stats(torch.from_numpy(z).float()).tolist()
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert std == pytest.approx(z.std(axis=0, ddof=1).mean(), rel=1e-5)
    assert rankme == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-4)
    point, line = np.ones((64, 16)), rng.normal(size=(64, 1)) * rng.normal(size=(1, 16))
    assert embedding_stats(torch.from_numpy(point).float())[1] == pytest.approx(1.0, abs=1e-3)
    assert embedding_stats(torch.from_numpy(line).float())[1] == pytest.approx(1.0, abs=1e-3)
    assert embedding_stats(torch.randn(512, 16))[1] > 14  # an isotropic Gaussian uses every dimension
    assert embedding_stats(torch.full((8, 4), float("inf"))).isnan().all()  # no SVD error: the loss check stops


def test_token_stats_see_a_token_collapse_that_record_means_hide():
    """Tokens that are a shared pattern over positions in 2 directions plus a small record term: their record means
    spread over all 16 directions (the position pattern averages out), the tokens themselves over about 4."""
    gen = torch.Generator().manual_seed(0)
    pattern = torch.randn(1, 50, 2, generator=gen) @ torch.randn(2, 16, generator=gen) * 3
    tokens = pattern - pattern.mean(1, keepdim=True) + 0.3 * torch.randn(32, 1, 16, generator=gen)
    assert embedding_stats(tokens.mean(1))[1] > 14 and token_stats(tokens)[1] < 5
    varied = torch.randn(32, 50, 16, generator=gen)
    assert torch.allclose(token_stats(varied), embedding_stats(varied.reshape(-1, 16))) and token_stats(varied)[1] > 14
    big = torch.randn(64, 200, 8, generator=gen)  # 12,800 tokens: an even stride of 4,096 (every third)
    assert torch.allclose(token_stats(big, max_tokens=4096), embedding_stats(big.reshape(-1, 8)[::3]))


def test_effective_rank_centred_ignores_a_shared_offset():
    z = torch.randn(256, 8, generator=torch.Generator().manual_seed(1)) + 100.0
    assert effective_rank(z) < 1.5 < 7 < effective_rank(z, center=True)


def feed(monitor, rows, start=10):
    """Feed (pred_loss, sigreg_loss, embed_std[, token_std]) rows at steps start, start + 10, ...; the alarms
    raised. token_std is 0.8, a healthy value, where a row leaves it out."""
    keys = ("pred_loss", "sigreg_loss", "embed_std", "token_std")
    return [monitor.check(start + 10 * i, dict(zip(keys, (*r, 0.8)[:4]))) for i, r in enumerate(rows)]


def test_monitor_flags_a_low_std_after_warmup_once():
    alarms = feed(CollapseMonitor(warmup_steps=15), [(0.4, 800, 0.005), (0.3, 700, 0.005), (0.3, 700, 0.004)])
    assert alarms[0] is None  # step 10 is in the warmup: a new projector starts small
    assert alarms[1] is not None and alarms[1].startswith(
        "myjepa: the embeddings collapsed by step 20 (embed_std 0.005 < 0.01)"
    )
    assert "raise sigreg_lambda" in alarms[1]
    assert alarms[2] is None  # said once


def test_monitor_flags_a_falling_prediction_loss_with_a_flat_sigreg():
    falling = [(0.4, 900, 0.5)] + [(0.4 / 10 ** (i + 1), 1000 + i, 0.5) for i in range(FLAT_LOGS)]
    alarms = feed(CollapseMonitor(warmup_steps=0), falling)
    assert alarms[: FLAT_LOGS - 1] == [None] * (FLAT_LOGS - 1)
    assert (
        alarms[FLAT_LOGS] is not None
        and "pred_loss fell from 0.4 to 4e-06 while sigreg_loss stayed" in alarms[FLAT_LOGS]
    )
    healthy = [(0.4, 900, 0.9)] + [(0.4 / 10 ** (i + 1), 100 * (-1) ** i, 0.9) for i in range(FLAT_LOGS)]
    assert feed(CollapseMonitor(warmup_steps=0), healthy) == [None] * (FLAT_LOGS + 1)  # SIGReg still at work
    learning = [(0.4 * 0.9**i, 1000, 0.9) for i in range(20)]
    assert feed(CollapseMonitor(warmup_steps=0), learning) == [None] * 20  # a loss that falls slowly is learning
    assert STD_FLOOR < 0.9


def test_monitor_flags_tokens_that_shrink_tenfold_below_their_peak():
    # the measured shapes (BENCHMARKS.md): healthy runs rise from 0.75 to 0.95 and end within 1.2 of it; the
    # tokens of a run whose prediction loss outweighed SIGReg fell 30-fold
    healthy = [(0.4, 10, 0.9, s) for s in (0.75, 0.95, 0.9, 0.8, 0.78)]
    assert feed(CollapseMonitor(warmup_steps=0), healthy) == [None] * 5
    shrinking = [(0.4, 10, 0.9, s) for s in (0.75, 0.5, 0.2, 0.076, 0.07, 0.024)]
    alarms = feed(CollapseMonitor(warmup_steps=0), shrinking)
    assert alarms[:4] == [None] * 4  # 9.9-fold is not yet 10-fold
    assert alarms[4].startswith("myjepa: the embeddings collapsed by step 50 (token_std fell from 0.75 to 0.07)")
    assert alarms[5] is None  # said once


def test_a_run_without_sigreg_collapses_and_stops_keeping_the_last_good_checkpoint(small_dump, tmp_path, capfd):
    out = tmp_path / "run"
    code = run(small_dump, out, "sigreg_lambda=0", "collapse=stop", "checkpoint_interval=2", steps=80)
    err = capfd.readouterr().err
    assert code == EXIT_COLLAPSE
    alarm = [line for line in err.splitlines() if "collapsed" in line]
    assert len(alarm) == 1 and alarm[0].startswith("myjepa: the embeddings collapsed by step ")
    step = int(alarm[0].split("by step ")[1].split()[0])
    assert step < 80 and metrics(out)[-1]["step"] == step  # the alarm's step is logged, then the run stops
    assert metrics(out)[-1]["train/embed_std"] < STD_FLOOR or "pred_loss fell" in alarm[0]
    assert checkpoints.read(out / "last_ckpt.pt").step < step  # the checkpoint at the alarm's step was not written


def test_the_default_tiny_run_is_not_flagged(small_dump, tmp_path, capfd):
    out = tmp_path / "run"
    assert run(small_dump, out, "collapse=stop", steps=80) == 0
    assert "collapsed" not in capfd.readouterr().err
    lines = metrics(out)
    assert all(l["train/embed_std"] > STD_FLOOR and l["train/rankme"] > 1.5 for l in lines[10:])
    # the tokens' spread is logged beside: a tiny encoder's 64 dimensions, far from a collapse to one
    assert all(0.1 < l["train/token_std"] < 10 and 2 < l["train/token_rankme"] <= 64 for l in lines)
