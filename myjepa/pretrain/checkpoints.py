"""A run folder's checkpoints: what they hold, when one may be resumed, and encoder.pt.

A run resumes only under the settings it was written with (config, seed, data, autocast dtype):
then the resumed run is the uninterrupted one, bit for bit, because batches and schedules are pure
functions of the step. Only bookkeeping keys that cannot change the weights may differ. The
workflow passes `--restart-on-change`, so a run whose settings changed starts afresh instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from myjepa.config import to_dict
from myjepa.dumps import sidecars
from myjepa.errors import UserError
from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain.batches import Source
from myjepa.pretrain.config import PretrainConfig
from myjepa.utils import checkpoint
from myjepa.utils.io import atomic_path

RESUMABLE_CHANGES = frozenset(
    {
        "log_interval",
        "checkpoint_interval",
        "num_workers",
        "collapse",
        "probe_interval",
        "probe_task",
        "probe_records",
        "activation_checkpointing",
    }
)
"""Config keys that may differ on resumption: they change what is logged, saved, watched or recomputed, not the
weights."""


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


@dataclass
class TrainState:
    """Where training stands: the step done, the best running-mean loss and the losses behind it."""

    window_size: int
    step: int = 0
    best_loss: float = math.inf
    window: deque = field(init=False)

    def __post_init__(self) -> None:
        self.window = deque(maxlen=self.window_size)


def settings(cfg: PretrainConfig, seed: int, amp: str, sources: list[Source]) -> dict[str, Any]:
    """What a checkpoint is resumed under: config, seed, autocast dtype, and each dump's stats.json digest;
    and `sources`, what encoder.pt tells a release about the data (not compared on resumption)."""
    data = {s.name: hashlib.sha256(sidecars(s.dump.path)[1].read_bytes()).hexdigest()[:16] for s in sources}
    return {"config": to_dict(cfg), "seed": seed, "amp": amp, "data": data, "sources": data_summary(sources)}


def data_summary(sources: list[Source]) -> list[dict[str, Any]]:
    """Per dump: name, path, records sampled, samples per record, fs, sampling weight and per-lead mean/std
    (the z-scoring pretraining applied). `myjepa export` turns this into the release's input contract."""
    return [
        {
            "name": s.name,
            "path": str(s.dump.path),
            "records": s.num_records,
            "samples": int(s.dump.signals.shape[2]),
            "fs": s.dump.fs,
            "weight": float(s.weight),
            "mean": s.mean.ravel().tolist(),
            "std": s.std.ravel().tolist(),
        }
        for s in sources
    ]


def difference(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first setting that makes `stored` (a checkpoint) not resumable now, in words; None if none.

    Settings a checkpoint of an older version does not record are not compared.
    """
    for key in ("config", "data"):
        if key not in stored:
            continue
        old, new = stored[key], current[key]
        changed = [k for k in sorted(set(old) | set(new)) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
        if changed:
            k = changed[0]
            return f"a different {key} ({k}: {old.get(k)!r} there, {new.get(k)!r} now)"
    for key, what in (("seed", "--seed"), ("amp", "--amp")):
        if key in stored and stored[key] != current[key]:
            return f"{what} {stored[key]}, not {current[key]}"
    return None


def state_dict(model: MyJEPA, optimizer: torch.optim.Optimizer, state: TrainState, run: dict[str, Any]) -> dict:
    """Everything to resume: weights, optimizer, progress, the run's settings and the RNG."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": state.step,
        **run,
        "best_loss": state.best_loss,
        "loss_window": list(state.window),
        "rng": checkpoint.rng_state(),
    }


def save_encoder(model: MyJEPA, cfg: PretrainConfig, step: int, path: Path, run: dict[str, Any]) -> None:
    """encoder.pt: the encoder's weights and config, all that evaluation needs; with the seed and the
    data summary (`settings`), what a release needs too."""
    encoder = {"encoder": model.encoder.state_dict(), "config": cfg.encoder_config()}
    extra = {"seed": run["seed"], "data": run["sources"]}
    checkpoint.save({**encoder, "pretrain_config": to_dict(cfg), "step": step, **extra}, path)


def resume(
    folder: RunFolder,
    model: MyJEPA,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    run: dict[str, Any],
    restart_on_change: bool,
) -> bool:
    """Load last_ckpt.pt into model, optimizer, progress and the RNG when it may be resumed.

    Returns False for a fresh start: no checkpoint, or one written with other settings under
    `restart_on_change` (the caller removes the old files). Otherwise such a checkpoint is refused.
    """
    if not folder.last.is_file():
        return False
    ckpt = checkpoint.load(folder.last)
    changed = difference(ckpt, run)
    if changed and restart_on_change:
        print(f"{folder.last} was written with {changed}: starting afresh (--restart-on-change)", file=sys.stderr)
        return False
    if changed:
        raise UserError(
            f"{folder.last} was written with {changed}; use another --out, the same settings, or --restart-on-change"
        )
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    state.step, state.best_loss = int(ckpt["step"]), float(ckpt["best_loss"])
    state.window.extend(ckpt["loss_window"])
    checkpoint.set_rng_state(ckpt["rng"])
    return True


def prepare(folder: RunFolder, cfg: PretrainConfig, resumed_step: int | None) -> None:
    """Make the folder, write the resolved config.yaml, and make metrics.jsonl match the starting point:
    empty for a fresh start (old checkpoints removed), cut after the resumed step otherwise."""
    folder.out.mkdir(parents=True, exist_ok=True)
    if resumed_step is None:
        for path in (folder.last, folder.best, folder.encoder, folder.metrics):
            path.unlink(missing_ok=True)
    else:
        truncate_metrics(folder.metrics, resumed_step)
    with atomic_path(folder.out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))
