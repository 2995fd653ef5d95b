"""The Snakemake workflow against a real Snakemake: lint, format, dry runs, config errors, the demo
end to end on the CI config, rerun-only-stale, the report's numbers, a failing job.

The end-to-end run happens once per session (fixture `ci_run`) in a temp working directory; the
rerun checks are dry runs (`-n`) against that completed run with changed config files.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from myjepa import report

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("OMP_NUM_THREADS", "2")
    e["WANDB_MODE"] = "disabled"
    return e


def snakemake(*args: str, cwd: Path, config: Path | None = None, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run snakemake on this repository's workflow in `cwd`, with `config` on top of the demo default."""
    cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(cwd)]
    if config is not None:
        cmd += ["--configfile", str(ROOT / "config" / "config.yaml"), str(config)]
    proc = subprocess.run([*cmd, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake (dry) run: rule -> count."""
    counts: dict[str, int] = {}
    block = text.split("Job stats:", 1)
    if len(block) < 2:
        return counts
    for line in block[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def write_config(path: Path, base: Path | dict, **changes) -> Path:
    cfg = yaml.safe_load(base.read_text()) if isinstance(base, Path) else copy.deepcopy(base)
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ---- static checks -----------------------------------------------------------------------------


def test_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint", "--snakefile", str(SNAKEFILE)], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_snakefmt_check():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
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
    """Raw-data directories that look like PTB-XL and MIMIC-IV-ECG to a dry run (no records)."""
    ptbxl, mimic = tmp_path / "raw" / "ptb-xl", tmp_path / "raw" / "mimic-iv-ecg"
    ptbxl.mkdir(parents=True)
    mimic.mkdir(parents=True)
    (ptbxl / "ptbxl_database.csv").write_text("ecg_id\n")
    (ptbxl / "scp_statements.csv").write_text("code\n")
    (mimic / "record_list.csv").write_text("subject_id,study_id,path\n")
    return {"ptbxl": ptbxl, "mimic": mimic}


def real_config(tmp_path: Path, fake_raw: dict[str, Path], **changes) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "real.yaml").read_text())
    cfg["data"]["ptb_xl"]["raw"] = str(fake_raw["ptbxl"])
    cfg["data"]["mimic_iv_ecg"]["raw"] = str(fake_raw["mimic"])
    return write_config(tmp_path / "real.yaml", cfg, **changes)


def test_dry_run_real_config_job_counts(tmp_path, fake_raw):
    """Real data: K convert shards + merge, PTB-XL conversion, runs x seeds pretrainings, and every
    (encoder x task x protocol x seed) finetune, with one random-init baseline per architecture."""
    path = real_config(tmp_path, fake_raw)
    cfg = yaml.safe_load(path.read_text())
    proc = snakemake("-n", "--quiet", "rules", cwd=tmp_path, config=path)
    counts = job_counts(proc.stdout + proc.stderr)
    runs, p_seeds = cfg["pretrain"]["runs"], cfg["pretrain"]["seeds"]
    archs = {r["config"] for r in runs}
    n_enc = len(runs) * len(p_seeds) + len(archs)
    n_ft = n_enc * len(cfg["evaluate"]["tasks"]) * len(cfg["evaluate"]["protocols"]) * len(cfg["evaluate"]["seeds"])
    assert counts == {
        "convert_mimic_shard": cfg["convert"]["shards"],
        "merge_mimic": 1,
        "convert_ptbxl": 1,
        "pretrain": len(runs) * len(p_seeds),
        "finetune": n_ft,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }, proc.stdout
    assert "synth_ptbxl" not in counts and "synth_mimic" not in counts


def test_dry_run_real_config_commands(tmp_path, fake_raw):
    """The shell commands a real-data run would execute: shards, torchrun only for >1 GPU, init."""
    path = real_config(tmp_path, fake_raw, convert__shards=3)
    proc = snakemake("-n", "-p", cwd=tmp_path, config=path)
    out = proc.stdout
    for i in (1, 2, 3):
        assert f"--shard {i}/3" in out
    assert f"--src {fake_raw['mimic']}" in out and f"--src {fake_raw['ptbxl']}" in out
    assert "--data mimic-iv-ecg=results/data/mimic-iv-ecg.npy" in out
    assert "--data ptb-xl=results/data/ptb-xl.npy" in out  # the PTB-XL-only ablation run
    assert re.search(r"--init results/finetune/\S+/linear/s\d+/best_ckpt.pt", out)
    assert "torchrun --standalone --nproc_per_node=" in out  # the launcher's multi-GPU branch


def test_dry_run_demo_default(tmp_path):
    proc = snakemake("-n", "--quiet", "rules", cwd=tmp_path, config=ROOT / "config" / "config.yaml")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["synth_ptbxl"] == counts["synth_mimic"] == 1 and counts["pretrain"] == 1
    assert counts["finetune"] >= 4


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"evaluate__taks": ["rhythm"]}, "evaluate: unknown key 'taks' (did you mean 'tasks'?)"),
        ({"evaluate__tasks": ["rythm"]}, "evaluate.tasks.0: 'rythm' is not one of"),
        ({"convert__shards": "two"}, "convert.shards: 'two' is not of type 'integer'"),
        ({"pretrain__seeds": []}, "pretrain.seeds: [] should be non-empty"),
        ({"pretrain__runs": [{"name": "a", "set": {"dim": 128}}]}, "pretrain.runs[a].set changes the architecture (dim)"),
        ({"pretrain__runs": [{"name": "a", "datasets": {"ptbxl": 1.0}}]}, "pretrain.runs.0.datasets: 'ptbxl' is not one of"),
        ({"evaluate__protocols": [{"name": "ft", "config": "finetune_after_linear"}]}, "finetune_after_linear needs `init"),
        ({"data__ptb_xl__raw": "/no/such/dir"}, "data.ptb_xl.raw: /no/such/dir is not a directory"),
        ({"pretrain__runs": [{"name": "a", "config": "ViTM_mimic"}]}, "unknown config 'ViTM_mimic'"),
    ],
)
def test_config_errors_name_the_key(tmp_path, changes, message):
    path = write_config(tmp_path / "bad.yaml", ROOT / "config" / "ci.yaml", **changes)
    proc = snakemake("-n", cwd=tmp_path, config=path, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert message in text, text[-3000:]
    assert "Traceback" not in text


# ---- report code on fabricated results (fixtures for the report code only) ---------------------


def fabricate_finetune(root: Path, encoder: str, task: str, protocol: str, seed: int, auc: float, classes: list[str], rng: np.random.Generator) -> Path:
    out = root / "results" / "finetune" / encoder / task / protocol / f"s{seed}"
    out.mkdir(parents=True)
    n = 40
    targets = (rng.random((n, len(classes))) < 0.4).astype(np.float32)
    scores = np.clip(targets * auc + rng.normal(0, 0.4, targets.shape), 0, 1).astype(np.float32)
    np.savez(out / "predictions.npz", classes=np.array(classes), val_targets=targets, val_scores=scores, test_targets=targets, test_scores=scores)
    result = {
        "task": task, "protocol": protocol, "seed": seed, "encoder": f"/x/{encoder}.pt", "encoder_sha256": "ab" * 32, "config": {},
        "test_auc": auc, "test_auc_ci": [auc - 0.05, auc + 0.04], "val_best_auc": auc - 0.01,
        "classes": [{"name": c, "auc": (None if i == 0 and task == "form" else auc + 0.01 * i), "n_pos": 3 + i, "note": ("no positive test record" if i == 0 and task == "form" else "")} for i, c in enumerate(classes)],
        "n_train": 300, "n_val": 40, "n_test": n, "steps": 100, "wall_time_s": 12.5, "device": "cpu",
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
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "train/loss": 1 / (s + 1), "train/pred_loss": 0.5 / (s + 1), "train/sigreg_loss": 0.1, "train/lr": 1e-3}) + "\n" for s in range(0, 50, 10)))
    encoders = {
        "tiny-s42": {"kind": "pretrained", "group": "tiny", "baseline": "random-tiny", "model": "tiny", "pretrain_seed": 42},
        "tiny-s43": {"kind": "pretrained", "group": "tiny", "baseline": "random-tiny", "model": "tiny", "pretrain_seed": 43},
        "random-tiny": {"kind": "random", "group": "random-tiny", "baseline": None, "model": "tiny", "pretrain_seed": None},
    }
    return {"paths": paths, "aucs": aucs, "encoders": encoders, "run": run / "encoder.pt", "root": tmp_path}


def run_report(fab, image: str = "") -> dict[str, Path]:
    root = fab["root"]
    out = {k: root / "results" / f"{k}.csv" for k in ("auc", "auc_summary", "auc_per_class")}
    report.main(["aggregate", "--encoders", json.dumps(fab["encoders"]), "--out", str(out["auc"]), "--summary", str(out["auc_summary"]), "--per-class", str(out["auc_per_class"]), *map(str, fab["paths"])])
    out["html"] = root / "results" / "report.html"
    config = {"evaluate": {"tasks": ["rhythm", "form"]}}
    report.main(["html", "--auc", str(out["auc"]), "--summary", str(out["auc_summary"]), "--per-class", str(out["auc_per_class"]), "--pretrain-runs", str(fab["run"]), "--config-json", json.dumps(config), "--image", image, "--out", str(out["html"])])
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
    data = json.loads(html.unescape(re.search(r'<script type="application/json" id="auc-data">(.*?)</script>', page, re.S).group(1)))
    assert {(j["encoder"], j["task"], j["seed"]): j["test_auc"] for j in data["jobs"]} == fabricated["aucs"]
    for (encoder, task, seed), auc in fabricated["aucs"].items():
        assert f"<td>{auc:.3f}</td>" in page
    tiny_rhythm = summary.loc[("rhythm", "linear", "tiny")]
    assert f"{tiny_rhythm.auc_mean:.3f} ± {tiny_rhythm.auc_std:.3f}" in page
    assert f"{tiny_rhythm.delta_vs_baseline:+.3f}" in page


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
    import hashlib

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
