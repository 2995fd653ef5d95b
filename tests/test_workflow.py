"""The Snakemake workflow against a real Snakemake: lint, format, dry runs, config errors, the demo
end to end on the CI config, rerun-only-stale, the report's numbers, a failing job.

The end-to-end run happens once per session (fixture `ci_run`) in a temp working directory; the
rerun checks are dry runs (`-n`) against that completed run with changed config files.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from workflow_helpers import BIN, ROOT, SNAKEFILE, SNAKEMAKE, env, job_counts, snakemake, write_config

from myjepa import report
from myjepa.tasks.metrics import paired_difference

# ---- static checks -----------------------------------------------------------------------------


def test_lint_is_clean():
    proc = subprocess.run(
        [*SNAKEMAKE, "--lint", "--snakefile", str(SNAKEFILE)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_snakefmt_check():
    tools = {**env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # snakefmt runs shfmt from the venv
    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "workflow"], cwd=ROOT, env=tools, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_schema_key_is_documented():
    """config/README.md names every key of the schema."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (ROOT / "config" / "README.md").read_text()

    def keys(node, prefix=""):
        node = schema["$defs"][node["$ref"].split("/")[-1]] if "$ref" in node else node
        for name, sub in node.get("properties", {}).items():
            yield f"{prefix}{name}"
            yield from keys(sub, f"{prefix}{name}.")
        if node.get("type") == "array" and "items" in node:
            yield from keys(node["items"], f"{prefix[:-1]}[].")

    documented = {re.sub(r"^resources\.\w+\.", "resources.*.", k) for k in keys(schema)}
    missing = [k for k in sorted(documented) if f"`{k}`" not in readme]
    assert not missing, f"config/README.md does not document {missing}"


# ---- dry runs ----------------------------------------------------------------------------------


@pytest.fixture()
def fake_raw(tmp_path: Path) -> dict[str, Path]:
    """Raw-data directories for PTB-XL and every archive of config/real.yaml, as a dry run sees them (no records)."""
    ptbxl = tmp_path / "raw" / "ptb-xl"
    ptbxl.mkdir(parents=True)
    (ptbxl / "ptbxl_database.csv").write_text("ecg_id\n")
    (ptbxl / "scp_statements.csv").write_text("code\n")
    dirs = {"ptbxl": ptbxl}
    for entry in yaml.safe_load((ROOT / "config" / "real.yaml").read_text())["data"]["pretrain"]:
        dirs[entry["name"]] = tmp_path / "raw" / entry["name"]
        dirs[entry["name"]].mkdir()
    return dirs


def real_config(tmp_path: Path, fake_raw: dict[str, Path], **changes) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "real.yaml").read_text())
    cfg["data"]["ptb_xl"]["raw"] = str(fake_raw["ptbxl"])
    for entry in cfg["data"]["pretrain"]:
        entry["raw"] = str(fake_raw[entry["name"]])
    return write_config(tmp_path / "real.yaml", cfg, **changes)


def test_dry_run_real_config_job_counts(tmp_path, fake_raw):
    """Real data: each archive's shards + its merge, PTB-XL conversion, runs x seeds pretrainings, and every
    (encoder x task x protocol x seed) finetune, with one random-init baseline per architecture."""
    path = real_config(tmp_path, fake_raw)
    cfg = yaml.safe_load(path.read_text())
    proc = snakemake("-n", "--quiet", "rules", cwd=tmp_path, config=path)
    counts = job_counts(proc.stdout + proc.stderr)
    runs, p_seeds = cfg["pretrain"]["runs"], cfg["pretrain"]["seeds"]
    archs = {r["config"] for r in runs}
    n_enc = len(runs) * len(p_seeds) + len(archs)
    n_ft = n_enc * len(cfg["evaluate"]["tasks"]) * len(cfg["evaluate"]["protocols"]) * len(cfg["evaluate"]["seeds"])
    archives = cfg["data"]["pretrain"]
    assert len(archives) == 9  # + ptb-xl: the reference's ten
    assert counts == {
        "convert_shard": sum(entry.get("shards", 1) for entry in archives),
        "merge_shards": len(archives),
        "convert_ptbxl": 1,
        "pretrain": len(runs) * len(p_seeds),
        "finetune": n_ft,
        "export": len(runs) * len(p_seeds),
        "export_classifier": n_ft,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }, proc.stdout
    assert "synth_ptbxl" not in counts and "synth_archive" not in counts


def test_dry_run_real_config_commands(tmp_path, fake_raw):
    """The shell commands a real-data run would execute: shards, torchrun only for >1 GPU, init."""
    path = real_config(tmp_path, fake_raw)
    proc = snakemake("-n", "-p", cwd=tmp_path, config=path)
    out = proc.stdout
    cfg = yaml.safe_load(path.read_text())
    for entry in cfg["data"]["pretrain"]:
        shards = entry.get("shards", 1)
        for i in range(1, shards + 1):  # each archive: its own kind, directory, shards and options
            command = re.search(
                rf"myjepa convert {entry['archive']} --src {fake_raw[entry['name']]} .*--shard {i}/{shards}.*", out
            )
            assert command, (entry, out[-3000:])
            assert ("--highpass 0.5" in command.group(0)) == (entry["name"] in ("code-15", "st-petersburg"))
            assert "--windows split" in command.group(0)
    assert f"--src {fake_raw['ptbxl']}" in out
    assert re.search(r"--data mimic-iv-ecg=results/data/mimic-iv-ecg.npy code-15=results/data/code-15.npy ptb-xl=", out)
    assert "--data ptb-xl=results/data/ptb-xl.npy" in out  # the PTB-XL-only ablation run
    assert re.search(r"--init results/finetune/\S+/linear/s\d+/best_ckpt.pt", out)
    assert re.search(r"^\s+myjepa pretrain --data ", out, re.M) and "torchrun" not in out  # one GPU per job


def test_dry_run_demo_default(tmp_path):
    proc = snakemake("-n", "--quiet", "rules", cwd=tmp_path, config=ROOT / "config" / "config.yaml")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["synth_ptbxl"] == 1 and counts["synth_archive"] == 3 and counts["pretrain"] == 2
    assert counts["convert_shard"] == 4 and counts["merge_shards"] == 3  # mimic-iv-ecg in 2 shards
    assert counts["finetune"] >= 4


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"evaluate__taks": ["rhythm"]}, "evaluate: unknown key 'taks' (did you mean 'tasks'?)"),
        ({"evaluate__tasks": ["rythm"]}, "evaluate.tasks.0: 'rythm' is not one of"),
        ({"synth__seed": "two"}, "synth.seed: 'two' is not of type 'integer'"),
        (
            {"data__pretrain": [{"name": "x", "archive": "wfdb"}]},
            "data.pretrain.0: a wfdb archive needs `raw` or `dump` (no synthetic one)",
        ),
        ({"pretrain__seeds": []}, "pretrain.seeds: [] should be non-empty"),
        (
            {"pretrain__runs": [{"name": "a", "set": {"dim": 128}}]},
            "pretrain.runs[a].set changes the architecture (dim)",
        ),
        (
            {"pretrain__runs": [{"name": "a", "datasets": {"ptbxl": 1.0}}]},
            "pretrain.runs.0.datasets: 'ptbxl' is not one of",
        ),
        (
            {"evaluate__protocols": [{"name": "ft", "config": "finetune_after_linear"}]},
            "finetune_after_linear needs `init",
        ),
        ({"data__ptb_xl__raw": "/no/such/dir"}, "data.ptb_xl.raw: /no/such/dir is not a directory"),
        (
            {"pretrain__runs": [{"name": "a", "config": "ViTM_mimic"}]},
            "config: pretrain.runs[a].config: unknown config 'ViTM_mimic'",
        ),
        (  # overrides are loaded with the package's own config loader when the DAG is built
            {"pretrain__runs": [{"name": "a", "config": "tiny", "set": {"warmup_step": 5}}]},
            "config: pretrain.runs[a].set: unknown key 'warmup_step' (did you mean 'warmup_steps'?)",
        ),
        (
            {"evaluate__protocols": [{"name": "lin", "config": "linear", "set": {"lr": -0.1}}]},
            "config: evaluate.protocols[lin]: config keys: need 0 < min_lr <= lr",
        ),
        (  # once passed the dry run, and pretraining refused after every conversion
            {"data__fs": 250},
            "config: pretrain.runs[tiny]: its model (tiny) takes 500 Hz, but data.fs, the rate every dump is "
            "converted to, is 250 Hz",
        ),
        (  # once blamed on `set:`
            {"pretrain__runs": [{"name": "a", "datasets": {"mimic-iv-ecg": float("nan")}}]},
            "config: pretrain.runs.0.datasets.mimic-iv-ecg: weight nan is not a finite positive number",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, changes, message):
    path = write_config(tmp_path / "bad.yaml", ROOT / "config" / "ci.yaml", **changes)
    proc = snakemake("-n", cwd=tmp_path, config=path, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert message in text, text[-3000:]
    assert "Traceback" not in text


def test_nested_config_values_given_on_the_command_line_are_typed(tmp_path):
    """`snakemake --config 'evaluate={val_fold: 8}'` passes '8' as text: it once failed with "'8' is not of type
    'integer'"; now it is the number 8, as in a config file."""
    args = ["--config", "evaluate={val_fold: 8, baseline: false}", "data={fs: 500}"]
    proc = snakemake("-n", "-p", *args, cwd=tmp_path, config=ROOT / "config" / "ci.yaml")
    assert "--probe-val-fold 8 " in proc.stdout and "--val-fold 8 " in proc.stdout
    assert "random-" not in proc.stdout  # baseline: false is false, not the text 'false'


# ---- report code on fabricated results (fixtures for the report code only) ---------------------


def fabricate_finetune(
    root: Path,
    encoder: str,
    task: str,
    protocol: str,
    seed: int,
    auc: float,
    classes: list[str],
    rng: np.random.Generator,
) -> Path:
    out = root / "results" / "finetune" / encoder / task / protocol / f"s{seed}"
    out.mkdir(parents=True)
    n = 40
    targets = (rng.random((n, len(classes))) < 0.4).astype(np.float32)
    scores = np.clip(targets * auc + rng.normal(0, 0.4, targets.shape), 0, 1).astype(np.float32)
    np.savez(
        out / "predictions.npz",
        classes=np.array(classes),
        val_targets=targets,
        val_scores=scores,
        test_targets=targets,
        test_scores=scores,
    )
    result = {
        "task": task,
        "protocol": protocol,
        "seed": seed,
        "encoder_name": encoder,
        "protocol_name": protocol,
        "encoder": f"/x/{encoder}.pt",
        "encoder_sha256": "ab" * 32,
        "config": {},
        "test_auc": auc,
        "test_auc_ci": [auc - 0.05, auc + 0.04],
        "val_best_auc": auc - 0.01,
        "classes": [
            {
                "name": c,
                "auc": (None if i == 0 and task == "form" else auc + 0.01 * i),
                "n_pos": 3 + i,
                "note": ("no positive test record" if i == 0 and task == "form" else ""),
            }
            for i, c in enumerate(classes)
        ],
        "n_train": 300,
        "n_val": 40,
        "n_test": n,
        "steps": 100,
        "wall_time_s": 12.5,
        "device": "cpu",
    }
    (out / "results.json").write_text(json.dumps(result))
    return out / "results.json"


@pytest.fixture()
def fabricated(tmp_path):
    rng = np.random.default_rng(0)
    aucs = {}
    paths = []
    for task, classes in (("rhythm", ["SR", "AFIB", "STACH"]), ("form", ["LVOLT", "QWAVE"])):
        for encoder, base in (("tiny-s42", 0.8), ("tiny-s43", 0.78), ("random-tiny", 0.6)):
            for seed in (0, 1):
                auc = round(base + 0.013 * seed + (0.05 if task == "rhythm" else 0), 6)
                aucs[(encoder, task, seed)] = auc
                paths.append(fabricate_finetune(tmp_path, encoder, task, "linear", seed, auc, classes, rng))
    run = tmp_path / "results" / "pretrain" / "tiny" / "s42"
    run.mkdir(parents=True)
    (run / "encoder.pt").write_bytes(b"")
    (run / "metrics.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "step": s,
                    "train/loss": 1 / (s + 1),
                    "train/pred_loss": 0.5 / (s + 1),
                    "train/sigreg_loss": 0.1,
                    "train/lr": 1e-3,
                }
            )
            + "\n"
            for s in range(0, 50, 10)
        )
    )
    encoders = {
        "tiny-s42": {
            "kind": "pretrained",
            "group": "tiny",
            "baseline": "random-tiny",
            "model": "tiny",
            "pretrain_seed": 42,
        },
        "tiny-s43": {
            "kind": "pretrained",
            "group": "tiny",
            "baseline": "random-tiny",
            "model": "tiny",
            "pretrain_seed": 43,
        },
        "random-tiny": {
            "kind": "random",
            "group": "random-tiny",
            "baseline": None,
            "model": "tiny",
            "pretrain_seed": None,
        },
    }
    return {"paths": paths, "aucs": aucs, "encoders": encoders, "run": run / "encoder.pt", "root": tmp_path}


def run_report(fab, image: str = "") -> dict[str, Path]:
    """Aggregate and render; again over the outputs of an earlier call (--overwrite), as a test may call it twice."""
    root = fab["root"]
    out = {k: root / "results" / f"{k}.csv" for k in ("auc", "auc_summary", "auc_per_class")}
    report.main(
        [
            "aggregate",
            "--overwrite",  # some tests report twice
            "--encoders",
            json.dumps(fab["encoders"]),
            "--out",
            str(out["auc"]),
            "--summary",
            str(out["auc_summary"]),
            "--per-class",
            str(out["auc_per_class"]),
            "--overwrite",
            *map(str, fab["paths"]),
        ]
    )
    out["html"] = root / "results" / "report.html"
    config = {"evaluate": {"tasks": ["rhythm", "form"]}}
    report.main(
        [
            "html",
            "--overwrite",
            "--auc",
            str(out["auc"]),
            "--summary",
            str(out["auc_summary"]),
            "--per-class",
            str(out["auc_per_class"]),
            "--pretrain-runs",
            str(fab["run"]),
            "--config-json",
            json.dumps(config),
            "--image",
            image,
            "--out",
            str(out["html"]),
            "--overwrite",
        ]
    )
    return out


def test_report_numbers_equal_results_files(fabricated):
    out = run_report(fabricated)
    jobs = pd.read_csv(out["auc"])
    assert len(jobs) == len(fabricated["paths"]) == 12
    for row in jobs.itertuples():
        result = json.loads(Path(row.results).read_text())
        assert row.test_auc == result["test_auc"] == fabricated["aucs"][(row.encoder, row.task, row.seed)]
        assert [row.ci_lo, row.ci_hi] == result["test_auc_ci"]
        assert row.val_best_auc == result["val_best_auc"]
    summary = pd.read_csv(out["auc_summary"]).set_index(["task", "protocol", "group"])
    for task in ("rhythm", "form"):
        tiny = [fabricated["aucs"][(e, task, s)] for e in ("tiny-s42", "tiny-s43") for s in (0, 1)]
        rand = [fabricated["aucs"][("random-tiny", task, s)] for s in (0, 1)]
        row = summary.loc[(task, "linear", "tiny")]
        assert row.n == 4
        assert row.auc_mean == pytest.approx(np.mean(tiny), abs=1e-12)
        assert row.auc_std == pytest.approx(np.std(tiny, ddof=1), abs=1e-12)
        assert row.baseline_auc_mean == pytest.approx(np.mean(rand), abs=1e-12)
        assert row.delta_vs_baseline == pytest.approx(np.mean(tiny) - np.mean(rand), abs=1e-12)

    page = out["html"].read_text()
    # the exact values are embedded, and every shown number is the rounded exact value
    data = json.loads(
        html.unescape(re.search(r'<script type="application/json" id="auc-data">(.*?)</script>', page, re.S).group(1))
    )
    assert {(j["encoder"], j["task"], j["seed"]): j["test_auc"] for j in data["jobs"]} == fabricated["aucs"]
    for (encoder, task, seed), auc in fabricated["aucs"].items():
        assert f"<td>{auc:.3f}</td>" in page
    tiny_rhythm = summary.loc[("rhythm", "linear", "tiny")]
    assert f"{tiny_rhythm.auc_mean:.3f} ± {tiny_rhythm.auc_std:.3f}" in page
    assert f"{tiny_rhythm.delta_vs_baseline:+.3f}" in page


def test_report_pairs_each_job_with_the_baseline_of_its_finetuning_seed(fabricated):
    """The Δ interval: every pretrained job against the random-init job of the same finetuning seed, on one test
    set; jobs scored on different test records (as fabricated) get no interval."""
    out = run_report(fabricated)
    assert pd.read_csv(out["auc_summary"])["delta_ci_lo"].isna().all()
    rng = np.random.default_rng(5)
    targets = (rng.random((60, 3)) < 0.4).astype(np.float32)
    scores = {}
    for path in fabricated["paths"]:
        result = json.loads(path.read_text())
        if result["task"] != "rhythm":
            continue
        quality = 1.0 if result["encoder_name"].startswith("tiny") else 0.3
        scores[(result["encoder_name"], result["seed"])] = targets * quality + rng.normal(0, 0.5, targets.shape)
        np.savez(
            path.parent / "predictions.npz",
            test_targets=targets,
            test_scores=scores[(result["encoder_name"], result["seed"])],
        )
    out = run_report(fabricated)
    row = pd.read_csv(out["auc_summary"]).set_index(["task", "protocol", "group"]).loc[("rhythm", "linear", "tiny")]
    pairs = [(e, s) for e in ("tiny-s42", "tiny-s43") for s in (0, 1)]
    mine = np.stack([scores[p] for p in pairs])
    base = np.stack([scores[("random-tiny", s)] for _, s in pairs])
    _, lo, hi = paired_difference(targets, mine, base)
    assert (row.delta_ci_lo, row.delta_ci_hi) == pytest.approx((lo, hi), abs=1e-12) and lo > 0
    assert f"{row.delta_vs_baseline:+.3f}</span> [{lo:+.3f}, {hi:+.3f}]" in out["html"].read_text()


def test_report_per_class_reference_numbers_and_self_contained(fabricated):
    out = run_report(fabricated)
    page = out["html"].read_text()
    per_class = pd.read_csv(out["auc_per_class"])
    assert set(per_class["class"]) == {"SR", "AFIB", "STACH", "LVOLT", "QWAVE"}
    assert per_class[(per_class["class"] == "LVOLT")]["auc"].isna().all()  # undefined -> empty, shown as —
    assert "no positive test record" in page
    for value in ("0.925", "0.937", "0.930", "0.899", "0.957", "0.940", "0.944"):
        assert value in page
    assert "Strodthoff et al. 2021" in page and "arXiv:2410.08559" in page
    # ROC curves per task + pretraining curves, all inline PNGs; nothing loaded from elsewhere
    assert page.count("data:image/png;base64,") == 2 + 1
    assert not re.search(r'(src|href)="(?!data:)', page)
    for name in ("torch", "numpy", "snakemake", "python"):
        assert f"<td>{name}</td>" in page
    assert "Container image: <code>not used</code>" in page


def test_report_image_digest(fabricated, tmp_path):
    image = tmp_path / "img.sif"
    image.write_bytes(b"apptainer image bytes")
    page = run_report(fabricated, image=str(image))["html"].read_text()
    assert f"sha256:{hashlib.sha256(b'apptainer image bytes').hexdigest()}" in page


def test_aggregate_bad_results_file_is_a_clear_error(fabricated, capsys):
    bad = fabricated["paths"][0]
    data = json.loads(bad.read_text())
    del data["test_auc"]
    bad.write_text(json.dumps(data))
    from myjepa.errors import run_cli

    with pytest.raises(SystemExit) as exit_:
        run_cli(report.main, ["aggregate", "--out", "a.csv", "--summary", "b.csv", "--per-class", "c.csv", str(bad)])
    assert exit_.value.code == 2
    assert f"{bad}: results lack the key 'test_auc'" in capsys.readouterr().err
    assert not Path("a.csv").exists()


@pytest.mark.parametrize("key", ["encoder_name", "task", "protocol_name", "seed"])
def test_aggregate_needs_the_job_names_in_results(fabricated, capsys, key):
    """The report names a job by what its results.json stores, never by the file's path."""
    bad = fabricated["paths"][0]
    data = json.loads(bad.read_text())
    del data[key]
    bad.write_text(json.dumps(data))
    from myjepa.errors import run_cli

    with pytest.raises(SystemExit) as exit_:
        run_cli(report.main, ["aggregate", "--out", "a.csv", "--summary", "b.csv", "--per-class", "c.csv", str(bad)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"myjepa: error: {bad}: results lack the key {key!r}\n"
    assert not Path("a.csv").exists()


def test_report_names_jobs_from_results_not_paths(tmp_path):
    """Protocols of one kind under two names stay two rows; the kind picks the reference number; the
    results.json files may lie anywhere."""
    rng = np.random.default_rng(1)
    fab = {"root": tmp_path, "paths": [], "run": tmp_path / "none" / "s0" / "encoder.pt"}
    fab["encoders"] = {
        "tiny-s42": {"kind": "pretrained", "group": "tiny", "baseline": "random-tiny", "model": "tiny"},
        "random-tiny": {"kind": "random", "group": "random-tiny", "baseline": None, "model": "tiny"},
    }
    for i, (name, kind) in enumerate((("linear", "linear"), ("probe", "linear"), ("ft", "finetune"))):
        for encoder, auc in (("tiny-s42", 0.8 + i / 100), ("random-tiny", 0.6 + i / 100)):
            path = fabricate_finetune(tmp_path, encoder, "all", name, 3, auc, ["A", "B"], rng)
            result = json.loads(path.read_text())
            assert result["protocol_name"] == name
            path.write_text(json.dumps({**result, "protocol": kind}))
            moved = tmp_path / "copied" / f"{encoder}-{name}"  # not the workflow's layout
            moved.parent.mkdir(exist_ok=True)
            path.parent.rename(moved)
            fab["paths"].append(moved / "results.json")
    out = run_report(fab)
    jobs = pd.read_csv(out["auc"])
    assert sorted(zip(jobs["encoder"], jobs["protocol"], jobs["seed"])) == sorted(
        (e, p, 3) for e in ("tiny-s42", "random-tiny") for p in ("linear", "probe", "ft")
    )
    summary = pd.read_csv(out["auc_summary"]).set_index(["task", "protocol", "group"])
    assert len(summary) == 6
    assert summary.loc[("all", "linear", "tiny"), "auc_mean"] == 0.8
    assert summary.loc[("all", "probe", "tiny"), "auc_mean"] == 0.81
    assert summary.loc[("all", "probe", "tiny"), "baseline_auc_mean"] == 0.61
    per_class = pd.read_csv(out["auc_per_class"])
    assert set(per_class["protocol"]) == {"linear", "probe", "ft"}
    page = out["html"].read_text()
    for name, reference in (("linear", "0.940"), ("probe", "0.940"), ("ft", "0.944")):
        row = re.search(rf"<tr><td>all</td><td>{name}</td><td>tiny</td>.*?</tr>", page).group(0)
        assert row.endswith(f"<td>0.925</td><td>{reference}</td></tr>"), row


# ---- the demo DAG end to end on the CI config, then rerun-only-stale against it -----------------

CI_CONFIG = ROOT / "config" / "ci.yaml"


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory) -> Path:
    """The whole demo DAG on the CI config, run once in a fresh working directory."""
    work = tmp_path_factory.mktemp("ci-demo")
    proc = snakemake("--cores", "2", cwd=work, config=CI_CONFIG, timeout=1200)
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    return work


def ci_config(work: Path, name: str, **changes) -> Path:
    return write_config(work / name, CI_CONFIG, **changes)


def dry_counts(work: Path, config: Path) -> dict[str, int]:
    proc = snakemake("-n", "--quiet", "rules", cwd=work, config=config)
    return job_counts(proc.stdout + proc.stderr)


def test_demo_end_to_end(ci_run):
    work = ci_run
    log = (work / "run.log").read_text()
    assert "18 of 18 steps (100%) done" in log
    for path in (
        "results/report.html",
        "results/auc.csv",
        "results/auc_summary.csv",
        "results/auc_per_class.csv",
        "results/data/ptb-xl.npy",
        "results/data/mimic-iv-ecg.npy",
        "results/data/cpsc.npy",
        "results/pretrain/tiny/s42/encoder.pt",
        "results/pretrain/tiny/s42/metrics.jsonl",
        "results/pretrain/tiny/s42/last_ckpt.pt",
        "results/release/tiny-s42/model.safetensors",
        "results/release/tiny-s42/config.json",
        "results/release/tiny-s42/MODEL_CARD.md",
        "results/classifiers/tiny-s42/rhythm/linear/s0/model.safetensors",
        "results/classifiers/tiny-s42/rhythm/linear/s0/head.safetensors",
        "results/classifiers/tiny-s42/rhythm/linear/s0/config.json",
        "results/classifiers/random-tiny/rhythm/linear/s0/MODEL_CARD.md",
    ):
        assert (work / path).is_file(), path
    # every job wrote its log, and the commands' own progress lines are in it
    for log_file in (
        "synth/ptb-xl",
        "synth/mimic-iv-ecg",
        "synth/cpsc",
        "convert/ptb-xl",
        "convert/cpsc-part-1",
        "convert/mimic-iv-ecg-part-1",
        "convert/mimic-iv-ecg-part-2",
        "convert/mimic-iv-ecg-merge",
        "pretrain/tiny-s42",
        "finetune/tiny-s42/rhythm/linear/s0",
        "finetune/random-tiny/rhythm/linear/s0",
        "release/tiny-s42",
        "release/classifiers/tiny-s42/rhythm/linear/s0",
        "aggregate",
        "report",
    ):
        assert (work / "logs" / f"{log_file}.log").stat().st_size > 0, log_file
    # the merged MIMIC dump holds both shards
    stats = json.loads((work / "results/data/mimic-iv-ecg.stats.json").read_text())
    assert stats["count"] == 80
    # the report's numbers are the finetune results'
    jobs = pd.read_csv(work / "results/auc.csv")
    assert sorted(jobs["encoder"]) == ["random-tiny", "tiny-s42"]
    page = (work / "results/report.html").read_text()
    for row in jobs.itertuples():
        result = json.loads((work / row.results).read_text())
        assert row.test_auc == result["test_auc"]
        assert f"<td>{result['test_auc']:.3f}</td>" in page
    # the release is linked and its card holds the encoder's evaluation
    assert "<a href='release/tiny-s42/MODEL_CARD.md'>" in page
    card = (work / "results/release/tiny-s42/MODEL_CARD.md").read_text()
    ours = json.loads((work / "results/finetune/tiny-s42/rhythm/linear/s0/results.json").read_text())
    assert f"| rhythm | linear | 0 | {ours['test_auc']:.3f} |" in card
    # and so is every classifier release, whose card holds its run's test AUC
    classifier = "results/classifiers/tiny-s42/rhythm/linear/s0"
    assert "<a href='classifiers/tiny-s42/rhythm/linear/s0/MODEL_CARD.md'>" in page
    card = (work / classifier / "MODEL_CARD.md").read_text()
    assert f"Test macro AUC: {ours['test_auc']:.3f}" in card


def test_one_command_predicts_the_demos_rhythm_classes_for_its_wfdb_records(ci_run, tmp_path):
    """After the demo, `myjepa predict` on the folder of its PTB-XL WFDB records (500 Hz) scores every record; on
    the test fold it gives the finetune run's own test scores, and the Python call gives its numbers."""
    import myjepa
    from myjepa.ingest.wfdb_io import read_record
    from myjepa.tasks.ptbxl import load_task_data

    classifier, raw = ci_run / "results/classifiers/tiny-s42/rhythm/linear/s0", ci_run / "results/raw/ptb-xl"
    out = tmp_path / "rhythm.csv"
    command = [str(BIN / "myjepa"), "predict", "--model", str(classifier), "--src", str(raw / "records500")]
    subprocess.run([*command, "--out", str(out)], env=env(), check=True, capture_output=True, timeout=300)
    table = pd.read_csv(out)
    data = load_task_data(raw, ci_run / "results/data/ptb-xl.npy", "rhythm", 1, 9, 10)
    assert len(table) == len(data.dump) == 200
    files = data.dump.index["file"].to_numpy()[data.splits.rows["test"]]  # records500/00000/00001_hr
    run = np.load(ci_run / "results/finetune/tiny-s42/rhythm/linear/s0/predictions.npz")
    columns = [f"p_{c}" for c in run["classes"]]
    scores = table.set_index("file").loc[[f.removeprefix("records500/") for f in files], columns].to_numpy()
    np.testing.assert_allclose(scores, run["test_scores"], rtol=0, atol=1e-5)
    model = myjepa.load_classifier(classifier)
    x = np.stack([read_record(raw / "records500" / f)[0] for f in table["file"][:8]])
    np.testing.assert_allclose(model.predict(x, fs=500).numpy(), table[columns][:8].to_numpy(), rtol=1e-6, atol=1e-8)


def test_nothing_to_do_after_a_complete_run(ci_run):
    proc = snakemake("-n", cwd=ci_run, config=CI_CONFIG)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_evaluation_setting_reruns_finetunes_and_report_only(ci_run):
    protocols = yaml.safe_load(CI_CONFIG.read_text())["evaluate"]["protocols"]
    protocols[0]["set"]["steps"] += 1
    counts = dry_counts(ci_run, ci_config(ci_run, "eval.yaml", evaluate__protocols=protocols))
    assert counts == {"finetune": 2, "export": 1, "export_classifier": 2, "aggregate": 1, "report": 1, "all": 1}
    proc = snakemake("--summary", cwd=ci_run, config=ci_run / "eval.yaml")
    status = {line.split("\t")[0]: line.split("\t")[4:] for line in proc.stdout.splitlines() if "\t" in line}
    assert status["results/finetune/tiny-s42/rhythm/linear/s0/results.json"] == ["params changed", "update pending"]
    assert status["results/pretrain/tiny/s42/encoder.pt"] == ["ok", "no update"]
    assert status["results/data/ptb-xl.npy"] == ["ok", "no update"]


def test_model_setting_reruns_its_pretraining_and_downstream(ci_run):
    runs = yaml.safe_load(CI_CONFIG.read_text())["pretrain"]["runs"]
    runs[0]["set"]["steps"] += 1
    counts = dry_counts(ci_run, ci_config(ci_run, "model.yaml", pretrain__runs=runs))
    # the random-init baseline does not depend on pretraining
    assert counts == {
        "pretrain": 1,
        "finetune": 1,
        "export": 1,
        "export_classifier": 1,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }


def test_adding_a_task_or_seed_adds_only_its_jobs(ci_run):
    assert dry_counts(ci_run, ci_config(ci_run, "task.yaml", evaluate__tasks=["rhythm", "form"])) == {
        "finetune": 2,
        "export": 1,
        "export_classifier": 2,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }
    assert dry_counts(ci_run, ci_config(ci_run, "seed.yaml", evaluate__seeds=[0, 1])) == {
        "finetune": 2,
        "export": 1,
        "export_classifier": 2,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }
    assert dry_counts(ci_run, ci_config(ci_run, "pseed.yaml", pretrain__seeds=[42, 43])) == {
        "pretrain": 1,
        "finetune": 1,
        "export": 1,
        "export_classifier": 1,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }
    assert dry_counts(ci_run, ci_config(ci_run, "wandb.yaml", wandb__enabled=True)) == {"report": 1, "all": 1}


def test_input_content_change_reruns_dependents(ci_run):
    """Checksums, not mtimes: new content in an input reruns its consumers; the same content does not."""
    scp = ci_run / "results/raw/ptb-xl/scp_statements.csv"
    original = scp.read_bytes()
    try:
        os.utime(scp)  # touch only: nothing to do
        assert "Nothing to be done" in snakemake("-n", cwd=ci_run, config=CI_CONFIG).stdout
        scp.write_bytes(original + b"\n")
        # pretrain reads the labels for its online probe; its rerun finds the finished run and only rewrites encoder.pt
        assert dry_counts(ci_run, CI_CONFIG) == {
            "pretrain": 1,
            "finetune": 2,
            "export": 1,
            "export_classifier": 2,
            "aggregate": 1,
            "report": 1,
            "all": 1,
        }
        proc = snakemake("--summary", cwd=ci_run, config=CI_CONFIG)
        assert "results/finetune/tiny-s42/rhythm/linear/s0/results.json" in proc.stdout
        assert "updated input files" in proc.stdout
    finally:
        scp.write_bytes(original)
    assert "Nothing to be done" in snakemake("-n", cwd=ci_run, config=CI_CONFIG).stdout


def test_failing_job_is_reported_as_failed(ci_run, tmp_path):
    """A job whose command fails: snakemake exits non-zero naming the rule and its log, the log holds
    the command's one-line error, and no output of the failed job is left behind."""
    work = tmp_path / "work"
    shutil.copytree(ci_run, work, symlinks=True)
    (work / "results/pretrain/tiny/s42/encoder.pt").write_text("not a checkpoint\n")  # newer: finetunes rerun
    proc = snakemake("--cores", "2", "--keep-going", cwd=work, config=CI_CONFIG, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule finetune" in text
    assert "logs/finetune/tiny-s42/rhythm/linear/s0.log" in text
    log = (work / "logs/finetune/tiny-s42/rhythm/linear/s0.log").read_text()
    assert "myjepa: error:" in log and "encoder.pt" in log and "text file" in log, log
    assert not (work / "results/finetune/tiny-s42/rhythm/linear/s0/results.json").exists()
    assert "Exiting because a job execution failed" in text or "failed" in text.lower()


def test_snakemake_report_zip(ci_run):
    """`snakemake --report report.zip` packs the annotated outputs with their captions."""
    import zipfile

    snakemake("--report", "report.zip", cwd=ci_run, config=CI_CONFIG)
    names = zipfile.ZipFile(ci_run / "report.zip").namelist()
    for name in ("report.html", "auc.csv", "auc_summary.csv", "auc_per_class.csv"):
        assert any(n.endswith(f"/{name}") for n in names if "/data/raw/" in n), (name, names)


# ---- profiles ----------------------------------------------------------------------------------


def all_rules() -> set[str]:
    proc = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--list-rules"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {line.strip() for line in proc.stdout.splitlines() if line.strip()} - {"all"}


@pytest.mark.parametrize("profile", ["slurm", "slurm-ci"])
def test_slurm_profiles_map_every_rule_to_a_partition(profile):
    cfg = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    assert {"slurm_partition", "runtime", "mem_mb"} <= set(cfg["default-resources"])
    resources = cfg["set-resources"]
    assert set(resources) == all_rules()
    for rule, res in resources.items():
        gpu = rule in ("pretrain", "finetune")
        assert res["slurm_partition"] == ("gpu" if gpu else "cpu"), rule
        assert (res.get("gpu", 0) >= 1) == gpu, rule
        # one torchrun per job: the plugin must not start the command once per GPU
        assert "tasks" not in res and "tasks_per_gpu" not in res, rule
    if profile == "slurm":
        assert cfg["software-deployment-method"] == "apptainer"
        assert "--nv" in cfg["apptainer-args"].split() and "--bind" in cfg["apptainer-args"]
        assert cfg["retries"] >= 1
        assert {"gpu_model", "cpus_per_gpu"} <= set(resources["pretrain"])
    else:  # CI runs without apptainer (tests/test_container.py covers it)
        assert "software-deployment-method" not in cfg


def test_multi_gpu_pretraining_starts_one_torchrun(tmp_path):
    proc = snakemake(
        "results/pretrain/tiny/s42/encoder.pt",
        "-n",
        "-p",
        "--set-resources",
        "pretrain:gpu=4",
        cwd=tmp_path,
        config=CI_CONFIG,
    )
    assert re.search(r"^\s+torchrun --standalone --nproc_per_node=4 -m myjepa.pretrain --data ", proc.stdout, re.M)


def test_pretraining_over_two_nodes_starts_the_launcher(tmp_path):
    """`nodes: 2` (the profile's set-resources): the job runs myjepa.cluster.launch with the job's GPUs per
    node and the CPUs of its GPUs, then the usual arguments; tests/test_slurm.py runs it on two nodes."""
    proc = snakemake(
        "results/pretrain/tiny/s42/encoder.pt",
        "-n",
        "-p",
        "--set-resources",
        "pretrain:nodes=2",
        "pretrain:gpu=8",
        "pretrain:cpus_per_gpu=6",
        cwd=tmp_path,
        config=CI_CONFIG,
    )
    launch = re.search(r"^\s+(\S+) -m myjepa.cluster.launch (.*) -- --data mimic-iv-ecg=", proc.stdout, re.M)
    assert launch, proc.stdout[-3000:]
    assert launch.group(2) == "--nodes=2 --gpus-per-node=4 --cpus-per-task=24"  # no --image: no --sdm apptainer
    assert Path(launch.group(1)).name.startswith("python")


@pytest.mark.parametrize(
    "resources, message",
    [
        (
            ["pretrain:nodes=0"],
            "config: set-resources: pretrain: nodes must be a whole number of nodes, 1 or more, not 0",
        ),
        (["pretrain:nodes=2", "pretrain:gpu=3"], "pretrain: gpu 3 (the whole job's GPUs) is not a multiple of nodes 2"),
    ],
)
def test_impossible_nodes_are_one_line_errors(tmp_path, resources, message):
    args = ["results/pretrain/tiny/s42/encoder.pt", "-n", "-p", "--set-resources", *resources]
    proc = snakemake(*args, cwd=tmp_path, config=CI_CONFIG, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_pretraining_checkpoints_follow_the_settings(ci_run, tmp_path):
    """The pretrain rule keeps last_ckpt.pt for retries, but never resumes a run with other settings,
    and a forced rerun of a complete run writes its encoder.pt again from the last checkpoint."""
    work = tmp_path / "work"
    shutil.copytree(ci_run, work, symlinks=True)
    target = "results/pretrain/tiny/s42/encoder.pt"
    log = work / "logs/pretrain/tiny-s42.log"
    before = torch.load(work / target, weights_only=True)

    snakemake(target, "--cores", "2", "--forcerun", "pretrain", cwd=work, config=CI_CONFIG)
    assert "nothing to do" in log.read_text()  # same settings: the complete checkpoint was found, not retrained
    after = torch.load(work / target, weights_only=True)
    assert after["step"] == before["step"] and all(
        torch.equal(after["encoder"][k], v) for k, v in before["encoder"].items()
    )

    runs = yaml.safe_load(CI_CONFIG.read_text())["pretrain"]["runs"]
    runs[0]["set"]["steps"] += 2  # the schedules depend on `steps`: --restart-on-change starts afresh
    snakemake(target, "--cores", "2", cwd=work, config=ci_config(work, "model.yaml", pretrain__runs=runs))
    assert "resuming from" not in log.read_text()
    steps = [
        json.loads(line)["step"] for line in (work / "results/pretrain/tiny/s42/metrics.jsonl").read_text().splitlines()
    ]
    assert steps[0] <= runs[0]["set"]["log_interval"] and steps[-1] == runs[0]["set"]["steps"]
