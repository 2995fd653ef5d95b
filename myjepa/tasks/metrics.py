"""ROC AUC per class, macro AUC over the classes where it is defined, and a bootstrap CI.

A bootstrap resample of n records is the original set with integer weights (how often each record
was drawn), so one sort per class serves all resamples: 1,000 resamples of the full test fold
take about a second instead of minutes of repeated scikit-learn calls.
"""

from __future__ import annotations

import numpy as np


def weighted_auc(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of one class under record weights: targets, scores (n,); weights (B, n) -> (B,), NaN where undefined.

    Ties count one half, as in scikit-learn's roc_auc_score.
    """
    order = np.argsort(scores, kind="stable")
    s, y, w = scores[order], targets[order].astype(bool), weights[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first position of each group of tied scores
    pos = np.add.reduceat(np.where(y, w, 0.0), starts, axis=1)  # (B, G) positive weight per tie group
    neg = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def class_aucs(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(C,) AUC per class of targets, scores (n, C); NaN for a class without positives or negatives."""
    ones = np.ones((1, len(targets)))
    return np.array([weighted_auc(targets[:, j], scores[:, j], ones)[0] for j in range(targets.shape[1])])


def mean_defined_auc(aucs: np.ndarray) -> float:
    """Macro AUC from class AUCs (C,): their mean over the classes where it is defined; NaN if none is."""
    defined = np.isfinite(aucs)
    return float(np.mean(aucs[defined])) if defined.any() else float("nan")


def macro_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUC over the classes where it is defined; NaN if none is."""
    return mean_defined_auc(class_aucs(targets, scores))


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) record indices drawn with replacement; fixed by seed."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def bootstrap_weights(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) how often each of n records is drawn in each resample; fixed by seed."""
    idx = bootstrap_indices(n, samples, seed)
    weights = np.zeros((samples, n))
    np.add.at(weights, (np.repeat(np.arange(samples), n), idx.ravel()), 1.0)
    return weights


def resampled_macro_aucs(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(samples,) macro AUC of each resample in weights (samples, n), over the classes defined in it; NaN if none."""
    per_class = np.stack([weighted_auc(targets[:, j], scores[:, j], weights) for j in range(targets.shape[1])], axis=1)
    defined = np.isfinite(per_class)
    with np.errstate(invalid="ignore"):
        return np.where(defined, per_class, 0.0).sum(1) / defined.sum(1)


def bootstrap_macro_auc(
    targets: np.ndarray, scores: np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the macro AUC over `samples` resamples of the records.

    Each resample averages the classes defined within it (a rare class can lose its positives).
    """
    macro = resampled_macro_aucs(targets, scores, bootstrap_weights(len(targets), samples, seed))
    macro = macro[np.isfinite(macro)]
    if len(macro) == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(macro, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_difference(
    targets: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, lo, hi): mean over seeds of macro AUC(a) − macro AUC(b) on one test set, with a percentile interval.

    scores_a, scores_b (seeds, n, C): seed s of a is paired with seed s of b (the same pretraining and probe
    seed). Two things make the difference uncertain, and the interval resamples both: which records are in
    the test set (one draw of records for both arms and every seed, so the comparison stays paired) and
    which training seeds were run (the seeds are resampled too). With one seed only records are resampled.
    """
    weights = bootstrap_weights(len(targets), samples, seed)
    diffs = np.stack(
        [
            resampled_macro_aucs(targets, a, weights) - resampled_macro_aucs(targets, b, weights)
            for a, b in zip(scores_a, scores_b)
        ]
    )  # (seeds, samples)
    n_seeds = len(diffs)
    picks = np.random.default_rng(seed + 1).integers(0, n_seeds, size=(samples, n_seeds))
    means = diffs[picks, np.arange(samples)[:, None]].mean(1)
    means = means[np.isfinite(means)]
    point = float(np.mean([macro_auc(targets, a) - macro_auc(targets, b) for a, b in zip(scores_a, scores_b)]))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha]) if len(means) else (float("nan"), float("nan"))
    return point, float(lo), float(hi)


def bootstrap_class_aucs(
    targets: np.ndarray, scores: np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> np.ndarray:
    """(C, 2) percentile CI of each class's AUC over `samples` resamples of the records (the resamples of
    `bootstrap_macro_auc` for the same seed); NaN for a class whose AUC no resample defines."""
    weights = bootstrap_weights(len(targets), samples, seed)
    alpha = (1 - level) / 2
    out = np.full((targets.shape[1], 2), np.nan)
    for j in range(targets.shape[1]):
        aucs = weighted_auc(targets[:, j], scores[:, j], weights)
        aucs = aucs[np.isfinite(aucs)]
        if len(aucs):
            out[j] = np.quantile(aucs, [alpha, 1 - alpha])
    return out


def max_f1_threshold(targets: np.ndarray, scores: np.ndarray) -> tuple[float, float] | None:
    """(threshold, F1) of the decision `score >= threshold` with the largest F1 on one class's targets, scores
    (n,); None without a positive record. The threshold sits halfway between the lowest score called positive
    and the next lower one (on a tie in F1, the higher threshold), so the same records are called positive on
    these scores and a little noise does not flip the lowest one."""
    positives = int(targets.sum())
    if positives == 0:
        return None
    values, inverse = np.unique(scores, return_inverse=True)  # ascending distinct scores
    values = values[::-1]
    group = len(values) - 1 - inverse  # rank of each record's score, 0 = highest
    tp = np.cumsum(np.bincount(group, weights=targets.astype(np.float64), minlength=len(values)))
    called = np.cumsum(np.bincount(group, minlength=len(values)))
    f1 = 2 * tp / (called + positives)
    k = int(np.argmax(f1))
    threshold = values[k] if k == len(values) - 1 else (values[k] + values[k + 1]) / 2
    return float(threshold), float(f1[k])
