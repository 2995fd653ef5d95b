"""What one run evaluates, settled before training: the task's data, its crops, the encoder, the protocol.

The task's data comes from `myjepa.tasks` (PTB-XL's tables, or a user's LABELS.csv); `task_crops`
checks the encoder against the dump and cuts the records into the protocol's strided crops,
normalised with the train folds' statistics. `Run` gathers what best_ckpt.pt and results.json record.
"""

from __future__ import annotations

from dataclasses import dataclass

from myjepa.dumps import norm_stats
from myjepa.evaluate.config import FinetuneConfig
from myjepa.evaluate.encoder_io import LoadedEncoder, check_compatible
from myjepa.evaluate.features import StridedCrops, crop_starts
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

    @property
    def classes(self) -> list[str]:
        return self.splits.classes


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
