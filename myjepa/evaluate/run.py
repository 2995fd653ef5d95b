"""What one run evaluates, settled before training: the task's data, its crops, the encoder, the protocol.

The task's data comes from `myjepa.tasks` (PTB-XL's tables, or a user's LABELS.csv); `task_crops`
checks the encoder against the dump (`check_compatible`) and cuts the records into the protocol's strided crops,
normalised with the train folds' statistics. `Run` gathers what best_ckpt.pt and results.json record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from myjepa.dumps import norm_stats
from myjepa.encoders.crops import StridedCrops, crop_starts
from myjepa.encoders.load import LoadedEncoder
from myjepa.errors import UserError
from myjepa.evaluate.config import FinetuneConfig
from myjepa.tasks.splits import Splits, TaskData


@dataclass
class Run:
    """The task, protocol and encoder of one run, and the data it trains and scores on."""

    task: str
    cfg: FinetuneConfig
    seed: int
    encoder: LoadedEncoder
    encoder_sha256: str
    encoder_name: str  # how the report names the encoder and the protocol
    protocol_name: str
    splits: Splits
    crops: StridedCrops
    stride: int  # samples between crop starts
    multiclass: bool
    descriptions: list[str]  # each class in words
    data: dict[str, Any]  # what it was trained on (`data_summary`)

    @property
    def classes(self) -> list[str]:
        return self.splits.classes


def data_summary(data: TaskData) -> dict[str, Any]:
    """What a run was trained on, for results.json and a classifier release's card: the dump, where the labels
    come from, and each split's positive records per class."""
    dump = data.dump
    counts = {split: targets.sum(0).astype(int).tolist() for split, targets in data.splits.targets.items()}
    return {"dump": str(dump.path), "fs": dump.fs, "records": len(dump), **data.source, "class_counts": counts}


def task_crops(data: TaskData, encoder: LoadedEncoder, crop_s: float, stride_s: float) -> tuple[StridedCrops, int]:
    """The strided crops of the dump's records, once the encoder is known to fit the dump; and the stride."""
    dump = data.dump
    length = dump.signals.shape[2]
    crop, stride = check_compatible(
        encoder.config, str(encoder.path), str(dump.path), dump.fs, dump.leads, length, crop_s, stride_s
    )
    starts = crop_starts(length, crop, stride)
    mean, std = norm_stats(dump.signals, data.train_fold_rows)
    return StridedCrops(dump.signals, starts, crop, mean, std), stride


def check_compatible(
    cfg: dict[str, Any],
    source: str,
    dump_name: str,
    fs: int,
    leads: list[str],
    length: int,
    crop_s: float,
    stride_s: float,
) -> tuple[int, int]:
    """Sampling rate, lead order and crop geometry must fit; returns (crop, stride) in samples."""
    if int(cfg["fs"]) != int(fs):
        raise UserError(
            f"{source} expects {cfg['fs']} Hz but {dump_name} is sampled at {fs} Hz; "
            f"convert the dump with --fs {cfg['fs']}"
        )
    if list(cfg["leads"]) != list(leads):
        raise UserError(f"{source} expects leads {list(cfg['leads'])} but {dump_name} holds {list(leads)}")
    crop, stride = crop_s * fs, stride_s * fs
    for name, seconds, samples in (("crop_s", crop_s, crop), ("stride_s", stride_s, stride)):
        if samples <= 0 or abs(samples - round(samples)) > 1e-6:
            raise UserError(f"config key {name!r}: {seconds} s is not a positive whole number of samples at {fs} Hz")
    crop, stride = int(round(crop)), int(round(stride))
    patch = int(cfg["patch_size"])
    if crop % patch:
        raise UserError(
            f"config key 'crop_s': {crop_s} s = {crop} samples is not a multiple of the encoder's patch_size "
            f"{patch} ({source})"
        )
    if crop > int(cfg["channel_size"]):
        raise UserError(
            f"config key 'crop_s': {crop} samples is longer than the encoder's channel_size "
            f"{cfg['channel_size']} ({source})"
        )
    if crop > length:
        raise UserError(
            f"config key 'crop_s': {crop} samples is longer than the records of {dump_name} ({length} samples)"
        )
    return crop, stride
