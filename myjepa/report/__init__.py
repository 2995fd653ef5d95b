"""The workflow's last two steps: finetune results -> AUC tables -> one self-contained HTML report.

    myjepa report aggregate --encoders JSON --out auc.csv --summary auc_summary.csv \
        --per-class auc_per_class.csv results/finetune/ENCODER/TASK/PROTOCOL/sSEED/results.json ...
    myjepa report html --auc auc.csv --summary auc_summary.csv --per-class auc_per_class.csv \
        --pretrain-runs results/pretrain/RUN/sSEED/encoder.pt ... --releases results/release/ENCODER/MODEL_CARD.md ... \
        --classifiers results/classifiers/ENCODER/TASK/PROTOCOL/sSEED/MODEL_CARD.md ... \
        --config-json JSON --out report.html

Each job's encoder, task, protocol and seed, and its numbers, come from its results.json
(`aggregate`); the tables repeat them exactly. `html` rounds them to 3 decimals and embeds the
exact values as JSON. Modules: `aggregate` (results.json -> CSV tables), `plots` (inline PNG
figures), `html` (the page), `data` (the dumps' table), `markup` (HTML building blocks),
`references` (published numbers).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from myjepa.dumps import dump_files
from myjepa.errors import UserError, run_cli
from myjepa.report.aggregate import aggregate, read_csv, write_csv
from myjepa.report.html import render
from myjepa.utils.io import atomic_path, check_outputs, outputs_of

__all__ = ["main"]


def json_option(text: str, option: str) -> Any:
    """The value of a JSON-valued option; {} when it is empty."""
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise UserError(f"{option} is not JSON: {e}") from None


def cmd_aggregate(args: argparse.Namespace) -> None:
    tables = (("--out", args.out), ("--summary", args.summary), ("--per-class", args.per_class))
    outputs = [output for option, path in tables for output in outputs_of(option, path)]
    check_outputs(outputs, [("results", Path(p)) for p in args.results], args.overwrite)
    encoders = json_option(args.encoders, "--encoders")
    jobs, per_class, summary = aggregate([Path(p) for p in args.results], encoders)
    write_csv(jobs, Path(args.out))
    write_csv(summary, Path(args.summary))
    write_csv(per_class, Path(args.per_class))
    print(f"aggregated {len(jobs)} finetune results into {args.out}, {args.summary}, {args.per_class}")


def html_inputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """What `html` reads by option (besides each job's results.json and predictions.npz, named in --auc)."""
    files = [(option, Path(path)) for option, path in (("--auc", args.auc), ("--summary", args.summary))]
    files += [("--per-class", Path(args.per_class))] + [("--releases", Path(p)) for p in args.releases]
    files += [("--classifiers", Path(p)) for p in args.classifiers]
    files += [("--pretrain-runs", f) for p in args.pretrain_runs for f in (Path(p), Path(p).parent / "metrics.jsonl")]
    files += [("--dumps", f) for p in args.dumps for f in dump_files(p)]
    return files + ([("--image", Path(args.image))] if args.image else [])


def cmd_html(args: argparse.Namespace) -> None:
    check_outputs(outputs_of("--out", args.out), html_inputs(args), args.overwrite)
    config = json_option(args.config_json, "--config-json")
    jobs, summary, per_class = read_csv(args.auc), read_csv(args.summary), read_csv(args.per_class)
    runs, dumps = [Path(p) for p in args.pretrain_runs], [Path(p) for p in args.dumps]
    releases, classifiers = [Path(p) for p in args.releases], [Path(p) for p in args.classifiers]
    page = render(jobs, summary, per_class, runs, config, args.image, dumps, releases, Path(args.out), classifiers)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(page)
    print(f"wrote {args.out} ({len(page) / 1e3:.0f} kB)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="myjepa report", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    agg = sub.add_parser("aggregate", help="finetune results.json files -> auc.csv, auc_summary.csv, auc_per_class.csv")
    agg.add_argument("results", nargs="+", help="results.json of each finetune job")
    agg.add_argument("--encoders", default="", help="JSON: encoder -> {kind, group, baseline, model, pretrain_seed}")
    agg.add_argument("--out", required=True)
    agg.add_argument("--summary", required=True)
    agg.add_argument("--per-class", required=True)
    agg.add_argument("--overwrite", action="store_true", help="replace existing tables")
    rep = sub.add_parser("html", help="the tables, predictions and pretraining metrics -> report.html")
    rep.add_argument("--auc", required=True, help="auc.csv; each job's results.json and predictions.npz are read")
    rep.add_argument("--summary", required=True)
    rep.add_argument("--per-class", required=True)
    rep.add_argument(
        "--pretrain-runs", nargs="*", default=[], help="encoder.pt of each run; metrics.jsonl is read beside it"
    )
    rep.add_argument("--dumps", nargs="*", default=[], help="the pretraining dumps PATH.npy (their stats.json is read)")
    rep.add_argument(
        "--releases",
        nargs="*",
        default=[],
        help="MODEL_CARD.md of each release (myjepa export); linked from the report",
    )
    rep.add_argument(
        "--classifiers",
        nargs="*",
        default=[],
        help="MODEL_CARD.md of each classifier release (myjepa export --classifier); linked from the report",
    )
    rep.add_argument("--config-json", default="", help="the workflow config, shown in the report")
    rep.add_argument("--image", default="", help="Apptainer image whose sha256 the report shows")
    rep.add_argument("--out", required=True)
    rep.add_argument("--overwrite", action="store_true", help="replace an existing report")
    return p


def main(argv: Sequence[str] | None = None) -> int | None:
    args = parser().parse_args(argv)
    {"aggregate": cmd_aggregate, "html": cmd_html}[args.command](args)
    return 0


if __name__ == "__main__":
    run_cli(main)
