"""`myjepa finetune`: linear probing or finetuning of an encoder on a PTB-XL task, scored by test macro AUC.

    myjepa finetune --data-dir PTBXL_DIR --dump ptb-xl.npy --encoder runs/vits/encoder.pt \
        --task superdiagnostic --config linear --out runs/eval/vits-superdiagnostic-linear-s0 --seed 0
    myjepa finetune ... --encoder ViTS_mimic ...          # randomly initialised baseline
    myjepa finetune ... --config finetune_after_linear --init runs/eval/.../best_ckpt.pt
    myjepa finetune --labels my_task.csv --dump my.npy --encoder results/release/tiny-s0 --config linear --out ...

`--labels LABELS.csv` replaces --data-dir and --task: a user's own task on any dump (the CSV's
format: `myjepa.tasks.custom`), trained, scored and written exactly as a PTB-XL task; its name is the
CSV's stem, and results.json and predictions.npz name every class.

Train on folds 1-8, pick the step with the best validation (fold 9) macro AUC, report the test
(fold 10) macro AUC with a bootstrap CI. Records are scored by averaging their 2.5 s crops taken
every 1.25 s. The linear protocol encodes those crops once (float16 cache) and trains the probe on
the cache. Outputs: results.json, predictions.npz, best_ckpt.pt, metrics.jsonl. A run that fails or is
stopped (SIGTERM, Ctrl-C) removes them, the replaced run's too under --overwrite: a folder never holds half
a run.

`--encoder-name` and `--protocol-name` are how the report names the encoder and the protocol; they
are stored in results.json as `encoder_name` and `protocol_name`. By default the encoder is named
after the folder holding its checkpoint (`runs/vits/encoder.pt`: `vits`), or `random-` and the model
config's stem for a random-init baseline (`--encoder tiny`: `random-tiny`); the protocol after the
stem of `--config` (`linear`; `x` for `path/x.yaml`).

The steps live beside this file: `run` (the task's data and crops; the encoder comes from
`myjepa.encoders`), `model` (encoder, probe and optimizer), `features` (the feature cache), `training` (the loop with
early stopping) and `outputs` (test scores and the files written).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from myjepa.config import parse_overrides, to_dict
from myjepa.dumps import dump_files
from myjepa.encoders.load import LoadedEncoder, encoder_files, encoder_or_baseline
from myjepa.errors import UserError, run_cli
from myjepa.evaluate.config import FinetuneConfig, load_finetune_config
from myjepa.evaluate.features import encode_features
from myjepa.evaluate.model import Model, build_model, device_name
from myjepa.evaluate.outputs import FILES, score_test, write_outputs
from myjepa.evaluate.run import Run, data_summary, task_crops
from myjepa.evaluate.training import train
from myjepa.tasks.custom import load_labels_data
from myjepa.tasks.names import TASKS, check_task
from myjepa.tasks.ptbxl import load_task_data, table_files
from myjepa.utils.io import check_outputs, outputs_of, run_outputs, sha256_file
from myjepa.utils.logging import MetricsLogger
from myjepa.utils.memory import keep_freed_memory


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="myjepa finetune",
        description="Linear probing or finetuning of an encoder on a PTB-XL task or your own labels.",
    )
    p.add_argument("--data-dir", help="PTB-XL folder with ptbxl_database.csv and scp_statements.csv")
    p.add_argument("--dump", required=True, help="the dump (PATH.npy from `myjepa convert`)")
    p.add_argument(
        "--labels",
        metavar="LABELS.csv",
        help="your own task instead of --data-dir/--task: record id, split (or fold), one 0/1 column per class "
        "or one label column",
    )
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder.pt / best_ckpt.pt / last_ckpt.pt / a release folder, "
        "or a model config (shipped name or YAML) for a random-init baseline",
    )
    p.add_argument("--task", help=f"a PTB-XL task: one of {', '.join(TASKS)}")
    p.add_argument("--config", required=True, help="linear | finetune | finetune_after_linear | PATH.yaml")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --out")
    p.add_argument("--init", help="linear probe best_ckpt.pt to start from (finetune_after_linear)")
    p.add_argument(
        "--set", dest="set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override config keys"
    )
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline without an API key)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fold", type=int, default=9)
    p.add_argument("--test-fold", type=int, default=10)
    p.add_argument(
        "--encoder-name",
        metavar="NAME",
        help="the encoder's name in results.json (encoder_name) and the report; default: the folder holding "
        "the checkpoint (runs/vits/encoder.pt: vits), or random-STEM for a model config (tiny: random-tiny)",
    )
    p.add_argument(
        "--protocol-name",
        metavar="NAME",
        help="the protocol's name in results.json (protocol_name) and the report; default: the stem of --config",
    )
    return p.parse_args(argv)


def read_config(args: argparse.Namespace) -> tuple[str, FinetuneConfig]:
    """The task (a PTB-XL task, or the stem of --labels) and the protocol's config (with --set overrides)."""
    if args.labels and (args.task or args.data_dir):
        raise UserError("--labels replaces --data-dir and --task: give either --labels or both of them")
    if not args.labels and not (args.task and args.data_dir):
        raise UserError("give --data-dir and --task for a PTB-XL task, or --labels LABELS.csv for your own")
    task = Path(args.labels).stem if args.labels else check_task(args.task)
    cfg = load_finetune_config(args.config, parse_overrides(args.set))
    if cfg.protocol == "finetune_after_linear" and not args.init:
        raise UserError("protocol finetune_after_linear needs --init LINEAR_RUN/best_ckpt.pt")
    if args.init and cfg.protocol != "finetune_after_linear":
        raise UserError(f"--init is only used by the finetune_after_linear protocol, not {cfg.protocol!r}")
    for option, name in (("--encoder-name", args.encoder_name), ("--protocol-name", args.protocol_name)):
        if name is not None and not name.strip():
            raise UserError(f"{option}: the name is empty")
    return task, cfg


def input_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """What the command reads, by option: an output never replaces one of these."""
    files = [("--dump", f) for f in dump_files(args.dump)] + [("--encoder", f) for f in encoder_files(args.encoder)]
    files += [(option, Path(path)) for option, path in (("--init", args.init), ("--labels", args.labels)) if path]
    if args.data_dir:
        files += [("--data-dir", f) for f in table_files(args.data_dir)]
    return files


def encoder_name(args: argparse.Namespace, encoder: LoadedEncoder) -> str:
    """--encoder-name, or the checkpoint's folder (pretrained), or random-STEM (a model config)."""
    if args.encoder_name is not None:
        return args.encoder_name
    if encoder.pretrained:
        return encoder.path.absolute().parent.name
    return f"random-{encoder.path.stem}"


def protocol_name(args: argparse.Namespace) -> str:
    """--protocol-name, or the stem of --config (a shipped name or a YAML path)."""
    return args.protocol_name if args.protocol_name is not None else Path(args.config).stem


def describe(run: Run, model: Model) -> str:
    """The line printed before training: what is evaluated on what, and where."""
    rows, encoder = run.splits.rows, run.encoder
    return (
        f"finetune: task {run.task} ({len(run.classes)} classes), protocol {run.cfg.protocol}, "
        f"encoder {encoder.path} ({'pretrained' if encoder.pretrained else 'random init'}), "
        f"{len(rows['train'])}/{len(rows['val'])}/{len(rows['test'])} train/val/test records, "
        f"{len(run.crops.starts)} crops of {run.crops.crop} samples, device {device_name(model.device)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_time = time.time()
    task, cfg = read_config(args)
    out = Path(args.out)
    check_outputs(outputs_of("--out", out, [out / name for name in FILES]), input_files(args), args.overwrite)
    keep_freed_memory()  # a CPU step reuses the previous step's activation memory (utils/memory.py)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    # the task's data, the encoder, and the checks that they fit together
    if args.labels:
        data = load_labels_data(args.labels, args.dump, args.val_fold, args.test_fold)
    else:
        data = load_task_data(args.data_dir, args.dump, task, cfg.min_samples, args.val_fold, args.test_fold)
    encoder = encoder_or_baseline(args.encoder, args.seed)
    encoder_sha = sha256_file(encoder.path)
    crops, stride = task_crops(data, encoder, cfg.crop_s, cfg.stride_s)
    run = Run(
        task=task,
        cfg=cfg,
        seed=args.seed,
        encoder=encoder,
        encoder_sha256=encoder_sha,
        encoder_name=encoder_name(args, encoder),
        protocol_name=protocol_name(args),
        splits=data.splits,
        crops=crops,
        stride=stride,
        multiclass=data.multiclass,
        descriptions=data.descriptions,
        data=data_summary(data),
    )

    # the probe (or the --init run's weights) and the optimizer
    model = build_model(run, args.init)
    print(describe(run, model), flush=True)

    files = [out / name for name in FILES]
    with (
        run_outputs(out, files, scratch=out / ".feature_cache") as cache_dir,
        MetricsLogger(
            out,
            args.wandb,
            name=f"{task}-{cfg.protocol}-s{args.seed}",
            config={"task": task, "seed": args.seed, "encoder": str(encoder.path), **to_dict(cfg)},
        ) as logger,
    ):
        t_cache = time.time()
        features = encode_features(model.encoder, crops, run.splits.rows, model.device, cfg, cache_dir)
        cache_s = time.time() - t_cache
        training = train(model, features, run.splits, rng, logger, task)

        # the best step, scored on the test fold
        model.restore(training.best.state)
        test_scores = model.predict(features, "test")
        test = score_test(run.classes, run.splits.targets["test"], test_scores, cfg.bootstrap_samples, args.seed)
        logger.log(test.metrics, training.steps)
        logger.summary(test.metrics | {"val/best_auc": training.best.auc})

        write_outputs(out, run, model, training, test, start_time, cache_s)
    return 0


if __name__ == "__main__":
    run_cli(main)
