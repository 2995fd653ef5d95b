"""`myjepa convert`: raw ECG archives -> memory-mappable dumps of 10 s windows; `merge` joins shards.

    myjepa convert ptb-xl --src PTBXL_DIR --out ptb-xl.npy [--source-rate 500|100] [--fs 500]
    myjepa convert mimic-iv-ecg --src MIMIC_DIR --out mimic.npy --workers 16 --shard 3/40
    myjepa convert code-15 --src CODE15_DIR --out code-15.npy --highpass 0.5
    myjepa convert challenge-2021 --src training/georgia --out georgia.npy [--windows split|first]
    myjepa convert wfdb --src ANY_WFDB_TREE --out other.npy
    myjepa convert merge mimic.part*.npy --out mimic.npy

The command line only: one subcommand per archive in `archives.ARCHIVES` (the converter is
`writer.convert`), and `merge` (`merge.merge`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from myjepa.dumps import dump_files
from myjepa.errors import UserError, run_cli
from myjepa.ingest.archives import ARCHIVES, WINDOWS
from myjepa.ingest.merge import merge
from myjepa.ingest.record_list import parse_shard
from myjepa.ingest.writer import convert
from myjepa.utils.checks import check_rate
from myjepa.utils.io import check_outputs, outputs_of


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myjepa convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", required=True, metavar="{" + ",".join([*ARCHIVES, "merge"]) + "}")
    for name, archive in ARCHIVES.items():
        p = sub.add_parser(name, help=archive.help.replace("%", "%%"))  # argparse %-formats help
        p.add_argument("--src", required=True, help="the dataset's root folder")
        p.add_argument("--out", required=True, help="output dump PATH.npy (sidecars PATH.index.csv, PATH.stats.json)")
        if len(archive.source_rates) > 1:
            p.add_argument(
                "--source-rate",
                type=int,
                choices=archive.source_rates,
                default=archive.source_rates[0],
                help=archive.source_rate_help,
            )
        p.add_argument("--fs", type=int, default=500, help="output sampling rate in Hz (default 500)")
        p.add_argument(
            "--windows",
            choices=WINDOWS,
            default=archive.windows,
            help="split: every whole 10 s window of a record (a shorter remainder is counted, not kept);"
            f" first: its first 10 s (default {archive.windows})",
        )
        p.add_argument(
            "--highpass",
            type=float,
            default=None,
            metavar="HZ",
            help="remove baseline wander: zero-phase Butterworth high-pass at HZ (e.g. 0.5); default none",
        )
        p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
        p.add_argument("--shard", default=None, help="convert only the I-th of N contiguous slices, e.g. 3/40")
        p.add_argument(
            "--max-skip-fraction",
            type=float,
            default=0.01,
            help="fail when more records than this are skipped (default 0.01)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out dump")
    p = sub.add_parser("merge", help="concatenate partial dumps (e.g. shards) into one")
    p.add_argument("parts", nargs="+", help="partial dumps PART.npy")
    p.add_argument("--out", required=True, help="output dump PATH.npy")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out dump (never a part)")
    return parser


def archive_files(src: str, outputs: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """What a conversion reads, as far as an output could replace it: the --src folder, and any file already
    where an output would go inside it (the archive's own, for all this command knows)."""
    root = os.path.realpath(src)
    inside = [f for _, f in outputs if f.exists() and os.path.realpath(f).startswith(root + os.sep)]
    return [("--src", Path(src)), *(("--src", f) for f in inside)]


def _check_options(args: argparse.Namespace) -> None:
    check_rate(args.fs, "--fs")
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if args.highpass is not None and not 0 < args.highpass < args.fs / 2:
        raise UserError(f"--highpass {args.highpass:g}: must be between 0 and half of --fs ({args.fs / 2:g} Hz)")
    if not 0 <= args.max_skip_fraction <= 1:
        raise UserError(f"--max-skip-fraction {args.max_skip_fraction}: must be between 0 and 1")


def main(argv: Sequence[str] | None = None) -> int | None:
    args = build_parser().parse_args(argv)
    outputs = outputs_of("--out", args.out, dump_files(args.out))
    if args.source == "merge":
        check_outputs(outputs, [("part", f) for part in args.parts for f in dump_files(part)], args.overwrite)
        stats = merge(args.parts, args.out)
        print(f"merged {len(args.parts)} parts: {stats['count']} records -> {args.out}")
        return 0
    _check_options(args)
    check_outputs(outputs, archive_files(args.src, outputs), args.overwrite)
    stats = convert(
        args.source,
        args.src,
        args.out,
        getattr(args, "source_rate", ARCHIVES[args.source].source_rates[0]),
        args.fs,
        args.workers,
        parse_shard(args.shard),
        args.max_skip_fraction,
        progress=not args.quiet,
        windows=args.windows,
        highpass=args.highpass,
    )
    print(
        f"converted {stats['records_kept']} of {stats['records_in_shard']} records into {stats['count']} windows"
        f" ({len(stats['skipped'])} skipped, {stats['nan_interpolated']} NaN samples interpolated) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
