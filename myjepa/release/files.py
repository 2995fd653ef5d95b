"""Writing a release's files, whatever its kind: safetensors weights with their digest, the card, and the
software versions config.json records."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from myjepa.utils.io import atomic_path, sha256_file


def software() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("myjepa", "torch", "numpy", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def save_weights(path: Path, state: dict[str, Any]) -> dict[str, str]:
    """A state dict as safetensors (atomically); its config.json entry: file, sha256, dtype."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        # one metadata key: safetensors writes a map's keys in random order, so two keys would make two exports
        # of the same weights differ (config.json records the release format)
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return {"file": path.name, "sha256": sha256_file(path), "dtype": "float32"}


def write_card(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
