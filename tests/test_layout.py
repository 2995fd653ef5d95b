"""The package's shape, as CI keeps it: ruff-clean, small modules, torch-free stages that must start fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYTHON_TREES = ["myjepa", "tests", "benchmarks"]
MAX_MODULE_LINES = 400


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]])
def test_ruff_passes(command):
    proc = subprocess.run([str(BIN / "ruff"), *command, *PYTHON_TREES], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_module_is_over_400_lines():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "myjepa").rglob("*.py")}
    assert sizes and not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}


@pytest.mark.parametrize(
    "modules",
    [
        # converters and demo data: every worker process imports them
        "myjepa.ingest.convert, myjepa.synth.command, myjepa.dumps",
        # what the Snakemake process reads: the encoder's keys, the config folders, the task list
        "myjepa.workflow, myjepa.models.config, myjepa.pretrain.config, myjepa.evaluate.config, myjepa.tasks.names",
        # a cluster's login node: writing the profile must not wait for torch
        "myjepa.cluster.slurm_profile",
    ],
)
def test_torch_free_modules_do_not_import_torch(modules):
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_every_command_is_listed_and_runs():
    from myjepa.cli import COMMANDS

    assert set(COMMANDS) == {"synth", "convert", "pretrain", "finetune", "export", "embed", "report", "slurm-profile"}
    for name in COMMANDS:
        proc = subprocess.run([str(BIN / "myjepa"), name, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and f"myjepa {name}" in proc.stdout, (name, proc.stderr)
