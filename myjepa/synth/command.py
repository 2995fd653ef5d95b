"""`myjepa synth`: a synthetic demo dataset in the real PTB-XL, MIMIC-IV-ECG, CODE-15% or Challenge 2021 layout.

    myjepa synth --layout ptb-xl --out demo/ptb-xl --records 600 --seed 0
    myjepa synth --layout mimic-iv-ecg --out demo/mimic --records 2000 --seed 1
    myjepa synth --layout code-15 --out demo/code-15 --records 400 --seed 2
    myjepa synth --layout challenge-2021 --out demo/cpsc --records 100 --seed 3

The PTB-XL and MIMIC-IV-ECG layouts are written by `ptbxl_mimic`, the CODE-15% and Challenge 2021
layouts by `code15_challenge`.

Labels are real SCP codes and they shape the waveforms (see `profiles`), so the demo's six
PTB-XL tasks are learnable: rhythm (SR, STACH, SBRAD, SARRH, AFIB, AFLT), conduction (bundle
branch blocks, LAFB, 1AVB), infarction (inferior / anterior Q waves), ST-T changes, LVH and
voltage. Both layouts use the same simulator, so pretraining on the MIMIC demo transfers. Folds
are assigned per label profile, so every fold holds every common class. The dataset is written
into a temporary sibling folder and renamed when complete; its MARKER file lets --overwrite replace
it, and nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from myjepa.errors import UserError, run_cli
from myjepa.synth.code15_challenge import write_challenge, write_code15
from myjepa.synth.ptbxl_mimic import write_mimic, write_ptbxl
from myjepa.utils.io import tmp_path, write_json

LAYOUTS = {
    "ptb-xl": write_ptbxl,
    "mimic-iv-ecg": write_mimic,
    "code-15": write_code15,
    "challenge-2021": write_challenge,
}
"""`--layout` -> the function that writes a dataset in that archive's layout."""

MARKER = ".myjepa-synth.json"
"""The file in every dataset this command writes (its layout, records and seed): what --overwrite may replace."""


def synth(
    layout: str,
    out: str | Path,
    n_records: int,
    seed: int = 0,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write the dataset to `out` via a temporary sibling folder; returns `out`."""
    out = Path(out)
    if n_records < 1:
        raise UserError(f"--records {n_records}: need at least 1")
    replace = check_out(out, overwrite)
    tmp = tmp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        LAYOUTS[layout](tmp, n_records, seed, workers, progress=progress)
        write_json(tmp / MARKER, {"layout": layout, "records": n_records, "seed": seed})
        if replace:
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_out(out: Path, overwrite: bool) -> bool:
    """Whether `out` is a dataset this command wrote, to be replaced (with `overwrite`); an empty folder or
    none is simply written. Anything else is refused: --overwrite never deletes what synth did not write
    (`--out ~ --overwrite` once removed the home folder)."""
    if not os.path.lexists(out) or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        return False
    if out.is_symlink() or not out.is_dir():
        raise UserError(
            f"--out {out}: {'a symbolic link' if out.is_symlink() else 'a file'}; give a new or empty folder"
        )
    if not (out / MARKER).is_file():
        raise UserError(
            f"--out {out}: holds files `myjepa synth` did not write (no {MARKER}); --overwrite replaces only a "
            "synthetic dataset: give another --out, or a new or empty folder"
        )
    if not overwrite:
        raise UserError(f"--out {out}: holds a synthetic dataset; pass --overwrite to replace it")
    return True


def main(argv: Sequence[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(prog="myjepa synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, choices=tuple(LAYOUTS))
    parser.add_argument("--out", required=True, help="dataset folder to create")
    parser.add_argument("--records", type=int, required=True, help="number of records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, len(os.sched_getaffinity(0))),
        help="worker processes (default: the CPUs available, at most 8; the output does not depend on it)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it holds a synthetic dataset (never other files)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    synth(args.layout, args.out, args.records, args.seed, args.overwrite, args.workers, progress=not args.quiet)
    dt = time.perf_counter() - t0
    print(f"wrote {args.records} {args.layout} records to {args.out} in {dt:.1f} s ({args.records / dt:.0f} records/s)")
    return 0


if __name__ == "__main__":
    run_cli(main)
