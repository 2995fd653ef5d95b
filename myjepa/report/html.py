"""The report page: one self-contained HTML file of tables, figures, software versions and config.

Numbers are shown rounded to 3 decimals; the exact values are embedded as JSON
(`<script id="auc-data">`). Figures are inline PNGs, so the page loads nothing from elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from myjepa.report.data import data_table
from myjepa.report.markup import esc, fmt, interval, mean_std, table
from myjepa.report.plots import pretrain_figure, roc_figures
from myjepa.report.references import ECGJEPA_SOURCE, PTBXL_BENCHMARK, PTBXL_SOURCE, ecgjepa
from myjepa.utils.io import sha256_file

SOFTWARE = (
    "myjepa",
    "torch",
    "numpy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "snakemake",
    "snakemake-executor-plugin-slurm",
)
AUC_HEADER = [
    "task",
    "protocol",
    "encoder",
    "runs",
    "test AUC (mean ± std)",
    "bootstrap 95 % CI (mean)",
    "random init",
    "random-init AUC",
    "Δ vs random [paired 95 %]³",
    "PTB-XL benchmark¹",
    "ECG-JEPA ViT-S²",
]
JOBS_HEADER = [
    "task",
    "protocol",
    "encoder",
    "seed",
    "test AUC",
    "95 % CI",
    "best val AUC",
    "train/val/test",
    "steps",
    "wall s",
    "device",
]
# the page's stylesheet
CSS = (
    "\n"
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;"
    "margin:2em auto;max-width:1300px;color:#222;padding:0 1em}\n"
    "h1{margin-bottom:0}"
    "h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}\n"
    "table{border-collapse:collapse;margin:.6em 0;font-size:14px}"
    "th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}\n"
    "th{background:#f4f4f4}"
    "td:first-child,th:first-child{text-align:left}"
    "table.small{font-size:12px}\n"
    ".up{color:#1a7f37;font-weight:600}"
    ".down{color:#cf222e;font-weight:600}"
    ".muted{color:#666;font-size:13px}\n"
    "pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}"
    "img{max-width:100%}\n"
)


# ---- tables ------------------------------------------------------------------------------------


def delta_cell(delta: float, lo: float = float("nan"), hi: float = float("nan")) -> str:
    """The difference to random init, green or red, with its paired interval where there is one."""
    if not math.isfinite(delta):
        return "—"
    ci = f" [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f'<span class="{"up" if delta > 0 else "down"}">{delta:+.3f}</span>{ci}'


def auc_table(summary: pd.DataFrame) -> str:
    """One row per task x protocol x pretrained encoder, its random-init baseline and the literature beside it.

    The protocol's kind (linear, finetune, ...) picks the ECG-JEPA number: linear probe or finetuned."""
    shown = summary[summary["kind"] == "pretrained"]
    if shown.empty:
        shown = summary
    rows = [
        [
            esc(r.task),
            esc(r.protocol),
            esc(r.group),
            int(r.n),
            mean_std(r.auc_mean, r.auc_std),
            interval(r.ci_lo_mean, r.ci_hi_mean),
            esc(r.baseline or "—"),
            mean_std(r.baseline_auc_mean, r.baseline_auc_std),
            delta_cell(r.delta_vs_baseline, r.delta_ci_lo, r.delta_ci_hi),
            fmt(PTBXL_BENCHMARK.get(r.task)),
            fmt(ecgjepa(r.task, r.protocol_kind)),
        ]
        for r in shown.itertuples()
    ]
    return table(AUC_HEADER, rows, "auc")


def jobs_table(jobs: pd.DataFrame) -> str:
    rows = [
        [
            esc(r.task),
            esc(r.protocol),
            esc(r.encoder),
            r.seed,
            fmt(r.test_auc),
            interval(r.ci_lo, r.ci_hi),
            fmt(r.val_best_auc),
            f"{r.n_train}/{r.n_val}/{r.n_test}",
            r.steps,
            fmt(float(r.wall_time_s), 0),
            esc(r.device),
        ]
        for r in jobs.itertuples()
    ]
    return table(JOBS_HEADER, rows)


def per_class_tables(per_class: pd.DataFrame) -> str:
    """Per task: classes as rows, encoder x protocol (mean over seeds) as columns."""
    out = []
    for task, part in per_class.groupby("task", sort=False):
        part = part.assign(column=part["encoder"] + " · " + part["protocol"])
        wide = part.pivot_table(index="class", columns="column", values="auc", aggfunc="mean", dropna=False)
        n_pos = part.groupby("class")["n_pos"].max()
        notes = part[part["note"] != ""].groupby("class")["note"].first()
        rows = [
            [
                esc(c),
                int(n_pos.get(c, 0)) if pd.notna(n_pos.get(c)) else "—",
                *[fmt(v) for v in wide.loc[c]],
                esc(notes.get(c, "")),
            ]
            for c in wide.index
        ]
        out.append(f"<h3>{esc(task)}</h3>" + table(["class", "test positives", *wide.columns, "note"], rows, "small"))
    return "".join(out)


def references_table() -> str:
    header = ["task", "PTB-XL benchmark, best supervised¹", "ECG-JEPA linear²", "ECG-JEPA finetuned²"]
    rows = [[t, fmt(b), fmt(ecgjepa(t, "linear")), fmt(ecgjepa(t, "finetune"))] for t, b in PTBXL_BENCHMARK.items()]
    return table(header, rows)


def releases_table(cards: Sequence[Path], report: Path) -> str:
    """One row per release (its MODEL_CARD.md given): links relative to the report, and what it expects."""
    if not cards:
        return "<p class='muted'>No release was exported.</p>"
    rows = []
    for card in cards:
        config = json.loads((card.parent / "config.json").read_text())
        href = Path(os.path.relpath(card.parent, report.parent)).as_posix()
        links = " · ".join(
            f"<a href='{esc(href)}/{name}'>{name}</a>" for name in ("MODEL_CARD.md", "config.json", "model.safetensors")
        )
        inp = config["input"]
        rows.append(
            [esc(config["name"]), links, config["embedding"]["dim"], f"{inp['fs']} Hz, ≥ {inp['crop'] / inp['fs']:g} s"]
        )
    return table(["release", "files", "embedding dim", "input"], rows)


def classifiers_table(cards: Sequence[Path], report: Path) -> str:
    """One row per classifier release (its MODEL_CARD.md given): what it classifies, how well, and its files."""
    if not cards:
        return "<p class='muted'>No classifier was exported.</p>"
    rows = []
    for card in cards:
        config = json.loads((card.parent / "config.json").read_text())
        clf, run = config["classifier"], config["finetuning"]
        href = Path(os.path.relpath(card.parent, report.parent)).as_posix()
        files = ("MODEL_CARD.md", "config.json", "model.safetensors", "head.safetensors")
        links = " · ".join(f"<a href='{esc(href)}/{name}'>{name}</a>" for name in files)
        test = run["test"]
        lo, hi = test["macro_auc_ci"]
        auc = f"{fmt(test['macro_auc'])} [{fmt(lo)}, {fmt(hi)}]"
        rows.append(
            [
                esc(config["name"]),
                esc(clf["task"]),
                esc(run.get("protocol_name") or run["protocol"]),
                esc(run["encoder_name"]),
                len(clf["classes"]),
                esc(clf["decision"]["rule"]),
                auc,
                links,
            ]
        )
    header = ["classifier", "task", "protocol", "encoder", "classes", "decisions", "test macro AUC [95 % CI]", "files"]
    return table(header, rows)


def software_table() -> str:
    return table(["software", "version"], [[esc(k), esc(v)] for k, v in versions().items()])


# ---- provenance --------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in SOFTWARE:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def image_digest(image: str | None) -> str:
    """sha256 of the Apptainer image file, or 'not used' when there is none."""
    if not image or not Path(image).is_file():
        return "not used"
    return f"sha256:{sha256_file(image)} ({image})"


# ---- the page ----------------------------------------------------------------------------------


def verdict(summary: pd.DataFrame) -> str:
    wins = summary[(summary["kind"] == "pretrained") & summary["delta_vs_baseline"].notna()]
    if not len(wins):
        return "No random-init baseline was evaluated."
    won = int((wins["delta_vs_baseline"] > 0).sum())
    return f"The pretrained encoder beats random init in {won} of {len(wins)} task × protocol comparisons."


def render(
    jobs: pd.DataFrame,
    summary: pd.DataFrame,
    per_class: pd.DataFrame,
    runs: Sequence[Path],
    config: dict[str, Any],
    image: str | None,
    dumps: Sequence[Path] = (),
    releases: Sequence[Path] = (),
    out: Path = Path("report.html"),
    classifiers: Sequence[Path] = (),
) -> str:
    """The report, heading by heading; the exact jobs and summary tables embedded at its end."""
    import yaml

    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    body = [
        f"<h1>MyJEPA report</h1><p class='muted'>generated {generated} · {len(jobs)} finetune jobs · "
        f"{len(runs)} pretraining run(s)</p><p><b>{esc(verdict(summary))}</b></p>",
        "<h2>Test macro AUC</h2><p class='muted'>Mean ± sample std over seeds (pretraining × finetuning); the "
        "bootstrap CI (resamples of the test records; `bootstrap_samples` in each job's config) is averaged over "
        "seeds. Δ: pretrained minus random-init mean. ³ Its 95 % interval pairs each job with the random-init job "
        "of the same finetuning seed on the same test records and resamples both the records and the pairs "
        "(with one seed, the records only).</p>" + auc_table(summary),
        f"<h2>Published reference numbers</h2>{references_table()}<p class='muted'>¹ {esc(PTBXL_SOURCE)}.<br>"
        f"² {esc(ECGJEPA_SOURCE)}. Reference numbers are on real PTB-XL; the demo's synthetic data is not "
        "comparable with them.</p>",
        f"<h2>Every finetune job</h2>{jobs_table(jobs)}",
        "<h2>Data</h2><p class='muted'>Each dump the encoders were pretrained on: records kept, their 10 s windows "
        "(split: every whole window; first: the first 10 s), skipped records by reason, remainders shorter than "
        f"a window (counted, not kept), sampling rate as stored → as dumped, baseline filter.</p>{data_table(dumps)}"
        if dumps
        else "",
        "<h2>ROC curves</h2><p class='muted'>Macro-average over classes, test fold, first seed of each "
        f"encoder.</p>{roc_figures(jobs)}",
        "<h2>Pretraining curves</h2><p class='muted'>Collapse shows as embed_std (per-dimension std of the "
        "projected embeddings; SIGReg pulls it towards 1) and rankme (their effective rank) falling towards 0 and "
        "1 while pred_loss drops by orders of magnitude; token_std and token_rankme are the same of the encoder's "
        "tokens, which can collapse while the record embeddings do not. probe/auc: the online linear probe's macro "
        f"AUC on the validation fold, logged while pretraining runs.</p>{pretrain_figure(runs)}",
        "<h2>Per-class test AUC</h2><p class='muted'>Mean over seeds; — marks a class without a positive test "
        f"record.</p>{per_class_tables(per_class)}",
        "<h2>Releases</h2><p class='muted'>Each pretrained encoder as safetensors weights, config.json and a model "
        "card: <code>myjepa.load_encoder(FOLDER).embed(x, fs)</code>, or <code>myjepa embed --encoder FOLDER</code>."
        f"</p>{releases_table(releases, out)}",
        "<h2>Classifier releases</h2><p class='muted'>Each finetuned model with its decision thresholds (chosen on the "
        "validation fold) and a card of per-class test AUCs: <code>myjepa predict --model FOLDER --src RECORDS --out "
        "predictions.csv</code>, or <code>myjepa.load_classifier(FOLDER).predict(x, fs)</code>."
        f"</p>{classifiers_table(classifiers, out)}",
        f"<h2>Software</h2>{software_table()}<p>Container image: <code>{esc(image_digest(image))}</code></p>",
        f"<h2>Config</h2><pre>{esc(yaml.safe_dump(config, sort_keys=False))}</pre>",
    ]
    return page(body, {"jobs": records(jobs), "summary": records(summary)})


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-ready rows (NaN -> None)."""
    return json.loads(frame.to_json(orient="records"))


def page(body: Sequence[str], data: dict[str, Any]) -> str:
    """A self-contained HTML page: the stylesheet, the body's sections, `data` as JSON (`<script id="auc-data">`)."""
    payload = json.dumps(data).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>MyJEPA report</title>"
        f"<style>{CSS}</style></head><body>"
        + "".join(body)
        + f'<script type="application/json" id="auc-data">{payload}</script></body></html>'
    )
