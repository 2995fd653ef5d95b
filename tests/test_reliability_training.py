"""Hostile conditions for pretraining and finetuning: a full disk at a checkpoint, read-only output
folders, overrides that make no sense. (Conversion and the files it writes: test_reliability.py.)"""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

import pytest
import torch
from test_finetune import QUICK, data  # noqa: F401 (the module-scoped PTB-XL-like fixture)
from test_pretrain import run
from test_reliability import in_namespace, read_only

from myjepa.errors import UserError
from myjepa.utils import checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

# what torch.save really raises on a full tmpfs (checked with `unshare -rm` and a 1 MB tmpfs)
TORCH_FULL_DISK = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), TORCH_FULL_DISK])
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(small_dump, tmp_path, monkeypatch, error):
    save = torch.save
    lasts = []

    def fills_the_disk(obj, path):  # the second last_ckpt.pt (step 8) finds the disk full
        save(obj, path)  # with the partial file a full disk leaves
        if Path(path).name.startswith(".last_ckpt.pt.tmp"):
            lasts.append(path)
            if len(lasts) == 2:
                raise error

    monkeypatch.setattr(checkpoint.torch, "save", fills_the_disk)
    out = tmp_path / "run"
    with pytest.raises(UserError) as info:
        run(small_dump, out, "checkpoint_interval=4", "log_interval=4", "probe_interval=4", steps=8)
    why = "No space left on device" if isinstance(error, OSError) else "the write failed"
    assert re.fullmatch(
        rf"{out}/last_ckpt.pt: cannot save \({why}, [\d.]+ MB free in {out}\); the previous last_ckpt.pt is kept",
        str(info.value),
    )
    assert torch.load(out / "last_ckpt.pt", weights_only=True)["step"] == 4
    assert not list(out.glob(".*tmp*"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("patch_size=0", "patch_size must be positive, got 0"),
        ("lr=.nan", "override: key 'lr': expected a finite number, got nan"),
        ("lr=.inf", "override: key 'lr': expected a finite number, got inf"),
        ("warmup_steps=-5", "warmup_steps must be 0 or more, got -5"),
        ("min_lr=0.1", "need 0 <= min_lr <= lr, got min_lr 0.1, lr 0.001"),
    ],
)
def test_senseless_overrides_are_config_errors(small_dump, tmp_path, override, message):
    """Defects 5 and 7: patch_size=0 was a ZeroDivisionError traceback, lr=.nan and warmup_steps=-5 ran."""
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        run(small_dump, tmp_path / "run", override)
    assert not (tmp_path / "run").exists()


def test_pretrain_into_a_read_only_folder_is_one_line(small_dump, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    cmd = [sys.executable, "-m", "myjepa", "pretrain", "--data", f"mimic-iv-ecg={small_dump}", "--out", f"{ro}/run"]
    proc = in_namespace(read_only(ro), "true", *cmd, "--config", "tiny", "--set", "steps=1")
    assert (proc.returncode, proc.stderr) == (2, f"myjepa: error: {ro}/run: Read-only file system\n")


def test_finetune_into_a_read_only_folder_is_one_line(data, tmp_path):  # noqa: F811
    ro = tmp_path / "ro"
    ro.mkdir()
    cmd = [sys.executable, "-m", "myjepa", "finetune", "--data-dir", str(data["dir"]), "--dump", str(data["dump"])]
    cmd += ["--encoder", str(data["encoder"]), "--task", "rhythm", "--config", "linear", "--out", f"{ro}/ft", *QUICK]
    proc = in_namespace(read_only(ro), "true", *cmd)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"myjepa: error: {ro}/ft: Read-only file system"
    assert "Traceback" not in proc.stderr
