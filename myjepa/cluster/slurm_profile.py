"""`myjepa slurm-profile`: write the named Snakemake profile `slurm` from what this cluster reports.

    myjepa slurm-profile                      # guess everything, write ~/.config/snakemake/slurm/config.yaml
    myjepa slurm-profile --gpu-partition a100 --account proj42 --bind /data/physionet --overwrite
    myjepa slurm-profile --gpus-per-job 4 --nodes-per-job 2   # pretraining: one job, 2 nodes x 4 GPUs
    myjepa slurm-profile --check              # before a long run: is the written profile still right?

Afterwards `snakemake --profile slurm ...` works from the repository root.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from myjepa.cluster.check import check_profile
from myjepa.cluster.profile import default_profile_dir, propose, read_workflow_config, render, write_profile
from myjepa.cluster.slurm import Partition, read_cluster

CONFIG_FILES = ["config/config.yaml", "config/real.yaml"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="myjepa slurm-profile",
        description="Write a Snakemake SLURM profile from sinfo / scontrol (or --check a written one).",
    )
    p.add_argument("--out", type=Path, help="profile directory (default: $XDG_CONFIG_HOME/snakemake/slurm)")
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true", help="replace an existing profile")
    p.add_argument("--check", action="store_true", help="check the profile against the cluster; write nothing")
    p.add_argument("--cpu-partition", help="partition of the CPU rules (default: guessed)")
    p.add_argument("--gpu-partition", help="partition of pretraining and finetuning (default: guessed)")
    p.add_argument("--gpu-model", help="GRES GPU type, e.g. h100 (default: the most common in the GPU partition)")
    p.add_argument("--account", help="SLURM account charged for every job (default: none; SLURM's default)")
    p.add_argument(
        "--gpus-per-job", type=int, default=1, help="GPUs per pretraining job, on each of its nodes (default 1)"
    )
    p.add_argument(
        "--nodes-per-job",
        type=int,
        default=1,
        help="nodes per pretraining job (default 1); more: srun starts one torchrun per node",
    )
    p.add_argument("--bind", nargs="+", metavar="DIR", help="directories for Apptainer to mount (default: raw data)")
    p.add_argument("--image", help="Apptainer image (default: container.image of the workflow config)")
    p.add_argument(
        "--no-container", action="store_true", help="no Apptainer: jobs run in the environment that submits them"
    )
    p.add_argument(
        "--configfile",
        nargs="+",
        default=CONFIG_FILES,
        help=f"workflow config files the runs will use (default: {' '.join(CONFIG_FILES)})",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    profile_dir = args.out or default_profile_dir()
    partitions = read_cluster()
    config = read_workflow_config(args.configfile)
    if args.check:
        return report_check(profile_dir / "config.yaml", partitions, config)
    for part in partitions.values():
        print(f"found: {part.summary()}")
    plan = propose(partitions, args, config)
    for note in plan.notes:
        print(f"chose: {note}")
    command = " ".join(["myjepa slurm-profile", *map(shlex.quote, argv)])
    configs = [("--configfile", Path(f)) for f in args.configfile]
    path = write_profile(profile_dir, render(plan, partitions, command), args.overwrite, configs)
    print(f"wrote {path}; check it before a long run: myjepa slurm-profile --check")
    return 0


def report_check(path: Path, partitions: dict[str, Partition], config: dict[str, Any]) -> int:
    problems = check_profile(path, partitions, config)
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{path}: " + (f"{len(problems)} problem(s)" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
