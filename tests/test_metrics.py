"""Macro AUC and its bootstrap CI against scikit-learn on fixed predictions; the per-class breakdown of
probed encoders (benchmarks/class_aucs.py)."""

import json

import numpy as np
import pytest
from conftest import load_benchmark
from sklearn.metrics import f1_score, roc_auc_score

from myjepa.tasks.metrics import (
    bootstrap_class_aucs,
    bootstrap_indices,
    bootstrap_macro_auc,
    class_aucs,
    macro_auc,
    max_f1_threshold,
    paired_difference,
    weighted_auc,
)


@pytest.fixture(scope="module")
def preds():
    rng = np.random.default_rng(3)
    n, c = 300, 6
    targets = (rng.random((n, c)) < [0.5, 0.3, 0.1, 0.05, 0.2, 0.4]).astype(np.uint8)
    scores = targets * rng.normal(1.0, 1.0, (n, c)) + rng.normal(0.0, 1.0, (n, c))
    scores[:, 1] = np.round(scores[:, 1], 1)  # many ties
    return targets, scores.astype(np.float32)


def test_class_aucs_match_sklearn(preds):
    targets, scores = preds
    ours = class_aucs(targets, scores)
    ref = [roc_auc_score(targets[:, j], scores[:, j]) for j in range(targets.shape[1])]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    assert macro_auc(targets, scores) == pytest.approx(np.mean(ref), abs=1e-12)


def test_weighted_auc_equals_auc_of_repeated_records(preds):
    targets, scores = preds
    idx = np.random.default_rng(0).integers(0, len(targets), len(targets))
    weights = np.bincount(idx, minlength=len(targets))[None].astype(float)
    for j in range(targets.shape[1]):
        ref = roc_auc_score(targets[idx, j], scores[idx, j])
        assert weighted_auc(targets[:, j], scores[:, j], weights)[0] == pytest.approx(ref, abs=1e-12)


def test_undefined_class_is_nan_and_left_out_of_macro(preds):
    targets, scores = preds
    targets = targets.copy()
    targets[:, 3] = 0  # no positive
    targets[:, 4] = 1  # no negative
    aucs = class_aucs(targets, scores)
    assert np.isnan(aucs[3]) and np.isnan(aucs[4])
    defined = [roc_auc_score(targets[:, j], scores[:, j]) for j in (0, 1, 2, 5)]
    assert macro_auc(targets, scores) == pytest.approx(np.mean(defined), abs=1e-12)
    assert np.isnan(macro_auc(np.zeros((5, 2)), np.random.rand(5, 2)))


def test_bootstrap_ci_matches_sklearn_on_the_same_resamples(preds):
    targets, scores = preds
    samples, seed = 200, 7
    lo, hi = bootstrap_macro_auc(targets, scores, samples=samples, seed=seed)
    ref = []
    for idx in bootstrap_indices(len(targets), samples, seed):
        t, s = targets[idx], scores[idx]
        ref.append(np.mean([roc_auc_score(t[:, j], s[:, j]) for j in range(t.shape[1]) if 0 < t[:, j].sum() < len(t)]))
    ref_lo, ref_hi = np.quantile(ref, [0.025, 0.975])
    assert lo == pytest.approx(ref_lo, abs=1e-12) and hi == pytest.approx(ref_hi, abs=1e-12)
    point = macro_auc(targets, scores)
    assert lo < point < hi
    assert 0.01 < hi - lo < 0.2
    assert bootstrap_macro_auc(targets, scores, samples=samples, seed=seed) == (lo, hi)  # fixed by the seed


def test_bootstrap_survives_a_class_with_one_positive():
    rng = np.random.default_rng(1)
    targets = np.zeros((50, 2), dtype=np.uint8)
    targets[:25, 0] = 1
    targets[0, 1] = 1  # most resamples lose this positive
    scores = rng.random((50, 2))
    lo, hi = bootstrap_macro_auc(targets, scores, samples=100, seed=0)
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi


def test_paired_difference_of_equal_scores_is_exactly_zero(preds):
    targets, scores = preds
    both = np.stack([scores, scores])
    assert paired_difference(targets, both, both, samples=200) == (0.0, 0.0, 0.0)


def test_paired_difference_point_is_the_mean_of_per_seed_differences(preds):
    targets, scores = preds
    rng = np.random.default_rng(7)
    noisy = np.stack([scores + rng.normal(0, s, scores.shape) for s in (0.5, 1.0, 2.0)])
    worse = np.stack([scores + rng.normal(0, 4.0, scores.shape) for _ in range(3)])
    point, lo, hi = paired_difference(targets, noisy, worse, samples=500)
    per_seed = [macro_auc(targets, a) - macro_auc(targets, b) for a, b in zip(noisy, worse)]
    assert point == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert 0 < lo < point < hi  # clearly better, and the interval says so
    swapped = paired_difference(targets, worse, noisy, samples=500)
    assert swapped[0] == pytest.approx(-point) and swapped[2] < 0


def test_paired_difference_widens_when_the_seeds_disagree(preds):
    """The seeds are resampled too: three seeds that disagree give a wider interval than three that agree."""
    targets, scores = preds
    rng = np.random.default_rng(8)
    base = np.stack([scores + rng.normal(0, 2.0, scores.shape)] * 3)
    agree = np.stack([scores + rng.normal(0, 1.0, scores.shape)] * 3)
    disagree = np.stack([scores + rng.normal(0, s, scores.shape) for s in (0.2, 1.0, 6.0)])
    _, lo_a, hi_a = paired_difference(targets, agree, base, samples=500)
    _, lo_d, hi_d = paired_difference(targets, disagree, base, samples=500)
    assert hi_d - lo_d > 1.5 * (hi_a - lo_a)


def test_max_f1_threshold_is_the_best_cut_and_calls_the_same_records(preds):
    targets, scores = preds
    for j in range(targets.shape[1]):
        y, s = targets[:, j], scores[:, j]
        threshold, f1 = max_f1_threshold(y, s)
        best = max(f1_score(y, s >= cut) for cut in np.unique(s))
        assert f1 == pytest.approx(best, abs=1e-12)
        assert f1_score(y, s >= threshold) == pytest.approx(best, abs=1e-12)
        above = s[s >= threshold]
        below = s[s < threshold]
        if len(below):  # halfway between the lowest score called positive and the next lower one
            assert threshold == pytest.approx((above.min() + below.max()) / 2)
    assert max_f1_threshold(np.zeros(5), np.arange(5.0)) is None
    assert max_f1_threshold(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.9])) == (pytest.approx(0.55), 1.0)


def test_class_intervals_resample_as_the_macro_interval_does(preds):
    targets, scores = preds
    cis = bootstrap_class_aucs(targets, scores, samples=200, seed=4)
    aucs = class_aucs(targets, scores)
    assert cis.shape == (targets.shape[1], 2)
    assert (cis[:, 0] < aucs).all() and (aucs < cis[:, 1]).all()
    idx = bootstrap_indices(len(targets), 200, 4)  # the same resamples, drawn as record indices
    by_hand = [roc_auc_score(targets[i, 0], scores[i, 0]) for i in idx]
    np.testing.assert_allclose(cis[0], np.quantile(by_hand, [0.025, 0.975]), rtol=1e-9)
    one_positive = np.zeros((20, 1))
    one_positive[3] = 1
    assert np.isfinite(bootstrap_class_aucs(one_positive, np.arange(20.0)[:, None], 50, 0)).all()
    assert np.isnan(bootstrap_class_aucs(np.zeros((20, 1)), np.arange(20.0)[:, None], 50, 0)).all()


def write_probe(folder, task, classes):
    """probe/TASK/results.json as `myjepa finetune` writes it, with only the per-class part filled."""
    (folder / "probe" / task).mkdir(parents=True)
    rows = [{"name": name, "n_pos": n_pos, "auc": auc} for name, n_pos, auc in classes]
    (folder / "probe" / task / "results.json").write_text(json.dumps({"classes": rows}))


def test_class_aucs_splits_the_macro_auc_by_test_positives(tmp_path):
    """benchmarks/class_aucs.py: per class the mean over the seeds both encoders have, the paired Δ, and
    the macro AUC over the classes with many and with few test positives."""
    class_aucs = load_benchmark("class_aucs")
    per_seed = {
        "random": [[0.60, 0.90, 0.80], [0.62, 0.94, 0.70]],
        "pre": [[0.70, 0.40, 0.80], [0.74, 0.50, 0.70], [0.99, 0.99, 0.99]],  # s2: not in random, ignored
    }
    for name, seeds in per_seed.items():
        for s, (sr, pace, afib) in enumerate(seeds):
            write_probe(
                tmp_path / name / f"s{s}",
                "rhythm",
                [("SR", 103, sr), ("PACE", 1, pace), ("AFIB", 6, afib), ("BIGU", 0, None)],
            )
    lines = class_aucs.table("rhythm", {n: tmp_path / n for n in per_seed}, min_positives=3).splitlines()
    assert lines[0] == "rhythm, seeds s0, s1: mean AUC (Δ: paired, against random)"
    assert lines[4:] == [
        "| SR | 103 | 0.610 | 0.720 (Δ +0.110) |",
        "| PACE | 1 | 0.920 | 0.450 (Δ -0.470) |",
        "| AFIB | 6 | 0.750 | 0.750 (Δ +0.000) |",
        "| macro, ≥ 3 positives | 2 of 3 classes | 0.680 | 0.735 (Δ +0.055) |",
        "| macro, < 3 positives | 1 of 3 classes | 0.920 | 0.450 (Δ -0.470) |",
        "| macro, all | 3 of 3 classes | 0.760 | 0.640 (Δ -0.120) |",
    ]
    with pytest.raises(SystemExit, match=r"probe/form/results.json: no such file"):
        class_aucs.table("form", {n: tmp_path / n for n in per_seed}, min_positives=3)
