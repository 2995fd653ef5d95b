"""`myjepa embed`: record embeddings of a dump or a folder of WFDB records, with a released encoder.

    myjepa embed --encoder results/release/tiny-s0 --src my_ecgs/ --out emb.npy
    myjepa embed --encoder runs/x/encoder.pt --src ptb-xl.npy --out emb.npy --missing-leads zero

Writes emb.npy (records, dim) float32, row i the i-th record of emb.index.csv (a dump's own index,
or `record` and `file` of each WFDB record, sorted by path). Records are resampled to the encoder's
rate, cropped and averaged as `PretrainedEncoder.embed` does. Batches run on CUDA when there is a
GPU; rows are written to a memory-mapped file as they come, so memory does not grow with the records.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from myjepa.dumps import dump_files, sidecars
from myjepa.encoders.load import encoder_files, load_encoder
from myjepa.errors import UserError, run_cli
from myjepa.ingest.output import new_array
from myjepa.release.records import add_reading_options, check_reading_options, open_records, source_files
from myjepa.utils.distributed import usable_device
from myjepa.utils.io import atomic_path, check_outputs, outputs_of
from myjepa.utils.logging import Progress


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="myjepa embed", description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", required=True, help="a release folder (myjepa export) or an encoder.pt")
    p.add_argument("--src", required=True, help="a folder of WFDB records (searched recursively) or a dump PATH.npy")
    p.add_argument("--out", required=True, help="output PATH.npy; the index goes to PATH.index.csv")
    add_reading_options(p)
    return p.parse_args(argv)


def input_files(encoder: str, src: str) -> list[tuple[str, Path]]:
    """What the command reads, by option: an output never replaces one of these."""
    return [("--encoder", f) for f in encoder_files(encoder)] + [("--src", f) for f in source_files(src)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise UserError(f"--out {out}: must end in .npy")
    check_reading_options(args)
    # the embeddings, their index, and a stats.json of a dump --out replaces (it would describe that dump)
    check_outputs(outputs_of("--out", out, dump_files(out)), input_files(args.encoder, args.src), args.overwrite)
    model = load_encoder(args.encoder)
    device = usable_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    records = open_records(args.src, model.contract, args.missing_leads)
    print(f"embed: {len(records)} records from {args.src}, {model.contract.describe()}, device {device}", flush=True)

    bar = Progress(len(records), "embed", "records")
    with atomic_path(out) as tmp:
        emb = new_array(tmp, (len(records), model.dim), out, np.float32)  # blocks reserved: a full disk is no SIGBUS
        for start, x, fs in records.batches(args.batch_size):
            emb[start : start + len(x)] = model.embed(x, fs, args.batch_crops).numpy()
            bar.update(len(x))
        emb.flush()
        del emb
        with atomic_path(sidecars(out)[0]) as tmp_index:
            # a file name that is not UTF-8 is written with escapes
            records.index.to_csv(tmp_index, index=False, errors="backslashreplace")
    bar.close()
    sidecars(out)[1].unlink(missing_ok=True)  # --overwrite of a dump: its stats.json described the old array
    if records.mapper.zero_filled:
        print(f"embed: {records.mapper.zero_filled} record(s) had missing leads zero-filled", flush=True)
    if records.nan_interpolated:
        print(f"embed: {records.nan_interpolated} NaN samples interpolated linearly (as the converters do)", flush=True)
    print(f"embed: ({len(records)}, {model.dim}) float32 -> {out}, index -> {sidecars(out)[0]}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
