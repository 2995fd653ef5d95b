"""The package's shape, as CI keeps it: ruff-clean, small modules, torch-free stages that must start fast."""

from __future__ import annotations

import ast
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
        "myjepa.workflow, myjepa.workflow_commands, myjepa.models.config, myjepa.pretrain.config, "
        "myjepa.evaluate.config, myjepa.tasks.names",
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

    assert set(COMMANDS) == {
        "synth",
        "convert",
        "pretrain",
        "finetune",
        "export",
        "embed",
        "predict",
        "report",
        "slurm-profile",
    }
    for name in COMMANDS:
        proc = subprocess.run([str(BIN / "myjepa"), name, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and f"myjepa {name}" in proc.stdout, (name, proc.stderr)


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its code (an import inside a function counts:
    a lazy import hides a circle, it does not remove it). `from a import b` is an edge to a.b when b is a module."""
    root = package.parent
    modules = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p for p in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def stage(module: str) -> str:
    """The package a module belongs to: myjepa.evaluate.run -> evaluate; myjepa.dumps -> dumps; myjepa -> myjepa."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (its nodes in order, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    return next((found for node in sorted(graph) if (found := visit(node))), None)


FORBIDDEN = [
    ("pretrain", "evaluate"),  # PTB-XL's tasks, the crops and the metrics sit below both (tasks/, dumps, encoders/)
    ("evaluate", "pretrain"),  # evaluation reads encoders through encoders/
    ("evaluate", "release"),
    ("release", "evaluate"),
    ("pretrain", "encoders"),  # encoders/ reads pretraining's checkpoints: it sits above pretrain/
    ("ingest", "synth"),  # the converters read synthetic archives as they read real ones
]


def test_no_import_circle_between_modules_or_packages():
    graph = import_graph(ROOT / "myjepa")
    assert {"myjepa.pretrain.checkpoints", "myjepa.leads"} <= graph["myjepa.encoders.load"] | graph[
        "myjepa.models.config"
    ]
    assert "myjepa.encoders.load" in graph["myjepa"]  # the lazy import in myjepa.load_encoder is an edge too
    assert circle(graph) is None, " -> ".join(circle(graph) or [])
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(stage(module), set()).update(stage(t) for t in targets if stage(t) != stage(module))
    assert circle(packages) is None, " -> ".join(circle(packages) or [])
    assert not [(a, b) for a, b in FORBIDDEN if b in packages[a]]
