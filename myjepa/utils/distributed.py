"""torchrun-aware setup: DDP is on when RANK is set; nccl on CUDA, gloo on CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from myjepa.errors import UserError


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
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistInfo(rank, local_rank, world, dev)


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
