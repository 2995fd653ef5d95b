"""Nothing the user gave is ever overwritten: every command that writes a user-named output refuses, before any
work, an output that is one of its inputs (however the path is spelled), and replaces an existing output only
with --overwrite. `myjepa embed` and `myjepa export`: test_release.py."""

import os
from pathlib import Path

import pytest
from conftest import synthetic_ecg, write_dump
from data_fixtures import mimic_tree

from myjepa import report
from myjepa.cluster.profile import write_profile
from myjepa.dumps import dump_files, open_dump
from myjepa.errors import UserError
from myjepa.evaluate import finetune
from myjepa.ingest.convert import main as convert
from myjepa.pretrain import train as pretrain


def contents(paths) -> dict[Path, bytes]:
    return {Path(p): Path(p).read_bytes() for p in paths}


def test_convert_replaces_a_dump_only_with_overwrite(tmp_path):
    mimic_tree(tmp_path / "raw", 3)
    out = write_dump(tmp_path / "old.npy", synthetic_ecg(1, seed=2))
    before = contents(dump_files(out))
    argv = ["mimic-iv-ecg", "--src", str(tmp_path / "raw"), "--out", str(out), "--quiet"]
    with pytest.raises(UserError, match=r"^--out .*old\.npy exists; pass --overwrite to replace it$"):
        convert(argv)
    assert contents(dump_files(out)) == before
    assert convert([*argv, "--overwrite"]) == 0 and len(open_dump(out)) == 3


def test_convert_never_replaces_a_file_of_its_archive(tmp_path):
    raw = tmp_path / "ptb-xl"
    raw.mkdir()
    (raw / "ptbxl_database.csv").write_text("ecg_id,strat_fold,scp_codes\n")
    argv = ["ptb-xl", "--src", str(raw), "--out", str(raw / "ptbxl_database.csv"), "--overwrite"]
    with pytest.raises(UserError, match=r"^--out .*ptbxl_database\.csv is the input --src .*; an output never"):
        convert(argv)
    assert (raw / "ptbxl_database.csv").read_text() == "ecg_id,strat_fold,scp_codes\n"


@pytest.mark.parametrize("spelling", ["same path", "hard link", "symlink"])
def test_merge_never_replaces_a_part(tmp_path, spelling):
    parts = [write_dump(tmp_path / f"part-{k}.npy", synthetic_ecg(2, seed=k)) for k in (1, 2)]
    before = contents(f for part in parts for f in dump_files(part))
    out = {"same path": parts[0], "hard link": tmp_path / "hard.npy", "symlink": tmp_path / "link.npy"}[spelling]
    if spelling == "hard link":
        os.link(parts[1], out)
    elif spelling == "symlink":
        out.symlink_to(parts[1])
    with pytest.raises(UserError, match=r"^--out .* is the input part .*part-\d\.npy; an output never replaces"):
        convert(["merge", *map(str, parts), "--out", str(out), "--overwrite"])
    assert contents(f for part in parts for f in dump_files(part)) == before


def test_finetune_never_writes_over_its_init_and_replaces_a_run_only_with_overwrite(tmp_path):
    linear = tmp_path / "linear"
    linear.mkdir()
    (linear / "best_ckpt.pt").write_bytes(b"the linear probe")
    argv = ["--labels", str(tmp_path / "labels.csv"), "--dump", str(tmp_path / "d.npy"), "--encoder", "tiny"]
    init = ["--config", "finetune_after_linear", "--init", str(linear / "best_ckpt.pt"), "--out", str(linear)]
    with pytest.raises(UserError, match=r"^--out .*linear: best_ckpt\.pt is the input --init .*best_ckpt\.pt; an"):
        finetune.main([*argv, *init, "--overwrite"])
    assert (linear / "best_ckpt.pt").read_bytes() == b"the linear probe"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")
    with pytest.raises(UserError, match=r"^--out .*run: results\.json exists; pass --overwrite to replace it$"):
        finetune.main([*argv, "--config", "linear", "--out", str(tmp_path / "run")])


def test_pretrain_never_writes_its_run_folder_over_an_input(tmp_path):
    dump = write_dump(tmp_path / "d.npy", synthetic_ecg(4, seed=1))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((Path(pretrain.__file__).parent / "configs" / "tiny.yaml").read_text())
    before = (run / "config.yaml").read_text()
    argv = ["--data", f"mimic-iv-ecg={dump}", "--config", str(run / "config.yaml"), "--out", str(run)]
    with pytest.raises(UserError, match=r"^--out .*run: config\.yaml is the input --config .*config\.yaml; an"):
        pretrain.main(argv)
    assert (run / "config.yaml").read_text() == before and sorted(os.listdir(run)) == ["config.yaml"]


def test_report_never_writes_over_its_inputs_and_replaces_only_with_overwrite(tmp_path):
    results = tmp_path / "results.json"
    results.write_text("{}")
    tables = ["--summary", str(tmp_path / "s.csv"), "--per-class", str(tmp_path / "c.csv")]
    with pytest.raises(UserError, match=r"^--out .*results\.json is the input results .*results\.json; an output"):
        report.main(["aggregate", "--out", str(results), *tables, str(results), "--overwrite"])
    with pytest.raises(UserError, match=r"^--per-class .*s\.csv and --summary .*s\.csv are one file"):
        report.main(["aggregate", "--out", str(tmp_path / "a.csv"), *tables[:3], str(tmp_path / "s.csv"), str(results)])
    assert results.read_text() == "{}" and sorted(os.listdir(tmp_path)) == ["results.json"]
    auc = tmp_path / "auc.csv"
    auc.write_text("kept\n")
    html = ["html", "--auc", str(auc), "--summary", str(auc), "--per-class", str(auc)]
    with pytest.raises(UserError, match=r"^--out .*auc\.csv is the input --auc .*auc\.csv; an output never"):
        report.main([*html, "--out", str(auc), "--overwrite"])
    (tmp_path / "report.html").write_text("an earlier report")
    with pytest.raises(UserError, match=r"^--out .*report\.html exists; pass --overwrite to replace it$"):
        report.main([*html, "--out", str(tmp_path / "report.html")])
    assert auc.read_text() == "kept\n" and (tmp_path / "report.html").read_text() == "an earlier report"


def test_slurm_profile_never_writes_over_a_workflow_config(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("pretrain: {}\n")
    with pytest.raises(UserError, match=r"config\.yaml is the input --configfile .*config\.yaml; an output never"):
        write_profile(tmp_path, "executor: slurm\n", True, [("--configfile", Path(os.path.relpath(config)))])
    assert config.read_text() == "pretrain: {}\n"
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]
