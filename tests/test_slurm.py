"""The workflow through a real SLURM controller (`.ci/slurm` starts one on this machine).

`myjepa slurm-profile` writes the named profile `slurm` from what this cluster reports (under a
temporary XDG_CONFIG_HOME), and `snakemake --profile slurm` runs a small part of the demo DAG with it:
synthetic PTB-XL and its conversion on the `cpu` partition, a few pretraining steps on the `gpu`
partition with a GRES gpu request, then the same pretraining as one job over the two nodes of the
`multi` partition (`--nodes-per-job 2`). SLURM's own accounting (`sacct`) must show where each job ran
and what it asked for. Skipped when no controller answers, unless MYJEPA_REQUIRE_SLURM=1 (set by
.ci/run after starting SLURM), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from workflow_helpers import ROOT, SNAKEFILE, SNAKEMAKE, env, job_counts, snakemake

pytestmark = pytest.mark.slurm


def slurm_unavailable() -> str | None:
    """Why SLURM cannot be used here, or None when a controller answers and a node is up."""
    if not shutil.which("sinfo") or not shutil.which("sbatch") or not shutil.which("sacct"):
        return "SLURM client commands (sinfo, sbatch, sacct) are not installed; run .ci/slurm"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no SLURM controller answers"
    if proc.returncode != 0:
        return f"no SLURM controller reachable: {proc.stderr.strip()[:200]}"
    partitions = {line.split()[0].rstrip("*") for line in proc.stdout.splitlines() if line.strip()}
    if not {"cpu", "gpu", "multi"} <= partitions:
        return f"the cluster lacks the partitions cpu, gpu and multi (has {sorted(partitions)}); run .ci/slurm"
    if subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, timeout=20).returncode != 0:
        return "sacct does not answer: no accounting (slurmdbd); run .ci/slurm"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = slurm_unavailable()
    if reason is not None:
        if os.environ.get("MYJEPA_REQUIRE_SLURM") == "1":
            pytest.fail(f"MYJEPA_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)


def sacct_jobs(since: str, workdir: Path) -> dict[str, dict[str, str]]:
    """job id -> SLURM's accounting record, for the jobs submitted from `workdir` since `since`."""
    fields = ["JobID", "JobName", "Partition", "ReqTRES", "AllocTRES", "State", "WorkDir"]
    proc = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    jobs = {}
    for line in proc.stdout.splitlines():
        record = dict(zip(fields, line.split("|")))
        if Path(record.get("WorkDir", "")).resolve() == workdir.resolve():
            jobs[record["JobID"]] = record
    return jobs


def slurm_job_rules(workdir: Path) -> dict[str, str]:
    """job id -> rule, from the executor plugin's log layout .snakemake/slurm_logs/rule_NAME/.../ID.log."""
    out = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule_dir = next(
            p for p in log.relative_to(workdir / ".snakemake" / "slurm_logs").parts if p.startswith("rule_")
        )
        out[log.stem] = rule_dir[len("rule_") :]
    return out


TARGET = "results/pretrain/tiny/s42/encoder.pt"
# the CI cluster is idle and its jobs take seconds: poll often, and keep the logs slurm_job_rules reads
QUICK_POLLING = [
    "--slurm-init-seconds-before-status-checks=2",
    "--seconds-between-status-checks=2",
    "--slurm-keep-successful-logs",
    "--latency-wait=5",
]


def slurm_profile(*args: str, xdg: Path) -> subprocess.CompletedProcess:
    """`myjepa slurm-profile ARGS` from the repository root, with XDG_CONFIG_HOME=xdg."""
    return subprocess.run(
        [sys.executable, "-m", "myjepa", "slurm-profile", *args],
        cwd=ROOT,
        env={**os.environ, "XDG_CONFIG_HOME": str(xdg)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory) -> dict:
    """synth_ptbxl and convert_ptbxl (cpu partition), pretrain (gpu partition) through SLURM, with the profile
    that `myjepa slurm-profile` wrote for this cluster and this config (no Apptainer: CI jobs run in the venv)."""
    work, xdg = tmp_path_factory.mktemp("slurm"), tmp_path_factory.mktemp("xdg")
    overlay = work / "slurm.yaml"
    ci = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    ci["synth"]["ptb_xl_records"] = 100
    ci["pretrain"]["runs"][0]["datasets"] = {"ptb-xl": 1.0}  # PTB-XL folds 1-8 only: no MIMIC jobs
    ci["pretrain"]["runs"][0]["set"]["steps"] = 3
    overlay.write_text(yaml.safe_dump(ci))
    generated = slurm_profile("--no-container", "--configfile", "config/config.yaml", str(overlay), xdg=xdg)
    assert generated.returncode == 0, generated.stderr
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    dry = snakemake(TARGET, "-n", "--quiet", "rules", cwd=work, config=overlay)
    proc = snakemake(
        TARGET,
        "--profile",
        "slurm",
        *QUICK_POLLING,
        cwd=work,
        config=overlay,
        check=False,
        timeout=900,
        extra_env={"XDG_CONFIG_HOME": str(xdg)},
    )
    snapshot = tmp_path_factory.mktemp("slurm-snapshot") / "work"  # before other tests change `work`
    shutil.copytree(work, snapshot, symlinks=True)
    return {
        "work": work,
        "snapshot": snapshot,
        "xdg": xdg,
        "overlay": overlay,
        "since": since,
        "dry": dry.stdout + dry.stderr,
        "proc": proc,
        "generated": generated.stdout,
        "profile": yaml.safe_load((xdg / "snakemake" / "slurm" / "config.yaml").read_text()),
    }


def test_generated_profile_names_the_ci_partitions_and_gpu_gres(slurm_run):
    out, profile = slurm_run["generated"], slurm_run["profile"]
    assert "found: cpu (default): time limit none; nodes 1 x (" in out
    assert "found: gpu: time limit none; nodes 1 x (" in out and ", gres gpu:1)" in out
    assert "chose: CPU partition cpu (guessed: the default)" in out
    assert "chose: GPU partition gpu (guessed: 1 GPU), GPU model untyped, up to 1 per node" in out
    assert profile["executor"] == "slurm" and profile["default-resources"]["slurm_partition"] == "cpu"
    resources = profile["set-resources"]
    assert all(resources[rule]["slurm_partition"] == "cpu" for rule in ("synth_ptbxl", "convert_ptbxl", "report"))
    for rule in ("pretrain", "finetune"):
        assert resources[rule]["slurm_partition"] == "gpu" and resources[rule]["gpu"] == 1
        assert "gpu_model" not in resources[rule]  # the CI GRES is untyped: gpu:1


def test_existing_profile_is_not_overwritten_without_overwrite(slurm_run):
    path = slurm_run["xdg"] / "snakemake" / "slurm" / "config.yaml"
    before = path.read_text()
    proc = slurm_profile(xdg=slurm_run["xdg"])
    assert proc.returncode == 2
    assert proc.stderr == f"myjepa: error: {path} exists; pass --overwrite to replace it\n"
    assert path.read_text() == before


def test_check_reports_each_problem_in_one_line(slurm, tmp_path):
    """Partition, GPU model, account and bind directory: each missing one is one line, and exit 1."""
    data, image, out = tmp_path / "data", tmp_path / "myjepa.sif", tmp_path / "profile"
    data.mkdir()
    image.write_text("not a real image: --check only looks for the file")
    proc = slurm_profile(
        "--out", str(out), "--bind", str(data), "--image", str(image), "--account", "ci", xdg=tmp_path / "xdg"
    )
    assert proc.returncode == 0, proc.stderr
    path = out / "config.yaml"
    check = slurm_profile("--out", str(out), "--check", xdg=tmp_path / "xdg")
    assert check.returncode == 0 and check.stdout == f"{path}: ok\n", check.stdout + check.stderr

    data.rmdir()
    text = path.read_text().replace('&gpu_partition "gpu"', '&gpu_partition "gpu-a100"')  # pretrain
    text = text.replace("    slurm_partition: *gpu_partition\n", '    slurm_partition: "gpu"\n    gpu_model: "h100"\n')
    path.write_text(text.replace('slurm_account: "ci"', 'slurm_account: "no-such-account"'))
    check = slurm_profile("--out", str(out), "--check", xdg=tmp_path / "xdg")
    assert check.returncode == 1
    lines = check.stdout.splitlines()
    assert lines[0] == "problem: pretrain: partition 'gpu-a100' does not exist (partitions: cpu, gpu, multi)"
    assert lines[1].startswith("problem: finetune: partition 'gpu' has no node with 1 GPU of model 'h100' (has: gpu: ")
    assert lines[2:] == [
        "problem: account 'no-such-account': SLURM's accounting does not know it",
        f"problem: bind directory {data} does not exist (apptainer-args in {path})",
        f"{path}: 4 problem(s)",
    ]


def test_workflow_on_slurm_uses_cpu_and_gpu_partitions(slurm_run):
    work, proc, profile = slurm_run["work"], slurm_run["proc"], slurm_run["profile"]
    assert job_counts(slurm_run["dry"]) == {"synth_ptbxl": 1, "convert_ptbxl": 1, "pretrain": 1}
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-6000:]
    assert (work / TARGET).is_file()
    assert "3 of 3 steps (100%) done" in text

    rules = slurm_job_rules(work)
    jobs = sacct_jobs(slurm_run["since"], work)
    by_rule = {rule: jobs[job_id] for job_id, rule in rules.items() if job_id in jobs}
    assert set(by_rule) == {"synth_ptbxl", "convert_ptbxl", "pretrain"}, (rules, jobs)
    for rule, job in by_rule.items():  # every job where the generated profile sent it
        assert job["Partition"] == profile["set-resources"][rule]["slurm_partition"], job
    for rule in ("synth_ptbxl", "convert_ptbxl"):
        assert by_rule[rule]["Partition"] == "cpu", by_rule[rule]
        assert "gres/gpu" not in by_rule[rule]["ReqTRES"], by_rule[rule]
    pretrain = by_rule["pretrain"]
    assert pretrain["Partition"] == "gpu", pretrain
    assert "gres/gpu=1" in pretrain["ReqTRES"] and "gres/gpu=1" in pretrain["AllocTRES"], pretrain
    assert all(job["State"] == "COMPLETED" for job in by_rule.values()), by_rule
    assert (work / "results/pretrain/tiny/s42/metrics.jsonl").stat().st_size > 0


def sacct_steps(job_id: str) -> dict[str, dict[str, str]]:
    """step id (e.g. 12.batch, 12.0) -> its accounting record."""
    fields = ["JobID", "JobName", "State", "NodeList", "NTasks", "AllocTRES"]
    proc = subprocess.run(
        ["sacct", "-j", job_id, "-n", "-P", "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {line.split("|")[0]: dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines()}


@pytest.fixture(scope="module")
def two_nodes(slurm_run, tmp_path_factory) -> dict:
    """The profile `myjepa slurm-profile --gpu-partition multi --nodes-per-job 2` writes, and its --check."""
    xdg = tmp_path_factory.mktemp("xdg-two-nodes")
    configs = ["--configfile", "config/config.yaml", str(slurm_run["overlay"])]
    args = ["--gpu-partition", "multi", "--nodes-per-job", "2", "--no-container"]
    return {
        "xdg": xdg,
        "generated": slurm_profile(*args, *configs, xdg=xdg),
        "check": slurm_profile("--check", *configs, xdg=xdg),
    }


def fresh_work(slurm_run: dict, tmp_path: Path) -> Path:
    """A copy of the first run's working directory without its pretraining: the data is reused."""
    work = tmp_path / "work"
    shutil.copytree(slurm_run["snapshot"], work, symlinks=True)
    for done in (work / "results" / "pretrain", work / "logs" / "pretrain", work / ".snakemake" / "slurm_logs"):
        shutil.rmtree(done, ignore_errors=True)
    return work


def test_pretraining_over_two_nodes_is_one_job_with_a_torchrun_per_node(slurm_run, two_nodes, tmp_path):
    """`myjepa slurm-profile --nodes-per-job 2` and `snakemake --profile slurm`: pretraining is one SLURM job
    over n1 and n2; its batch shell runs the launcher, whose srun step holds one torchrun task per node."""
    work, xdg, generated, check = (
        fresh_work(slurm_run, tmp_path),
        *(two_nodes[k] for k in ("xdg", "generated", "check")),
    )
    assert generated.returncode == 0, generated.stderr
    assert "chose: pretrain: one job over 2 nodes x 1 GPU (2 such nodes in multi)" in generated.stdout
    assert check.returncode == 0 and check.stdout.endswith(": ok\n"), check.stdout
    dry = snakemake(TARGET, "-n", "--quiet", "rules", cwd=work, config=slurm_run["overlay"])
    assert job_counts(dry.stdout + dry.stderr) == {"pretrain": 1}  # the data of the first run is reused

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    proc = snakemake(
        TARGET, "--profile", "slurm", *QUICK_POLLING, cwd=work, config=slurm_run["overlay"], check=False,
        timeout=900, extra_env={"XDG_CONFIG_HOME": str(xdg)},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert torch.load(work / TARGET, weights_only=True)["step"] == 3

    jobs = sacct_jobs(since, work)
    assert len(jobs) == 1, jobs
    job_id, job = next(iter(jobs.items()))
    assert job["Partition"] == "multi" and job["State"] == "COMPLETED", job
    assert "gres/gpu=2" in job["AllocTRES"] and "node=2" in job["AllocTRES"], job
    steps = sacct_steps(job_id)
    assert steps[f"{job_id}.batch"]["NodeList"] == "n1"  # the launcher runs on the first node ...
    torchrun = steps[f"{job_id}.0"]  # ... and its srun step on both, one task each
    assert (torchrun["JobName"], torchrun["NodeList"], torchrun["NTasks"]) == ("torchrun", "n[1-2]", "2"), torchrun
    assert torchrun["State"] == "COMPLETED", torchrun

    log = (work / "logs" / "pretrain" / "tiny-s42.log").read_text()
    launch = re.search(r"^myjepa: pretraining on 2 nodes: (srun .*)$", log, re.M)
    assert launch, log[-3000:]
    words = launch.group(1).split()
    assert words[:7] == [
        "srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=1",
        "--kill-on-bad-exit=1",
    ]  # fmt: skip
    assert words[7:11] == ["torchrun", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d"]
    assert f"--rdzv_id={job_id}" in words and "--max_restarts=0" in words


def test_a_stop_signal_ends_both_nodes_at_a_checkpoint_and_the_retry_resumes(slurm_run, two_nodes, tmp_path):
    """SIGTERM to the job's steps, what the profile's `--signal=TERM@300` sends 5 minutes before the time
    limit (here at once, by scancel): both ranks stop after the same step and rank 0 saves it; the job
    fails, Snakemake's retry (the profile's `retries: 2`) submits it again, and both nodes resume there."""
    work = fresh_work(slurm_run, tmp_path)
    ci = yaml.safe_load(slurm_run["overlay"].read_text())
    ci["pretrain"]["runs"][0]["set"].update(steps=100, checkpoint_interval=10)
    overlay = tmp_path / "longer.yaml"
    overlay.write_text(yaml.safe_dump(ci))
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(work), TARGET, "--profile", "slurm"]
    cmd += [*QUICK_POLLING, "--configfile", str(ROOT / "config" / "config.yaml"), str(overlay)]
    run = subprocess.Popen(
        cmd, cwd=work, env={**env(), "XDG_CONFIG_HOME": str(two_nodes["xdg"])}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    checkpoint, deadline = work / "results" / "pretrain" / "tiny" / "s42" / "last_ckpt.pt", time.monotonic() + 300
    while not checkpoint.is_file():  # the first one (step 10): then the signal
        assert time.monotonic() < deadline and run.poll() is None, "no checkpoint was written"
        time.sleep(0.5)
    first = subprocess.run(["squeue", "-h", "-p", "multi", "-o", "%i"], capture_output=True, text=True, timeout=30)
    job_id = first.stdout.split()[0]
    subprocess.run(["scancel", "--signal=TERM", job_id], check=True, timeout=30)
    out = run.communicate(timeout=900)[0]
    assert run.returncode == 0, out[-6000:]

    jobs = sacct_jobs(since, work)
    assert [(j["Partition"], j["State"]) for _, j in sorted(jobs.items(), key=lambda kv: int(kv[0]))] == [
        ("multi", "FAILED"),
        ("multi", "COMPLETED"),
    ], jobs
    stopped = (work / ".snakemake" / "slurm_logs" / "rule_pretrain" / "tiny_42" / f"{job_id}.log").read_text()
    saved = re.search(r"^myjepa: received signal 15: saved (\S+) at step (\d+); rerun", stopped, re.M)
    assert saved and saved.group(1) == "results/pretrain/tiny/s42/last_ckpt.pt", stopped[-3000:]
    resumed = (work / "logs" / "pretrain" / "tiny-s42.log").read_text()  # the retry's
    assert f"resuming from results/pretrain/tiny/s42/last_ckpt.pt at step {saved.group(2)}" in resumed
    assert torch.load(work / TARGET, weights_only=True)["step"] == 100


def test_failing_slurm_job_is_reported_as_failed(slurm_run):
    """A job that fails on SLURM: snakemake exits non-zero naming the rule; sacct says FAILED."""
    work = slurm_run["work"]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    shutil.rmtree(work / "results/raw/ptb-xl/records500")  # every record unreadable: the converter fails
    target = "results/data/ptb-xl.npy"
    proc = snakemake(
        target,
        "--forcerun",
        "convert_ptbxl",
        "--profile",
        str(ROOT / "profiles" / "slurm-ci"),
        cwd=work,
        config=slurm_run["overlay"],
        check=False,
        timeout=600,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule convert_ptbxl" in text, text[-4000:]
    rules = slurm_job_rules(work)
    jobs = sacct_jobs(since, work)
    failed = [jobs[j] for j, rule in rules.items() if rule == "convert_ptbxl" and j in jobs]
    assert len(failed) == 1 and failed[0]["State"] == "FAILED", (rules, jobs)
    assert not (work / target).exists()
    assert "myjepa: error:" in (work / "logs/convert/ptb-xl.log").read_text()
