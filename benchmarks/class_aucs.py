"""Per-class test AUCs of encoders probed by pretrain_quality.py, and how much of a macro AUC rests on few records.

On the real sample's fold 10 some classes have one or two positive records (rhythm: PACE and SVTAC one each,
STACH two). Such a class's AUC is the rank of one record among a hundred, yet it weighs as much in the macro
AUC as SR with 103 positives. This prints, per class, the test positives, each encoder's mean AUC over the
seeds, and the paired difference to the first encoder; then the macro AUC over the classes with at least
--min-positives test positives and over the rest.

    python benchmarks/class_aucs.py rhythm random=/work/pq/xs/random/a17d9cfb9d \
        ctx300=/work/pq/xs/runs/ViTXS_mimic/ctx300 [--min-positives 3]

Each NAME=DIR holds one folder per seed (s0, s1, ...) with probe/TASK/results.json, as pretrain_quality.py
leaves them; the seeds compared are those every DIR has.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def read_class_aucs(folder: Path, task: str) -> dict[str, tuple[int, float | None]]:
    """{class: (test positives, AUC or None where undefined)} of one probed encoder."""
    results = folder / "probe" / task / "results.json"
    if not results.is_file():
        sys.exit(f"{results}: no such file; probe the encoder with pretrain_quality.py first")
    return {c["name"]: (c["n_pos"], c["auc"]) for c in json.loads(results.read_text())["classes"]}


def seeds_in_all(dirs: Sequence[Path]) -> list[str]:
    names = [{p.name for p in d.glob("s[0-9]*") if p.is_dir()} for d in dirs]
    common = sorted(set.intersection(*names), key=lambda s: int(s[1:]))
    if not common:
        sys.exit(f"no seed folder (s0, s1, ...) is in every one of {', '.join(map(str, dirs))}")
    return common


def table(task: str, encoders: dict[str, Path], min_positives: int) -> str:
    """The markdown table: one row per class with a defined AUC, then the macro rows (many, few, all positives)."""
    seeds = seeds_in_all(list(encoders.values()))
    aucs = {name: [read_class_aucs(d / s, task) for s in seeds] for name, d in encoders.items()}
    first = next(iter(aucs.values()))[0]
    classes = [c for c, (_, auc) in first.items() if auc is not None]
    names = list(encoders)
    # per encoder, per seed, per class (seeds × classes)
    scores = {n: np.array([[run[c][1] for c in classes] for run in aucs[n]], dtype=float) for n in names}
    positives = np.array([first[c][0] for c in classes])
    groups = {
        f"macro, ≥ {min_positives} positives": positives >= min_positives,
        f"macro, < {min_positives} positives": positives < min_positives,
        "macro, all": np.ones(len(classes), dtype=bool),
    }
    head = "| class | test positives | " + " | ".join(names) + " |"
    lines = [f"{task}, seeds {', '.join(seeds)}: mean AUC (Δ: paired, against {names[0]})", "", head]
    lines.append("|" + "---|" * (len(names) + 2))

    def row(label: str, count: str, pick: np.ndarray) -> str:
        base = scores[names[0]][:, pick].mean(1)
        cells = [f"{base.mean():.3f}"]
        for n in names[1:]:
            own = scores[n][:, pick].mean(1)
            cells.append(f"{own.mean():.3f} (Δ {own.mean() - base.mean():+.3f})")
        return f"| {label} | {count} | " + " | ".join(cells) + " |"

    for i, c in enumerate(classes):
        lines.append(row(c, str(positives[i]), np.arange(len(classes)) == i))
    for label, pick in groups.items():
        if pick.any():
            lines.append(row(label, f"{pick.sum()} of {len(classes)} classes", pick))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task")
    p.add_argument("encoders", nargs="+", metavar="NAME=DIR", help="the first is the one the others are against")
    p.add_argument("--min-positives", type=int, default=3)
    args = p.parse_args(argv)
    encoders = {}
    for spec in args.encoders:
        name, sep, folder = spec.partition("=")
        if not sep or not name:
            p.error(f"{spec!r}: give NAME=DIR")
        encoders[name] = Path(folder)
    print(table(args.task, encoders, args.min_positives))


if __name__ == "__main__":
    main()
