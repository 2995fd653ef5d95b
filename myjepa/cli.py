"""The `myjepa` command: one subcommand per stage, each a module with its own `main(argv)`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from myjepa import __version__
from myjepa.errors import run_cli

COMMANDS = {
    "synth": ("myjepa.synth.command", "write a synthetic demo archive (PTB-XL, MIMIC-IV-ECG, CODE-15%, CinC 2021)"),
    "convert": ("myjepa.ingest.convert", "convert a raw ECG archive to a dump, or merge partial dumps"),
    "pretrain": ("myjepa.pretrain.train", "self-supervised pretraining of an encoder on ECG dumps"),
    "finetune": ("myjepa.evaluate.finetune", "linear probing or finetuning on a PTB-XL task or your own labels"),
    "export": ("myjepa.release.export", "write an encoder or a classifier release (safetensors, config.json, card)"),
    "embed": ("myjepa.release.embed", "record embeddings of a dump or a folder of WFDB records"),
    "predict": ("myjepa.release.predict", "class probabilities and labels of records, with a classifier release"),
    "report": ("myjepa.report", "aggregate finetune results into AUC tables and the HTML report"),
    "slurm-profile": ("myjepa.cluster.slurm_profile", "write (or --check) the Snakemake profile `slurm` from sinfo"),
}

USAGE = (
    "usage: myjepa {"
    + ",".join(COMMANDS)
    + "} ... [-h]\n\ncommands:\n"
    + "".join(f"  {name:<13} {help_}\n" for name, (_, help_) in COMMANDS.items())
)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        print(f"myjepa {__version__}")
        sys.exit(0)
    if args[0] not in COMMANDS:
        print(f"myjepa: error: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[args[0]][0])
    run_cli(module.main, args[1:])


if __name__ == "__main__":
    main()
