"""A pretraining run's folder (`--out`): its files, and getting it ready to train into."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from myjepa.config import to_dict
from myjepa.pretrain.config import PretrainConfig
from myjepa.utils.io import atomic_path
from myjepa.utils.logging import logged_lines


@dataclass
class RunFolder:
    """The files of one pretraining run (`--out`)."""

    out: Path

    @property
    def last(self) -> Path:
        return self.out / "last_ckpt.pt"

    @property
    def best(self) -> Path:
        return self.out / "best_ckpt.pt"

    @property
    def encoder(self) -> Path:
        return self.out / "encoder.pt"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def files(self) -> list[Path]:
        return [self.last, self.best, self.encoder, self.metrics, self.config]


def prepare(folder: RunFolder, cfg: PretrainConfig, resumed_step: int | None) -> None:
    """Make the folder, write the resolved config.yaml, and make metrics.jsonl match the starting point:
    empty for a fresh start (old checkpoints removed), cut after the resumed step otherwise."""
    folder.out.mkdir(parents=True, exist_ok=True)
    if resumed_step is None:
        for path in (folder.last, folder.best, folder.encoder, folder.metrics):
            path.unlink(missing_ok=True)
    else:
        truncate_metrics(folder.metrics, resumed_step)
    with atomic_path(folder.config) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.is_file():
        return
    keep = [line for line in logged_lines(path) if line.get("step", 0) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in keep))
