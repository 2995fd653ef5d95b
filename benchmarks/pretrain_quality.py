"""Does pretraining pay for itself? Pretrained vs random init vs named variants on the real PTB-XL sample.

    python benchmarks/pretrain_quality.py --seeds 0 1 2                       # tiny, 300 steps, the shipped objective
    python benchmarks/pretrain_quality.py --seeds 0 1 2 --variant tokens sigreg_tokens=16 --variant seed \\
        sigreg_tokens=0 --dir /tmp/pq                                         # variants side by side
    python benchmarks/pretrain_quality.py --config ViTXS_mimic --seeds 0 1 2 \\
        --set batch_size=32 steps=900 warmup_steps=100 probe_interval=100 num_workers=1

Converts tests/data/ptb-xl-sample (988 real records, 100 Hz) to a 500 Hz dump once, then for every
variant (a name and config overrides; default: one variant, `shipped`, the config as it is; `--reference`
adds ECG-JEPA's EMA-teacher recipe, benchmarks/reference_jepa.py, alone when no --variant is named) and seed:
pretrains on folds 1-8 with the online probe on (validation fold 9), and measures the encoder
against a randomly initialised one of the same config and seed on the test fold 10:
- the shipped linear protocol (`myjepa finetune --config linear`: attentive probe on 2.5 s crops,
  early stopping on fold 9) and a mean-pooled logistic probe (tokens of the whole record averaged,
  one logistic regression per class fitted on folds 1-8), test macro AUC per task;
- per task, the mean over seeds of the paired difference to random init with a 95 % interval that
  resamples the test records and the seeds (`tasks.metrics.paired_difference`);
- with `--against NAME`, the same paired difference of every encoder to that variant (random init
  included), to tell whether a variant beats another, not only random init;
- the spread of the encoder's tokens and of the record embeddings (mean token) on folds 9-10:
  per-dimension std and effective rank (around their mean);
- GFLOP per pretraining step and the pretraining's wall seconds, and whether a collapse alarm fired.
`--jobs N` runs N pretrainings (then N probes) at a time: on a GPU, small runs share it.
Everything is cached in --dir (a pretraining run, a probe, an encoder's measurements are redone only
when missing), so variants and seeds can be added to a folder later. Writes NAME.md (the table) and
NAME.json into --dir (`--name`, default quality). Every pretraining and linear probe runs the `myjepa`
command beside this interpreter, so the script measures whichever version of the package that
interpreter has installed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from myjepa.dumps import norm_stats, normalise
from myjepa.encoders.load import encoder_or_baseline
from myjepa.pretrain.collapse import effective_rank
from myjepa.pretrain.probe import probe_scores
from myjepa.tasks.metrics import macro_auc, paired_difference
from myjepa.tasks.ptbxl import load_task_data

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "ptb-xl-sample"
MYJEPA = str(Path(sys.executable).parent / "myjepa")
RANDOM = "random init"
REFERENCE = "EMA reference"  # benchmarks/reference_jepa.py: the teacher-based recipe on the same everything
PROTOCOLS = ("linear", "logistic")


def main() -> None:
    args = parse_args()
    work = Path(args.dir)
    dump = convert_sample(work)
    variants = dict(args.variant) if args.variant or args.reference else {"shipped": []}
    if args.reference:
        variants[REFERENCE] = []
    keys = [(v, s) for v in variants for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:  # each pretraining and probe is a process of its own
        found = pool.map(lambda key: pretrain(work, dump, args.config, args.set + variants[key[0]], *key), keys)
        runs = dict(zip(keys, found))
        random_spec = str(runs[keys[0]]["dir"] / "config.yaml")  # every run folder has its resolved config
        encoders = {(v, s): (str(run["dir"] / "encoder.pt"), run["dir"]) for (v, s), run in runs.items()}
        encoders |= {(RANDOM, s): (random_spec, random_dir(work, random_spec, s)) for s in args.seeds}
        found = pool.map(lambda key: evaluate(work, dump, *encoders[key], key[1], args.tasks), encoders)
        scores = dict(zip(encoders, found))
    table = summarise(runs, scores, list(variants), args)
    (work / f"{args.name}.json").write_text(json.dumps(table, indent=1))
    (work / f"{args.name}.md").write_text(markdown(table, args))
    print((work / f"{args.name}.md").read_text())


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--set", nargs="*", default=["steps=300"], help="pretraining overrides of every variant")
    p.add_argument(
        "--variant", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"), help="a named variant's overrides"
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help=f"add {REFERENCE!r}: benchmarks/reference_jepa.py (alone without --variant)",
    )
    p.add_argument("--against", metavar="NAME", help="also the paired difference of every encoder to this variant")
    p.add_argument("--tasks", nargs="+", default=["superdiagnostic", "rhythm", "form"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--dir", default="/tmp/myjepa-quality", help="work folder, reused: what it holds is not redone")
    p.add_argument("--name", default="quality", help="the table's files in --dir: NAME.md and NAME.json")
    p.add_argument("--jobs", type=int, default=1, help="pretrainings and probes at a time (several share a GPU)")
    args = p.parse_args()
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: give at least 1")
    if Path(args.name).name != args.name or args.name in ("", ".", ".."):
        p.error(f"--name {args.name!r}: give a file name (NAME.md and NAME.json go into --dir), not a path")
    args.variant = [(v[0], v[1:]) for v in args.variant or []]
    for name, sets in args.variant:
        if "=" in name or not all("=" in kv for kv in sets):
            p.error(f"--variant {' '.join([name, *sets])}: give a name, then KEY=VALUE overrides")
    names = [name for name, _ in args.variant] + [REFERENCE] * args.reference
    if args.against is not None and args.against not in names:
        p.error(f"--against {args.against}: not one of the variants {names}")
    return args


def myjepa(*args: str, log: Path, command: tuple[str, ...] = (MYJEPA,)) -> None:
    with log.open("w") as out:
        proc = subprocess.run([*command, *args], stdout=subprocess.DEVNULL, stderr=out)
    if proc.returncode:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        reason = f": {lines[-1]}" if lines else ""
        sys.exit(f"{' '.join(command)} {args[0]} failed (exit {proc.returncode}){reason}; the whole log: {log}")


def convert_sample(work: Path) -> Path:
    dump = work / "ptb-xl.npy"
    if not dump.is_file():
        work.mkdir(parents=True, exist_ok=True)
        myjepa("convert", "ptb-xl", "--src", str(SAMPLE), "--out", str(dump), "--source-rate", "100",
               log=work / "convert.log")  # fmt: skip
    return dump


def pretrain(work: Path, dump: Path, config: str, sets: list[str], variant: str, seed: int) -> dict[str, Any]:
    """Pretrain one variant and seed (or find it done): its folder, metrics, seconds and collapse alarms."""
    out = work / "runs" / config / variant / f"s{seed}"
    identity = {"config": config, "set": sets, "seed": seed}
    done = out / "done.json"
    out.mkdir(parents=True, exist_ok=True)
    lock = os.open(out, os.O_RDONLY)
    try:  # two runs of this script pretraining into one folder would each leave the other's files half-written
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when this process ends, also when killed
    except BlockingIOError:
        sys.exit(f"{out}: another run of this script is pretraining into it; wait for it, or give another --dir")
    if done.is_file():
        record = json.loads(done.read_text())
        if record["identity"] != identity:
            sys.exit(f"{out} was pretrained with {record['identity']}, not {identity}: name the variant differently")
    else:
        t0 = time.perf_counter()
        common = ["--data", f"ptb-xl={dump}", "--out", str(out), "--config", config, "--seed", str(seed)]
        if variant == REFERENCE:
            myjepa(*common, "--set", "datasets={ptb-xl: 1.0}", *sets, log=out / "pretrain.log",
                   command=(sys.executable, str(ROOT / "benchmarks" / "reference_jepa.py")))  # fmt: skip
        else:
            myjepa("pretrain", *common, "--probe-data", str(dump), "--probe-labels", str(SAMPLE),
                   "--set", "datasets={ptb-xl: 1.0}", *sets, log=out / "pretrain.log")  # fmt: skip
        alarms = [line for line in (out / "pretrain.log").read_text().splitlines() if "collapsed" in line]
        record = {"identity": identity, "seconds": time.perf_counter() - t0, "alarms": alarms}
        done.write_text(json.dumps(record))
    os.close(lock)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return record | {"dir": out, "metrics": metrics}


def random_dir(work: Path, config_yaml: str, seed: int) -> Path:
    """Random-init measurements are shared by every variant with the same encoder config."""
    cfg = yaml.safe_load(Path(config_yaml).read_text())
    keys = ("fs", "leads", "channel_size", "patch_size", "dim", "depth", "num_heads", "mlp_ratio", "num_registers")
    digest = hashlib.sha256(json.dumps({k: cfg[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:10]
    out = work / "random" / digest / f"s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def evaluate(work: Path, dump: Path, spec: str, folder: Path, seed: int, tasks: list[str]) -> dict[str, Any]:
    """Test scores per protocol and task, and the spread figures, of one encoder (cached in folder/eval.npz)."""
    cache = folder / "eval.npz"
    record = dict(np.load(cache, allow_pickle=False)) if cache.is_file() else {}
    for task in tasks:
        if f"linear/{task}" not in record:
            probe_dir = folder / "probe" / task
            myjepa("finetune", "--data-dir", str(SAMPLE), "--dump", str(dump), "--encoder", spec, "--task", task,
                   "--config", "linear", "--out", str(probe_dir), "--seed", str(seed),
                   "--overwrite",  # eval.npz, written last, says a probe is done: a folder without it is partial
                   log=folder / f"probe-{task}.log")  # fmt: skip
            pred = np.load(probe_dir / "predictions.npz", allow_pickle=False)
            record[f"linear/{task}"], record[f"targets/{task}"] = pred["test_scores"], pred["test_targets"]
    if any(f"logistic/{t}" not in record for t in tasks) or "spread" not in record:
        record |= mean_pooled(dump, spec, seed, tasks)
    np.savez(cache, **record)
    return record


@torch.no_grad()
def mean_pooled(dump: Path, spec: str, seed: int, tasks: list[str]) -> dict[str, np.ndarray]:
    """The logistic probe on whole-record mean tokens per task, and the spread of tokens and record embeddings
    of folds 9-10: (token std, token effective rank, record std, record effective rank)."""
    encoder = encoder_or_baseline(spec, seed).encoder.eval()
    out: dict[str, np.ndarray] = {}
    first = load_task_data(SAMPLE, dump, tasks[0], 1, 9, 10)
    signals = first.dump.signals
    mean, std = norm_stats(signals, first.train_fold_rows)
    length = encoder.num_patches * encoder.patch_size
    records, tokens = [], []
    held_out = set(np.concatenate([first.splits.rows["val"], first.splits.rows["test"]]).tolist())
    for i in range(0, len(signals), 64):
        x = torch.from_numpy(normalise(signals[i : i + 64, :, :length], mean, std))
        z = encoder(x)
        records.append(z.mean(1))
        keep = [j - i for j in range(i, min(i + 64, len(signals))) if j in held_out]
        tokens.append(z[keep, :: max(1, z.size(1) // 50)].reshape(-1, z.size(-1)))  # 50 tokens per record
    z_records = torch.cat(records)
    z_tokens = torch.cat(tokens)
    held = z_records[sorted(held_out)]
    out["spread"] = np.array([
        float(z_tokens.std(0).mean()), float(effective_rank(z_tokens, center=True)),
        float(held.std(0).mean()), float(effective_rank(held, center=True)),
    ])  # fmt: skip
    z_np = z_records.numpy()
    for task in tasks:
        data = first if task == tasks[0] else load_task_data(SAMPLE, dump, task, 1, 9, 10)
        rows, targets = data.splits.rows, data.splits.targets
        out[f"logistic/{task}"] = probe_scores(z_np[rows["train"]], targets["train"], z_np[rows["test"]])
        out[f"targets/{task}"] = targets["test"]  # the linear protocol's test records, in the same order
    return out


def summarise(runs: dict, scores: dict, variants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Per encoder: mean AUC over seeds per protocol and task, the paired difference to random init, spreads,
    cost."""
    table: dict[str, Any] = {
        "config": args.config, "set": args.set, "seeds": args.seeds, "tasks": args.tasks, "against": args.against,
    }  # fmt: skip
    rows = {}
    for name in [RANDOM, *variants]:
        row: dict[str, Any] = {}
        for protocol in PROTOCOLS:
            for task in args.tasks:
                targets = scores[(RANDOM, args.seeds[0])][f"targets/{task}"]
                mine = np.stack([scores[(name, s)][f"{protocol}/{task}"] for s in args.seeds])
                base = np.stack([scores[(RANDOM, s)][f"{protocol}/{task}"] for s in args.seeds])
                aucs = [macro_auc(targets, m) for m in mine]
                row[f"{protocol}/{task}"] = {"mean": float(np.mean(aucs)), "per_seed": aucs}
                if name != RANDOM:
                    point, lo, hi = paired_difference(targets, mine, base)
                    row[f"{protocol}/{task}"] |= {"diff": point, "ci": [lo, hi]}
                if args.against not in (None, name):
                    other = np.stack([scores[(args.against, s)][f"{protocol}/{task}"] for s in args.seeds])
                    point, lo, hi = paired_difference(targets, mine, other)
                    row[f"{protocol}/{task}"] |= {"against": {"diff": point, "ci": [lo, hi]}}
        spread = np.stack([scores[(name, s)]["spread"] for s in args.seeds]).mean(0)
        row["spread"] = dict(zip(("token_std", "token_rank", "record_std", "record_rank"), spread.tolist()))
        if name != RANDOM:
            seed_runs = [runs[(name, s)] for s in args.seeds]
            last = [r["metrics"][-1] for r in seed_runs]
            row["gflop_per_step"] = float(np.mean([m["train/tflops"] * m["train/step_time"] * 1e3 for m in last]))
            row["seconds"] = float(np.mean([r["seconds"] for r in seed_runs]))
            row["alarms"] = sum(len(r["alarms"]) for r in seed_runs)
            row["pred_loss"] = float(np.mean([m["train/pred_loss"] for m in last]))
            row["overrides"] = dict(args.variant).get(name, [])
        rows[name] = row
    table["rows"] = rows
    return table


def markdown(table: dict[str, Any], args: argparse.Namespace) -> str:
    """One table per protocol (AUC mean over seeds, paired difference [95 % interval]), then spread and cost."""
    tasks, lines = table["tasks"], []
    command = " ".join(["python benchmarks/pretrain_quality.py", *sys.argv[1:]])
    lines += [f"`{command}`", "", f"config {table['config']} {' '.join(table['set'])}, seeds {table['seeds']}", ""]
    for protocol in PROTOCOLS:
        lines += [f"{protocol} probe, test macro AUC (mean over seeds); Δ: paired difference to random init [95 %]", ""]
        lines += ["| encoder | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        for name, row in table["rows"].items():
            cells = []
            for task in tasks:
                cell = row[f"{protocol}/{task}"]
                diff = (
                    f" (Δ {cell['diff']:+.3f} [{cell['ci'][0]:+.3f}, {cell['ci'][1]:+.3f}])" if "diff" in cell else ""
                )
                cells.append(f"{cell['mean']:.3f}{diff}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        if table["against"] is not None:
            lines += [f"{protocol} probe, paired difference to {table['against']} [95 %]", ""]
            lines += ["| encoder | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
            for name, row in table["rows"].items():
                if name != table["against"]:
                    cells = [row[f"{protocol}/{task}"]["against"] for task in tasks]
                    cells = [f"{c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" for c in cells]
                    lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["| encoder | token std | token eff. rank | record std | record eff. rank | GFLOP/step | pretrain s | "
              "last pred_loss | alarms |", "|---" * 9 + "|"]  # fmt: skip
    for name, row in table["rows"].items():
        sp = row["spread"]
        cost = (
            f"{row['gflop_per_step']:.1f} | {row['seconds']:.0f} | {row['pred_loss']:.3f} | {row['alarms']}"
            if name != RANDOM
            else "— | — | — | —"
        )
        lines.append(
            f"| {name} | {sp['token_std']:.3f} | {sp['token_rank']:.1f} | {sp['record_std']:.3f} | "
            f"{sp['record_rank']:.1f} | {cost} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
