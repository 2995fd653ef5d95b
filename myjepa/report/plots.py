"""The report's figures, as inline PNG <img> tags: macro ROC curves per task and the pretraining curves."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from myjepa.report.markup import fmt
from myjepa.utils.logging import logged_lines

CURVES = (
    "train/loss",
    "train/pred_loss",
    "train/sigreg_loss",
    "train/lr",
    "train/embed_std",  # collapse alarms (pretrain/collapse.py)
    "train/rankme",
    "train/token_std",  # the same of the encoder's tokens: a token-level collapse
    "train/token_rankme",
    "probe/auc",  # the online probe (pretrain/probe.py)
)
LOG_SCALE = ("train/pred_loss", "train/embed_std", "train/token_std")  # collapse shows as orders of magnitude


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> str:
    """A matplotlib figure as an inline <img>; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


# ---- ROC curves --------------------------------------------------------------------------------


def macro_roc(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro-average ROC: per-class TPR interpolated on a common FPR grid, averaged over defined classes."""
    from sklearn.metrics import roc_curve

    grid = np.linspace(0, 1, 201)
    tprs = []
    for j in range(targets.shape[1]):
        y = targets[:, j]
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, scores[:, j])
            tprs.append(np.interp(grid, fpr, tpr))
    return grid, (np.mean(tprs, axis=0) if tprs else np.full_like(grid, np.nan))


def job_roc(results: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The test fold's macro ROC of one job, from the predictions.npz beside its results.json; None without it."""
    npz = Path(results).with_name("predictions.npz")
    if not npz.is_file():
        return None
    with np.load(npz, allow_pickle=False) as pred:
        return macro_roc(np.asarray(pred["test_targets"]), np.asarray(pred["test_scores"], dtype=np.float64))


def roc_panel(ax: Any, jobs: pd.DataFrame, title: str) -> None:
    """One macro-average curve per encoder (its first seed); random-init encoders dashed."""
    for r in jobs.groupby("encoder", sort=False).head(1).itertuples():
        curve = job_roc(r.results)
        if curve is not None:
            label = f"{r.encoder} s{r.seed} (AUC {fmt(r.test_auc)})"
            ax.plot(*curve, ls="--" if r.kind == "random" else "-", label=label)
    ax.plot([0, 1], [0, 1], color="0.8", lw=0.8)
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate (macro)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")


def roc_figures(jobs: pd.DataFrame) -> str:
    """One figure per task, one panel per protocol."""
    out = []
    for task, part in jobs.groupby("task", sort=False):
        protocols = list(dict.fromkeys(part["protocol"]))
        fig, axes = pyplot().subplots(1, len(protocols), figsize=(4.2 * len(protocols), 4), squeeze=False)
        for ax, protocol in zip(axes[0], protocols):
            roc_panel(ax, part[part["protocol"] == protocol], f"{task} · {protocol}")
        out.append(png(fig))
    return "".join(out)


# ---- pretraining curves ------------------------------------------------------------------------


def read_metrics(path: Path) -> pd.DataFrame:
    """A run's metrics.jsonl; empty when there is none."""
    return pd.DataFrame(logged_lines(path))


def pretrain_figure(runs: Sequence[Path]) -> str:
    """CURVES against step for every pretraining run, four to a row."""
    curves = {f"{p.parent.parent.name}/{p.parent.name}": read_metrics(p.parent / "metrics.jsonl") for p in runs}
    curves = {k: v for k, v in curves.items() if not v.empty and "step" in v}
    if not curves:
        return "<p>No pretraining metrics found.</p>"
    rows = -(-len(CURVES) // 4)
    fig, axes = pyplot().subplots(rows, 4, figsize=(16, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(CURVES) :]:
        ax.axis("off")
    for ax, key in zip(axes.flat, CURVES):
        for name, frame in curves.items():
            if key in frame:
                part = frame[["step", key]].dropna()
                ax.plot(part["step"], part[key], label=name)
        ax.set(title=key, xlabel="step")
        if key == "train/lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        if ax.has_data():
            ax.legend(fontsize=7)
            if key in LOG_SCALE:
                ax.set_yscale("log")
    fig.tight_layout()
    return png(fig)
