"""`myjepa predict`: class probabilities and labels of a dump or a folder of WFDB records, with a classifier release.

    myjepa predict --model results/classifiers/tiny-s0/rhythm/linear/s0 --src my_ecgs/ --out predictions.csv
    myjepa predict --model DIR --src ptb-xl.npy --out predictions.csv --missing-leads zero

predictions.csv has one row per record, in the order `myjepa embed` reads them (a dump's own order, or the
WFDB records sorted by path): the record's id columns (a dump's index; `record` and `file` for WFDB
records), `p_CODE` per class (its probability, as `myjepa.load_classifier(DIR).predict(x, fs)` gives it),
`label_CODE` per class (0/1, the release's decision rule) and `predicted` (the codes labelled, space-separated).
Records are read as `myjepa embed` reads them (leads by name, other rates resampled, the same errors), in
batches; rows are written as they come, so memory does not grow with the records, and the file appears
only when complete.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from myjepa.encoders.classifier import Classifier, load_classifier
from myjepa.encoders.release import CLASSIFIER, release_files
from myjepa.errors import UserError, run_cli
from myjepa.ingest.record import F16_OVERFLOW
from myjepa.release.records import (
    DumpRecords,
    WfdbRecords,
    add_reading_options,
    check_reading_options,
    open_records,
    source_files,
)
from myjepa.utils.io import atomic_path, check_outputs, outputs_of
from myjepa.utils.logging import Progress


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="myjepa predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a classifier release folder (myjepa export --classifier)")
    p.add_argument("--src", required=True, help="a folder of WFDB records (searched recursively) or a dump PATH.npy")
    p.add_argument("--out", required=True, help="output PATH.csv")
    add_reading_options(p)
    return p.parse_args(argv)


def record_name(records: DumpRecords | WfdbRecords, row: int) -> str:
    """How an error names record `row`: its WFDB path, or the dump and the row's id."""
    if isinstance(records, WfdbRecords):
        return str(records.index["file"].iloc[row])
    column = records.index.columns[0]
    return f"{records.dump.path}: row {row} ({column} {records.index[column].iloc[row]})"


def check_samples(x: np.ndarray, start: int, records: DumpRecords | WfdbRecords) -> None:
    """Every sample finite and within float16's range (the classifier rounds to it); else the record is named.
    WFDB records have had their NaN runs interpolated already (`myjepa embed`'s rule)."""
    ok = np.abs(x).max(axis=(1, 2)) < F16_OVERFLOW  # False for NaN too
    if not ok.all():
        name = record_name(records, start + int(np.flatnonzero(~ok)[0]))
        raise UserError(f"{name}: NaN, infinite or out-of-range samples (|x| >= {F16_OVERFLOW:g} mV)")


def prediction_rows(model: Classifier, index: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    """The records' id columns, then p_CODE, label_CODE per class, and the codes labelled."""
    labels = model.labels(p)
    codes = model.classes
    columns = {f"p_{c}": p[:, j] for j, c in enumerate(codes)}
    columns |= {f"label_{c}": labels[:, j] for j, c in enumerate(codes)}
    predicted = [" ".join(c for c, on in zip(codes, row) if on) for row in labels]
    return pd.concat([index.reset_index(drop=True), pd.DataFrame(columns | {"predicted": predicted})], axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out, model_dir = Path(args.out), Path(args.model)
    if out.suffix != ".csv":
        raise UserError(f"--out {out}: must end in .csv")
    check_reading_options(args)
    inputs = [("--model", f) for f in release_files(model_dir, CLASSIFIER)] + [
        ("--src", f) for f in source_files(args.src)
    ]
    check_outputs(outputs_of("--out", out), inputs, args.overwrite)
    model = load_classifier(model_dir)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    records = open_records(args.src, model.encoder.contract, args.missing_leads, "predict")
    clash = [c for c in records.index.columns if c == "predicted" or str(c).startswith(("p_", "label_"))]
    if clash:
        raise UserError(f"--src {args.src}: its index has a column {clash[0]!r}, a name predictions.csv uses")
    print(
        f"predict: {len(records)} records from {args.src}, task {model.spec.task} ({len(model.classes)} classes), "
        f"{model.encoder.contract.describe()}, device {device}",
        flush=True,
    )

    bar = Progress(len(records), "predict", "records")
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        for start, x, fs in records.batches(args.batch_size):
            check_samples(x, start, records)
            p = model.predict(x, fs, args.batch_crops).numpy()
            rows = prediction_rows(model, records.index.iloc[start : start + len(x)], p)
            rows.to_csv(f, header=start == 0, index=False, float_format="%.8g")
            bar.update(len(x))
    bar.close()
    if records.mapper.zero_filled:
        print(f"predict: {records.mapper.zero_filled} record(s) had missing leads zero-filled", flush=True)
    print(f"predict: {len(records)} records x {len(model.classes)} classes -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
