"""Conversion under hostile conditions: early stops in a loop, full disks, stop signals, dead workers.

Disk-full cases run the real command on a small tmpfs mounted in a private user and mount namespace
(`unshare -rm`), and are skipped with the reason where the machine does not allow one.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from data_fixtures import mimic_tree

import myjepa.ingest.output as output
from myjepa.errors import UserError
from myjepa.ingest.writer import convert

REPO = Path(__file__).resolve().parents[1]


def python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter (so a hang fails the test at `timeout` instead of stalling CI)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, timeout=timeout
    )


@functools.cache
def namespace_problem() -> str | None:
    """Why a private mount namespace with a tmpfs cannot be made here, or None when it can."""
    try:
        proc = subprocess.run(
            ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        return "no unshare(1) on this machine"
    return None if proc.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {proc.stderr.strip()}"


def in_namespace(setup: str, after: str, *cmd: str) -> subprocess.CompletedProcess:
    """Run `cmd` between the shell commands `setup` (mounts) and `after` in a private user and mount
    namespace; the exit status is `cmd`'s."""
    if namespace_problem():
        pytest.skip(namespace_problem())
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'{setup} || exit 99; "$@"; rc=$?; {after}; exit $rc', "sh", *cmd],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic")
    mimic_tree(root, 24)
    return root


CONVERT = [sys.executable, "-m", "myjepa", "convert", "mimic-iv-ecg", "--quiet"]


def test_early_stops_in_a_loop_never_hang(tmp_path):
    """Defect 0: the first chunk breaks the skip limit, so every run stops the pool early; 40 runs in a row."""
    root = tmp_path / "bad"
    rl = mimic_tree(root, 8)
    for rel in rl["path"][:2]:
        (root / rel).with_suffix(".dat").unlink()
    proc = python(
        """
        import sys
        import myjepa.ingest.writer as writer
        from myjepa.errors import UserError
        writer.CHUNK = 2
        for i in range(40):
            try:
                writer.convert("mimic-iv-ecg", sys.argv[1], sys.argv[2], workers=2, progress=False)
            except UserError as e:
                assert "at least 2 of 8 records skipped" in str(e), e
        print("stopped 40 times")
        """,
        str(root),
        str(tmp_path / "out" / "d.npy"),
        timeout=240,
    )
    assert proc.returncode == 0 and "stopped 40 times" in proc.stdout, proc.stderr
    assert leftovers(tmp_path / "out") == []


def test_free_space_is_checked_before_writing(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(output.shutil, "disk_usage", lambda path: _usage(1e6))
    with pytest.raises(UserError, match=rf"{tmp_path}/d.npy: needs 2.9 MB but {tmp_path} has only 1.0 MB free"):
        convert("mimic-iv-ecg", tree, tmp_path / "d.npy", progress=False)
    assert leftovers(tmp_path) == []


def _usage(free: float):
    return type("Usage", (), {"free": int(free)})()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_full_tmpfs_is_one_line_and_leaves_nothing(tree, tmp_path, workers):
    """Defect 1: was `Bus error` (exit 135) with --workers 1, a hang with 2, and a full-size temporary file."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = [*CONVERT, "--src", str(tree), "--out", f"{mnt}/d.npy", "--workers", workers]
    proc = in_namespace(f"mount -t tmpfs -o size=1m tmpfs {mnt}", f"ls -A {mnt}", *cmd)
    assert proc.returncode == 2
    assert proc.stderr == f"myjepa: error: {mnt}/d.npy: needs 2.9 MB but {mnt} has only 1.0 MB free\n"
    assert "tmp" not in proc.stdout


def test_a_file_size_limit_is_one_line(tree, tmp_path):
    """RLIMIT_FSIZE (EFBIG) stands for a quota: the failure to write comes before any record is converted."""
    proc = python(
        """
        import resource, sys
        from myjepa.errors import run_cli
        from myjepa.ingest.convert import main
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        run_cli(main, sys.argv[1:])
        """,
        *CONVERT[4:],
        "--src",
        str(tree),
        "--out",
        str(tmp_path / "d.npy"),
    )
    assert proc.returncode == 2
    assert proc.stderr == f"myjepa: error: {tmp_path}/d.npy: cannot write 2.9 MB in {tmp_path}: File too large\n"
    assert leftovers(tmp_path) == []


SLOW_CONVERT = """
    import os, signal, sys, time
    import myjepa.ingest.writer as writer
    from myjepa.errors import run_cli
    from myjepa.ingest.convert import main
    writer.CHUNK = 2
    load = writer.load_ecg
    def slow_load(path, *args, **kwargs):
        if os.environ.get("DIE_AT") and path.endswith(os.environ["DIE_AT"]):
            os.kill(os.getpid(), signal.SIGBUS)
        time.sleep(0.1)
        return load(path, *args, **kwargs)
    writer.load_ecg = slow_load
    run_cli(main, sys.argv[1:])
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_mid_conversion_removes_the_temporary_files(tree, tmp_path, workers):
    """Defect 3: a SLURM time limit (SIGTERM) used to leave the hidden full-size .NAME.npy.tmpPID."""
    out = tmp_path / "out"
    argv = [*CONVERT[4:], "--src", str(tree), "--out", str(out / "d.npy"), "--workers", workers]
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_CONVERT), *argv], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.glob(".d.npy.tmp*"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few records in (24 records take 2.4 s)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr == "myjepa: stopped by SIGTERM; unfinished output removed\n"
    assert leftovers(out) == []


def test_a_dead_worker_is_an_error_not_a_hang(tree, tmp_path):
    """A worker killed by SIGBUS (or the OOM killer) used to lose its task and leave the parent waiting."""
    out = tmp_path / "out"
    rel = next((tree / "files").rglob("*.hea")).with_suffix("").name
    argv = [*CONVERT[4:], "--src", str(tree), "--out", str(out / "d.npy"), "--workers", "2"]
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SLOW_CONVERT), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DIE_AT": rel},
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "myjepa: error: a conversion worker died (killed, out of memory, or a bus error writing the output);"
        " no dump written\n"
    )
    assert leftovers(out) == []
