"""The online probe: does pretraining help yet? Answered while it runs, before any finetuning.

Every `probe_interval` steps the main process embeds a fixed subset of PTB-XL records with the
frozen encoder (tokens averaged over the record), fits a logistic regression per class on the train
folds (scikit-learn, on standardised embeddings) and logs the validation fold's macro AUC as
`probe/auc`, with its cost in `probe/seconds`. The test fold is never read, so the probe cannot
leak into the numbers the report judges encoders by. A few thousand records keep it cheap: one
forward pass per record, no backward.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from myjepa.dumps import norm_stats, normalise
from myjepa.errors import UserError
from myjepa.pretrain.config import PretrainConfig
from myjepa.pretrain.options import ProbeOptions
from myjepa.tasks.metrics import macro_auc
from myjepa.tasks.ptbxl import load_task_data

BATCH = 64  # records per forward pass


def probe_scores(train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray) -> np.ndarray:
    """(len(test_z), C) scores of one logistic regression per class fitted on (train_z, train_y), standardised."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_z)
    train_z, test_z = scaler.transform(train_z), scaler.transform(test_z)
    scores = np.full((len(test_z), train_y.shape[1]), 0.5)
    for j in range(train_y.shape[1]):
        y = train_y[:, j]
        if 0 < y.sum() < len(y):  # a class without both outcomes in training keeps a constant score
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings: the probe is a trend, not a result
                model = LogisticRegression(max_iter=200).fit(train_z, y)
            scores[:, j] = model.predict_proba(test_z)[:, 1]
    return scores


def probe_auc(train_z: np.ndarray, train_y: np.ndarray, val_z: np.ndarray, val_y: np.ndarray) -> float:
    """Macro AUC on (val_z, val_y) of one logistic regression per class fitted on (train_z, train_y)."""
    return macro_auc(val_y, probe_scores(train_z, train_y, val_z))


class OnlineProbe:
    """The probe's records (at most `cfg.probe_records` of the train folds, all of the validation fold) and labels."""

    def __init__(self, options: ProbeOptions, cfg: PretrainConfig, seed: int) -> None:
        dump, tables = options.data, options.labels
        if not Path(tables).is_dir():
            raise UserError(
                f"--probe-labels {tables}: not a folder (it holds ptbxl_database.csv and scp_statements.csv)"
            )
        data = load_task_data(tables, dump, cfg.probe_task, 1, options.val_fold, options.test_fold)
        dump_data, signals = data.dump, data.dump.signals
        if dump_data.fs != cfg.fs or dump_data.leads != list(cfg.leads):
            raise UserError(
                f"--probe-data {dump}: {dump_data.fs} Hz with leads {dump_data.leads}, "
                f"but the encoder takes {cfg.fs} Hz and {list(cfg.leads)}"
            )
        if signals.shape[2] < cfg.channel_size:
            raise UserError(
                f"--probe-data {dump}: records of {signals.shape[2]} samples, shorter than the encoder's "
                f"channel_size {cfg.channel_size}"
            )
        train = np.sort(np.random.default_rng(seed).permutation(len(data.splits.rows["train"]))[: cfg.probe_records])
        self.rows = {"train": data.splits.rows["train"][train], "val": data.splits.rows["val"]}
        self.targets = {"train": data.splits.targets["train"][train], "val": data.splits.targets["val"]}
        self.signals, self.length = signals, cfg.channel_size
        self.mean, self.std = norm_stats(signals, data.train_fold_rows)

    @torch.no_grad()
    def embed(self, encoder: nn.Module, rows: np.ndarray, autocast: contextlib.AbstractContextManager) -> np.ndarray:
        """(len(rows), dim) record embeddings: the encoder's tokens of the first `channel_size` samples, averaged."""
        device = next(encoder.parameters()).device
        out = []
        for i in range(0, len(rows), BATCH):
            x = normalise(self.signals[rows[i : i + BATCH], :, : self.length], self.mean, self.std)
            with autocast:
                out.append(encoder(torch.from_numpy(x).to(device)).float().mean(dim=1).cpu().numpy())
        return np.concatenate(out)

    def __call__(self, encoder: nn.Module, autocast: contextlib.AbstractContextManager) -> dict[str, float]:
        """probe/auc and probe/seconds of the encoder as it is now; its train/eval mode is restored."""
        t0 = time.perf_counter()
        was_training = encoder.training
        encoder.eval()
        try:
            z = {split: self.embed(encoder, rows, autocast) for split, rows in self.rows.items()}
        finally:
            encoder.train(was_training)
        auc = probe_auc(z["train"], self.targets["train"], z["val"], self.targets["val"])
        return {"probe/auc": auc, "probe/seconds": time.perf_counter() - t0}
