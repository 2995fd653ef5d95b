"""The Apptainer images: static checks of both definition files, the shared install script and the
CI setup script; real runs of the CI image (its %test, and the workflow's torch rules through
`snakemake --sdm apptainer`, locally and through SLURM) wherever .ci/apptainer has set apptainer up.

The real runs read MYJEPA_APPTAINER / MYJEPA_CI_IMAGE (exported by .ci/run from .ci/apptainer, or
read from the env file .ci/apptainer leaves in its cache). They skip only with the setup's own
reason (MYJEPA_APPTAINER_SKIP); once apptainer is there they run and can fail.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import myjepa

REPO = Path(__file__).resolve().parents[1]
USER_DEF = REPO / "containers" / "myjepa.def"
CI_DEF = REPO / "containers" / "myjepa-ci.def"
INSTALL = REPO / "containers" / "install.sh"
SETUP = REPO / ".ci" / "apptainer"
CACHE = Path(os.environ.get("MYJEPA_CI_CACHE", Path.home() / ".cache" / "myjepa-ci"))
SHARED_SECTIONS = ("files", "environment", "runscript", "test")


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
    assert "export PATH=/opt/myjepa/venv/bin:$PATH" in sections["environment"]
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


def test_setup_failure_is_one_line_and_a_skip_reason(tmp_path):
    """An unreachable sid mirror stands for 'the suite moved': exit 3, the reason once, no image."""
    environ = dict(os.environ, MYJEPA_CI_CACHE=str(tmp_path), MYJEPA_CI_MIRROR="http://127.0.0.1:9/debian")
    result = subprocess.run([str(SETUP)], capture_output=True, text=True, env=environ, timeout=300)
    assert result.returncode == 3, result.stderr
    reason_lines = [line for line in result.stderr.splitlines() if "apptainer unavailable" in line]
    assert len(reason_lines) == 1
    assert "sid" in reason_lines[0] and "127.0.0.1:9" in reason_lines[0]
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
    """(apptainer binary, CI image); skips with the setup's reason when there is no apptainer."""
    setup = apptainer_setup()
    if setup.get("MYJEPA_APPTAINER_SKIP"):
        pytest.skip(setup["MYJEPA_APPTAINER_SKIP"])
    if not setup.get("MYJEPA_APPTAINER"):
        pytest.skip("apptainer is not set up here: run .ci/apptainer (CI does)")
    if setup.get("MYJEPA_CI_IMAGE_ERROR"):
        pytest.fail(setup["MYJEPA_CI_IMAGE_ERROR"])
    binary, image = Path(setup["MYJEPA_APPTAINER"]), Path(setup.get("MYJEPA_CI_IMAGE", ""))
    assert binary.is_file(), f"MYJEPA_APPTAINER={binary} does not exist: rerun .ci/apptainer"
    assert image.is_file(), f"MYJEPA_CI_IMAGE={image} does not exist: rerun .ci/apptainer"
    return binary, image


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
        'python -c "import torch; print(\'sum\', torch.ones(int(open(\'/data/x.txt\').read())).sum().item())"; '
        "command -v python"
    )
    out = run([str(binary), "exec", "--bind", f"{tmp_path}:/data", str(image), "bash", "-c", script]).stdout
    assert out.splitlines() == [f"marker=myjepa-{myjepa.__version__}", "sum 3.0", "/opt/myjepa/venv/bin/python"]
