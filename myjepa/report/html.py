"""The workflow's last two steps: finetune results -> AUC tables -> one self-contained HTML report.

    python -m myjepa.report aggregate --encoders JSON --out auc.csv --summary auc_summary.csv \
        --per-class auc_per_class.csv results/finetune/ENCODER/TASK/PROTOCOL/sSEED/results.json ...
    python -m myjepa.report html --auc auc.csv --summary auc_summary.csv --per-class auc_per_class.csv \
        --pretrain-runs results/pretrain/RUN/sSEED/encoder.pt ... --config-json JSON --out report.html

Encoder, task, protocol and seed come from each results.json's place in the workflow's layout, the
numbers from the file itself: the tables repeat them exactly, the HTML rounds them to 3 decimals
and embeds the exact values as JSON (`<script id="auc-data">`). Plots are matplotlib PNGs inlined
as base64, so the report needs no network and no other file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import math
import platform
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from myjepa.errors import UserError, run_cli
from myjepa.utils.io import atomic_path

RESULT_KEYS = (
    "test_auc",
    "test_auc_ci",
    "val_best_auc",
    "classes",
    "n_train",
    "n_val",
    "n_test",
    "steps",
    "wall_time_s",
    "device",
)
TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm", "ST-MEM")

# Published macro AUCs on PTB-XL's test fold, shown beside ours.
PTBXL_BENCHMARK = {
    "all": 0.925,
    "diagnostic": 0.937,
    "subdiagnostic": 0.930,
    "superdiagnostic": 0.930,
    "form": 0.899,
    "rhythm": 0.957,
}
PTBXL_SOURCE = "Strodthoff et al. 2021, Deep learning for ECG analysis: benchmarks and insights from PTB-XL, IEEE JBHI 25(5) — best supervised model per task"
ECGJEPA = {("all", "linear"): 0.940, ("all", "finetune"): 0.944}
ECGJEPA_SOURCE = "Kim 2024, Learning general representation of 12-lead electrocardiogram with a joint-embedding predictive architecture (ECG-JEPA), arXiv:2410.08559 — ViT-S pretrained on MIMIC-IV-ECG"
CURVES = ("train/loss", "train/pred_loss", "train/sigreg_loss", "train/lr")
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


# ---- aggregation -------------------------------------------------------------------------------


def read_result(path: Path) -> dict[str, Any]:
    """A finetune results.json, checked for the keys the tables need."""
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read finetune results: {e}") from None
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise UserError(f"{path}: results lack the key {missing[0]!r}")
    return result


def layout_of(path: Path) -> dict[str, Any]:
    """encoder, task, protocol and seed from .../ENCODER/TASK/PROTOCOL/sSEED/results.json."""
    parts = path.parts
    if len(parts) < 5 or not parts[-2].startswith("s") or not parts[-2][1:].isdigit():
        raise UserError(f"{path}: not in the layout .../ENCODER/TASK/PROTOCOL/sSEED/results.json")
    return {"encoder": parts[-5], "task": parts[-4], "protocol": parts[-3], "seed": int(parts[-2][1:])}


def nan_if_none(x: Any) -> float:
    return float("nan") if x is None else float(x)


def aggregate(
    result_paths: Sequence[Path], encoders: dict[str, dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(one row per finetune job, one per job x class, mean/std over seeds with the baseline beside)."""
    rows, class_rows = [], []
    for path in result_paths:
        path = Path(path)
        where, result = layout_of(path), read_result(path)
        info = encoders.get(
            where["encoder"],
            {"kind": "pretrained", "group": where["encoder"], "baseline": None, "model": "", "pretrain_seed": None},
        )
        lo, hi = (result["test_auc_ci"] or [None, None])[:2]
        rows.append(
            {
                **where,
                "kind": info["kind"],
                "group": info["group"],
                "baseline": info.get("baseline") or "",
                "model": info.get("model", ""),
                "pretrain_seed": info.get("pretrain_seed"),
                "test_auc": nan_if_none(result["test_auc"]),
                "ci_lo": nan_if_none(lo),
                "ci_hi": nan_if_none(hi),
                "val_best_auc": nan_if_none(result["val_best_auc"]),
                "n_train": result["n_train"],
                "n_val": result["n_val"],
                "n_test": result["n_test"],
                "steps": result["steps"],
                "wall_time_s": result["wall_time_s"],
                "device": result["device"],
                "encoder_sha256": result.get("encoder_sha256", ""),
                "results": str(path),
            }
        )
        for c in result["classes"]:
            class_rows.append(
                {
                    **where,
                    "group": info["group"],
                    "class": c["name"],
                    "auc": nan_if_none(c.get("auc")),
                    "n_pos": c.get("n_pos"),
                    "note": c.get("note") or "",
                }
            )
    if not rows:
        raise UserError("no finetune results to aggregate")
    jobs = (
        pd.DataFrame(rows)
        .sort_values(["task", "protocol", "kind", "group", "encoder", "seed"], kind="stable")
        .reset_index(drop=True)
    )
    per_class = pd.DataFrame(
        class_rows, columns=["encoder", "task", "protocol", "seed", "group", "class", "auc", "n_pos", "note"]
    )
    return jobs, per_class, summarise(jobs)


def summarise(jobs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds (pretraining and finetuning) per task x protocol x group."""
    keys = ["task", "protocol", "kind", "group"]
    summary = (
        jobs.groupby(keys, sort=False)
        .agg(
            baseline=("baseline", "first"),
            n=("test_auc", "size"),
            auc_mean=("test_auc", "mean"),
            auc_std=("test_auc", lambda x: x.std(ddof=1) if len(x) > 1 else float("nan")),
            ci_lo_mean=("ci_lo", "mean"),
            ci_hi_mean=("ci_hi", "mean"),
            val_best_auc_mean=("val_best_auc", "mean"),
        )
        .reset_index()
    )
    base = summary.set_index(["task", "protocol", "group"])
    b_mean, b_std = [], []
    for row in summary.itertuples():
        key = (row.task, row.protocol, row.baseline)
        found = bool(row.baseline) and key in base.index
        b_mean.append(base.loc[key, "auc_mean"] if found else float("nan"))
        b_std.append(base.loc[key, "auc_std"] if found else float("nan"))
    summary["baseline_auc_mean"] = b_mean
    summary["baseline_auc_std"] = b_std
    summary["delta_vs_baseline"] = summary["auc_mean"] - summary["baseline_auc_mean"]
    summary["ptbxl_benchmark"] = [PTBXL_BENCHMARK.get(t, float("nan")) for t in summary["task"]]
    return summary


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)  # floats as repr: they read back bit for bit


def cmd_aggregate(args: argparse.Namespace) -> None:
    try:
        encoders = json.loads(args.encoders) if args.encoders else {}
    except json.JSONDecodeError as e:
        raise UserError(f"--encoders is not JSON: {e}") from None
    jobs, per_class, summary = aggregate([Path(p) for p in args.results], encoders)
    write_csv(jobs, Path(args.out))
    write_csv(summary, Path(args.summary))
    write_csv(per_class, Path(args.per_class))
    print(f"aggregated {len(jobs)} finetune results into {args.out}, {args.summary}, {args.per_class}")


# ---- HTML report -------------------------------------------------------------------------------


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def mean_std(mean: float, std: float) -> str:
    return fmt(mean) if not math.isfinite(std) else f"{fmt(mean)} ± {fmt(std)}"


def png(fig: Any) -> str:
    """A matplotlib figure as an inline <img>."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def esc(x: Any) -> str:
    return html.escape(str(x))


def auc_table(summary: pd.DataFrame) -> str:
    """One row per task x protocol x pretrained encoder, its random-init baseline and the literature beside it."""
    rows = []
    shown = summary[summary["kind"] == "pretrained"]
    if shown.empty:
        shown = summary
    for r in shown.itertuples():
        ref = [fmt(PTBXL_BENCHMARK.get(r.task))]
        jepa = ECGJEPA.get((r.task, "finetune" if "finetune" in r.protocol else r.protocol))
        ref.append(fmt(jepa) if jepa else "—")
        delta = r.delta_vs_baseline
        delta_txt = (
            "—" if not math.isfinite(delta) else f'<span class="{"up" if delta > 0 else "down"}">{delta:+.3f}</span>'
        )
        rows.append(
            [
                esc(r.task),
                esc(r.protocol),
                esc(r.group),
                int(r.n),
                mean_std(r.auc_mean, r.auc_std),
                f"[{fmt(r.ci_lo_mean)}, {fmt(r.ci_hi_mean)}]",
                esc(r.baseline or "—"),
                mean_std(r.baseline_auc_mean, r.baseline_auc_std),
                delta_txt,
                *ref,
            ]
        )
    header = [
        "task",
        "protocol",
        "encoder",
        "runs",
        "test AUC (mean ± std)",
        "bootstrap 95 % CI (mean)",
        "random init",
        "random-init AUC",
        "Δ vs random",
        "PTB-XL benchmark¹",
        "ECG-JEPA ViT-S²",
    ]
    return table(header, rows, "auc")


def jobs_table(jobs: pd.DataFrame) -> str:
    rows = [
        [
            esc(r.task),
            esc(r.protocol),
            esc(r.encoder),
            r.seed,
            fmt(r.test_auc),
            f"[{fmt(r.ci_lo)}, {fmt(r.ci_hi)}]",
            fmt(r.val_best_auc),
            f"{r.n_train}/{r.n_val}/{r.n_test}",
            r.steps,
            fmt(float(r.wall_time_s), 0),
            esc(r.device),
        ]
        for r in jobs.itertuples()
    ]
    return table(
        [
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
        ],
        rows,
    )


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


def roc_figures(jobs: pd.DataFrame) -> str:
    """One figure per task, one panel per protocol, one macro-average curve per encoder (its first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for task, part in jobs.groupby("task", sort=False):
        protocols = list(dict.fromkeys(part["protocol"]))
        fig, axes = plt.subplots(1, len(protocols), figsize=(4.2 * len(protocols), 4), squeeze=False)
        for ax, protocol in zip(axes[0], protocols):
            for r in part[part["protocol"] == protocol].groupby("encoder", sort=False).head(1).itertuples():
                npz = Path(r.results).with_name("predictions.npz")
                if not npz.is_file():
                    continue
                with np.load(npz, allow_pickle=False) as pred:
                    fpr, tpr = macro_roc(
                        np.asarray(pred["test_targets"]), np.asarray(pred["test_scores"], dtype=np.float64)
                    )
                ax.plot(
                    fpr,
                    tpr,
                    ls="--" if r.kind == "random" else "-",
                    label=f"{r.encoder} s{r.seed} (AUC {fmt(r.test_auc)})",
                )
            ax.plot([0, 1], [0, 1], color="0.8", lw=0.8)
            ax.set(
                title=f"{task} · {protocol}",
                xlabel="false positive rate",
                ylabel="true positive rate (macro)",
                xlim=(0, 1),
                ylim=(0, 1),
            )
            ax.legend(fontsize=7, loc="lower right")
        out.append(png(fig))
    return "".join(out)


def read_metrics(path: Path) -> pd.DataFrame:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run
    return pd.DataFrame(rows)


def pretrain_figure(runs: Sequence[Path]) -> str:
    """loss, pred_loss, sigreg_loss and lr against step for every pretraining run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {f"{p.parent.parent.name}/{p.parent.name}": read_metrics(p.parent / "metrics.jsonl") for p in runs}
    curves = {k: v for k, v in curves.items() if not v.empty and "step" in v}
    if not curves:
        return "<p>No pretraining metrics found.</p>"
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, key in zip(axes, CURVES):
        for name, frame in curves.items():
            if key in frame:
                part = frame[["step", key]].dropna()
                ax.plot(part["step"], part[key], label=name)
        ax.set(title=key, xlabel="step")
        if key == "train/lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.legend(fontsize=7)
    return png(fig)


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
    h = hashlib.sha256()
    with open(image, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()} ({image})"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:14px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}table.small{font-size:12px}
.up{color:#1a7f37;font-weight:600}.down{color:#cf222e;font-weight:600}.muted{color:#666;font-size:13px}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}img{max-width:100%}
"""


def render(
    jobs: pd.DataFrame,
    summary: pd.DataFrame,
    per_class: pd.DataFrame,
    runs: Sequence[Path],
    config: dict[str, Any],
    image: str | None,
) -> str:
    import yaml

    wins = summary[(summary["kind"] == "pretrained") & summary["delta_vs_baseline"].notna()]
    verdict = (
        f"The pretrained encoder beats random init in {int((wins['delta_vs_baseline'] > 0).sum())} of {len(wins)} task × protocol comparisons."
        if len(wins)
        else "No random-init baseline was evaluated."
    )
    data = {
        "jobs": json.loads(jobs.to_json(orient="records")),
        "summary": json.loads(summary.to_json(orient="records")),
    }
    refs = table(
        ["task", "PTB-XL benchmark, best supervised¹", "ECG-JEPA linear²", "ECG-JEPA finetuned²"],
        [
            [t, fmt(PTBXL_BENCHMARK[t]), fmt(ECGJEPA.get((t, "linear"))), fmt(ECGJEPA.get((t, "finetune")))]
            for t in PTBXL_BENCHMARK
        ],
    )
    software = table(["software", "version"], [[esc(k), esc(v)] for k, v in versions().items()])
    sections = [
        f"<h1>MyJEPA report</h1><p class='muted'>generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {len(jobs)} finetune jobs · "
        f"{len(runs)} pretraining run(s)</p><p><b>{esc(verdict)}</b></p>",
        "<h2>Test macro AUC</h2><p class='muted'>Mean ± sample std over seeds (pretraining × finetuning); the bootstrap CI "
        "(resamples of the test records; `bootstrap_samples` in each job's config) is averaged over seeds. Δ: pretrained minus random-init mean.</p>"
        + auc_table(summary),
        f"<h2>Published reference numbers</h2>{refs}<p class='muted'>¹ {esc(PTBXL_SOURCE)}.<br>² {esc(ECGJEPA_SOURCE)}. "
        "Reference numbers are on real PTB-XL; the demo's synthetic data is not comparable with them.</p>",
        f"<h2>Every finetune job</h2>{jobs_table(jobs)}",
        f"<h2>ROC curves</h2><p class='muted'>Macro-average over classes, test fold, first seed of each encoder.</p>{roc_figures(jobs)}",
        f"<h2>Pretraining curves</h2>{pretrain_figure(runs)}",
        f"<h2>Per-class test AUC</h2><p class='muted'>Mean over seeds; — marks a class without a positive test record.</p>{per_class_tables(per_class)}",
        f"<h2>Software</h2>{software}<p>Container image: <code>{esc(image_digest(image))}</code></p>",
        f"<h2>Config</h2><pre>{esc(yaml.safe_dump(config, sort_keys=False))}</pre>",
    ]
    payload = json.dumps(data).replace("</", "<\\/")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>MyJEPA report</title><style>{CSS}</style></head><body>"
        + "".join(sections)
        + f'<script type="application/json" id="auc-data">{payload}</script></body></html>'
    )


def read_csv(path: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"baseline": str, "note": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: cannot read table: {e}") from None
    return frame.fillna({c: "" for c in ("baseline", "note") if c in frame})


def cmd_html(args: argparse.Namespace) -> None:
    try:
        config = json.loads(args.config_json) if args.config_json else {}
    except json.JSONDecodeError as e:
        raise UserError(f"--config-json is not JSON: {e}") from None
    jobs, summary, per_class = read_csv(args.auc), read_csv(args.summary), read_csv(args.per_class)
    page = render(jobs, summary, per_class, [Path(p) for p in args.pretrain_runs], config, args.image)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(page)
    print(f"wrote {args.out} ({len(page) / 1e3:.0f} kB)")


def main(argv: Sequence[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(prog="myjepa report", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    agg = sub.add_parser("aggregate", help="finetune results.json files -> auc.csv, auc_summary.csv, auc_per_class.csv")
    agg.add_argument("results", nargs="+", help=".../ENCODER/TASK/PROTOCOL/sSEED/results.json")
    agg.add_argument("--encoders", default="", help="JSON: encoder -> {kind, group, baseline, model, pretrain_seed}")
    agg.add_argument("--out", required=True)
    agg.add_argument("--summary", required=True)
    agg.add_argument("--per-class", required=True)
    rep = sub.add_parser("html", help="the tables, predictions and pretraining metrics -> report.html")
    rep.add_argument("--auc", required=True)
    rep.add_argument("--summary", required=True)
    rep.add_argument("--per-class", required=True)
    rep.add_argument(
        "--pretrain-runs", nargs="*", default=[], help="encoder.pt of each run; metrics.jsonl is read beside it"
    )
    rep.add_argument("--config-json", default="", help="the workflow config, shown in the report")
    rep.add_argument("--image", default="", help="Apptainer image whose sha256 the report shows")
    rep.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    {"aggregate": cmd_aggregate, "html": cmd_html}[args.command](args)
    return 0


if __name__ == "__main__":
    run_cli(main)
