"""Linear probe speed: the feature cache against re-encoding every training batch, on real PTB-XL records.

    python benchmarks/linear_probe.py                       # ViT-XS geometry, superdiagnostic, 100 steps
    python benchmarks/linear_probe.py --steps 5000 --task rhythm --encoder runs/vitxs/encoder.pt

Converts the PTB-XL sample in tests/data (988 real records, 100 Hz) to a 500 Hz dump in a temporary
folder, then runs `myjepa finetune --config linear` twice with the same seed, steps and head:
`feature_cache=true` (encode each record's strided crops once, train the probe on the cache) and
`feature_cache=false` (the reference protocol: every training batch goes through the frozen
encoder). Both evaluate once, at the last step, and do not stop early, so the times compare the
two training paths. Prints wall time and test macro AUC for each, the speed-up, and the speed-up
projected to the protocol's 5,000 steps from the measured per-step and encoding times.

The default encoder is a randomly initialised ViT-XS (`ViTXS_mimic`): the time per step does not
depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from myjepa.evaluate.finetune import main as finetune_main
from myjepa.ingest.convert import main as convert_main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "ptb-xl-sample"
PROTOCOL_STEPS = 5000


def run_linear(work: Path, dump: Path, encoder: str, task: str, steps: int, cached: bool, seed: int) -> dict:
    out = work / ("cached" if cached else "reencoded")
    sets = [f"steps={steps}", f"eval_interval={steps}", "patience=0", f"feature_cache={str(cached).lower()}"]
    argv = [
        "--data-dir",
        str(SAMPLE),
        "--dump",
        str(dump),
        "--encoder",
        encoder,
        "--task",
        task,
        "--config",
        "linear",
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    for s in sets:
        argv += ["--set", s]
    finetune_main(argv)
    return json.loads((out / "results.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100, help="training steps for both runs (the protocol uses 5000)")
    p.add_argument("--task", default="superdiagnostic")
    p.add_argument(
        "--encoder", default="ViTXS_mimic", help="encoder checkpoint or model config (default: random-init ViT-XS)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dump", help="an existing 500 Hz dump of the sample (skips the conversion)")
    args = p.parse_args()

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # pay torch's lazy imports before timing
    with tempfile.TemporaryDirectory(prefix="linear_probe_") as tmp:
        work = Path(tmp)
        dump = Path(args.dump) if args.dump else work / "ptb-xl-sample.npy"
        if not args.dump:
            t = time.perf_counter()
            convert_main(
                ["ptb-xl", "--src", str(SAMPLE), "--out", str(dump), "--source-rate", "100", "--fs", "500", "--quiet"]
            )
            print(f"converted the sample to 500 Hz in {time.perf_counter() - t:.1f} s", flush=True)
        results = {
            cached: run_linear(work, dump, args.encoder, args.task, args.steps, cached, args.seed)
            for cached in (True, False)
        }

    cached, reenc = results[True], results[False]
    print()
    print(
        f"linear probe, task {args.task}, encoder {args.encoder}, {args.steps} steps, "
        f"batch {cached['config']['batch_size']}, {cached['n_train']}/{cached['n_val']}/{cached['n_test']} records, "
        f"{cached['device']}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"{'path':<22} {'wall s':>8} {'encode s':>9} {'train s':>8} {'s/step':>8} {'test AUC':>9}")
    per_step = {}
    for name, r in (("cached features", cached), ("re-encode every step", reenc)):
        timing = r["timing"]
        per_step[name] = (timing["train_s"] - timing["eval_s"]) / r["steps"]
        print(
            f"{name:<22} {r['wall_time_s']:>8.1f} {timing['cache_s']:>9.1f} {timing['train_s']:>8.1f} "
            f"{per_step[name]:>8.4f} {r['test_auc']:>9.4f}"
        )
    speedup = reenc["wall_time_s"] / cached["wall_time_s"]
    fixed_cached = cached["wall_time_s"] - cached["timing"]["train_s"] + cached["timing"]["eval_s"]
    fixed_reenc = reenc["wall_time_s"] - reenc["timing"]["train_s"] + reenc["timing"]["eval_s"]
    proj_cached = fixed_cached + PROTOCOL_STEPS * per_step["cached features"]
    proj_reenc = fixed_reenc + PROTOCOL_STEPS * per_step["re-encode every step"]
    print(
        f"measured speed-up at {args.steps} steps: {speedup:.1f}x; "
        f"test AUC difference (cached - re-encoded): {cached['test_auc'] - reenc['test_auc']:+.4f}"
    )
    print(
        f"projected to {PROTOCOL_STEPS} steps: cached {proj_cached:.0f} s, re-encoded {proj_reenc:.0f} s, "
        f"speed-up {proj_reenc / proj_cached:.1f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
