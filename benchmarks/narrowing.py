"""How far each pretraining run's encoder narrowed: the figures behind collapse.py's narrowing warning.

For every metrics.jsonl under the folders given, it prints the largest fall of `train/token_rankme` below
its running peak (as a ratio, with the step) and the lowest online probe AUC after step 0 minus the step-0
value (the untrained encoder's), sorted by the rank fall. The warning fires at RANK_FALL and PROBE_FALL.

    python benchmarks/narrowing.py /work/pq /work/pqc
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from myjepa.pretrain.collapse import PROBE_FALL, RANK_FALL
from myjepa.utils.logging import logged_lines


def rank_fall(lines: list[dict]) -> tuple[float, int]:
    """(the largest ratio of the running peak to token_rankme, the first step it is reached at)."""
    peak, worst = 0.0, (0.0, 0)
    for line in lines:
        if (rank := line.get("train/token_rankme")) is not None:
            peak = max(peak, rank)
            if peak / rank > worst[0]:
                worst = (peak / rank, line["step"])
    return worst


def probe_fall(lines: list[dict]) -> float | None:
    """The lowest online probe AUC after step 0 minus the step-0 one; None without both."""
    start = [line["probe/auc"] for line in lines if "probe/auc" in line and line["step"] == 0]
    later = [line["probe/auc"] for line in lines if "probe/auc" in line and line["step"] > 0]
    return min(later) - start[0] if start and later else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args(argv)
    rows = []
    for path in sorted({m for folder in args.folders for m in folder.rglob("metrics.jsonl")}):
        lines = logged_lines(path)
        if any("train/token_rankme" in line for line in lines):
            rows.append((*rank_fall(lines), probe_fall(lines), path))
    if not rows:
        sys.exit("narrowing: no metrics.jsonl with train/token_rankme under " + " ".join(map(str, args.folders)))
    print(f"| token rank fall (warns at {RANK_FALL:g}x) | at step | probe - step 0 (warns below -{PROBE_FALL}) | run |")
    print("|---|---|---|---|")
    for fall, step, probe, path in sorted(rows, key=lambda r: -r[0]):
        print(f"| {fall:.1f}x | {step} | {'' if probe is None else f'{probe:+.3f}'} | {path} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
