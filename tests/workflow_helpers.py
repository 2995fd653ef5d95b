"""Running the real Snakemake on this repository's workflow from tests (test_workflow, test_slurm)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    # as after `.ci/install` without an activated venv: the workflow must find `myjepa` by itself
    e["PATH"] = os.pathsep.join(p for p in e.get("PATH", "").split(os.pathsep) if p and Path(p) != BIN)
    e.setdefault("OMP_NUM_THREADS", "2")
    e["WANDB_MODE"] = "disabled"
    return e


def snakemake(
    *args: str,
    cwd: Path,
    config: Path | None = None,
    check: bool = True,
    timeout: int = 900,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run snakemake on this repository's workflow in `cwd`, with `config` on top of the demo default."""
    cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(cwd), *args]
    if config is not None:
        cmd += ["--configfile", str(ROOT / "config" / "config.yaml"), str(config)]  # last: it takes a list
    proc = subprocess.run(
        cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake (dry) run: rule -> count."""
    counts: dict[str, int] = {}
    block = text.split("Job stats:", 1)
    if len(block) < 2:
        return counts
    for line in block[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def write_config(path: Path, base: Path | dict, **changes) -> Path:
    cfg = yaml.safe_load(base.read_text()) if isinstance(base, Path) else copy.deepcopy(base)
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
