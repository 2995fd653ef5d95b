"""Hostile conditions for pretraining and finetuning: a full disk at a checkpoint, read-only output
folders, overrides that make no sense. (Conversion and the files it writes: test_reliability.py.)"""

from __future__ import annotations

import re
import sys

import pytest
import torch
from test_finetune import QUICK, data  # noqa: F401 (the module-scoped PTB-XL-like fixture)
from test_pretrain import FAST, run
from test_reliability import in_namespace, read_only

from myjepa.errors import UserError

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(small_dump, tmp_path):
    """Pretraining into a tmpfs with room for the checkpoints of step 4 but not for a third one beside them: the
    save at step 8 fails, the previous checkpoint is kept and loads, and no temporary file is left."""
    sets = ["checkpoint_interval=4", "log_interval=4", "probe_interval=4"]
    reference = tmp_path / "reference"  # the sizes of this run's files
    assert run(small_dump, reference, *sets, steps=4) == 0
    argv = ["-m", "myjepa", "pretrain", "--data", f"mimic-iv-ecg={small_dump}", "--config", "tiny", "--set", *FAST]
    argv += [*sets, "steps=8"]
    ckpt, encoder = (reference / "last_ckpt.pt").stat().st_size, (reference / "encoder.pt").stat().st_size
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / "run"
    show = f"import torch; print('step', torch.load('{out}/last_ckpt.pt', weights_only=True)['step'])"
    proc = in_namespace(
        f"mount -t tmpfs -o size={int(2.5 * ckpt) + encoder} tmpfs {mnt}",
        f"ls -A {out}; {sys.executable} -c \"{show}\"",
        sys.executable, *argv, "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"myjepa: error: {out}/(last|best)_ckpt.pt: cannot save \((No space left on device|the write failed), "
        rf"[\d.]+ MB free in {out}\); the previous \1_ckpt.pt is kept",
        error,
    ), proc.stderr
    listing = proc.stdout.splitlines()
    assert listing[-1] == "step 4", proc.stdout  # last_ckpt.pt of step 4 loads
    assert "last_ckpt.pt" in listing and not [f for f in listing if ".tmp" in f]


@pytest.mark.parametrize(
    "override, message",
    [
        ("patch_size=0", "patch_size must be positive, got 0"),
        ("lr=.nan", "override: key 'lr': expected a finite number, got nan"),
        ("lr=.inf", "override: key 'lr': expected a finite number, got inf"),
        ("warmup_steps=-5", "warmup_steps must be 0 or more, got -5"),
        ("min_lr=0.1", "need 0 <= min_lr <= lr, got min_lr 0.1, lr 0.001"),
        ("fs=0", "fs: 0 Hz is not a sampling rate (between 1 and 100000 Hz)"),
        ("fs=1000000", "fs: 1e+06 Hz is not a sampling rate (between 1 and 100000 Hz)"),
    ],
)
def test_senseless_overrides_are_config_errors(small_dump, tmp_path, override, message):
    """Defects 5 and 7: patch_size=0 was a ZeroDivisionError traceback, lr=.nan and warmup_steps=-5 ran."""
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        run(small_dump, tmp_path / "run", override)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA: --device cuda is usable")
def test_pretrain_on_a_device_this_torch_cannot_use_is_one_line(small_dump, tmp_path):
    """A CPU-only torch asked for --device cuda once ended in an AssertionError traceback."""
    with pytest.raises(UserError, match=r"^--device cuda: not usable here \(no CUDA device"):
        run(small_dump, tmp_path / "run", "--device", "cuda", steps=1)
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
