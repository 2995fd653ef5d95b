"""What a pretraining run is besides its config: the options of `myjepa pretrain`, built once by the command.

Some options define the run, and this module is where that is said, once:
- `WEIGHT_OPTIONS` (seed, autocast dtype) decide the weights: every checkpoint records them and a run
  resumes only under the same ones (`checkpoints.py`);
- `RUN_OPTIONS` add those that change how the run goes but not its weights (torch.compile): the
  workflow reruns a job when any of them changes (`myjepa.workflow.pretrain_settings`).
The others (device, wandb, the online probe, --restart-on-change) change neither. Torch-free: the
Snakemake process imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

WEIGHTS, RUN = {"defines": "weights"}, {"defines": "run"}


@dataclass(frozen=True)
class ProbeOptions:
    """The online probe's PTB-XL dump, its tables folder, and the folds it validates on and never reads."""

    data: Path
    labels: Path
    val_fold: int = 9
    test_fold: int = 10


@dataclass(frozen=True)
class RunOptions:
    """One `myjepa pretrain` run's options: `train()` and `Recorder` take this, never the command line."""

    data: tuple[tuple[str, Path], ...]  # (dataset name, dump) pairs
    out: Path  # the run folder
    seed: int = field(default=42, metadata=WEIGHTS)
    amp: str | None = field(default=None, metadata=WEIGHTS)  # None: bfloat16 on CUDA, float32 on the CPU
    compile: bool = field(default=False, metadata=RUN)
    device: str | None = None  # None: CUDA when available
    wandb: bool = False
    probe: ProbeOptions | None = None
    restart_on_change: bool = False

    def on_device(self, device_type: str) -> RunOptions:
        """These options with the autocast dtype settled for the device the run got."""
        return replace(self, amp=self.amp or ("bfloat16" if device_type == "cuda" else "float32"))

    def weight_settings(self) -> dict[str, Any]:
        """The options a checkpoint is resumed under, by name."""
        return {name: getattr(self, name) for name in WEIGHT_OPTIONS}


def defining(*kinds: dict[str, str]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunOptions) if f.metadata in kinds)


WEIGHT_OPTIONS = defining(WEIGHTS)
RUN_OPTIONS = defining(WEIGHTS, RUN)


def flag(name: str) -> str:
    """The command-line option of a RunOptions field: `restart_on_change` -> `--restart-on-change`."""
    return "--" + name.replace("_", "-")


def option_args(values: Mapping[str, Any]) -> list[str]:
    """Command-line words of option values: {"seed": 1, "amp": None, "compile": True} -> ["--seed 1", "--compile"].

    A false switch and an unset value (None, "") are left out: the command's default applies.
    """
    words = []
    for name, value in values.items():
        if value is True:
            words.append(flag(name))
        elif value is not False and value not in (None, ""):
            words.append(f"{flag(name)} {value}")
    return words
