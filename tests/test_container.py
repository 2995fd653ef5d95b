"""The Apptainer images: static checks of both definition files, the shared install script and the
CI setup script; real runs of the CI image (its %test, and the workflow's torch rules through
`snakemake --sdm apptainer`, locally and through SLURM) wherever .ci/apptainer has set apptainer up.

The real runs read MYJEPA_APPTAINER / MYJEPA_CI_IMAGE (exported by .ci/run from .ci/apptainer, or
read from the env file .ci/apptainer leaves in its cache). They skip only with the setup's own
reason (MYJEPA_APPTAINER_SKIP); once apptainer is there they run and can fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import skip_or_fail

import myjepa
from myjepa.cluster.profile import multinode_resources

REPO = Path(__file__).resolve().parents[1]
USER_DEF = REPO / "containers" / "myjepa.def"
CI_DEF = REPO / "containers" / "myjepa-ci.def"
INSTALL = REPO / "containers" / "install.sh"
SETUP = REPO / ".ci" / "apptainer"
CACHE = Path(os.environ.get("MYJEPA_CI_CACHE", Path.home() / ".cache" / "myjepa-ci"))
SHARED_SECTIONS = ("files", "environment", "runscript", "test")
MARKER = f"myjepa: in container myjepa-{myjepa.__version__}"
REQUIRED = "MYJEPA_REQUIRE_APPTAINER"


# ---- definition files, parsed here (no parser library checks what we need) ----------------------


def parse_def(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(header, sections) of an Apptainer definition file: `Key: value` lines before the first
    %section, then each section's body with indentation, comments and blank lines removed."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("%"):
            current = stripped[1:].split()[0]
            assert current not in sections, f"{path.name}:{number}: section %{current} twice"
            sections[current] = []
        elif not stripped or stripped.startswith("#"):
            continue
        elif current is None:
            key, sep, value = stripped.partition(":")
            assert sep, f"{path.name}:{number}: header line without 'Key:': {line!r}"
            header[key.strip()] = value.strip()
        else:
            sections[current].append(stripped)
    return header, {name: "\n".join(lines) for name, lines in sections.items()}


def arguments(sections: dict[str, str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sections.get("arguments", "").splitlines())


def pyproject_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match, "pyproject.toml has no version"
    return match.group(1)


def test_parse_def_reads_header_and_sections(tmp_path):
    path = tmp_path / "x.def"
    path.write_text("# c\nBootstrap: docker\nFrom: a/b:1\n\n%post\n    echo hi  \n# note\n%test\n  true\n")
    header, sections = parse_def(path)
    assert header == {"Bootstrap": "docker", "From": "a/b:1"}
    assert sections == {"post": "echo hi", "test": "true"}


def test_user_image_pins_an_exact_cuda_pytorch_base():
    header, sections = parse_def(USER_DEF)
    assert header["Bootstrap"] == "docker"
    base = header["From"]
    by_tag = re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-(runtime|devel)", base)
    by_digest = re.fullmatch(r"pytorch/pytorch@sha256:[0-9a-f]{64}", base)
    assert by_tag or by_digest, f"base image {base!r} is not pinned to an exact CUDA tag or a digest"
    assert "PYTHON=/opt/conda/bin/python" in sections["post"]


def test_ci_image_is_debootstrap_bookworm_with_python_bash_and_cpu_torch():
    header, sections = parse_def(CI_DEF)
    assert header["Bootstrap"] == "debootstrap"
    assert header["OSVersion"] == "bookworm"
    assert re.fullmatch(r"https?://\S+/debian", header["MirrorURL"])
    assert {"bash", "python3", "python3-venv", "ca-certificates"} <= set(header["Include"].split())
    args = arguments(sections)
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+\+cpu", args["TORCH_SPEC"])
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert "PYTHON=/usr/bin/python3" in sections["post"]


@pytest.mark.parametrize("section", SHARED_SECTIONS)
def test_both_definitions_share_files_environment_runscript_and_test(section):
    user = parse_def(USER_DEF)[1]
    ci = parse_def(CI_DEF)[1]
    assert user[section] == ci[section], f"%{section} differs between myjepa.def and myjepa-ci.def"


@pytest.mark.parametrize("path", [USER_DEF, CI_DEF], ids=lambda p: p.name)
def test_definition_installs_this_package_at_its_version_through_install_sh(path):
    _, sections = parse_def(path)
    assert arguments(sections)["MYJEPA_VERSION"] == pyproject_version() == myjepa.__version__
    post = sections["post"].splitlines()
    assert "export MYJEPA_VERSION={{ MYJEPA_VERSION }}" in post
    assert post.count("sh /opt/myjepa/install.sh") == 1
    files = [line.split() for line in sections["files"].splitlines()]
    assert ["containers/install.sh", "/opt/myjepa/install.sh"] in files
    assert ["pyproject.toml", "/opt/myjepa/src/pyproject.toml"] in files
    assert ["myjepa", "/opt/myjepa/src/myjepa"] in files
    for source, _ in files:  # %files sources are relative to the repository root (the build's cwd)
        assert (REPO / source).exists(), f"{path.name}: %files source {source} does not exist"
    assert "export MYJEPA_CONTAINER=myjepa-{{ MYJEPA_VERSION }}" in sections["environment"]
    assert "export PATH=/opt/myjepa/bin:/opt/myjepa/venv/bin:$PATH" in sections["environment"]
    assert sections["runscript"] == 'exec myjepa "$@"'
    assert "myjepa --help" in sections["test"].splitlines()


def test_scripts_parse():
    for cmd in (["sh", "-n", str(INSTALL)], ["bash", "-n", str(SETUP)]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert os.access(SETUP, os.X_OK)


def run_install(tmp_path: Path, version: str | None, src_version: str = "0.1.0", **env: str):
    root = tmp_path / "opt-myjepa"
    (root / "src").mkdir(parents=True)
    (root / "src" / "pyproject.toml").write_text(f'[project]\nname = "myjepa"\nversion = "{src_version}"\n')
    environ = {k: v for k, v in os.environ.items() if k != "MYJEPA_VERSION"}
    environ.update({"MYJEPA_IMAGE_ROOT": str(root), "PYTHON": sys.executable, **env})
    if version is not None:
        environ["MYJEPA_VERSION"] = version
    return subprocess.run(["sh", str(INSTALL)], capture_output=True, text=True, env=environ)


def test_install_sh_refuses_a_source_tree_of_another_version(tmp_path):
    result = run_install(tmp_path, version="0.1.0", src_version="0.2.0")
    assert result.returncode == 1
    assert "the source tree is myjepa 0.2.0 but the definition pins 0.1.0" in result.stderr
    assert not (tmp_path / "opt-myjepa" / "venv").exists()


def test_install_sh_needs_the_pinned_version_and_a_python(tmp_path):
    result = run_install(tmp_path, version=None)
    assert result.returncode == 1
    assert "MYJEPA_VERSION is not set" in result.stderr
    result = run_install(tmp_path / "b", version="0.1.0", PYTHON="/nonexistent/python3")
    assert result.returncode == 1
    assert "no python '/nonexistent/python3' in the base image" in result.stderr


def test_ci_requires_what_it_set_up(monkeypatch):
    """.ci/run requires the container tests once .ci/apptainer succeeded, and the --compile tests always (it
    installs g++): under MYJEPA_REQUIRE_*=1 a skip is a failure, so CI cannot pass by skipping them."""
    run_script = (REPO / ".ci" / "run").read_text()
    assert 'eval "$apptainer_env" && export MYJEPA_REQUIRE_APPTAINER=1' in run_script  # exit 0 of .ci/apptainer
    assert "export MYJEPA_REQUIRE_COMPILER=1" in run_script and "-m pytest -rs" in run_script
    monkeypatch.setenv(REQUIRED, "1")
    monkeypatch.setenv("MYJEPA_APPTAINER_SKIP", "apptainer unavailable: no mirror")
    with pytest.raises(pytest.fail.Exception, match=f"^{REQUIRED}=1 but apptainer unavailable: no mirror$"):
        apptainer.__wrapped__()
    monkeypatch.delenv(REQUIRED)
    with pytest.raises(pytest.skip.Exception, match="^apptainer unavailable: no mirror$"):
        apptainer.__wrapped__()


def test_setup_failure_is_one_line_and_a_skip_reason(tmp_path):
    """An unreachable sid mirror stands for 'the suite moved': exit 3, the reason once, no image."""
    environ = dict(os.environ, MYJEPA_CI_CACHE=str(tmp_path), MYJEPA_CI_MIRROR="http://127.0.0.1:9/debian")
    result = subprocess.run([str(SETUP)], capture_output=True, text=True, env=environ, timeout=300)
    assert result.returncode == 3, result.stderr
    reason_lines = [line for line in result.stderr.splitlines() if "apptainer unavailable" in line]
    assert len(reason_lines) == 1
    # the mirror is named (or, on a machine without the host tools and root, what is missing)
    assert "sid suite at http://127.0.0.1:9/debian failed" in reason_lines[0] or "missing" in reason_lines[0]
    exported = load_env_lines(result.stdout)
    assert list(exported) == ["MYJEPA_APPTAINER_SKIP"]
    assert exported["MYJEPA_APPTAINER_SKIP"] == reason_lines[0].removeprefix("ci/apptainer: ")
    assert load_env_lines((tmp_path / "env").read_text()) == exported
    assert not list(tmp_path.glob("images/*.sif"))


# ---- real runs -----------------------------------------------------------------------------------


def load_env_lines(text: str) -> dict[str, str]:
    """`export K=V` lines (V shell-quoted) as .ci/apptainer prints them."""
    values = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            values[key] = value
    return values


def apptainer_setup() -> dict[str, str]:
    keys = ("MYJEPA_APPTAINER", "MYJEPA_CI_IMAGE", "MYJEPA_APPTAINER_SKIP", "MYJEPA_CI_IMAGE_ERROR")
    from_env = {k: os.environ[k] for k in keys if os.environ.get(k)}
    if from_env:
        return from_env
    env_file = CACHE / "env"
    return load_env_lines(env_file.read_text()) if env_file.is_file() else {}


@pytest.fixture(scope="session")
def apptainer() -> tuple[Path, Path]:
    """(apptainer binary, CI image); skips with the setup's reason when there is no apptainer, and fails instead
    under MYJEPA_REQUIRE_APPTAINER=1 (.ci/run sets it once .ci/apptainer has set apptainer up)."""
    setup = apptainer_setup()
    if setup.get("MYJEPA_APPTAINER_SKIP"):
        skip_or_fail(setup["MYJEPA_APPTAINER_SKIP"], REQUIRED)
    if not setup.get("MYJEPA_APPTAINER"):
        skip_or_fail("apptainer is not set up here: run .ci/apptainer (CI does)", REQUIRED)
    if setup.get("MYJEPA_CI_IMAGE_ERROR"):
        pytest.fail(setup["MYJEPA_CI_IMAGE_ERROR"])
    binary, image = Path(setup["MYJEPA_APPTAINER"]), Path(setup.get("MYJEPA_CI_IMAGE", ""))
    assert binary.is_file(), f"MYJEPA_APPTAINER={binary} does not exist: rerun .ci/apptainer"
    assert image.is_file(), f"MYJEPA_CI_IMAGE={image} does not exist: rerun .ci/apptainer"
    built_from = re.fullmatch(r"myjepa-ci-([0-9a-f]{16})\.sif", image.name)
    if built_from and built_from.group(1) != image_inputs_hash():
        stale = f"{image} holds other sources than this tree: rerun .ci/apptainer"
        if not os.environ.get("MYJEPA_CI_IMAGE"):  # an earlier .ci/run's image, found in the cache
            skip_or_fail(stale, REQUIRED)
        pytest.fail(stale)  # the image this run's .ci/apptainer named must be this tree's
    return binary, image


def image_inputs_hash() -> str:
    """.ci/apptainer's key of the image's inputs (containers/, myjepa/, pyproject.toml), redone here."""
    import hashlib

    paths = sorted(
        str(p.relative_to(REPO))
        for folder in ("containers", "myjepa")
        for p in (REPO / folder).rglob("*")
        if p.is_file() and p.suffix not in (".pyc", ".sif")
    )
    lines = "".join(f"{hashlib.sha256((REPO / p).read_bytes()).hexdigest()}  {p}\n" for p in [*paths, "pyproject.toml"])
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def run(cmd: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, f"{shlex.join(cmd)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.apptainer
def test_image_test_section_passes(apptainer):
    binary, image = apptainer
    result = run([str(binary), "test", str(image)])
    assert "usage: myjepa" in result.stdout
    assert re.search(r"^myjepa 0\.1\.0 torch \d+\.\d+\.\d+\+cpu$", result.stdout, re.M), result.stdout


@pytest.mark.apptainer
def test_image_runs_myjepa_and_torch_with_the_marker_set(apptainer, tmp_path):
    binary, image = apptainer
    assert run([str(binary), "run", str(image), "--version"]).stdout.strip() == f"myjepa {myjepa.__version__}"
    (tmp_path / "x.txt").write_text("3\n")
    script = (
        'echo "marker=$MYJEPA_CONTAINER"; '
        "python -c \"import torch; print('sum', torch.ones(int(open('/data/x.txt').read())).sum().item())\"; "
        "command -v python"
    )
    out = run([str(binary), "exec", "--bind", f"{tmp_path}:/data", str(image), "bash", "-c", script]).stdout
    assert out.splitlines() == [f"marker=myjepa-{myjepa.__version__}", "sum 3.0", "/opt/myjepa/venv/bin/python"]
    # `myjepa` in the image names it on stderr: the line every rule log gets
    result = run([str(binary), "exec", str(image), "myjepa", "--version"])
    assert result.stdout.strip() == f"myjepa {myjepa.__version__}"
    assert result.stderr.splitlines() == [MARKER]


# ---- the workflow's jobs inside the image, locally and through SLURM -----------------------------

SNAKEFILE = REPO / "workflow" / "Snakefile"
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
TARGETS = ("results/pretrain/tiny/s42/encoder.pt", "results/finetune/tiny-s42/rhythm/linear/s0/results.json")
TWO_RULES = ("convert_ptbxl", "pretrain")  # the two-node run's jobs


def slurm_apptainer_args() -> str:
    """The apptainer-args users run with (profiles/slurm), binds for the data directories included."""
    return yaml.safe_load(SLURM_PROFILE.read_text())["apptainer-args"]


def bind_sources(args: str) -> list[Path]:
    """Host paths of the --bind/-B options in apptainer arguments."""
    words, sources = shlex.split(args), []
    for i, word in enumerate(words):
        if word in ("--bind", "-B") and i + 1 < len(words):
            spec = words[i + 1]
        elif word.startswith("--bind="):
            spec = word.split("=", 1)[1]
        else:
            continue
        sources += [Path(part.split(":", 1)[0]) for part in spec.split(",") if part]
    return sources


def test_bind_sources_parses_apptainer_args():
    assert bind_sources("--nv --bind /a,/b:/c -B /d --bind=/e:/f:ro") == [Path(p) for p in ("/a", "/b", "/d", "/e")]
    assert bind_sources(slurm_apptainer_args()), "profiles/slurm binds no data directory"


def host_env(apptainer_bin: Path) -> dict[str, str]:
    """The environment snakemake runs in: apptainer on PATH, but no host `myjepa` (nor this venv's
    bin), so a job that did not run inside the image fails with 'myjepa: command not found'."""
    venv_bin = Path(sys.executable).parent
    path = [str(apptainer_bin.parent)] + [
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin.resolve()
    ]
    env = dict(os.environ, PATH=os.pathsep.join(path), OMP_NUM_THREADS="2", WANDB_MODE="disabled")
    assert shutil.which("myjepa", path=env["PATH"]) is None, "a host myjepa is on PATH: the test would prove nothing"
    return env


@pytest.fixture(scope="module")
def external_ptbxl(apptainer):
    """A synthetic PTB-XL in the real layout under the first data directory profiles/slurm binds
    (e.g. /data/physionet), i.e. outside the project, the working directory, /tmp and $HOME."""
    binary, image = apptainer
    base = bind_sources(slurm_apptainer_args())[0]
    created = next((p for p in reversed([base, *base.parents]) if not p.exists()), None)  # the topmost new folder
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        pytest.fail(f"cannot create {base}, the data directory profiles/slurm binds: {e}")
    root = Path(tempfile.mkdtemp(prefix="myjepa-ci-", dir=base))
    try:
        ptbxl = root / "ptb-xl"
        run(
            [
                sys.executable,
                "-m",
                "myjepa",
                "synth",
                "--layout",
                "ptb-xl",
                "--out",
                str(ptbxl),
                "--records",
                "200",
                "--seed",
                "0",
            ],
            timeout=300,
        )
        assert (ptbxl / "ptbxl_database.csv").is_file()
        # without the profile's bind the image does not see it: the bind is what makes it reachable
        unbound = subprocess.run(
            [str(binary), "exec", str(image), "test", "-e", str(ptbxl)], capture_output=True, timeout=120
        )
        assert unbound.returncode == 1, unbound.stderr
        yield ptbxl
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def workflow_config(path: Path, image: Path, ptbxl: Path, mimic: bool) -> Path:
    """config/ci.yaml cut down, PTB-XL read from the external directory. mimic: pretrain on a
    synthetic MIMIC-IV-ECG (synth, one conversion shard, merge), else on PTB-XL's training folds."""
    config = {
        "container": {"image": str(image)},
        "data": {
            "ptb_xl": {"raw": str(ptbxl), "source_rate": 500},
            "pretrain": [{"name": "mimic-iv-ecg", "archive": "mimic-iv-ecg", "synth_records": 40}],
        },
        "evaluate": {"baseline": False},
    }
    run = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())["pretrain"]["runs"][0]
    config["pretrain"] = {"runs": [{**run, "datasets": {"mimic-iv-ecg" if mimic else "ptb-xl": 1.0}}]}
    path.write_text(yaml.safe_dump(config))
    return path


def run_workflow(
    work: Path, image: Path, ptbxl: Path, env: dict[str, str], mimic: bool, *profile_args: str, targets=TARGETS
) -> str:
    config = workflow_config(work / "container.yaml", image, ptbxl, mimic)
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(work),
        "--configfile", str(REPO / "config" / "config.yaml"), str(REPO / "config" / "ci.yaml"), str(config),
        # + the repository read-only: users run from it (the working directory, bound by default),
        # and rules read its files (e.g. the pretraining config) by their host paths
        "--sdm", "apptainer", f"--apptainer-args={slurm_apptainer_args()} --bind {REPO}:{REPO}:ro", "--printshellcmds",
        *profile_args, *targets,
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"snakemake failed ({result.returncode}):\n{out[-8000:]}"
    return out


def check_outputs(work: Path, image: Path, ptbxl: Path, out: str, rules: tuple[str, ...]) -> None:
    jobs = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", out)
    assert sorted(jobs) == sorted(rules), out[-4000:]
    # each rule's log carries the line the image's `myjepa` prints: the job ran inside the image
    logs = sorted((work / "logs").rglob("*.log"))
    assert len(logs) == len(rules), logs
    for log in logs:
        assert MARKER in log.read_text().splitlines(), f"{log} lacks {MARKER!r}:\n{log.read_text()[-2000:]}"
    assert f"--src {ptbxl} " in out  # the conversion read the external directory ...
    index = pd.read_csv(work / "results" / "data" / "ptb-xl.index.csv")
    assert len(index) == 200 == len(pd.read_csv(ptbxl / "ptbxl_database.csv"))  # ... all of it
    encoder = torch.load(work / TARGETS[0], weights_only=True, map_location="cpu")
    assert encoder["step"] == 6 and encoder["encoder"]
    results = json.loads((work / TARGETS[1]).read_text())
    assert results["task"] == "rhythm" and 0.0 <= results["test_auc"] <= 1.0
    assert results["n_train"] + results["n_val"] + results["n_test"] <= 200


@pytest.mark.apptainer
@pytest.mark.slow
def test_workflow_torch_rules_run_inside_the_image(apptainer, external_ptbxl, tmp_path):
    """`snakemake --sdm apptainer` with profiles/slurm's apptainer-args on this machine: every job of
    synth -> conversions -> pretraining -> finetune runs in the CI image and reads the bound data."""
    binary, image = apptainer
    rules = ("synth_archive", "convert_shard", "merge_shards", "convert_ptbxl", "pretrain", "finetune")
    out = run_workflow(tmp_path, image, external_ptbxl, host_env(binary), True, "--cores", "2")
    check_outputs(tmp_path, image, external_ptbxl, out, rules)
    assert out.count(f"Activating singularity image {image}") == len(rules), out[-4000:]


def slurm_controller_down() -> str | None:
    """None when a SLURM controller answers with a usable node, else why not."""
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return "no SLURM client here (CI starts a cluster with .ci/slurm)"
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0 or not {"idle", "mixed", "allocated"} & set(result.stdout.split()):
        return f"no SLURM controller with a usable node: {(result.stderr or result.stdout).strip() or 'no nodes'}"
    return None


@pytest.fixture
def slurm_up() -> None:
    """Skip when no SLURM controller answers; fail instead under MYJEPA_REQUIRE_SLURM=1 (.ci/run)."""
    why_not = slurm_controller_down()
    if why_not:
        if os.environ.get("MYJEPA_REQUIRE_SLURM") == "1":
            pytest.fail(f"MYJEPA_REQUIRE_SLURM=1 but {why_not}")
        pytest.skip(why_not)


@pytest.mark.apptainer
@pytest.mark.slurm
@pytest.mark.slow
def test_workflow_torch_rules_run_inside_the_image_through_slurm(slurm_up, apptainer, external_ptbxl, tmp_path):
    """The chain users run: snakemake -> sbatch -> jobstep -> apptainer exec -> torch, with the CI
    cluster's profile (profiles/slurm-ci) and profiles/slurm's apptainer settings. Kept to three
    jobs (conversion, pretraining, finetune): each SLURM hop costs seconds of status polling."""
    binary, image = apptainer
    rules = ("convert_ptbxl", "pretrain", "finetune")
    out = run_workflow(
        tmp_path, image, external_ptbxl, host_env(binary), False, "--profile", str(REPO / "profiles" / "slurm-ci")
    )
    check_outputs(tmp_path, image, external_ptbxl, out, rules)
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == len(rules), out[-4000:]
    job_logs = {p.stem: p.read_text() for p in (tmp_path / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert sorted(job_logs) == sorted(submitted)
    for job_id, text in job_logs.items():  # the jobstep inside each SLURM job started the image
        assert f"Activating singularity image {image}" in text, f"SLURM job {job_id}:\n{text[-3000:]}"


@pytest.mark.apptainer
@pytest.mark.slurm
@pytest.mark.slow
def test_pretraining_over_two_nodes_runs_the_image_on_each(slurm_up, apptainer, external_ptbxl, tmp_path):
    """profiles/slurm-ci with pretrain over the two nodes of partition `multi` (the settings of
    `myjepa slurm-profile --nodes-per-job 2`): Snakemake runs the conversion in the image itself; the
    pretraining job's srun starts `apptainer exec IMAGE torchrun` on n1 and n2."""
    binary, image = apptainer
    profile = yaml.safe_load((REPO / "profiles" / "slurm-ci" / "config.yaml").read_text())
    pretrain = {"slurm_partition": "multi", "mem_mb": profile["set-resources"]["pretrain"]["mem_mb"]}
    profile["set-resources"]["pretrain"] = pretrain | multinode_resources(2, 1, None)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    out = run_workflow(
        tmp_path, image, external_ptbxl, host_env(binary), False, "--profile", str(tmp_path / "profile"),
        targets=TARGETS[:1],
    )  # fmt: skip
    assert re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", out) == ["convert_ptbxl", "pretrain"], out[-4000:]
    slurm_logs = tmp_path / ".snakemake" / "slurm_logs"
    (convert_log,), (pretrain_log,) = (list((slurm_logs / f"rule_{rule}").rglob("*.log")) for rule in TWO_RULES)
    assert f"Activating singularity image {image}" in convert_log.read_text()  # Snakemake's own apptainer exec
    assert "Activating singularity image" not in pretrain_log.read_text()  # the launcher's, on each node
    assert torch.load(tmp_path / TARGETS[0], weights_only=True, map_location="cpu")["step"] == 6
    log = (tmp_path / "logs" / "pretrain" / "tiny-s42.log").read_text()
    launch = next(line for line in log.splitlines() if line.startswith("myjepa: pretraining on 2 nodes: srun "))
    assert f" --kill-on-bad-exit=1 apptainer exec --home {tmp_path} " in launch
    assert f" {image} torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d " in launch
    job_id = re.search(r"--rdzv_id=(\d+) ", launch).group(1)
    steps = subprocess.run(
        ["sacct", "-j", f"{job_id}.0", "-n", "-P", "-o", "JobName,NodeList,NTasks,State"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()  # fmt: skip
    assert steps == ["apptainer|n[1-2]|2|COMPLETED"]  # one task per node, each an `apptainer exec`
