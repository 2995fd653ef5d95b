"""`myjepa export`: a pretraining run's encoder.pt, or a finetune run, -> a self-describing release folder.

    myjepa export --encoder results/pretrain/tiny/s0/encoder.pt --out results/release/tiny-s0 \
        [--results results/finetune/tiny-s0] [--name tiny-s0]
    myjepa export --classifier results/finetune/tiny-s0/rhythm/linear/s0 \
        --out results/classifiers/tiny-s0/rhythm/linear/s0

An encoder release holds model.safetensors, config.json and MODEL_CARD.md; a classifier release adds
head.safetensors (the format: `myjepa.release`). Both load without the run folder and without pickle:
`myjepa.load_encoder(DIR)`, `myjepa.load_classifier(DIR)`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from myjepa.encoders.load import LoadedEncoder, from_checkpoint
from myjepa.encoders.release import CARD, CONFIG, ENCODER, FORMAT, FORMAT_VERSION, WEIGHTS, release_files
from myjepa.errors import UserError, run_cli
from myjepa.release.card import render_card
from myjepa.release.classifier import export_classifier
from myjepa.release.files import save_weights, software, write_card
from myjepa.utils.io import check_outputs, not_a_file, outputs_of, sha256_file, write_json
from myjepa.utils.logging import logged_lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="myjepa export", description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--encoder", help="encoder.pt of a pretraining run: an encoder release")
    what.add_argument(
        "--classifier", metavar="FINETUNE_DIR", help="a `myjepa finetune` output folder: a classifier release"
    )
    p.add_argument("--out", required=True, help="release folder to write")
    p.add_argument(
        "--results",
        nargs="*",
        default=[],
        metavar="DIR",
        help="with --encoder: finetune results for the card (folders searched for results.json)",
    )
    p.add_argument("--name", help="the release's name (default: the --out folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing release in --out")
    return p.parse_args(argv)


def final_loss(encoder_path: Path) -> dict[str, float] | None:
    """The last logged training losses in metrics.jsonl beside encoder.pt; None when there is none."""
    logged = [line for line in logged_lines(encoder_path.parent / "metrics.jsonl") if "train/loss" in line]
    if not logged:
        return None
    last = logged[-1]
    return {"step": last["step"]} | {
        k: last[f"train/{k}"] for k in ("loss", "pred_loss", "sigreg_loss") if f"train/{k}" in last
    }


def find_results(dirs: Sequence[str]) -> list[Path]:
    """Every results.json under the given folders, or given as files."""
    found = []
    for d in map(Path, dirs):
        paths = [d] if d.is_file() else sorted(d.rglob("results.json"))
        if not paths:
            raise UserError(f"--results {d}: no results.json found")
        found += paths
    return found


def read_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The results.json files, sorted by task, protocol and seed."""
    found = []
    for p in paths:
        try:
            found.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{p}: not readable JSON: {e}") from None
    key = lambda r: (str(r.get("task")), str(r.get("protocol_name", r.get("protocol"))), r.get("seed", 0))  # noqa: E731
    return sorted(found, key=key)


def release_config(name: str, loaded: LoadedEncoder, path: Path) -> dict[str, Any]:
    """config.json without the weights' digest: encoder, input contract, pretraining, software."""
    contract, run = loaded.require_contract(), loaded.run
    if run is None or not run.dumps:
        raise UserError(f"--encoder {path}: not a pretraining checkpoint")
    pretrain = run.config
    data = [
        {k: d[k] for k in ("name", "path", "records", "samples", "fs", "weight")}
        | {"hours": d["records"] * d["samples"] / d["fs"] / 3600}
        for d in run.dumps
    ]
    encoder_config = loaded.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": ENCODER,
        "name": name,
        "encoder": encoder_config,
        "embedding": {"dim": encoder_config["dim"], "pooling": "mean over patch tokens, then over strided crops"},
        "input": contract.to_dict(),
        "pretraining": {
            "step": loaded.step,
            "steps": pretrain.get("steps"),
            "batch_size": pretrain.get("batch_size"),
            "seed": run.options.get("seed"),
            "final_loss": final_loss(path),
            "data": data,
            "encoder_sha256": sha256_file(path),
            "config": pretrain,
        },
        "software": software(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.classifier:
        if args.results:
            raise UserError("--results is for --encoder; a classifier release's card holds its own run's results")
        return export_classifier(Path(args.classifier), Path(args.out), args.name, args.overwrite)
    path, out = Path(args.encoder), Path(args.out)
    if not path.is_file():
        raise UserError(f"--encoder {path}: {not_a_file(path)}")
    result_files = find_results(args.results)
    inputs = [("--encoder", path)] + [("--results", f) for f in result_files]
    check_outputs(outputs_of("--out", out, release_files(out)), inputs, args.overwrite)
    loaded = from_checkpoint(path)
    config = release_config(args.name or out.absolute().name, loaded, path)
    results = read_results(result_files)

    # weights first; config.json records their digest; the card last
    out.mkdir(parents=True, exist_ok=True)
    config = {**config, "weights": save_weights(out / WEIGHTS, loaded.encoder.state_dict())}
    write_json(out / CONFIG, config)
    write_card(out / CARD, render_card(config, results))
    print(f"export: {path} -> {out} ({WEIGHTS}, {CONFIG}, {CARD}; {len(results)} evaluation results)")
    return 0


if __name__ == "__main__":
    run_cli(main)
