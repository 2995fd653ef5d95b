"""One pretraining job over several nodes: srun starts one torchrun agent per node, in the image on each.

    python -m myjepa.cluster.launch --nodes 2 --gpus-per-node 4 --cpus-per-task 64 \\
        [--image containers/myjepa.sif --apptainer-args "--nv --bind /data"] -- PRETRAIN ARGUMENTS

The pretrain rule runs this when the profile gives it `nodes: N > 1` (workflow/rules/pretrain.smk). It
runs in the SLURM job's batch shell, on the job's first node and outside any container: Snakemake's own
`apptainer exec` would wrap the job's shell on that node only, and srun, the one way to start processes
on the other nodes, exists on the host, not in the image. So the rule has no `container:` then, and every
srun task runs `apptainer exec IMAGE torchrun ...` itself, with the profile's apptainer-args.

torchtitan's recipe: the agent on this node hosts the c10d rendezvous, at a port the OS found free here
just now (a port derived from the job id could still be taken); its id is the SLURM job id. Ranks are
numbered node after node, as with one node. `--max_restarts=0` and srun's `--kill-on-bad-exit` make
a dead worker or node end the whole job at once (`myjepa.utils.distributed` bounds a stuck collective);
Snakemake's retry, or SLURM's requeue, then resumes every rank from `last_ckpt.pt`.

The slurm executor plugin's jobstep strips the job's SLURM_* variables before it runs the rule's shell,
so srun is given the job's shape (nodes, tasks, CPUs and GPUs per node) explicitly.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from myjepa.errors import UserError, run_cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m myjepa.cluster.launch", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, required=True, help="nodes of the job; one torchrun agent on each")
    p.add_argument("--gpus-per-node", type=int, required=True, help="processes per node (1 when 0: CPU nodes)")
    p.add_argument("--cpus-per-task", type=int, required=True, help="CPUs of each node's task (agent + workers)")
    p.add_argument("--image", help="Apptainer image every task runs torchrun in (none: the host's torchrun)")
    p.add_argument("--apptainer-args", default="", help="the profile's apptainer-args, e.g. '--nv --bind /data'")
    p.add_argument("--print", action="store_true", help="print the srun command line and exit")
    p.add_argument("pretrain_args", nargs=argparse.REMAINDER, help="-- then the arguments of myjepa pretrain")
    args = p.parse_args(argv)
    if args.pretrain_args[:1] == ["--"]:
        args.pretrain_args = args.pretrain_args[1:]
    if args.nodes < 2:
        p.error("--nodes must be 2 or more (one node: the rule runs torchrun --standalone)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    job_id = slurm_job()
    command = srun_command(
        args.nodes,
        args.gpus_per_node,
        args.cpus_per_task,
        container(args.image, args.apptainer_args, Path.cwd()),
        f"{socket.gethostname()}:{free_port()}",
        job_id,
        args.pretrain_args,
    )
    print(f"myjepa: pretraining on {args.nodes} nodes: {shlex.join(command)}", file=sys.stderr, flush=True)
    if args.print:
        return 0
    os.execvp(command[0], command)
    return 0  # not reached


def slurm_job() -> str:
    """The job id; refuse to run outside a job, or inside a job step (where srun would wait forever)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        raise UserError("pretraining on several nodes runs inside a SLURM job (SLURM_JOB_ID is not set)")
    if os.environ.get("SLURM_STEP_ID"):
        raise UserError(
            "pretraining on several nodes must start its own srun, but this shell already runs in job step "
            f'{job_id}.{os.environ["SLURM_STEP_ID"]}: give the pretrain rule `mpi: "srun"` in the profile '
            "(myjepa slurm-profile --nodes-per-job writes it)"
        )
    return job_id


def free_port() -> int:
    """A TCP port free on this node now, from the OS; the rendezvous binds it a moment later."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def container(image: str | None, apptainer_args: str, workdir: Path) -> list[str]:
    """`apptainer exec` as Snakemake writes it for a job (its --home is the working directory), or nothing."""
    if not image:
        return []
    return ["apptainer", "exec", "--home", str(workdir), *shlex.split(apptainer_args), image]


def srun_command(
    nodes: int,
    gpus_per_node: int,
    cpus_per_task: int,
    container_prefix: list[str],
    endpoint: str,
    job_id: str,
    pretrain_args: Sequence[str],
) -> list[str]:
    """srun with one task per node, each a torchrun agent of `gpus_per_node` processes (1 on CPU nodes)."""
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus_per_task}"]
    if gpus_per_node > 0:
        srun.append(f"--gpus-per-node={gpus_per_node}")
    srun.append("--kill-on-bad-exit=1")
    torchrun = [
        "torchrun",
        f"--nnodes={nodes}",
        f"--nproc_per_node={max(gpus_per_node, 1)}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        f"--rdzv_id={job_id}",
        "--max_restarts=0",
    ]
    return [*srun, *container_prefix, *torchrun, "-m", "myjepa.pretrain", *pretrain_args]


if __name__ == "__main__":
    run_cli(main)
