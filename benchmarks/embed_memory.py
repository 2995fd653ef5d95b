"""`myjepa embed` on dumps of N and 8N records: peak resident memory must not grow with N.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/embed_memory.py [--records 256] [--threads 1]

Writes two synthetic 500 Hz, 10 s dumps (N and 8N records) and a randomly initialised `tiny` encoder.pt
(with the data summary a release needs) to a temporary folder, then runs `myjepa embed` on each in a
fresh process and prints its peak RSS (VmHWM) and throughput.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from conftest import synthetic_ecg, write_dump  # noqa: E402

from myjepa.config import to_dict  # noqa: E402
from myjepa.models.vit import VisionTransformer  # noqa: E402
from myjepa.pretrain.checkpoints import Checkpoint, RunRecord  # noqa: E402
from myjepa.pretrain.config import load_config  # noqa: E402
from myjepa.utils import checkpoint  # noqa: E402

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so it would show this parent's peak
CHILD = (
    "import sys\n"
    "from {module} import main\n"
    "main(sys.argv[1:])\n"
    "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "print('maxrss_mb', int(hwm) / 1024)\n"
)


def measure(module: str, argv: list[str], dump: Path, n: int) -> None:
    """Run `module`'s main(argv) in a fresh process and print its peak RSS and throughput on `dump` (n records)."""
    t0 = time.perf_counter()
    code = CHILD.format(module=module)
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    rss = float(out.split("maxrss_mb")[1])
    mb = dump.stat().st_size / 2**20
    print(f"N={n:6d} dump {mb:7.0f} MB  peak RSS {rss:6.0f} MB  {wall:6.1f} s  {n / wall:6.1f} records/s")


def big_dump(path: Path, n: int) -> Path:
    """n records, written 256 at a time (the test helper holds its array in memory)."""
    block = synthetic_ecg(256, seed=0).astype(np.float16)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, 12, 5000))
    for i in range(0, n, 256):
        arr[i : i + 256] = block[: min(256, n - i)]
    arr.flush()
    write_dump(path.with_name("stats_only.npy"), block)  # sidecars of the same statistics
    for suffix in (".index.csv", ".stats.json"):
        text = path.with_name("stats_only" + suffix).read_text()
        if suffix == ".index.csv":
            text = "file\n" + "".join(f"r{i}\n" for i in range(n))
        path.with_name(path.stem + suffix).write_text(text)
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = load_config("tiny")
        stats = synthetic_ecg(256, seed=0).astype(np.float64)
        data = [
            {
                "name": "synthetic",
                "path": "-",
                "records": 256,
                "samples": 5000,
                "fs": 500,
                "weight": 1.0,
                "mean": stats.mean(axis=(0, 2)).tolist(),
                "std": stats.std(axis=(0, 2)).tolist(),
            }
        ]
        encoder = VisionTransformer.from_config(cfg.encoder_config())
        run = RunRecord(to_dict(cfg), {}, None, data)
        checkpoint.save(Checkpoint(0, run, encoder.state_dict()).to_dict(), root / "encoder.pt")
        for n in (args.records, 8 * args.records):
            dump = big_dump(root / f"d{n}.npy", n)
            argv = ["--encoder", str(root / "encoder.pt"), "--src", str(dump), "--out", str(root / f"e{n}.npy")]
            measure("myjepa.release.embed", argv, dump, n)


if __name__ == "__main__":
    main()
