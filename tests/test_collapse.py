"""Collapse alarms: the statistics, the rule, and a real run that collapses without SIGReg."""

import json

import numpy as np
import pytest
import torch
from conftest import load_benchmark
from test_pretrain import metrics, run

from myjepa.pretrain import checkpoints, collapse
from myjepa.pretrain.collapse import (
    FLAT_LOGS,
    STD_FLOOR,
    CollapseMonitor,
    NarrowingWatch,
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


def watch(lines):
    """Feed (step, {metric: value}) lines to a new NarrowingWatch; the warnings returned."""
    narrowing = NarrowingWatch()
    return [narrowing.check(step, metrics) for step, metrics in lines]


def test_narrowing_warns_once_when_the_token_rank_falls_fivefold_below_its_peak():
    # measured (BENCHMARKS.md, ViT-XS): the seed formulation's worst fall, 49.9 to 18.0 (2.8-fold); ctx700 seed 0
    # 48.6 at step 50, 42.1 at 100, 7.8 at 150 (6.2-fold), 5.7 at 350
    healthy = [(s, {"train/token_rankme": r}) for s, r in [(50, 45.0), (100, 49.9), (150, 30.0), (200, 18.0)]]
    assert watch(healthy) == [None] * 4
    ranks = [(50, 48.6), (100, 42.1), (120, 9.8), (150, 7.8), (350, 5.7)]
    warnings = watch([(s, {"train/token_rankme": r}) for s, r in ranks])
    assert warnings[:3] == [None] * 3  # 4.96-fold is not yet 5-fold
    assert warnings[3] == (
        "myjepa: warning: the encoder narrowed by step 150 (the tokens' effective rank fell from 48.6 to 7.8); "
        "the run goes on: compare it with random init in the report before using it (the one measured cause: "
        "a large context_grad_scale)"
    )
    assert warnings[4] is None  # said once


def test_narrowing_warns_when_the_online_probe_falls_below_the_untrained_encoders():
    # ctx700 seed 0's online probe; every other run measured stayed above its step-0 value
    probes = [(0, 0.770), (100, 0.839), (200, 0.804), (400, 0.768), (500, 0.737), (600, 0.719)]
    warnings = watch([(s, {"probe/auc": a}) for s, a in probes])
    assert warnings[:4] == [None] * 4  # 0.002 below step 0 is within the probe's noise
    assert "by step 500 (the online probe's AUC fell to 0.737, below the untrained encoder's 0.770)" in warnings[4]
    assert warnings[5] is None
    assert watch([(100, {"probe/auc": 0.8}), (200, {"probe/auc": 0.5})]) == [None, None]  # no step-0 probe


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
    err = capfd.readouterr().err
    assert "collapsed" not in err and "narrowed" not in err
    lines = metrics(out)
    assert all(l["train/embed_std"] > STD_FLOOR and l["train/rankme"] > 1.5 for l in lines[10:])
    # the tokens' spread is logged beside: a tiny encoder's 64 dimensions, far from a collapse to one
    assert all(0.1 < l["train/token_std"] < 10 and 2 < l["train/token_rankme"] <= 64 for l in lines)


def test_a_run_prints_the_narrowing_warning_once_and_goes_on(small_dump, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(collapse, "RANK_FALL", 1.0)  # any fall below the peak counts: the path, not the threshold
    assert run(small_dump, tmp_path / "run", steps=20) == 0
    warnings = [line for line in capfd.readouterr().err.splitlines() if "narrowed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("myjepa: warning: the encoder narrowed by step ")
    assert metrics(tmp_path / "run")[-1]["step"] == 20


def test_the_narrowing_scan_reports_each_runs_rank_fall_and_probe_fall(tmp_path, capsys):
    """benchmarks/narrowing.py: the figures the warning's thresholds were set from, per run, worst first."""
    narrowing = load_benchmark("narrowing")
    runs = {
        "healthy/s0": [(0, None, 0.77), (100, 40.0, 0.84), (200, 20.0, 0.80)],
        "narrowed/s0": [(0, None, 0.77), (100, 48.6, 0.84), (150, 7.8, None), (200, 9.0, 0.73)],
        "noprobe/s0": [(100, 30.0, None), (200, 30.0, None)],
    }
    for name, rows in runs.items():
        (tmp_path / name).mkdir(parents=True)
        lines = [
            {"step": s} | ({"train/token_rankme": r} if r else {}) | ({"probe/auc": a} if a else {}) for s, r, a in rows
        ]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"ste')
    assert narrowing.main([str(tmp_path)]) == 0
    rows = [line.split(" | ")[:3] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == [["| 6.2x", "150", "-0.040"], ["| 2.0x", "200", "+0.030"], ["| 1.0x", "100", ""]]
    with pytest.raises(SystemExit, match="no metrics.jsonl with train/token_rankme under"):
        narrowing.main([str(tmp_path / "healthy" / "nothing")])
