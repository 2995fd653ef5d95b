"""`myjepa finetune`: linear probing or finetuning of an encoder on a PTB-XL task, scored by test macro AUC.

    myjepa finetune --data-dir PTBXL_DIR --dump ptb-xl.npy --encoder runs/vits/encoder.pt \
        --task superdiagnostic --config linear --out runs/eval/vits-superdiagnostic-linear-s0 --seed 0
    myjepa finetune ... --encoder ViTS_mimic ...          # randomly initialised baseline
    myjepa finetune ... --config finetune_after_linear --init runs/eval/.../best_ckpt.pt

Train on folds 1-8, pick the step with the best validation (fold 9) macro AUC, report the test
(fold 10) macro AUC with a bootstrap CI. Records are scored by averaging their 2.5 s crops taken
every 1.25 s. The linear protocol encodes those crops once (float16 cache) and trains the probe on
the cache. Outputs: results.json, predictions.npz, best_ckpt.pt, metrics.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from myjepa.config import parse_overrides, to_dict
from myjepa.dumps import Dump, open_dump
from myjepa.errors import UserError, run_cli
from myjepa.evaluate.config import load_finetune_config
from myjepa.evaluate.encoder_io import check_compatible, load_encoder, read_checkpoint, sha256
from myjepa.evaluate.features import (
    StridedCrops,
    autocast,
    crop_starts,
    encode_cache,
    norm_stats,
    predict_cached,
    predict_encoded,
    random_crops,
)
from myjepa.evaluate.heads import AttentiveProbe
from myjepa.evaluate.labels import (
    TASKS,
    Splits,
    check_dump_index,
    check_task,
    is_multiclass,
    make_splits,
    read_database,
    read_statements,
    task_labels,
)
from myjepa.evaluate.metrics import bootstrap_macro_auc, class_aucs
from myjepa.models.optim import param_groups
from myjepa.utils.io import atomic_path, write_json
from myjepa.utils.logging import MetricsLogger, Progress
from myjepa.utils.schedules import warmup_cosine


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="myjepa finetune", description="Linear probing or finetuning of an encoder on a PTB-XL task."
    )
    p.add_argument("--data-dir", required=True, help="PTB-XL folder with ptbxl_database.csv and scp_statements.csv")
    p.add_argument("--dump", required=True, help="PTB-XL dump (PATH.npy from `myjepa convert ptb-xl`)")
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder.pt / best_ckpt.pt / last_ckpt.pt, or a model config (shipped name or YAML) for a random-init baseline",
    )
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--config", required=True, help="linear | finetune | finetune_after_linear | PATH.yaml")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--init", help="linear probe best_ckpt.pt to start from (finetune_after_linear)")
    p.add_argument(
        "--set", dest="set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override config keys"
    )
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline without an API key)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fold", type=int, default=9)
    p.add_argument("--test-fold", type=int, default=10)
    return p.parse_args(argv)


def load_task_data(
    data_dir: str | Path, dump_path: str | Path, task: str, min_samples: int, val_fold: int, test_fold: int
) -> tuple[Dump, Splits, np.ndarray]:
    """The dump, the task's splits (dump rows + targets) and every dump row of the train folds (for normalisation)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir}: not a folder")
    db_path = data_dir / "ptbxl_database.csv"
    db = read_database(db_path)
    statements = read_statements(data_dir / "scp_statements.csv")
    dump = open_dump(dump_path)
    skipped = {
        int(s["id"])
        for s in dump.stats.get("skipped", [])
        if isinstance(s, dict) and str(s.get("id", "")).lstrip("-").isdigit()
    }
    check_dump_index(dump.index, db, skipped, str(dump.path), str(db_path))
    db = db[~db["ecg_id"].isin(skipped)].reset_index(drop=True)
    labels = task_labels(list(db["scp_codes"]), statements, task, min_samples)
    folds = db["strat_fold"].to_numpy()
    splits = make_splits(folds, labels, task, val_fold, test_fold)
    train_fold_rows = np.flatnonzero(np.isin(folds, splits.folds["train"]))
    return dump, splits, train_fold_rows


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def load_init(
    path: Path, classes: list[str], task: str, encoder_cfg: dict[str, Any], encoder_sha: str
) -> dict[str, Any]:
    """A linear probe checkpoint to start finetuning from; it must be for this task, classes and encoder."""
    if not path.is_file():
        raise UserError(f"--init {path}: not found")
    ckpt = read_checkpoint(path)
    for key in ("head", "encoder", "classes", "task", "config"):
        if key not in ckpt:
            raise UserError(
                f"--init {path}: no {key!r} entry; expected best_ckpt.pt of a `myjepa finetune --config linear` run"
            )
    if ckpt["task"] != task or list(ckpt["classes"]) != classes:
        raise UserError(
            f"--init {path}: trained for task {ckpt['task']!r} with classes {list(ckpt['classes'])}, not task {task!r} with {classes}"
        )
    if ckpt["config"] != encoder_cfg:
        raise UserError(f"--init {path}: its encoder config differs from --encoder's")
    if ckpt.get("encoder_sha256") not in (None, encoder_sha):
        raise UserError(
            f"--init {path}: trained on encoder {ckpt.get('encoder_source')} (sha256 {str(ckpt['encoder_sha256'])[:12]}), not on the given --encoder (sha256 {encoder_sha[:12]})"
        )
    return ckpt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_time = time.time()
    task = check_task(args.task)
    cfg = load_finetune_config(args.config, parse_overrides(args.set))
    if cfg.protocol == "finetune_after_linear" and not args.init:
        raise UserError("protocol finetune_after_linear needs --init LINEAR_RUN/best_ckpt.pt")
    if args.init and cfg.protocol != "finetune_after_linear":
        raise UserError(f"--init is only used by the finetune_after_linear protocol, not {cfg.protocol!r}")
    out = Path(args.out)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    multiclass = is_multiclass(task)

    # data, encoder, and the checks that they fit together
    dump, splits, train_fold_rows = load_task_data(
        args.data_dir, args.dump, task, cfg.min_samples, args.val_fold, args.test_fold
    )
    loaded = load_encoder(args.encoder, args.seed)
    encoder_sha = sha256(loaded.path)
    length = dump.signals.shape[2]
    crop, stride = check_compatible(
        loaded.config, str(loaded.path), str(dump.path), dump.fs, dump.leads, length, cfg.crop_s, cfg.stride_s
    )
    starts = crop_starts(length, crop, stride)
    mean, std = norm_stats(dump.signals, train_fold_rows)
    crops = StridedCrops(dump.signals, starts, crop, mean, std)
    classes = splits.classes
    train_rows, val_rows, test_rows = splits.rows["train"], splits.rows["val"], splits.rows["test"]
    train_targets = torch.from_numpy(splits.targets["train"].astype(np.float32))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = loaded.encoder.to(device)
    head = AttentiveProbe(encoder.dim, len(classes), cfg.head_num_heads, cfg.dropout).to(device)
    if args.init:
        init = load_init(Path(args.init), classes, task, loaded.config, encoder_sha)
        encoder.load_state_dict(init["encoder"])
        head.load_state_dict(init["head"])
    encoder.requires_grad_(not cfg.frozen)
    trained = [head] if cfg.frozen else [encoder, head]
    optimizer = torch.optim.AdamW(param_groups(trained, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    use_cache = cfg.frozen and cfg.feature_cache
    print(
        f"finetune: task {task} ({len(classes)} classes), protocol {cfg.protocol}, encoder {loaded.path} ({'pretrained' if loaded.pretrained else 'random init'}), "
        f"{len(train_rows)}/{len(val_rows)}/{len(test_rows)} train/val/test records, {len(starts)} crops of {crop} samples, device {device_name(device)}",
        flush=True,
    )

    cache_dir = out / ".feature_cache"
    logger = MetricsLogger(
        out,
        args.wandb,
        name=f"{task}-{cfg.protocol}-s{args.seed}",
        config={"task": task, "seed": args.seed, "encoder": str(loaded.path), **to_dict(cfg)},
    )
    try:
        caches: dict[str, np.ndarray] = {}
        t_cache = time.time()
        if use_cache:
            bar = Progress(len(train_rows) + len(val_rows) + len(test_rows), "encoding crops", "records")
            for split, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows)):
                caches[split] = encode_cache(
                    encoder, crops, rows, device, cfg.eval_batch_size, cfg.amp, cache_dir, bar.update
                )
            bar.close()
        t_train = time.time()
        cache_s = t_train - t_cache

        def predict(split: str, rows: np.ndarray) -> np.ndarray:
            if use_cache:
                return predict_cached(head, caches[split], device, multiclass)
            return predict_encoded(encoder, head, crops, rows, device, multiclass, cfg.eval_batch_size, cfg.amp)

        best_auc, best_step, best_state, best_val_scores = float("nan"), 0, None, None
        evals_since_best, loss_sum, loss_count, step, eval_s = 0, 0.0, 0, 0, 0.0
        bar = Progress(cfg.steps, f"{cfg.protocol} {task}", "steps")
        for step in range(1, cfg.steps + 1):
            lr = warmup_cosine(step - 1, cfg.warmup_steps, cfg.steps, cfg.lr, cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = rng.integers(0, len(train_rows), size=cfg.batch_size)
            head.train()
            encoder.train(not cfg.frozen)
            with autocast(device, cfg.amp):
                if use_cache:
                    crop_idx = rng.integers(0, len(starts), size=cfg.batch_size)
                    tokens = torch.from_numpy(np.asarray(caches["train"][idx, crop_idx], dtype=np.float32)).to(device)
                else:
                    x = torch.from_numpy(random_crops(dump.signals, train_rows[idx], crop, mean, std, rng)).to(device)
                    with torch.set_grad_enabled(not cfg.frozen):
                        tokens = encoder(x)
                logits = head(tokens, normed=use_cache).float()
            y = train_targets[idx].to(device)
            loss = F.cross_entropy(logits, y.argmax(1)) if multiclass else F.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for m in trained for p in m.parameters() if p.requires_grad], cfg.grad_clip
                )
            optimizer.step()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise UserError(
                    f"training loss is {loss_value} at step {step}; lower lr (now {lr:.3g}) or check the dump for bad values"
                )
            loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
            if step % cfg.log_interval == 0 or step == cfg.steps:
                logger.log({"train/loss": loss_sum / loss_count, "train/lr": lr}, step)
                loss_sum, loss_count = 0.0, 0
            bar.update(1, loss=f"{loss_value:.4f}")
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                t_eval = time.time()
                val_scores = predict("val", val_rows)
                eval_s += time.time() - t_eval
                aucs = class_aucs(splits.targets["val"], val_scores)
                val_auc = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
                improved = best_state is None or (
                    math.isfinite(val_auc) and (not math.isfinite(best_auc) or val_auc > best_auc)
                )
                if improved:
                    best_auc, best_step, best_val_scores = val_auc, step, val_scores
                    best_state = {
                        "head": copy.deepcopy(head.state_dict()),
                        "encoder": None if cfg.frozen else copy.deepcopy(encoder.state_dict()),
                    }
                    evals_since_best = 0
                else:
                    evals_since_best += 1
                logger.log({"val/auc": val_auc, "val/best_auc": best_auc}, step)
                if cfg.patience and evals_since_best >= cfg.patience:
                    print(
                        f"finetune: early stop at step {step}: no better val macro AUC in {cfg.patience} evaluations (best {best_auc:.4f} at step {best_step})",
                        flush=True,
                    )
                    break
        bar.close()
        steps_run = step
        train_s = time.time() - t_train

        # the best step, scored on the test fold
        assert best_state is not None and best_val_scores is not None
        head.load_state_dict(best_state["head"])
        if best_state["encoder"] is not None:
            encoder.load_state_dict(best_state["encoder"])
        test_scores = predict("test", test_rows)
        test_targets = splits.targets["test"]
        test_class_aucs = class_aucs(test_targets, test_scores)
        defined = np.isfinite(test_class_aucs)
        test_auc = float(np.mean(test_class_aucs[defined])) if defined.any() else float("nan")
        ci = bootstrap_macro_auc(test_targets, test_scores, cfg.bootstrap_samples, seed=args.seed)
        n_pos = test_targets.sum(0)
        class_rows = []
        for name, auc, pos in zip(classes, test_class_aucs, n_pos):
            note = (
                ""
                if np.isfinite(auc)
                else ("no positive record in the test fold" if pos == 0 else "no negative record in the test fold")
            )
            class_rows.append({"name": name, "auc": finite_or_none(auc), "n_pos": int(pos), "note": note})
        test_metrics = {"test/auc": test_auc} | {
            f"test/auc/{c['name']}": c["auc"] for c in class_rows if c["auc"] is not None
        }
        logger.log(test_metrics, steps_run)
        logger.summary(test_metrics | {"val/best_auc": best_auc})

        # outputs: checkpoint and predictions first, results.json (the completion marker) last
        ckpt = {
            "encoder": encoder.state_dict(),
            "config": loaded.config,
            "head": head.state_dict(),
            "head_config": {
                "dim": encoder.dim,
                "num_classes": len(classes),
                "num_heads": cfg.head_num_heads,
                "dropout": cfg.dropout,
            },
            "classes": classes,
            "task": task,
            "protocol": cfg.protocol,
            "finetune_config": to_dict(cfg),
            "norm_mean": mean.tolist(),
            "norm_std": std.tolist(),
            "crop": crop,
            "stride": stride,
            "step": best_step,
            "val_auc": finite_or_none(best_auc),
            "encoder_source": str(loaded.path),
            "encoder_sha256": encoder_sha,
        }
        with atomic_path(out / "best_ckpt.pt") as tmp:
            torch.save(ckpt, tmp)
        with atomic_path(out / "predictions.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    classes=np.array(classes),
                    val_targets=splits.targets["val"],
                    val_scores=best_val_scores,
                    test_targets=test_targets,
                    test_scores=test_scores,
                )
        results = {
            "task": task,
            "protocol": cfg.protocol,
            "seed": args.seed,
            "encoder": str(loaded.path),
            "encoder_sha256": encoder_sha,
            "encoder_pretrained": loaded.pretrained,
            "config": to_dict(cfg),
            "test_auc": finite_or_none(test_auc),
            "test_auc_ci": [finite_or_none(ci[0]), finite_or_none(ci[1])],
            "val_best_auc": finite_or_none(best_auc),
            "best_step": best_step,
            "classes": class_rows,
            "n_train": int(len(train_rows)),
            "n_val": int(len(val_rows)),
            "n_test": int(len(test_rows)),
            "steps": steps_run,
            "wall_time_s": round(time.time() - start_time, 2),
            "device": device_name(device),
            "timing": {"cache_s": round(cache_s, 2), "train_s": round(train_s, 2), "eval_s": round(eval_s, 2)},
        }
        write_json(out / "results.json", results)
        print(
            f"finetune: test macro AUC {test_auc:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] (best val {best_auc:.4f} at step {best_step}/{steps_run}), "
            f"{results['wall_time_s']:.1f} s -> {out / 'results.json'}",
            flush=True,
        )
    finally:
        logger.close()
        shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
