"""`myjepa slurm-profile --check`: is a written profile still true of this cluster and this machine?

A long run should not fail hours in because a partition was renamed, an account expired, the image
was never built or a data directory moved. Every problem is one line; none means the run can start.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from myjepa.cluster.profile import IMAGE_BUILD, multinode_resources, plural
from myjepa.cluster.slurm import Partition, account_exists, format_minutes
from myjepa.config import read_yaml
from myjepa.errors import UserError


def rule_resources(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """rule -> its resources, default-resources filled in (under the name '*' when no rule sets them)."""
    default = profile.get("default-resources") or {}
    rules = {rule: {**default, **(res or {})} for rule, res in (profile.get("set-resources") or {}).items()}
    return rules or {"*": dict(default)}


def bind_dirs(apptainer_args: str) -> list[str]:
    """The host directories of every --bind / -B SRC[:DST[:OPTS]][,...] in apptainer-args."""
    tokens, dirs = shlex.split(apptainer_args), []
    for i, token in enumerate(tokens):
        if token.startswith("--bind="):
            value = token.split("=", 1)[1]
        elif token in ("--bind", "-B") and i + 1 < len(tokens):
            value = tokens[i + 1]
        else:
            continue
        dirs += [spec.split(":", 1)[0] for spec in value.split(",") if spec]
    return dirs


def image_path(profile: dict[str, Any], workflow_config: dict[str, Any]) -> str:
    """The Apptainer image: the profile's `config: container={image: ...}` entry, else the workflow config's."""
    for entry in profile.get("config") or []:
        key, _, value = str(entry).partition("=")
        if key.strip() == "container":
            return str((yaml.safe_load(value) or {}).get("image", ""))
    return str(workflow_config.get("container", {}).get("image", "containers/myjepa.sif"))


def check_profile(path: Path, partitions: dict[str, Partition], workflow_config: dict[str, Any]) -> list[str]:
    """One line per problem with the profile at `path` on this cluster; empty when all is well."""
    if not path.is_file():
        raise UserError(f"no profile at {path}; write it with `myjepa slurm-profile`")
    profile = read_yaml(path)
    problems = []
    accounts: set[str] = set()
    problems += not_positive(profile)
    for rule, res in rule_resources(profile).items():
        name = res.get("slurm_partition")
        if res.get("slurm_account"):
            accounts.add(str(res["slurm_account"]))
        part = (
            partitions.get(str(name)) if name is not None else next((p for p in partitions.values() if p.default), None)
        )
        if part is None:
            problems.append(f"{rule}: partition {name!r} does not exist (partitions: {', '.join(partitions)})")
            continue
        problems += check_rule(rule, res, part)
    for account in sorted(accounts):
        exists = account_exists(account)
        if exists is not True:
            why = "SLURM's accounting does not know it" if exists is False else f"cannot ask SLURM ({exists})"
            problems.append(f"account {account!r}: {why}")
    methods = profile.get("software-deployment-method") or []
    if "apptainer" in ([methods] if isinstance(methods, str) else methods):
        image = image_path(profile, workflow_config)
        if not Path(image).is_file():
            problems.append(f"image {image} does not exist; build it: {IMAGE_BUILD}")
        for directory in bind_dirs(str(profile.get("apptainer-args", ""))):
            if not Path(directory).is_dir():
                problems.append(f"bind directory {directory} does not exist (apptainer-args in {path})")
    return problems


COUNTS = ("runtime", "mem_mb", "cpus_per_gpu", "cpus_per_task", "threads")
"""Resources that ask for an amount: zero or less asks SLURM for nothing (or is rejected at submission)."""


def not_positive(profile: dict[str, Any]) -> list[str]:
    """A resource or thread count below 1 (a GPU count below 0), e.g. from a profile written when sinfo reported
    negative CPUs or memory; values in units (`2h`) are left to Snakemake."""
    problems = []
    for rule, res in [("default-resources", profile.get("default-resources") or {})] + list(
        (profile.get("set-resources") or {}).items()
    ):
        for key, value in (res or {}).items():
            least = 0 if key == "gpu" else 1
            if (key in COUNTS or key == "gpu") and is_number(value) and value < least:
                problems.append(f"{rule}: {key} {value} is not a usable amount (at least {least})")
    for rule, value in (profile.get("set-threads") or {}).items():
        if is_number(value) and value < 1:
            problems.append(f"{rule}: set-threads {value} is not a usable amount (at least 1)")
    return problems


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_rule(rule: str, res: dict[str, Any], part: Partition) -> list[str]:
    """The rule's GPU, memory and time requests against what its partition offers."""
    problems = [] if part.up else [f"{rule}: partition {part.name!r} is not up (scontrol: State)"]
    nodes, model = max(as_int(res.get("nodes")), 1), res.get("gpu_model")
    gpus = as_int(res.get("gpu")) // nodes  # per node: a job over several nodes asks for all of them
    if gpus and part.max_gpus_per_node(model) < gpus:
        what = plural(gpus, "GPU") + (f" of model {model!r}" if model else "")
        problems.append(f"{rule}: partition {part.name!r} has no node with {what} (has: {part.summary()})")
    elif nodes > 1:
        problems += check_nodes(rule, res, part, nodes, gpus)
    runtime, mem_mb = as_int(res.get("runtime")), as_int(res.get("mem_mb"))
    if part.max_minutes is not None and runtime > part.max_minutes:
        limit = format_minutes(part.max_minutes)
        problems.append(f"{rule}: runtime {res['runtime']} min exceeds the time limit {limit} of {part.name!r}")
    if part.groups and mem_mb > max(g.mem_mb for g in part.groups):
        problems.append(f"{rule}: mem_mb {res['mem_mb']} exceeds every node of {part.name!r}")
    return problems


def check_nodes(rule: str, res: dict[str, Any], part: Partition, nodes: int, gpus_per_node: int) -> list[str]:
    """A job over several nodes: only pretraining can, the partition has the nodes, and the profile has
    every resource `multinode_resources` gives (else the job would run on one node, or hang in srun)."""
    if rule != "pretrain":
        return [f"{rule}: nodes {nodes}: only pretrain runs over several nodes; give {rule} nodes: 1"]
    model = res.get("gpu_model")
    found = part.nodes_with_gpus(model, gpus_per_node)
    if found < nodes:
        what = f" with {plural(gpus_per_node, 'GPU')}" + (f" of model {model!r}" if model else "")
        return [f"{rule}: nodes {nodes}, but partition {part.name!r} has {plural(found, 'node')}{what}"]
    problems = []
    if as_int(res.get("gpu")) % nodes:
        problems.append(f"{rule}: gpu {res.get('gpu')} (the whole job's GPUs) is not a multiple of nodes {nodes}")
    for key, want in multinode_resources(nodes, gpus_per_node, model).items():
        have = res.get(key)
        if key == "slurm_extra":  # --gpus-per-node as given; --signal at any time before the limit
            given = str(have or "").split()
            gpus_opt, signal_opt = want.split()
            missing = [gpus_opt] * (gpus_opt not in given)
            missing += [signal_opt] * (not any(opt.startswith("--signal=") for opt in given))
            if missing:
                problems.append(f"{rule}: nodes {nodes} needs slurm_extra with {' '.join(missing)} (has: {have!r})")
        elif key not in ("nodes", "gpu") and have != want:
            problems.append(f"{rule}: nodes {nodes} needs {key}: {want!r}, not {have!r}")
    return problems


def as_int(value: Any) -> int:
    """A resource as a number; 0 (nothing to check) for units like "2h" that Snakemake itself converts."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
