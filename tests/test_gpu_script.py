"""benchmarks/gpu.sh --dry-run: the GPU check's every part, on the CPU at tiny sizes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_writes_every_figure(tmp_path):
    out = tmp_path / "figures.txt"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", str(out)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "3 skipped" in text  # the CUDA tests are selected by their marker and skip without a GPU
    assert "tiny         B=8 eager    myjepa" in text and "GFLOP/s" in text
    assert "SUMMARY memory tiny: peak per sample" in text
    assert "DataLoader, 2 workers -> cpu" in text and "SUMMARY loader: target >= 3,000" in text
    assert "SUMMARY resume: SIGTERM -> exit 143" in text and "finished at step 100: ok" in text
