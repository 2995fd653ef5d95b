"""Converter throughput: `myjepa convert` against the reference `wfdb.rdrecord(...).p_signal` loop, and
on the CODE-15% (HDF5) and Challenge 2021 (.hea + MATLAB .mat) layouts.

    python benchmarks/convert.py [--records 4000] [--workers 1 2] [--repeat 3] [--dir /tmp/convert-bench]
    python benchmarks/convert.py --archive code-15 --records 4000 [--workers 1 2] [--fs 500]

Generates a MIMIC-IV-ECG-layout tree (500 Hz, 10 s, format 16, MIMIC lead order), reads every file
once so both paths run on page-cached files, then times (a) the reference dump loop in one process
and (b) `convert` with each worker count, best of `--repeat` runs each after one untimed warm-up
run. Prints records/s by wall clock and per CPU-second (what "per core" means on a shared
machine), the ratio to the reference, and each worker count's speed-up over one worker.

With `--archive code-15` or `challenge-2021` the tree is `myjepa synth`'s (CODE-15%: every exam in
one HDF5 part, so the part grows with --records; Challenge: records of 6-60 s, so several windows
each) and there is no reference loop; the run also prints the peak memory of a 1-worker conversion
in a fresh process: its anonymous part should not grow with --records.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of, machine  # noqa: E402

from myjepa.ingest.wfdb_io import write_record  # noqa: E402
from myjepa.ingest.writer import convert  # noqa: E402
from myjepa.leads import LEADS  # noqa: E402

MIMIC_NAMES = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def make_tree(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        subject, study = 10_000_000 + k // 3, 40_000_000 + k
        rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
        x = np.cumsum(rng.normal(0, 0.02, (12, 5000)), axis=1)
        write_record(root / rel, x, 500, MIMIC_NAMES, gain=200.0)
        rows.append(
            {
                "subject_id": subject,
                "study_id": study,
                "file_name": study,
                "ecg_time": "2180-01-01 00:00:00",
                "path": rel,
            }
        )
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)


def reference(root: Path, paths: list[str]) -> np.ndarray:
    """The reference dump script: wfdb.rdrecord per record, leads by name, float16."""
    import wfdb

    out = np.empty((len(paths), 12, 5000), dtype=np.float16)
    for i, rel in enumerate(paths):
        rec = wfdb.rdrecord(str(root / rel))
        names = [n.lower() for n in rec.sig_name]
        out[i] = rec.p_signal.T[[names.index(lead.lower()) for lead in LEADS]]
    return out


def peak_memory_mb(archive: str, root: Path, out: Path, fs: int) -> tuple[float, float]:
    """(peak anonymous, peak total) resident MB of one 1-worker `myjepa convert` in a fresh process, polled
    every 20 ms. The total includes the dump's file pages mapped while they are written (page cache, which
    the kernel reclaims); the anonymous part is the converter's own memory."""
    cmd = [sys.executable, "-m", "myjepa", "convert", archive, "--src", str(root), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--fs", str(fs), "--max-skip-fraction", "0.5", "--quiet"], stdout=subprocess.DEVNULL)
    anon = total = 0.0
    while proc.poll() is None:
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines())
        except (OSError, ValueError):
            break
        anon = max(anon, int(status.get("RssAnon", "0 kB").split()[0]) / 1024)
        total = max(total, int(status.get("VmHWM", "0 kB").split()[0]) / 1024)
        time.sleep(0.02)
    proc.wait()
    return anon, total


def other_archive(args: argparse.Namespace) -> None:
    """Records and windows per second (wall, CPU) of a synthetic CODE-15% or Challenge 2021 tree."""
    import myjepa.synth.code15_challenge as layouts
    from myjepa.synth.command import synth

    root = Path(f"{args.dir}-{args.archive}-{args.records}")
    if not root.is_dir():
        layouts.CODE15_PART_EXAMS = args.records  # one part holding every exam
        t = time.perf_counter()
        synth(args.archive, root, args.records, seed=0, workers=2, progress=False)
        print(f"generated {args.records} {args.archive} records in {time.perf_counter() - t:.1f} s under {root}")
    for dirpath, _, files in os.walk(root):  # warm the page cache
        for f in files:
            Path(dirpath, f).read_bytes()
    out = root.parent / f"{root.name}-dump.npy"

    def remove() -> None:
        for p in (out, out.with_suffix(".index.csv"), out.with_suffix(".stats.json")):
            p.unlink(missing_ok=True)

    for workers in args.workers:
        run = partial(
            convert, args.archive, root, out, fs=args.fs, workers=workers, progress=False, max_skip_fraction=0.5
        )
        stats = run()
        remove()
        n, windows = stats["records_in_shard"], stats["count"]
        wall, cpu = best_of(run, args.repeat, cleanup=remove)
        print(
            f"myjepa convert {args.archive} --fs {args.fs}, {workers} worker(s): {n / wall:7.0f} records/s wall,"
            f" {n / cpu:7.0f} records/CPU-s ({windows} windows: {windows / cpu:7.0f} windows/CPU-s)"
        )
    anon, total = peak_memory_mb(args.archive, root, out, args.fs)
    print(f"1-worker conversion of {n} records: peak {anon:.0f} MB anonymous, {total:.0f} MB resident in all")
    remove()
    print(machine())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default="mimic-iv-ecg", choices=["mimic-iv-ecg", "code-15", "challenge-2021"])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--fs", type=int, default=500, help="output rate (--archive code-15/challenge-2021 only)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per path; the fastest counts")
    parser.add_argument("--dir", default="/tmp/myjepa-convert-bench")
    args = parser.parse_args()
    if args.archive != "mimic-iv-ecg":
        return other_archive(args)
    root = Path(args.dir)
    if not (root / "record_list.csv").is_file() or len(pd.read_csv(root / "record_list.csv")) != args.records:
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        make_tree(root, args.records)
        print(f"generated {args.records} records in {time.perf_counter() - t:.1f} s under {root}")
    paths = pd.read_csv(root / "record_list.csv")["path"].tolist()
    for dirpath, _, files in os.walk(root):  # warm the page cache
        for f in files:
            Path(dirpath, f).read_bytes()
    n = len(paths)

    ref = reference(root, paths)  # warm-up; also the expected output
    ref_wall, ref_cpu = best_of(lambda: reference(root, paths), args.repeat)
    print(f"wfdb.rdrecord reference, 1 process: {n / ref_wall:7.0f} records/s wall, {n / ref_cpu:7.0f} records/CPU-s")
    out = root.parent / f"{root.name}-dump.npy"

    def remove() -> None:
        for p in (out, out.with_suffix(".index.csv"), out.with_suffix(".stats.json")):
            p.unlink(missing_ok=True)

    one_worker = None
    for workers in args.workers:
        run = partial(convert, "mimic-iv-ecg", root, out, workers=workers, progress=False)
        run()
        assert np.array_equal(np.load(out, mmap_mode="r"), ref), "converter output differs from the reference"
        remove()
        wall, cpu = best_of(run, args.repeat, cleanup=remove)
        one_worker = one_worker or (workers, wall)
        scaling = (
            f", {one_worker[1] / wall:.2f}x the {one_worker[0]}-worker wall rate" if workers != one_worker[0] else ""
        )
        print(
            f"myjepa convert, {workers} worker(s):   {n / wall:7.0f} records/s wall, {n / cpu:7.0f} records/CPU-s"
            f"  -> {ref_wall / wall:.1f}x the reference wall rate, {ref_cpu / cpu:.1f}x per CPU-s{scaling}"
        )
    print(machine())


if __name__ == "__main__":
    main()
