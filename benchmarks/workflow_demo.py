"""Wall time of the embedded demo DAG (README command 1) and where it goes, per rule.

    python benchmarks/workflow_demo.py                       # the demo, in a fresh temp directory
    python benchmarks/workflow_demo.py --config config/ci.yaml --keep /tmp/demo

Runs `snakemake --profile profiles/local` with config/config.yaml (plus --config on top) in an empty
working directory, then reads the per-job `benchmark:` files (logs/benchmarks/**.tsv: wall seconds,
CPU seconds, peak RSS) and prints them per rule with the total wall time. The target: the whole
demo in at most 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[], help="config files on top of config/config.yaml")
    parser.add_argument("--keep", help="working directory to use and keep (default: a temp dir, removed)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="myjepa-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    configs = [str(ROOT / "config" / "config.yaml"), *(str(Path(c).resolve()) for c in args.config)]
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(work),
        "--profile",
        str(ROOT / "profiles" / "local"),
        "--configfile",
        *configs,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stderr[-4000:]}")
    rows = []
    for tsv in sorted((work / "logs" / "benchmarks").rglob("*.tsv")):
        bench = pd.read_csv(tsv, sep="\t").iloc[0]
        rule = tsv.relative_to(work / "logs" / "benchmarks").parts[0]
        rows.append(
            {
                "rule": rule,
                "job": str(tsv.relative_to(work / "logs" / "benchmarks").with_suffix("")),
                "wall_s": bench["s"],
                "cpu_s": bench["cpu_time"],
                "max_rss_mb": bench["max_rss"],
            }
        )
    jobs = pd.DataFrame(rows)
    per_rule = jobs.groupby("rule").agg(
        jobs=("job", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max")
    )
    print(jobs.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    print()
    print(per_rule.to_string(float_format=lambda x: f"{x:.1f}"))
    print(
        f"\ntotal wall time {wall:.0f} s ({wall / 60:.1f} min); sum of job CPU time {jobs['cpu_s'].sum():.0f} s; "
        f"report: {work / 'results' / 'report.html'}"
    )
    summary = pd.read_csv(work / "results" / "auc_summary.csv")
    print(
        summary[summary["kind"] == "pretrained"][
            ["task", "protocol", "group", "auc_mean", "baseline_auc_mean", "delta_vs_baseline"]
        ].to_string(index=False)
    )
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
