"""Several nodes without a cluster: how a batch is split, and two torchrun agents meeting at a c10d
rendezvous over the loopback (gloo, 2 "nodes" x 1 process), as `srun torchrun` starts them on SLURM.

The two agents reach the weights of one process that trains on the whole batch. SIGTERM to every
process of both (what SLURM's `--signal` does before the time limit) stops all ranks at one step with
a checkpoint; an agent killed with its worker (a dead node) ends the other within seconds with one line.
Either way the rerun resumes from the last checkpoint to the same weights.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import synthetic_ecg, write_dump

from myjepa import workflow_commands as commands
from myjepa.cluster import launch
from myjepa.pretrain.augment import Augment
from myjepa.pretrain.batches import CropBatches, open_sources
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator

TINY = ["--config", "tiny", "--set", "channel_size=1000", "batch_size=8", "warmup_steps=2", "log_interval=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def test_every_split_of_a_batch_holds_the_same_samples_and_masks(tmp_path):
    """1 x 4, 2 x 2 and 4 x 1 processes number ranks 0..3 alike; any world size's shards, concatenated in
    rank order, are the single process's batch: crops, dumps and masks."""
    dumps = [
        write_dump(tmp_path / "a.npy", synthetic_ecg(6, 3000, seed=1)),
        write_dump(tmp_path / "b.npy", 3 + synthetic_ecg(5, 2600, seed=2)),
    ]
    cfg = load_config("tiny", channel_size=2500, datasets={"a": 1.0, "b": 2.0})
    sources = open_sources([("a", dumps[0]), ("b", dumps[1])], cfg)
    collator = MaskCollator(25, 10, 0.15, 0.25)
    whole = CropBatches(sources, 16, 2500, collator, seed=7)[5]
    for world in (2, 4, 8):
        shards = [CropBatches(sources, 16, 2500, collator, seed=7, rank=r, world_size=world)[5] for r in range(world)]
        for part, full in zip(zip(*shards), whole):
            assert torch.equal(torch.cat(part), full)
    # so do several masks per record (a record's M rows stay with it) and the augmentations
    several, augment = MaskCollator(25, 10, 0.15, 0.25, num_masks=3), Augment(shift=100, lead_dropout=0.3, scale=0.2)
    whole = CropBatches(sources, 16, 2500, several, seed=7, augment=augment)[5]
    assert whole[2].shape[0] == whole[3].shape[0] == 48
    shards = [
        CropBatches(sources, 16, 2500, several, seed=7, rank=r, world_size=4, augment=augment)[5] for r in range(4)
    ]
    for part, full in zip(zip(*shards), whole):
        assert torch.equal(torch.cat(part), full)
    assert whole[0].shape == (16, 12, 2500) and set(whole[1].tolist()) == {0, 1}
    assert not torch.equal(CropBatches(sources, 16, 2500, collator, seed=7)[6][0], whole[0])  # another step
    with pytest.raises(ValueError, match="rank 1 of 3 cannot take an equal share of a batch of 16"):
        CropBatches(sources, 16, 2500, collator, seed=7, rank=1, world_size=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agents(dump: Path, out: Path, steps: int, *extra: str) -> list[subprocess.Popen]:
    """Two torchrun agents, one process each, meeting at a c10d rendezvous on 127.0.0.1."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=test-{port}", "--max_restarts=0",
        "-m", "myjepa.pretrain", "--data", f"mimic-iv-ecg={dump}", "--out", str(out), "--device", "cpu",
        *TINY, f"steps={steps}", *extra,
    ]  # fmt: skip
    return [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]


def finish(agents: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    results = []
    for agent in agents:
        _, err = agent.communicate(timeout=timeout)
        results.append((agent.returncode, err))
    return results


def one_process(dump: Path, out: Path, steps: int) -> dict:
    cmd = [sys.executable, "-m", "myjepa.pretrain", "--data", f"mimic-iv-ecg={dump}", "--out", str(out)]
    proc = subprocess.run(
        [*cmd, "--device", "cpu", *TINY, f"steps={steps}"], env=ENV, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "last_ckpt.pt", weights_only=True)


def assert_same_weights(ckpt: dict, reference: dict) -> None:
    """Equal to float tolerance: gloo adds the two halves' gradients in another order than one process adds
    its batch's. The attention's key bias gets a looser bound: its exact gradient is zero (a shift of all
    of a query's logits leaves the softmax alone), so what it gets is rounding, which AdamW's
    normalisation turns into steps of about lr (12 steps of it moved it by 1.3e-5 here). Any other weight whose
    gradient is near zero can do the same on a smaller scale, so the bound is absolute at 1e-5: one fc2 weight
    of 16,384 ended 2.1e-6 from the reference on an AMD EPYC machine. Other samples put 66 of the 67 tensors
    outside this bound (up to 1.3e-2 away)."""
    assert ckpt["step"] == reference["step"]
    model, expected = ckpt["training"]["model"], reference["training"]["model"]
    assert model.keys() == expected.keys()
    for name, value in expected.items():
        got = model[name]
        if name.endswith("attn.qkv.bias"):
            dim = len(value) // 3
            torch.testing.assert_close(got[dim : 2 * dim], value[dim : 2 * dim], rtol=0, atol=1e-4, msg=name)
            got, value = torch.cat([got[:dim], got[2 * dim :]]), torch.cat([value[:dim], value[2 * dim :]])
        torch.testing.assert_close(got, value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """The dump, and one process's last_ckpt.pt after 12 steps of the whole batch."""
    tmp = tmp_path_factory.mktemp("reference")
    dump = write_dump(tmp / "mimic.npy", synthetic_ecg(64, seed=1))
    return dump, one_process(dump, tmp / "one", 12)


@pytest.mark.slow
def test_two_agents_on_the_loopback_reach_the_weights_of_one_process(reference, tmp_path):
    dump, expected = reference
    results = finish(start_agents(dump, tmp_path / "two", 12))
    assert [code for code, _ in results] == [0, 0], "\n".join(err[-3000:] for _, err in results)
    assert_same_weights(torch.load(tmp_path / "two" / "last_ckpt.pt", weights_only=True), expected)
    losses = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(losses) == 12  # rank 0 alone logs


def wait_for_checkpoint(out: Path, agents: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 180
    while not (out / "last_ckpt.pt").is_file():
        assert time.monotonic() < deadline and all(a.poll() is None for a in agents), "no checkpoint was written"
        time.sleep(0.02)


def resume_to_the_end(dump: Path, out: Path, expected: dict) -> None:
    """Rerun both agents: rank 0 says where it resumes, and the run ends at the reference's weights."""
    step = torch.load(out / "last_ckpt.pt", weights_only=True)["step"]
    assert 2 <= step < 12
    results = finish(start_agents(dump, out, 12, "checkpoint_interval=2"))
    assert [c for c, _ in results] == [0, 0], "\n".join(e[-3000:] for _, e in results)
    assert sum(f"resuming from {out / 'last_ckpt.pt'} at step {step}" in e for _, e in results) == 1  # rank 0
    assert_same_weights(torch.load(out / "last_ckpt.pt", weights_only=True), expected)


@pytest.mark.slow
def test_sigterm_to_every_process_stops_all_ranks_at_a_checkpoint_and_the_rerun_resumes(reference, tmp_path):
    """SLURM's `--signal=TERM@300` signals every process of the job step: both agents (torchrun passes it
    on) and both workers. All ranks stop after the same step, rank 0 saves it, and the rerun resumes."""
    dump, expected = reference
    out = tmp_path / "two"
    agents = start_agents(dump, out, 12, "checkpoint_interval=2")
    wait_for_checkpoint(out, agents)
    for agent in agents:
        for proc in [psutil.Process(agent.pid), *psutil.Process(agent.pid).children(recursive=True)]:
            proc.send_signal(signal.SIGTERM)
    results = finish(agents, timeout=120)
    saved = [line for _, err in results for line in err.splitlines() if line.startswith("myjepa: received signal 15")]
    assert len(saved) == 1, "\n".join(err[-3000:] for _, err in results)  # rank 0 saves and says so
    step = torch.load(out / "last_ckpt.pt", weights_only=True)["step"]
    assert saved[0] == (
        f"myjepa: received signal 15: saved {out / 'last_ckpt.pt'} at step {step}; rerun the same command to resume"
    )
    assert all(code != 0 for code, _ in results)  # the job fails, so Snakemake retries it
    resume_to_the_end(dump, out, expected)


def kill_tree(agent: subprocess.Popen) -> None:
    """What a dead node does to its agent: the agent, its worker (torchrun starts it in a session of its
    own) and everything below them stop at once. SIGSTOP first, so no process of the tree runs on while
    the others are killed."""
    tree = [psutil.Process(agent.pid), *psutil.Process(agent.pid).children(recursive=True)]
    for proc in tree:
        proc.send_signal(signal.SIGSTOP)
    for proc in tree:
        proc.kill()


@pytest.mark.slow
def test_a_killed_agent_ends_the_other_with_one_line_and_the_rerun_resumes(reference, tmp_path):
    dump, expected = reference
    out = tmp_path / "two"
    agents = start_agents(dump, out, 12, "checkpoint_interval=2")
    wait_for_checkpoint(out, agents)  # the first checkpoint (step 2): then a node dies
    kill_tree(agents[1])
    killed_at = time.monotonic()
    code, err = finish(agents[:1], timeout=120)[0]
    agents[1].wait(timeout=30)
    assert time.monotonic() - killed_at < 60  # gloo notices the closed connection: no collective timeout
    assert code != 0
    lost = [line for line in err.splitlines() if "the other ranks are gone or stuck" in line]
    assert len(lost) == 1 and lost[0].startswith("myjepa: error: rank "), err[-3000:]
    assert "; rerun to resume from the last checkpoint" in lost[0]
    resume_to_the_end(dump, out, expected)


# ---- the launch line of a job over several nodes (myjepa.cluster.launch), without SLURM -----------


def test_launch_line_runs_one_torchrun_per_node_inside_the_image():
    container = launch.container("img.sif", "--nv --bind /data", Path("/work"))
    command = launch.srun_command(2, 4, 64, container, "node07:41234", "991", ["--data", "a=x.npy"])
    assert command == [
        "srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=64", "--gpus-per-node=4",
        "--kill-on-bad-exit=1",
        "apptainer", "exec", "--home", "/work", "--nv", "--bind", "/data", "img.sif",
        "torchrun", "--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d", "--rdzv_endpoint=node07:41234",
        "--rdzv_id=991", "--max_restarts=0", "-m", "myjepa.pretrain", "--data", "a=x.npy",
    ]  # fmt: skip
    cpu_nodes = launch.srun_command(3, 0, 2, launch.container(None, "", Path("/work")), "h:1", "5", [])
    assert "--gpus-per-node=0" not in cpu_nodes and "--nproc_per_node=1" in cpu_nodes
    assert cpu_nodes[cpu_nodes.index("--kill-on-bad-exit=1") + 1] == "torchrun"  # no image: the host's torchrun


def test_the_rules_launch_command_is_what_the_launcher_reads():
    """`myjepa.workflow.pretrain_launch` (the rule's params) writes the options launch.py parses."""
    assert commands.pretrain_launch(1, 0, None, 2) == commands.pretrain_launch(1, 1, 8, 2) == "myjepa pretrain"
    assert commands.pretrain_launch(1, 4, 8, 2) == "torchrun --standalone --nproc_per_node=4 -m myjepa.pretrain"
    text = commands.pretrain_launch(2, 8, 16, 4, "c/my jepa.sif", "--nv --bind /d", python="/v/bin/python")
    words = shlex.split(text)
    assert words[:3] == ["/v/bin/python", "-m", "myjepa.cluster.launch"] and words[-1] == "--"
    args = launch.parse_args([*words[3:], "--data", "a=x.npy"])
    assert (args.nodes, args.gpus_per_node, args.cpus_per_task) == (2, 4, 64)
    assert (args.image, args.apptainer_args, args.pretrain_args) == (
        "c/my jepa.sif",
        "--nv --bind /d",
        ["--data", "a=x.npy"],
    )
    assert "--cpus-per-task=4" in commands.pretrain_launch(2, 2, None, 4)  # no cpus_per_gpu: the rule's threads


def run_launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    cmd = [sys.executable, "-m", "myjepa.cluster.launch", "--nodes=2", "--gpus-per-node=1", "--cpus-per-task=2"]
    return subprocess.run(
        [*cmd, *args, "--", "--data", "a=x.npy"], env={**clean, **env}, capture_output=True, text=True
    )


def test_launcher_runs_only_in_a_job_and_outside_its_steps():
    outside = run_launcher({})
    assert outside.returncode == 2
    assert outside.stderr == (
        "myjepa: error: pretraining on several nodes runs inside a SLURM job (SLURM_JOB_ID is not set)\n"
    )
    in_step = run_launcher({"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0"})
    assert in_step.returncode == 2
    assert 'already runs in job step 12.0: give the pretrain rule `mpi: "srun"` in the profile' in in_step.stderr
    shown = run_launcher({"SLURM_JOB_ID": "12"}, "--print")
    assert shown.returncode == 0, shown.stderr
    line = re.fullmatch(r"myjepa: pretraining on 2 nodes: (srun .*)\n", shown.stderr)
    assert line, shown.stderr
    words = shlex.split(line.group(1))
    endpoint = next(w for w in words if w.startswith("--rdzv_endpoint="))
    host, port = endpoint.split("=", 1)[1].rsplit(":", 1)
    assert host == socket.gethostname() and 1024 <= int(port) < 65536  # a port the OS found free here
    assert "--rdzv_id=12" in words and words[-4:] == ["-m", "myjepa.pretrain", "--data", "a=x.npy"]
