"""The pieces of the workflow jobs' command lines and environment, built from the checked config.

Split from `myjepa.workflow` (the config checks and tables) so that each stays small; Snakemake's
`workflow/rules/common.smk` imports both while it parses the workflow, so this module is torch-free too.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from myjepa.pretrain.options import RUN_OPTIONS, option_args
from myjepa.workflow import ConfigError, set_pairs


def set_args(overrides: Mapping[str, Any]) -> str:
    """{'steps': 300} -> "--set steps=300": `set_pairs`, quoted for the shell."""
    return " ".join(f"--set {shlex.quote(pair)}" for pair in set_pairs(overrides))


def pretrain_settings(run: Mapping[str, Any], seed: int, pretrain: Mapping[str, Any]) -> dict[str, Any]:
    """Exactly what defines a pretraining job: its model config, datasets and `set:`, then the run options that
    define a run (`myjepa.pretrain.options.RUN_OPTIONS`): the seed is the job's, the others come from the
    workflow config's `pretrain:` section under the same names."""
    options = {name: seed if name == "seed" else pretrain[name] for name in RUN_OPTIONS}
    return {"config": run["config"], "datasets": run["datasets"], "set": run["set"], **options}


def pretrain_args(settings: Mapping[str, Any], dumps: Mapping[str, str], probe: Mapping[str, Any]) -> str:
    """`myjepa pretrain` arguments of a job's settings (`pretrain_settings`); `dumps` maps each of its datasets
    to a dump; `probe`: the online probe's PTB-XL dump, tables folder and validation and test folds."""
    datasets = settings["datasets"]
    data = " ".join(f"{name}={shlex.quote(dumps[name])}" for name in datasets)
    args = [f"--data {data}"]  # one --data with every dump: the option takes a list
    args.append(f"--config {shlex.quote(settings['config'])}")
    args.append(set_args({"datasets": datasets, **settings["set"]}))
    args += option_args({name: settings[name] for name in RUN_OPTIONS if name != "seed"})  # the rule passes --seed
    args.append(
        f"--probe-data {shlex.quote(probe['dump'])} --probe-labels {shlex.quote(probe['tables'])} "
        f"--probe-val-fold {probe['val_fold']} --probe-test-fold {probe['test_fold']}"
    )
    return " ".join(args)


def finetune_args(settings: Mapping[str, Any], encoder: str, init: str | None = None) -> str:
    """`myjepa finetune` arguments of a job's settings, its encoder and, if any, the checkpoint it starts from."""
    protocol = settings["protocol"]
    args = [
        f"--encoder {shlex.quote(encoder)}",
        f"--config {shlex.quote(protocol['config'])}",
        set_args(protocol["set"]),
        f"--val-fold {settings['val_fold']} --test-fold {settings['test_fold']}",
    ]
    if init:
        args.append(f"--init {shlex.quote(init)}")
    return " ".join(a for a in args if a)


def set_resource(overrides: Mapping[str, Any], rule: str, name: str) -> Any:
    """The value `--set-resources` (a profile's `set-resources`) gives resource `name` of `rule`, as written:
    an int, a string, or None when unset. Snakemake's parsed resources hold it as `.raw`."""
    value = (overrides.get(rule) or {}).get(name)
    return getattr(value, "raw", value)


def pretrain_nodes(overrides: Mapping[str, Any]) -> int:
    """Nodes of each pretraining job: the profile's `set-resources: pretrain: nodes:` (default 1).

    Read while the workflow is parsed, not per job: a job over several nodes leaves the image to its own
    srun tasks (`myjepa.cluster.launch`), so the rule's `container:` depends on it."""
    value = set_resource(overrides, "pretrain", "nodes")
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"set-resources: pretrain: nodes must be a whole number of nodes, 1 or more, not {value!r}")
    return value


def pretrain_launch(
    nodes: int,
    gpus: int,
    cpus_per_gpu: int | None,
    threads: int,
    image: str | None = None,
    apptainer_args: str = "",
    python: str = sys.executable,
) -> str:
    """The command a pretrain job starts `myjepa pretrain` with; the pretraining arguments follow it.

    One node: the command itself, or one `torchrun --standalone` with a process per GPU (`gpus`). Several
    nodes: `myjepa.cluster.launch`, which sruns one torchrun per node; `gpus` is then the whole job's (the
    slurm plugin's `gpu` asks sbatch for `--gpus`), `image` the one each task runs in (None: none).
    """
    if nodes <= 1:
        return "myjepa pretrain" if gpus <= 1 else f"torchrun --standalone --nproc_per_node={gpus} -m myjepa.pretrain"
    if gpus % nodes:
        raise ConfigError(f"pretrain: gpu {gpus} (the whole job's GPUs) is not a multiple of nodes {nodes}")
    per_node = gpus // nodes
    cpus = cpus_per_gpu * per_node if cpus_per_gpu and per_node else threads
    args = [python, "-m", "myjepa.cluster.launch", f"--nodes={nodes}", f"--gpus-per-node={per_node}"]
    args.append(f"--cpus-per-task={cpus}")
    if image:
        args += [f"--image={image}", f"--apptainer-args={apptainer_args}"]
    return shlex.join([*args, "--"])


def job_environment(wandb: Mapping[str, Any], path: str = "", executable: str = sys.executable) -> dict[str, str]:
    """The variables every job inherits (subprocesses, SLURM jobs and containers alike).

    wandb reaches the commands here, not through params: switching it on or off, or renaming the
    project, must not rerun anything. PATH starts with this interpreter's bin, so that
    `.venv/bin/snakemake` run without an activated venv still finds `myjepa` and its python.
    """
    return {
        "MYJEPA_WANDB": "--wandb" if wandb["enabled"] else "",
        "WANDB_PROJECT": wandb["project"],
        "PATH": os.pathsep.join([str(Path(executable).parent), path]),
    }
