"""DDP on CPU with gloo: SIGReg across 2 ranks equals 1 process; a 2-process torchrun run completes."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from myjepa.models.sigreg import SIGReg
from myjepa.pretrain import checkpoints

pytestmark = pytest.mark.usefixtures("single_thread")


def make_problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=gen)
    torch.manual_seed(1)
    return x, torch.nn.Linear(8, 6)


def sigreg_rank(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, lin = make_problem()
        model = DDP(lin)
        sig = SIGReg(num_slices=64, seed=3)
        sig(torch.randn(4, 6))  # one earlier call: the directions at step 1 must match too
        local = x.chunk(world)[rank]
        value = sig(model(local))
        value.backward()  # DDP averages the parameter gradients over ranks
        if rank == 0:
            torch.save({"value": value.detach(), "weight": lin.weight.grad, "bias": lin.bias.grad}, out_file)
    finally:
        dist.destroy_process_group()


def test_sigreg_two_ranks_equal_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(sigreg_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    x, lin = make_problem()
    sig = SIGReg(num_slices=64, seed=3)
    sig(torch.randn(4, 6))
    value = sig(lin(x))
    value.backward()
    assert torch.allclose(ddp["value"], value.detach(), rtol=1e-5, atol=1e-6)
    assert torch.allclose(ddp["weight"], lin.weight.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(ddp["bias"], lin.bias.grad, rtol=1e-4, atol=1e-6)
    assert lin.weight.grad.abs().sum() > 0


def test_torchrun_two_processes_end_to_end(small_dump, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "myjepa.pretrain",
        "--data", f"mimic-iv-ecg={small_dump}", "--out", str(out), "--config", "tiny",
        "--set", "channel_size=1000", "batch_size=8", "steps=3", "log_interval=1", "warmup_steps=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3]  # only rank 0 logs
    last = checkpoints.read(out / "last_ckpt.pt")
    assert last.step == 3 and int(last.training.model["sigreg.step"]) == 3
    assert (out / "encoder.pt").is_file() and (out / "best_ckpt.pt").is_file()
