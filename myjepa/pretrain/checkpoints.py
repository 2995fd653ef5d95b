"""The pretraining checkpoint record: its one definition, the only code that writes and reads it, and when a
run may resume from it.

Three files of a run folder hold a `Checkpoint`: last_ckpt.pt and best_ckpt.pt (all to resume: the whole
model, optimizer, progress, RNG) and encoder.pt (the encoder's weights, all that evaluation and a release
need). Each also holds the `RunRecord`: the config, the run options that decide the weights
(`options.WEIGHT_OPTIONS`), a digest of each dump's stats.json, and each dump's summary (the z-scoring
a release's input contract is made of). Files before version 2 (no `version` key) are read too.

A run resumes only under the settings it was written with (config, data, seed, autocast dtype): then the
resumed run is the uninterrupted one, bit for bit, because batches and schedules are pure functions of the
step. Only bookkeeping keys that cannot change the weights may differ. The workflow passes
`--restart-on-change`, so a run whose settings changed starts afresh instead.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from myjepa.config import to_dict
from myjepa.dumps import sidecars
from myjepa.errors import UserError
from myjepa.models.config import ENCODER_KEYS
from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain.batches import Source
from myjepa.pretrain.config import PretrainConfig
from myjepa.pretrain.options import WEIGHT_OPTIONS, RunOptions, flag
from myjepa.utils import checkpoint

VERSION = 2
"""2: `version`, `run` (a RunRecord), then `encoder` (encoder.pt) or `training` (last/best_ckpt.pt).
Version 1 had no `version`; its keys and what they now are, in `from_version_1`."""

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

PREFIX = "encoder."
"""Where the encoder's weights sit in the whole model's state dict."""


@dataclass
class RunRecord:
    """What every checkpoint says about the run that wrote it. A file of an older version may lack some of it
    (None): what is missing is not compared on resumption, and a release needs `dumps`."""

    config: dict[str, Any]  # the resolved PretrainConfig (the encoder's keys among them)
    options: dict[str, Any]  # RunOptions.weight_settings(): seed, amp
    dump_digests: dict[str, str] | None  # dataset name -> sha256 of its dump's stats.json (16 hex digits)
    dumps: list[dict[str, Any]] | None  # per dump: name, path, records, samples, fs, weight, mean, std (per lead, mV)

    @property
    def encoder_config(self) -> dict[str, Any]:
        return {k: self.config[k] for k in ENCODER_KEYS}


@dataclass
class Training:
    """What resuming needs beyond the encoder: last_ckpt.pt and best_ckpt.pt only."""

    model: dict[str, torch.Tensor]  # the whole MyJEPA: encoder (under PREFIX), predictor, projector, SIGReg
    optimizer: dict[str, Any]
    best_loss: float
    loss_window: list[float]
    rng: dict[str, Any]


@dataclass
class Checkpoint:
    step: int  # optimizer steps taken
    run: RunRecord
    encoder: dict[str, torch.Tensor]  # the encoder's weights; in last/best_ckpt.pt a view of training.model
    training: Training | None = None  # None in encoder.pt
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        """What torch.save writes: the encoder's weights once (inside `training.model` when training is set).
        Shallow (`vars`, not `asdict`): the tensors are saved as they are, never copied first."""
        weights = {"training": dict(vars(self.training))} if self.training else {"encoder": self.encoder}
        return {"version": self.version, "step": self.step, "run": dict(vars(self.run)), **weights}


@dataclass
class TrainState:
    """Where training stands: the step done, the best running-mean loss and the losses behind it."""

    window_size: int
    step: int = 0
    best_loss: float = math.inf
    window: deque = field(init=False)

    def __post_init__(self) -> None:
        self.window = deque(maxlen=self.window_size)


# ---- writing ------------------------------------------------------------------------------------


def run_record(cfg: PretrainConfig, options: RunOptions, sources: list[Source]) -> RunRecord:
    """The run's record, written into every checkpoint; `options` with the autocast dtype settled."""
    digests = {s.name: hashlib.sha256(sidecars(s.dump.path)[1].read_bytes()).hexdigest()[:16] for s in sources}
    return RunRecord(to_dict(cfg), options.weight_settings(), digests, data_summary(sources))


def data_summary(sources: list[Source]) -> list[dict[str, Any]]:
    """Per dump: name, path, records sampled, samples per record, fs, sampling weight and per-lead mean/std
    (the z-scoring pretraining applied). A release's input contract is made of these."""
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


def save_training(
    path: Path, model: MyJEPA, optimizer: torch.optim.Optimizer, state: TrainState, run: RunRecord
) -> None:
    """last_ckpt.pt or best_ckpt.pt: everything to resume."""
    weights = model.state_dict()
    training = Training(weights, optimizer.state_dict(), state.best_loss, list(state.window), checkpoint.rng_state())
    checkpoint.save(Checkpoint(state.step, run, encoder_of(weights, path), training).to_dict(), path)


def save_encoder(path: Path, model: MyJEPA, step: int, run: RunRecord) -> None:
    """encoder.pt: the encoder's weights and the run record."""
    checkpoint.save(Checkpoint(step, run, model.encoder.state_dict()).to_dict(), path)


# ---- reading ------------------------------------------------------------------------------------


def read(path: Path) -> Checkpoint:
    """The checkpoint at `path` (encoder.pt, last_ckpt.pt or best_ckpt.pt of `myjepa pretrain`, any version)."""
    return from_dict(checkpoint.load(path), path)


def from_dict(ckpt: dict[str, Any], path: Path) -> Checkpoint:
    """A checkpoint dict loaded from `path`, checked; anything else is a UserError naming the file."""
    try:
        if "version" not in ckpt:
            parsed = from_version_1(ckpt, path)
        elif ckpt["version"] != VERSION:
            raise UserError(
                f"{path}: checkpoint version {ckpt['version']!r}; this myjepa reads versions 1 to {VERSION}"
            )
        else:
            run = RunRecord(**ckpt["run"])
            training = Training(**ckpt["training"]) if "training" in ckpt else None
            encoder = encoder_of(training.model, path) if training else ckpt["encoder"]
            parsed = Checkpoint(int(ckpt["step"]), run, encoder, training)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: not a MyJEPA pretraining checkpoint ({type(e).__name__}: {e})") from None
    check_encoder_config(parsed.run.config, path)
    return parsed


def from_version_1(ckpt: dict[str, Any], path: Path) -> Checkpoint:
    """The layouts before version 2. last/best_ckpt.pt: `model`, `optimizer`, `step`, `config` (the
    PretrainConfig), `seed`, `amp`, `data` (stats.json digests), `sources` (the dump summaries), `best_loss`,
    `loss_window`, `rng`. encoder.pt: `encoder`, `config` (the EncoderConfig), `pretrain_config`, `step`,
    `seed`, `data` (the dump summaries). Older files lack some of these."""
    options = {k: ckpt[k] for k in WEIGHT_OPTIONS if k in ckpt}
    step = int(ckpt["step"]) if isinstance(ckpt.get("step"), (int, float)) else 0
    if isinstance(ckpt.get("model"), dict):
        digests = ckpt["data"] if isinstance(ckpt.get("data"), dict) else None
        run = RunRecord(config_of(ckpt.get("config"), path), options, digests, ckpt.get("sources"))
        resumable = all(k in ckpt for k in ("optimizer", "best_loss", "loss_window", "rng"))
        training = Training(**{k: ckpt[k] for k in Training.__dataclass_fields__}) if resumable else None
        return Checkpoint(step, run, encoder_of(ckpt["model"], path), training, version=1)
    if isinstance(ckpt.get("encoder"), dict):
        config = {**(ckpt.get("pretrain_config") or {}), **config_of(ckpt.get("config"), path)}
        summaries = ckpt["data"] if isinstance(ckpt.get("data"), list) else None
        return Checkpoint(step, RunRecord(config, options, None, summaries), ckpt["encoder"], version=1)
    raise UserError(
        f"{path}: neither an 'encoder' nor a 'model' entry; "
        "expected encoder.pt, best_ckpt.pt or last_ckpt.pt from `myjepa pretrain`"
    )


def config_of(config: Any, path: Path) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise UserError(f"{path}: no encoder config stored (expected a mapping under 'config')")
    return config


def check_encoder_config(config: dict[str, Any], path: Path) -> None:
    missing = [k for k in ENCODER_KEYS if k not in config]
    if missing:
        raise UserError(f"{path}: encoder config lacks {missing}; not a MyJEPA encoder")


def encoder_of(model: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights in a whole model's state dict."""
    state = {k[len(PREFIX) :]: v for k, v in model.items() if k.startswith(PREFIX)}
    if not state:
        raise UserError(f"{path}: the model holds no '{PREFIX}' weights; is this a MyJEPA pretraining checkpoint?")
    return state


# ---- resuming -----------------------------------------------------------------------------------


def difference(stored: RunRecord, current: RunRecord) -> str | None:
    """The first setting that makes `stored` (a checkpoint's) not resumable now, in words; None if none.

    Settings a checkpoint of an older version does not record are not compared.
    """
    for what, old, new in (
        ("config", stored.config, current.config),
        ("data", stored.dump_digests, current.dump_digests),
    ):
        if old is None:
            continue
        changed = [k for k in sorted(set(old) | set(new)) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
        if changed:
            k = changed[0]
            return f"a different {what} ({k}: {old.get(k)!r} there, {new.get(k)!r} now)"
    for name, value in stored.options.items():
        if value != current.options.get(name):
            return f"{flag(name)} {value}, not {current.options.get(name)}"
    return None


def resume(
    path: Path,
    model: MyJEPA,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    run: RunRecord,
    restart_on_change: bool,
) -> bool:
    """Load last_ckpt.pt (`path`) into model, optimizer, progress and the RNG when it may be resumed.

    Returns False for a fresh start: no checkpoint, or one written with other settings under
    `restart_on_change` (the caller removes the old files). Otherwise such a checkpoint is refused.
    """
    if not path.is_file():
        return False
    ckpt = read(path)
    changed = difference(ckpt.run, run)
    if changed and restart_on_change:
        print(f"{path} was written with {changed}: starting afresh (--restart-on-change)", file=sys.stderr)
        return False
    if changed:
        raise UserError(
            f"{path} was written with {changed}; use another --out, the same settings, or --restart-on-change"
        )
    if ckpt.training is None:
        raise UserError(f"{path}: holds no optimizer state to resume from; use another --out or delete it")
    model.load_state_dict(ckpt.training.model)
    optimizer.load_state_dict(ckpt.training.optimizer)
    state.step, state.best_loss = ckpt.step, float(ckpt.training.best_loss)
    state.window.extend(ckpt.training.loss_window)
    checkpoint.set_rng_state(ckpt.training.rng)
    return True
