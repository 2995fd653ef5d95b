"""Propose a Snakemake SLURM profile from the cluster's facts and write it.

The profile has the shape of the documented example profiles/slurm/config.yaml. Partitions and the
GPU model are guessed from sinfo (every guess can be overridden); each rule's runtime and memory come
from the workflow config's `resources`, cut to what the rule's partition allows, so that no job asks
for more than SLURM would ever grant.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from myjepa.cluster.slurm import UNTYPED, Partition
from myjepa.config import read_yaml
from myjepa.errors import UserError
from myjepa.utils.io import atomic_path, check_outputs

# rule -> its group under `resources:` in the workflow config (workflow/rules/*.smk: res(GROUP, ...));
# tests/test_slurm_profile.py checks that every rule of the workflow is here
CPU_RULES = {
    "synth_ptbxl": "synth",
    "synth_archive": "synth",
    "convert_ptbxl": "convert",
    "convert_shard": "convert",
    "merge_shards": "merge",
    "aggregate": "report",
    "export": "report",
    "export_classifier": "report",
    "report": "report",
}
GPU_RULES = {"pretrain": "pretrain", "finetune": "finetune"}
DEFAULT_RUNTIME, DEFAULT_MEM_MB = 60, 4000  # default-resources of the example profile
LIMIT_NAMES = {"runtime": "time limit in minutes", "mem_mb": "MB per node", "threads": "CPUs per node"}
IMAGE_BUILD = "apptainer build containers/myjepa.sif containers/myjepa.def"
STOP_SIGNAL = "TERM@300"
"""sbatch --signal of a job over several nodes: SIGTERM to every process of its srun step 5 minutes before
the time limit, time for each rank to finish its step and for rank 0 to save last_ckpt.pt. SIGTERM, not
SIGUSR1: torchrun of every version passes SIGTERM on to its workers, SIGUSR1 only with
`--signals-to-handle` (pytorch#160690, newer than the image's torch 2.7.1); unhandled, it kills the agent."""


def default_profile_dir() -> Path:
    """Where Snakemake looks for `--profile slurm` first: $XDG_CONFIG_HOME/snakemake/slurm."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "snakemake" / "slurm"


def read_workflow_config(paths: list[str]) -> dict[str, Any]:
    """The config files merged as Snakemake merges --configfile (later files win, mappings key by key)."""
    merged: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"config file {path} does not exist (--configfile); run from the repository root")
        deep_update(merged, read_yaml(Path(path)))
    return merged


def deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value


@dataclass
class Plan:
    """Every choice the profile holds, and why each was made (the `notes` go into the header)."""

    cpu: Partition
    gpu: Partition
    gpu_model: str | None
    gpus_per_job: int  # per node
    nodes_per_job: int
    account: str | None
    binds: list[str]
    image: str | None  # only when given: otherwise container.image of the workflow config
    container: bool
    resources: dict[str, dict[str, int]] = field(default_factory=dict)  # rule -> runtime, mem_mb, cpus_per_gpu
    notes: list[str] = field(default_factory=list)


def pick_partition(partitions: dict[str, Partition], name: str | None, role: str, candidates, key) -> Partition:
    """The partition named by --ROLE-partition (any partition), else the best of `candidates` by `key`."""
    if name is not None:
        if name not in partitions:
            raise UserError(f"--{role}-partition {name!r} does not exist; partitions: {', '.join(partitions)}")
        return partitions[name]
    return max(candidates, key=key)


def propose(partitions: dict[str, Partition], args: Any, config: dict[str, Any]) -> Plan:
    """The profile's choices: flags first, then guesses from the cluster's facts."""
    with_gpus = [p for p in partitions.values() if p.gpu_totals()]
    if not with_gpus and args.gpu_partition is None:
        raise UserError("no partition has GPUs (GRES gpu); name the one to use with --gpu-partition")
    # GPU partition: up, named like gpu, most GPUs; CPU partition: another one, without GPUs, the default
    gpu = pick_partition(
        partitions,
        args.gpu_partition,
        "gpu",
        with_gpus,
        lambda p: (p.up, "gpu" in p.name, sum(p.gpu_totals().values())),
    )
    others = [p for p in partitions.values() if p is not gpu] or [gpu]
    cpu = pick_partition(
        partitions, args.cpu_partition, "cpu", others, lambda p: (p.up, not p.gpu_totals(), p.default, "cpu" in p.name)
    )
    models = gpu.gpu_totals()
    if args.gpu_model is not None and args.gpu_model not in models:
        typed = sorted(m for m in models if m != UNTYPED) or ["untyped GPUs only"]
        raise UserError(f"GPU partition {gpu.name!r} has no GPUs of model {args.gpu_model!r} (has: {', '.join(typed)})")
    typed = {m: n for m, n in models.items() if m != UNTYPED}
    gpu_model = args.gpu_model or (max(typed, key=typed.get) if typed else None)
    per_node = gpu.max_gpus_per_node(gpu_model)
    if args.gpus_per_job < 1:
        raise UserError(f"--gpus-per-job {args.gpus_per_job}: must be at least 1 (pretraining needs a GPU)")
    if args.gpus_per_job > per_node:
        raise UserError(f"--gpus-per-job {args.gpus_per_job}: nodes of {gpu.name!r} have at most {per_node} such GPUs")
    enough = gpu.nodes_with_gpus(gpu_model, args.gpus_per_job)
    if not 1 <= args.nodes_per_job <= enough:
        raise UserError(
            f"--nodes-per-job {args.nodes_per_job}: partition {gpu.name!r} has {plural(enough, 'node')} with "
            f"{plural(args.gpus_per_job, 'GPU')}" + (f" of model {gpu_model!r}" if gpu_model else "")
        )

    binds = args.bind if args.bind is not None else data_dirs(config.get("data", {}))
    plan = Plan(
        cpu,
        gpu,
        gpu_model,
        args.gpus_per_job,
        args.nodes_per_job,
        args.account,
        binds,
        args.image,
        not args.no_container,
    )
    cpu_why = ", ".join(["without GPUs"] * (not cpu.gpu_totals()) + ["the default"] * cpu.default) or "another one"
    plan.notes = [
        f"CPU partition {cpu.name} " + ("(--cpu-partition)" if args.cpu_partition else f"(guessed: {cpu_why})"),
        f"GPU partition {gpu.name} "
        + ("(--gpu-partition)" if args.gpu_partition else f"(guessed: {plural(sum(models.values()), 'GPU')})")
        + f", GPU model {gpu_model or 'untyped'}"
        + (" (--gpu-model)" if args.gpu_model else "")
        + f", up to {per_node} per node",
    ]
    if plan.nodes_per_job > 1:
        plan.notes.append(
            f"pretrain: one job over {plan.nodes_per_job} nodes x {plural(plan.gpus_per_job, 'GPU')} "
            f"({enough} such nodes in {gpu.name})"
        )
    plan.resources = fit_resources(plan, config.get("resources", {}))
    return plan


def fit_resources(plan: Plan, wanted: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """What the profile must set per rule: where the workflow config asks more than the rule's partition
    gives (time limit, node memory, CPUs), the most it gives; GPU rules also get cpus_per_gpu. Everything
    else stays with the config, so that editing the config keeps working."""
    out: dict[str, dict[str, int]] = {}
    runtimes = []
    for rule, group in {**CPU_RULES, **GPU_RULES}.items():
        gpu_rule = rule in GPU_RULES
        part = plan.gpu if gpu_rule else plan.cpu
        nodes = part.gpu_nodes(plan.gpu_model) if gpu_rule else part.groups
        want = {"runtime": DEFAULT_RUNTIME, "mem_mb": DEFAULT_MEM_MB, "threads": 1, **wanted.get(group, {})}
        limits = {"runtime": part.max_minutes, "mem_mb": min(g.mem_mb for g in nodes)}
        if not gpu_rule:  # GPU jobs ask for CPUs per GPU instead
            limits["threads"] = min(g.cpus for g in nodes)
        out[rule] = {}
        for key, limit in limits.items():
            if limit is not None and int(want[key]) > limit:
                plan.notes.append(f"{rule}: {key} {want[key]} -> {limit} ({part.name}'s {LIMIT_NAMES[key]})")
                out[rule][key] = limit
        runtimes.append(f"{rule} {out[rule].get('runtime', want['runtime'])}")
        if gpu_rule:
            per_gpu = min(g.cpus // sum(g.gpus.values()) for g in nodes)
            out[rule]["cpus_per_gpu"] = max(1, min(int(want["threads"]), per_gpu))
    plan.notes.append("runtimes in minutes: " + ", ".join(runtimes))
    return out


def data_dirs(data: dict[str, Any]) -> list[str]:
    """The absolute folders the config reads data from (PTB-XL's and every pretraining archive's raw
    folder or dump folder), without those inside another one: what the container must bind."""
    entries = [data.get("ptb_xl", {}), *data.get("pretrain", [])]
    paths = [e.get("raw") or os.path.dirname(str(e.get("dump") or "")) for e in entries if isinstance(e, dict)]
    found = [str(p) for p in dict.fromkeys(paths) if p and os.path.isabs(str(p))]
    return [p for p in found if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in found)]


def multinode_resources(nodes: int, gpus_per_node: int, gpu_model: str | None) -> dict[str, Any]:
    """What the slurm plugin needs to submit pretraining as one job over `nodes` nodes (`--check` compares).

    `gpu` is the whole job's GPUs (the plugin asks sbatch for --gpus); --gpus-per-node spreads them evenly.
    `mpi` makes the jobstep run the rule's shell directly, which then starts its own srun with one task
    per node (`tasks`; `tasks_per_gpu: 0` keeps the plugin from asking for one per GPU)."""
    typed = f"{gpu_model}:" if gpu_model else ""
    return {
        "nodes": nodes,
        "gpu": nodes * gpus_per_node,
        "mpi": "srun",
        "tasks": nodes,
        "tasks_per_gpu": 0,
        "slurm_extra": f"--gpus-per-node={typed}{gpus_per_node} --signal={STOP_SIGNAL}",
    }


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("s" if n != 1 else "")


def apptainer_args(binds: list[str]) -> str:
    return " ".join(["--nv", *(f"--bind {b}" for b in binds)])


def render(plan: Plan, partitions: dict[str, Partition], command: str) -> str:
    """The profile's YAML text, laid out like profiles/slurm/config.yaml."""
    lines = [
        f"# Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "# from `sinfo -h -o '%P|%D|%c|%m|%G'` and `scontrol -o show partition`, which reported:",
        *(f"#   {p.summary()}" for p in partitions.values()),
        *(f"# {note}" for note in plan.notes),
        "# Check it before a long run: myjepa slurm-profile --check. Rewrite it: the same command with --overwrite.",
        "executor: slurm",
        "jobs: 100",
    ]
    if plan.container:
        lines += [
            "software-deployment-method: apptainer",
            "# --nv exposes the GPUs; every --bind mounts a data directory outside the project.",
            f'apptainer-args: "{apptainer_args(plan.binds)}"',
        ]
    if plan.image is not None:
        lines.append(f'config: ["container={{image: {plan.image}}}"]')
    lines += [
        "# preempted, timed-out or node-failed jobs are retried; pretraining resumes from last_ckpt.pt",
        "retries: 2",
        "slurm-requeue: true",
        "rerun-incomplete: true",
        "keep-going: true",
        "latency-wait: 60",
        "show-failed-logs: true",
        "",
        "default-resources:",
        f'  slurm_partition: &cpu_partition "{plan.cpu.name}"',
        f'  slurm_account: "{plan.account}"' if plan.account else '  # slurm_account: "my_account"  # --account',
        f"  runtime: {min(DEFAULT_RUNTIME, plan.cpu.max_minutes or DEFAULT_RUNTIME)}",
        f"  mem_mb: {min([DEFAULT_MEM_MB] + [g.mem_mb for g in plan.cpu.groups])}",
        "",
        "# runtime, mem_mb: only where the workflow config's resources exceed the partition's limits",
        "set-resources:",
    ]
    for rule in CPU_RULES:
        cut = "".join(f", {key}: {value}" for key, value in plan.resources[rule].items() if key != "threads")
        lines.append(f"  {rule}: {{slurm_partition: *cpu_partition{cut}}}")
    for i, rule in enumerate(GPU_RULES):
        lines += [
            f"  {rule}:",
            "    slurm_partition: " + ('&gpu_partition "' + plan.gpu.name + '"' if i == 0 else "*gpu_partition"),
        ]
        if rule == "pretrain" and plan.nodes_per_job > 1:
            lines += multinode_lines(plan)
        else:
            lines.append(f"    gpu: {plan.gpus_per_job if rule == 'pretrain' else 1}")
        if plan.gpu_model:
            lines.append("    gpu_model: " + ('&gpu_model "' + plan.gpu_model + '"' if i == 0 else "*gpu_model"))
        lines += [f"    {key}: {value}" for key, value in plan.resources[rule].items()]
    threads = {rule: res["threads"] for rule, res in plan.resources.items() if "threads" in res}
    if threads:
        lines += ["", "set-threads:  # the workflow config's threads, cut to the partition's CPUs per node"]
        lines += [f"  {rule}: {n}" for rule, n in threads.items()]
    return "\n".join(lines) + "\n"


def multinode_lines(plan: Plan) -> list[str]:
    """The pretrain rule's resources for one job over several nodes, each with why."""
    res = multinode_resources(plan.nodes_per_job, plan.gpus_per_job, plan.gpu_model)
    why = {
        "nodes": "one job, one torchrun per node, started by the rule's own srun (README: several nodes)",
        "gpu": f"the whole job's GPUs (sbatch --gpus): {plural(plan.gpus_per_job, 'GPU')} per node",
        "mpi": "the jobstep runs the rule's shell as it is, not inside `srun -n1`",
        "tasks": "one task per node ...",
        "tasks_per_gpu": "... not one per GPU",
        "slurm_extra": "SIGTERM 5 min before the time limit: all ranks stop, rank 0 saves",
    }
    return [f"    {key}: {json.dumps(value)}  # {why[key]}" for key, value in res.items()]


def write_profile(profile_dir: Path, text: str, overwrite: bool, inputs: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write DIR/config.yaml atomically; an existing profile stays unless `overwrite`, and one of the `inputs`
    (the workflow config files read) is never replaced."""
    path = profile_dir / "config.yaml"
    check_outputs([(str(path), path)], inputs, overwrite)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
