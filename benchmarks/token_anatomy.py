"""What do an encoder's tokens hold? Position, record and local shares of their variance, and whole records
against 2.5 s crops under the mean-pooled logistic probe.

    python benchmarks/token_anatomy.py --dump /tmp/pq/ptb-xl.npy \\
        random:/tmp/pq/runs/tiny/seed/s0/config.yaml:0 seed:/tmp/pq/runs/tiny/seed/s0/encoder.pt:0

Each ENCODER is NAME:SPEC:SEED, SPEC as `myjepa finetune --encoder` takes it (a checkpoint, a release, or a
model config for a random init of that seed). On the real sample's folds 9-10, the tokens z[record, position]
are split into a position part (the mean over records at each position), a record part (the mean over
positions of each record) and the local rest; printed: each part's share of the total variance, the local
part's effective rank, and the mean cosine of neighbouring local parts. Then the logistic probe (fitted on
folds 1-8, test macro AUC on fold 10) on two record features: the mean token of the whole 10 s record, and the
mean over the 7 strided 2.5 s crops (the linear protocol's crops) of each crop's mean token. An encoder that
pretraining taught only on whole records would score lower on the crops than on the records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from myjepa.dumps import norm_stats, normalise
from myjepa.encoders.load import encoder_or_baseline
from myjepa.errors import run_cli
from myjepa.pretrain.collapse import effective_rank
from myjepa.pretrain.probe import probe_scores
from myjepa.tasks.metrics import macro_auc
from myjepa.tasks.ptbxl import load_task_data
from myjepa.tasks.splits import TaskData

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "ptb-xl-sample"
CROP_FRACTION, STRIDE_FRACTION = 4, 2  # 2.5 s crops of a 10 s record, every 1.25 s


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dump", required=True, type=Path, help="the real sample converted at the encoders' rate")
    p.add_argument("--tasks", nargs="+", default=["superdiagnostic", "rhythm"])
    p.add_argument("encoders", nargs="+", type=encoder_arg, metavar="NAME:SPEC:SEED")
    args = p.parse_args(argv)
    data = {t: load_task_data(SAMPLE, args.dump, t, 1, 9, 10) for t in args.tasks}
    first = data[args.tasks[0]]
    signals = first.dump.signals
    mean, std = norm_stats(signals, first.train_fold_rows)
    held_out = np.sort(np.concatenate([first.splits.rows["val"], first.splits.rows["test"]]))
    print("| encoder | seed | position | record | local | local eff. rank | neighbour cos | "
          + " | ".join(f"{f} {t}" for f in ("record", "crops") for t in args.tasks) + " |")  # fmt: skip
    for name, path, seed in args.encoders:
        encoder = encoder_or_baseline(path, seed).encoder.eval()
        records, crops, tokens = encode(encoder, lambda rows: normalise(signals[rows], mean, std), len(signals))
        shares = variance_shares(tokens[held_out])
        aucs = [logistic_auc(z, data[t]) for z in (records, crops) for t in args.tasks]
        cells = [name, str(seed), *(f"{v:.3f}" for v in shares[:3]), f"{shares[3]:.1f}", f"{shares[4]:.2f}"]
        print("| " + " | ".join(cells + [f"{a:.3f}" for a in aucs]) + " |", flush=True)


def encoder_arg(text: str) -> tuple[str, str, int]:
    """NAME:SPEC:SEED: NAME up to the first colon, SEED after the last (a SPEC may hold colons)."""
    name, _, rest = text.partition(":")
    spec, _, seed = rest.rpartition(":")
    if not (name and spec and seed.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME:SPEC:SEED, e.g. seed:runs/s0/encoder.pt:0")
    return name, spec, int(seed)


@torch.no_grad()
def encode(encoder: torch.nn.Module, batch, n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Per record: the whole record's mean token, the mean over its strided crops' mean tokens, and its tokens."""
    length = encoder.num_patches * encoder.patch_size
    crop = length // CROP_FRACTION
    starts = range(0, length - crop + 1, crop // STRIDE_FRACTION)
    records, crops, tokens = [], [], []
    for i in range(0, n, size):
        x = torch.from_numpy(batch(np.arange(i, min(i + size, n))))[..., :length]
        z = encoder(x)
        tokens.append(z)
        records.append(z.mean(1))
        crops.append(torch.stack([encoder(x[..., s : s + crop]).mean(1) for s in starts]).mean(0))
    return torch.cat(records).numpy(), torch.cat(crops).numpy(), torch.cat(tokens)


def variance_shares(z: torch.Tensor) -> tuple[float, float, float, float, float]:
    """z (records, positions, dim): the position, record and local shares of the variance, the local part's
    effective rank, and the mean cosine of neighbouring positions' local parts."""
    grand = z.mean((0, 1))
    position = z.mean(0) - grand
    record = z.mean(1) - grand
    local = z - grand - position[None] - record[:, None]
    total = (z - grand).pow(2).mean((0, 1)).sum()
    unit = local / local.norm(dim=-1, keepdim=True)
    return (
        float(position.pow(2).mean(0).sum() / total),
        float(record.pow(2).mean(0).sum() / total),
        float(local.pow(2).mean((0, 1)).sum() / total),
        float(effective_rank(local.reshape(-1, z.size(-1))[::7], center=True)),
        float((unit[:, 1:] * unit[:, :-1]).sum(-1).mean()),
    )


def logistic_auc(features: np.ndarray, data: TaskData) -> float:
    """Test macro AUC of one logistic regression per class fitted on the train folds' features."""
    rows, targets = data.splits.rows, data.splits.targets
    return macro_auc(targets["test"], probe_scores(features[rows["train"]], targets["train"], features[rows["test"]]))


if __name__ == "__main__":
    run_cli(main)
