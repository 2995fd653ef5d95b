"""torchrun-aware setup: DDP is on when RANK is set; nccl on CUDA, gloo on CPU.

RANK and WORLD_SIZE are torchrun's global numbering (node after node), so 1 x 4 and 2 x 2 processes
number their ranks alike; LOCAL_RANK only picks this process's GPU on its node. Whatever depends on the
rank (the batch rows, who writes checkpoints) uses the global one.

A lost peer must end the run, not hang it. Every collective waits at most MYJEPA_DIST_TIMEOUT seconds
(default 600: longer than a checkpoint save or the online probe, during which the other ranks wait),
then fails; gloo fails at once when a peer's connection closes. `run_group` turns such a failure into
one line naming this rank and exit status 5, and leaves the broken group alone (tearing down an NCCL
group whose peer is gone can itself hang). torchrun (`--max_restarts=0`) then ends this node's agent,
and srun `--kill-on-bad-exit` the other nodes (`myjepa/cluster/launch.py`).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from myjepa.errors import UserError

TIMEOUT_VARIABLE = "MYJEPA_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
EXIT_LOST_PEER = 5
# What a collective raises when a peer is gone: torch's DistError family (NCCL, the store), or gloo's
# RuntimeError, e.g. "[gloo/transport/tcp/pair.cc:553] Connection closed by peer" from DDP's backward and
# "[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 30000ms for recv operation to complete".
COLLECTIVE_MARKS = ("gloo/transport", "NCCL", "Connection closed by peer")


@dataclass
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def usable_device(name: str, option: str = "--device") -> torch.device:
    """The device `name` names, when this torch on this machine can run there; else a UserError naming `option`
    (a CPU-only torch asked for cuda, a GPU that is not there, a device type torch does not know). CUDA is asked,
    never initialised: under torchrun each rank must create its context on its own GPU only."""
    gpus = torch.cuda.device_count()
    why = None
    try:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            why = "no CUDA device" + ("" if torch.version.cuda else ": this torch is built without CUDA")
        elif device.type == "cuda" and device.index is not None and device.index >= gpus:
            why = f"no GPU {device.index}"
        elif device.type not in ("cpu", "cuda"):
            torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
    if why:
        raise UserError(f"{option} {name}: not usable here ({why}; torch {torch.__version__}, {gpus} GPU(s))")
    return device


def setup(device: str | None = None) -> DistInfo:
    """Initialise the process group under torchrun; pick this rank's device."""
    if device is not None:
        usable_device(device)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if "RANK" not in os.environ:
        return DistInfo(0, 0, 1, torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank, world = (
        int(os.environ["RANK"]),
        int(os.environ.get("LOCAL_RANK", 0)),
        int(os.environ["WORLD_SIZE"]),
    )
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None, timeout=collective_timeout()
        )
    return DistInfo(rank, local_rank, world, dev)


def collective_timeout() -> timedelta:
    """MYJEPA_DIST_TIMEOUT (seconds, default 600): how long a collective may wait for the other ranks."""
    text = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise UserError(f"{TIMEOUT_VARIABLE}={text!r}: give the collective timeout in seconds, e.g. 600")
    return timedelta(seconds=seconds)


@contextmanager
def run_group(info: DistInfo) -> Iterator[None]:
    """Run the body, then tear the process group down. A collective that failed because a peer is gone
    (`lost_peer`) prints one line and exits EXIT_LOST_PEER instead of a traceback per rank."""
    try:
        yield
    except BaseException as e:
        if not (info.world_size > 1 and lost_peer(e)):
            cleanup()
            raise
        print(
            f"myjepa: error: rank {info.rank} of {info.world_size} on {socket.gethostname()}: the other ranks are "
            f"gone or stuck ({first_line(e)}); a process or node of this run failed (its log says why) or stalled "
            f"past {TIMEOUT_VARIABLE}; rerun to resume from the last checkpoint",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_LOST_PEER) from None
    cleanup()


def lost_peer(error: BaseException) -> bool:
    """Whether `error` is a collective's failure (a peer died, or did not answer within the timeout)."""
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and any(mark in str(error) for mark in COLLECTIVE_MARKS)
    )


def first_line(error: BaseException) -> str:
    """The error's first sentence: gloo's and NCCL's messages go on with advice that does not apply here."""
    lines = str(error).strip().splitlines()
    return lines[0].split(". ")[0][:300] if lines else type(error).__name__


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (no autograd) when a group is up; the identity otherwise."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
