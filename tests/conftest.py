"""Shared test helpers: write small dumps (with sidecars) and synthetic ECG-like signals."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from myjepa import LEADS


def synthetic_ecg(n: int, length: int = 5000, fs: int = 500, seed: int = 0) -> np.ndarray:
    """(n, 12, length) float32 quasi-periodic beats: per-record heart rate, per-lead mixing, noise, in mV."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / fs
    hr = rng.uniform(0.8, 2.0, size=(n, 1))  # beats per second
    phase = 2 * np.pi * hr * t + rng.uniform(0, 2 * np.pi, size=(n, 1))
    beat = np.exp(8 * (np.cos(phase) - 1))  # narrow peaks, like QRS complexes
    wave = 0.3 * np.exp(3 * (np.cos(phase - 1.2) - 1))  # broader T-like waves
    sources = np.stack([beat, wave, np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, size=(n, 1)))], axis=1)  # (n, 3, L)
    mix = rng.normal(size=(n, 12, 3)) * np.array([1.0, 0.6, 0.1])
    x = np.einsum("nls,nst->nlt", mix, sources) + 0.02 * rng.normal(size=(n, 12, length))
    return x.astype(np.float32)


def write_dump(
    path: str | Path, signals: np.ndarray, index_df: pd.DataFrame | None = None, stats: dict[str, Any] | None = None
) -> Path:
    """Write PATH.npy (float16) with PATH.index.csv and PATH.stats.json; stats default to the signals' own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signals = np.asarray(signals)
    n, _, length = signals.shape
    np.save(path, signals.astype(np.float16))
    stem = path.with_suffix("")
    if index_df is None:
        index_df = pd.DataFrame(
            {"subject_id": np.arange(n), "study_id": np.arange(n), "file": [f"r{i}" for i in range(n)]}
        )
    index_df.to_csv(stem.with_name(stem.name + ".index.csv"), index=False)
    base = {
        "fs": 500,
        "leads": list(LEADS),
        "mean": signals.astype(np.float64).mean(axis=(0, 2)).tolist(),
        "std": signals.astype(np.float64).std(axis=(0, 2)).tolist(),
        "count": int(n),
        "nan_interpolated": 0,
        "skipped": [],
        "version": 1,
    }
    base.update(stats or {})
    stem.with_name(stem.name + ".stats.json").write_text(json.dumps(base))
    return path


def load_benchmark(name: str) -> Any:
    """A script of benchmarks/ as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skip_or_fail(reason: str, required_by: str) -> None:
    """Skip with `reason`, or fail where the environment variable `required_by` is 1: CI sets it once the tool
    is there (or must be), so that its tests cannot pass by skipping."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def small_dump(tmp_path: Path) -> Path:
    """A 64-record MIMIC-layout dump of synthetic ECG at 500 Hz, 10 s."""
    return write_dump(tmp_path / "mimic.npy", synthetic_ecg(64, seed=1))


@pytest.fixture
def single_thread():
    """One torch thread: the CI machine has 2 cores shared by parallel jobs, and oversubscribed
    OpenMP threads slow small models down many times over."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
