"""Demo-dataset generation speed: `myjepa synth` records/s for both layouts and several worker counts.

    python benchmarks/synth.py [--records 1000] [--workers 1 2] [--dir /tmp/myjepa-synth-bench]

Prints records/s by wall clock and per CPU-second (children included), the figure that does not
depend on what else the machine is running.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import cpu_seconds, machine  # noqa: E402

from myjepa.synth.command import synth  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", default="/tmp/myjepa-synth-bench")
    args = parser.parse_args()
    root = Path(args.dir)
    for layout in ("ptb-xl", "mimic-iv-ecg"):
        for workers in args.workers:
            out = root / f"{layout}-w{workers}"
            c0, t0 = cpu_seconds(), time.perf_counter()
            synth(layout, out, args.records, seed=0, overwrite=True, workers=workers, progress=False)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            print(
                f"synth {layout:13s} {workers} worker(s): {args.records / wall:6.0f} records/s wall, "
                f"{args.records / cpu:6.0f} records/CPU-s"
            )
            shutil.rmtree(out)
    print(machine())


if __name__ == "__main__":
    main()
