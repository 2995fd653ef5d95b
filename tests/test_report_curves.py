"""The report's pretraining curves show the collapse alarms and the online probe."""

import json

import pytest

from myjepa.report import plots


def test_pretraining_curves_plot_every_alarm_and_the_probe(tmp_path, monkeypatch):
    run = tmp_path / "pretrain" / "tiny" / "s0"
    run.mkdir(parents=True)
    lines = [
        {"step": s, "train/loss": 1.0, "train/pred_loss": 0.1, "train/sigreg_loss": 3.0, "train/lr": 1e-3,
         "train/embed_std": 0.9, "train/rankme": 5.0} | ({"probe/auc": 0.6 + s / 1000} if s % 20 == 0 else {})
        for s in range(10, 70, 10)
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    figures = []
    monkeypatch.setattr(plots, "png", lambda fig: figures.append(fig) or "<img>")
    assert plots.pretrain_figure([run / "encoder.pt"]) == "<img>"
    axes = {ax.get_title(): ax for ax in figures[0].axes if ax.get_title()}
    assert set(axes) == set(plots.CURVES)
    probe_line = axes["probe/auc"].get_lines()[0]
    assert list(probe_line.get_xdata()) == [20, 40, 60]  # logged at probe steps only
    assert list(probe_line.get_ydata()) == pytest.approx([0.62, 0.64, 0.66])
    assert axes["train/embed_std"].get_yscale() == "log" and axes["train/rankme"].get_yscale() == "linear"
    assert list(axes["train/rankme"].get_lines()[0].get_ydata()) == [5.0] * 6
