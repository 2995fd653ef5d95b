"""`myjepa slurm-profile` without a cluster: parsing captured sinfo / scontrol output, the proposal, the
profile's text, --check's problem lines, and the one-line refusal on a machine without SLURM.

The real cluster (generation, `snakemake --profile slurm`, --check through the CLI) is in test_slurm.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from myjepa.cluster.check import bind_dirs, check_profile, image_path
from myjepa.cluster.profile import (
    CPU_RULES,
    GPU_RULES,
    data_dirs,
    multinode_resources,
    propose,
    read_workflow_config,
    render,
    write_profile,
)
from myjepa.cluster.slurm import NodeGroup, parse_gres, parse_scontrol, parse_sinfo, parse_time
from myjepa.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "slurm"


def cluster(name: str) -> dict:
    partitions = parse_sinfo((DATA / f"{name}-sinfo.txt").read_text())
    parse_scontrol((DATA / f"{name}-scontrol.txt").read_text(), partitions)
    return partitions


def flags(**changes) -> Namespace:
    base = dict(
        cpu_partition=None,
        gpu_partition=None,
        gpu_model=None,
        account=None,
        gpus_per_job=1,
        nodes_per_job=1,
        bind=None,
        image=None,
        no_container=False,
    )
    return Namespace(**{**base, **changes})


REAL = read_workflow_config([str(ROOT / "config/config.yaml"), str(ROOT / "config/real.yaml")])


@pytest.mark.parametrize(
    "text, gpus",
    [
        ("gpu:h100:8(S:0-1)", {"h100": 8}),
        ("gpu:a100:4(S:0),nvme:1", {"a100": 4}),
        ("gpu:4", {"": 4}),
        ("gpu:1", {"": 1}),
        ("gpu:v100:2,gpu:t4:1(S:0,1)", {"v100": 2, "t4": 1}),
        ("(null)", {}),
        ("shard:8", {}),
    ],
)
def test_parse_gres(text, gpus):
    assert parse_gres(text) == gpus


@pytest.mark.parametrize(
    "text, minutes",
    [("UNLIMITED", None), ("infinite", None), ("30:00", 30), ("04:00:00", 240), ("1-00:00:00", 1440), ("2-12", 3600)],
)
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


def test_parse_time_rejects_garbage():
    with pytest.raises(UserError, match="cannot read the SLURM time limit 'soon'"):
        parse_time("soon")


def test_sinfo_without_nodes_is_skipped_and_garbage_is_one_line():
    assert list(parse_sinfo("empty|0|0|0|(null)\ncpu*|2|8|1000|(null)\n")) == ["cpu"]
    with pytest.raises(UserError, match="cannot read this sinfo line .*: 'cpu\\|2\\|n/a\\|1000\\|\\(null\\)'"):
        parse_sinfo("cpu|2|n/a|1000|(null)")
    with pytest.raises(UserError, match="expected 5 fields"):
        parse_sinfo("cpu 2 8")


@pytest.mark.parametrize(
    "line", ["cpu*|2|-4|1000|(null)", "cpu*|2|8|-1000|(null)", "cpu*|-2|8|1000|(null)", "cpu*|2|0|1000|(null)"]
)
def test_sinfo_with_negative_or_no_cpus_or_memory_is_refused(line):
    """A profile once asked for negative threads and memory when sinfo reported them."""
    with pytest.raises(UserError, match=r"^cannot use this sinfo line \(nodes, CPUs and memory must be positive.*: "):
        parse_sinfo(line + "\ngpu|1|8|1000|gpu:1\n")


def fake_slurm(folder: Path, sinfo: bytes, scontrol: bytes = b"") -> dict[str, str]:
    """An environment whose PATH has only `sinfo` and `scontrol` printing the given bytes."""
    folder.mkdir()
    for name, output in (("sinfo", sinfo), ("scontrol", scontrol)):
        (folder / f"{name}.out").write_bytes(output)
        (folder / name).write_text(f"#!/bin/sh\ncat '{folder / name}.out'\n")
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:/usr/bin:/bin", "XDG_CONFIG_HOME": str(folder.parent / "xdg")}


def test_sinfo_printing_bytes_that_are_not_utf8_is_one_line(tmp_path):
    """Once a UnicodeDecodeError traceback; a partition's name is used as text in the profile."""
    sinfo = b"cpu*|1|2|1000|(null)\ng\xfcpu|1|2|1000|gpu:1\n"
    scontrol = b"PartitionName=cpu Default=YES State=UP MaxTime=UNLIMITED AllowGroups=\xff\n"
    env = fake_slurm(tmp_path / "bin", sinfo, scontrol)
    for extra in ([], ["--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "myjepa", "slurm-profile", *extra], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            "myjepa: error: cannot read this sinfo line (bytes that are not UTF-8 text): 'g\\udcfcpu|1|2|1000|gpu:1'; "
            "nothing written\n"
        )
        assert not (tmp_path / "xdg").exists()
    # a byte that is not text where nothing is read from it (scontrol's AllowGroups) is no problem
    env = fake_slurm(tmp_path / "ok", b"cpu*|1|2|1000|(null)\ngpu|1|2|1000|gpu:1\n", scontrol)
    proc = subprocess.run(
        [sys.executable, "-m", "myjepa", "slurm-profile", "--no-container"], cwd=ROOT, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "xdg" / "snakemake" / "slurm" / "config.yaml").is_file()


def test_ci_cluster_facts():
    parts = cluster("ci")
    assert list(parts) == ["cpu", "gpu"]
    cpu, gpu = parts["cpu"], parts["gpu"]
    assert cpu.default and not gpu.default and cpu.up and gpu.up
    assert cpu.max_minutes is None and gpu.max_minutes is None
    assert gpu.gpu_totals() == {"": 1} and gpu.max_gpus_per_node(None) == 1
    assert len(gpu.groups) == 1 and gpu.groups[0].nodes == 1 and gpu.groups[0].mem_mb > 0


def test_typed_cluster_facts():
    parts = cluster("typed")
    assert list(parts) == ["standard", "gpu", "gpu-small", "debug"]
    assert parts["standard"].default and parts["standard"].max_minutes == 2880
    assert [g.nodes for g in parts["standard"].groups] == [120, 8]
    assert parts["gpu"].gpu_totals() == {"h100": 32, "a100": 8} and parts["gpu"].max_minutes == 1440
    assert parts["gpu"].groups[1] == NodeGroup(2, 64, 512000, {"a100": 4})
    assert parts["gpu-small"].gpu_totals() == {"": 12} and parts["gpu-small"].max_minutes == 240
    assert parts["debug"].gpu_totals() == {} and parts["debug"].max_minutes == 30


def test_ci_proposal_picks_cpu_and_gpu():
    plan = propose(cluster("ci"), flags(), REAL)
    assert (plan.cpu.name, plan.gpu.name, plan.gpu_model) == ("cpu", "gpu", None)
    assert plan.binds[:3] == ["/data/physionet/ptb-xl/1.0.3", "/data/physionet/mimic-iv-ecg/1.0", "/data/code-15"]
    assert len(plan.binds) == 10  # real.yaml's raw data: PTB-XL and the nine pretraining archives


def test_data_dirs_are_the_outermost_absolute_folders():
    data = {
        "ptb_xl": {"raw": "/d/ptb-xl", "dump": ""},
        "pretrain": [{"raw": "/d/ptb-xl/sub"}, {"raw": "", "dump": "/dumps/a.npy"}, {"raw": "rel/x"}, {"raw": "/e"}],
    }
    assert data_dirs(data) == ["/d/ptb-xl", "/dumps", "/e"]


def test_typed_proposal_cuts_runtimes_and_memory_to_the_partitions():
    plan = propose(cluster("typed"), flags(), REAL)
    assert (plan.cpu.name, plan.gpu.name, plan.gpu_model) == ("standard", "gpu", "h100")  # most GPUs: h100
    res = plan.resources
    assert res["pretrain"] == {"runtime": 1440, "cpus_per_gpu": 12}  # 2880 > 1-00:00:00; 96 CPUs / 8 GPUs
    assert res["finetune"] == {"cpus_per_gpu": 8}  # within the limits: runtime and memory stay with the config
    assert res["convert_shard"] == {}
    assert "pretrain: runtime 2880 -> 1440 (gpu's time limit in minutes)" in plan.notes
    assert plan.notes[-1].endswith(
        "merge_shards 240, aggregate 30, export 30, export_classifier 30, report 30, pretrain 1440, finetune 480"
    )


def test_flags_override_guesses():
    plan = propose(
        cluster("typed"), flags(cpu_partition="debug", gpu_partition="gpu-small", gpus_per_job=4, bind=["/x"]), REAL
    )
    assert (plan.cpu.name, plan.gpu.name, plan.gpu_model, plan.gpus_per_job) == ("debug", "gpu-small", None, 4)
    assert plan.resources["report"] == {} and plan.resources["merge_shards"] == {"runtime": 30}  # 240 > 30:00
    assert plan.resources["convert_ptbxl"] == {"runtime": 30, "threads": 8}  # 16 threads > 8 CPUs
    assert plan.resources["pretrain"]["cpus_per_gpu"] == 4 and plan.binds == ["/x"]
    assert propose(cluster("typed"), flags(gpu_model="a100"), REAL).resources["pretrain"]["cpus_per_gpu"] == 16


@pytest.mark.parametrize(
    "change, message",
    [
        ({"gpu_partition": "nope"}, "--gpu-partition 'nope' does not exist; partitions: standard, gpu, gpu-small"),
        ({"cpu_partition": "nope"}, "--cpu-partition 'nope' does not exist"),
        ({"gpu_model": "v100"}, "GPU partition 'gpu' has no GPUs of model 'v100' (has: a100, h100)"),
        ({"gpus_per_job": 9}, "--gpus-per-job 9: nodes of 'gpu' have at most 8 such GPUs"),
        ({"nodes_per_job": 5}, "--nodes-per-job 5: partition 'gpu' has 4 nodes with 1 GPU of model 'h100'"),
        (
            {"gpu_model": "a100", "gpus_per_job": 4, "nodes_per_job": 3},
            "--nodes-per-job 3: partition 'gpu' has 2 nodes with 4 GPUs of model 'a100'",
        ),
        (
            {"gpus_per_job": 0},
            "--gpus-per-job 0: must be at least 1 (pretraining needs a GPU)",
        ),  # once blamed the nodes
        ({"gpus_per_job": -2}, "--gpus-per-job -2: must be at least 1"),
    ],
)
def test_impossible_flags_are_one_line_errors(change, message):
    with pytest.raises(UserError) as e:
        propose(cluster("typed"), flags(**change), REAL)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_rendered_profile_has_the_shape_of_the_example(tmp_path):
    parts = cluster("typed")
    plan = propose(parts, flags(account="proj42", image="/img/myjepa.sif"), REAL)
    text = render(plan, parts, "myjepa slurm-profile --account proj42")
    example = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile = yaml.safe_load(text)
    assert set(example) <= set(profile) and set(profile["set-resources"]) == set(example["set-resources"])
    assert set(CPU_RULES) | set(GPU_RULES) == set(example["set-resources"])
    settings = set(example) - {"apptainer-args", "default-resources", "set-resources"}  # executor, apptainer, retries..
    assert {key: profile[key] for key in settings} == {key: example[key] for key in settings}
    assert profile["apptainer-args"] == " ".join(["--nv", *(f"--bind {d}" for d in plan.binds)])
    assert profile["default-resources"]["slurm_partition"] == "standard"
    assert profile["default-resources"]["slurm_account"] == "proj42"
    pretrain = profile["set-resources"]["pretrain"]
    assert pretrain == {"slurm_partition": "gpu", "gpu": 1, "gpu_model": "h100", "runtime": 1440, "cpus_per_gpu": 12}
    assert profile["set-resources"]["finetune"]["gpu_model"] == "h100"
    assert image_path(profile, REAL) == "/img/myjepa.sif"
    header = [line for line in text.splitlines() if line.startswith("#")][:7]
    assert header[0].startswith("# Written by `myjepa slurm-profile --account proj42` on ")
    assert header[3] == (
        "#   gpu: time limit 1-00:00:00; nodes 4 x (96 CPUs, 1024000 MB, gres gpu:h100:8);"
        " 2 x (64 CPUs, 512000 MB, gres gpu:a100:4)"
    )


def test_two_node_profile_asks_for_one_job_of_two_nodes_and_checks_clean(tmp_path):
    """--nodes-per-job 2 --gpus-per-job 4: pretrain is one SLURM job of 2 x 4 GPUs with its own srun."""
    parts = cluster("typed")
    plan = propose(parts, flags(gpu_model="a100", gpus_per_job=4, nodes_per_job=2, no_container=True), REAL)
    assert "pretrain: one job over 2 nodes x 4 GPUs (2 such nodes in gpu)" in plan.notes
    path = tmp_path / "config.yaml"
    path.write_text(render(plan, parts, "x"))
    pretrain = yaml.safe_load(path.read_text())["set-resources"]["pretrain"]
    assert pretrain == {
        "slurm_partition": "gpu",
        "nodes": 2,
        "gpu": 8,
        "gpu_model": "a100",
        "mpi": "srun",
        "tasks": 2,
        "tasks_per_gpu": 0,
        "slurm_extra": "--gpus-per-node=a100:4 --signal=TERM@300",
        "runtime": 1440,
        "cpus_per_gpu": 16,
    }
    assert {k: pretrain[k] for k in multinode_resources(2, 4, "a100")} == multinode_resources(2, 4, "a100")
    assert yaml.safe_load(path.read_text())["set-resources"]["finetune"]["gpu"] == 1  # finetuning: one GPU
    assert check_profile(path, parts, REAL) == []


def test_check_names_what_a_job_over_several_nodes_lacks(tmp_path):
    parts = cluster("typed")
    plan = propose(parts, flags(gpu_model="a100", gpus_per_job=4, nodes_per_job=2, no_container=True), REAL)
    path = tmp_path / "config.yaml"
    text = render(plan, parts, "x")
    text = text.replace('    mpi: "srun"', "    # mpi dropped").replace("    tasks: 2 ", "    tasks: 8 ")
    text = text.replace('"--gpus-per-node=a100:4 --signal=TERM@300"', '"--signal=USR1@600"')
    path.write_text(text.replace("  finetune:\n", "  finetune:\n    nodes: 2\n"))
    assert check_profile(path, parts, REAL) == [
        "pretrain: nodes 2 needs mpi: 'srun', not None",
        "pretrain: nodes 2 needs tasks: 2, not 8",
        "pretrain: nodes 2 needs slurm_extra with --gpus-per-node=a100:4 (has: '--signal=USR1@600')",
        "finetune: nodes 2: only pretrain runs over several nodes; give finetune nodes: 1",
    ]
    path.write_text(text.replace("    nodes: 2 ", "    nodes: 3 ").replace("    gpu: 8 ", "    gpu: 12 "))
    assert check_profile(path, parts, REAL) == [
        "pretrain: nodes 3, but partition 'gpu' has 2 nodes with 4 GPUs of model 'a100'"
    ]


def test_no_container_profile():
    parts = cluster("ci")
    profile = yaml.safe_load(render(propose(parts, flags(no_container=True), REAL), parts, "x"))
    assert "software-deployment-method" not in profile and "apptainer-args" not in profile
    assert "gpu_model" not in profile["set-resources"]["pretrain"]  # untyped GRES: plain gpu:1


def test_existing_profile_is_kept_without_overwrite(tmp_path):
    write_profile(tmp_path, "first\n", overwrite=False)
    with pytest.raises(UserError, match="config.yaml exists; pass --overwrite to replace it"):
        write_profile(tmp_path, "second\n", overwrite=False)
    assert (tmp_path / "config.yaml").read_text() == "first\n"
    write_profile(tmp_path, "second\n", overwrite=True)
    assert (tmp_path / "config.yaml").read_text() == "second\n" and os.listdir(tmp_path) == ["config.yaml"]


def test_check_reports_each_problem_in_one_line(tmp_path):
    parts = cluster("typed")
    data, image = tmp_path / "data", tmp_path / "img.sif"
    data.mkdir()
    image.write_text("sif")
    plan = propose(parts, flags(bind=[str(data)], image=str(image)), REAL)
    path = tmp_path / "config.yaml"
    path.write_text(render(plan, parts, "x"))
    assert check_profile(path, parts, REAL) == []

    data.rmdir()
    image.unlink()
    text = path.read_text().replace('"gpu"', '"gpu-old"')
    path.write_text(text.replace("merge_shards: {slurm_partition: *cpu_partition}", "merge_shards: {runtime: 9999}"))
    assert check_profile(path, parts, REAL) == [
        "merge_shards: runtime 9999 min exceeds the time limit 2-00:00:00 of 'standard'",  # the default partition
        "pretrain: partition 'gpu-old' does not exist (partitions: standard, gpu, gpu-small, debug)",
        "finetune: partition 'gpu-old' does not exist (partitions: standard, gpu, gpu-small, debug)",
        f"image {image} does not exist; build it: apptainer build containers/myjepa.sif containers/myjepa.def",
        f"bind directory {data} does not exist (apptainer-args in {path})",
    ]


def test_check_reports_amounts_below_one(tmp_path):
    """--check once passed a profile asking for negative threads and memory."""
    parts = cluster("ci")
    path = tmp_path / "config.yaml"
    profile = yaml.safe_load(render(propose(parts, flags(no_container=True), REAL), parts, "x"))
    profile["default-resources"]["mem_mb"] = -4000
    profile["set-resources"]["pretrain"]["cpus_per_gpu"] = -2
    profile["set-resources"]["finetune"]["gpu"] = -1
    profile["set-threads"] = {"convert_ptbxl": -2, "merge_shards": 0}
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    assert check_profile(path, parts, REAL) == [
        "default-resources: mem_mb -4000 is not a usable amount (at least 1)",
        "pretrain: cpus_per_gpu -2 is not a usable amount (at least 1)",
        "finetune: gpu -1 is not a usable amount (at least 0)",
        "convert_ptbxl: set-threads -2 is not a usable amount (at least 1)",
        "merge_shards: set-threads 0 is not a usable amount (at least 1)",
    ]


def test_check_reports_a_partition_that_is_down(tmp_path):
    parts = cluster("ci")
    path = tmp_path / "config.yaml"
    path.write_text(render(propose(parts, flags(no_container=True), REAL), parts, "x"))
    parts["gpu"].up = False
    assert check_profile(path, parts, REAL) == [
        "pretrain: partition 'gpu' is not up (scontrol: State)",
        "finetune: partition 'gpu' is not up (scontrol: State)",
    ]


def test_bind_dirs_reads_every_bind_form():
    assert bind_dirs("--nv --bind /a,/b:/mnt/b -B /c:/c:ro --bind=/d") == ["/a", "/b", "/c", "/d"]


def test_without_slurm_one_line_and_nothing_written(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    for extra in ([], ["--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "myjepa", "slurm-profile", *extra], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 2
        assert proc.stderr == "myjepa: error: no SLURM on this machine: `sinfo` is not on PATH; nothing written\n"
        assert not (tmp_path / "xdg").exists()


def workflow_rule_groups() -> dict[str, str]:
    """rule -> resource group, read from workflow/rules/*.smk (`rule NAME:` ... `res("GROUP", ...)`)."""
    groups = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            found = re.search(r'res\("(\w+)"', block)
            if found:
                groups[name] = found.group(1)
    return groups


def test_every_workflow_rule_has_a_partition():
    """A rule missing from the map would run on the default partition with default resources."""
    groups = workflow_rule_groups()
    assert len(groups) >= 8
    assert {**CPU_RULES, **GPU_RULES} == groups
    for example in ("slurm", "slurm-ci"):
        profile = yaml.safe_load((ROOT / "profiles" / example / "config.yaml").read_text())
        assert set(profile["set-resources"]) == set(groups), example
