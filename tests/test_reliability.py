"""Hostile conditions for conversion and the files it reads and writes: early stops in a loop, full
disks, stop signals, dead workers, read-only folders, failed renames, damaged stats and checkpoints.

Disk-full cases run the real command on a small tmpfs mounted in a private user and mount namespace
(`unshare -rm`), and are skipped with the reason where the machine does not allow one.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_ecg, write_dump
from data_fixtures import mimic_tree

import myjepa.ingest.output as output
from myjepa.dumps import open_dump
from myjepa.errors import UserError
from myjepa.ingest.merge import merge
from myjepa.ingest.writer import convert
from myjepa.utils import checkpoint

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "ptb-xl-sample"


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
    """Defect 0: the first chunk breaks the skip limit, so every run stops the pool early; 100 runs in a row."""
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
        for i in range(100):
            try:
                writer.convert("mimic-iv-ecg", sys.argv[1], sys.argv[2], workers=2, progress=False)
            except UserError as e:
                assert "at least 2 of 8 records skipped" in str(e), e
        print("stopped 100 times")
        """,
        str(root),
        str(tmp_path / "out" / "d.npy"),
        timeout=120,
    )
    assert proc.returncode == 0 and "stopped 100 times" in proc.stdout, proc.stderr
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
    import myjepa.ingest.record as record
    import myjepa.ingest.writer as writer
    from myjepa.errors import run_cli
    from myjepa.ingest.convert import main
    writer.CHUNK = 2
    read = record.read_wfdb
    def slow_read(path, *args, **kwargs):
        if os.environ.get("DIE_AT") and path.endswith(os.environ["DIE_AT"]):
            os.kill(os.getpid(), signal.SIGBUS)
        time.sleep(0.1)
        return read(path, *args, **kwargs)
    record.read_wfdb = slow_read
    run_cli(main, sys.argv[1:])
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_mid_conversion_removes_the_temporary_files(tree, tmp_path, workers):
    """Defect 3: a SLURM time limit (SIGTERM) used to leave the hidden full-size .NAME.npy.tmpPID."""
    out = tmp_path / "out"
    proc = start_slow_conversion(out, tree, workers)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr == "myjepa: stopped by SIGTERM; unfinished output removed\n"
    assert leftovers(out) == []


def start_slow_conversion(out: Path, tree: Path, workers: str) -> subprocess.Popen:
    """A conversion of `tree` to `out`/d.npy at 0.1 s a record, returned once its temporary .npy exists."""
    argv = [*CONVERT[4:], "--src", str(tree), "--out", str(out / "d.npy"), "--workers", workers]
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_CONVERT), *argv], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.glob(".d.npy.tmp*"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few records in (24 records take 2.4 s)
    return proc


def test_after_kill_9_the_next_conversion_removes_the_orphaned_temporary(tree, tmp_path):
    """SIGKILL runs no handler: the temporary stays until the next conversion to the same --out."""
    out = tmp_path / "out"
    proc = start_slow_conversion(out, tree, "1")
    proc.kill()
    proc.communicate(timeout=60)
    assert [p.name.rpartition(".tmp")[0] for p in out.iterdir()] == [".d.npy"]
    convert("mimic-iv-ecg", tree, out / "d.npy", progress=False)
    assert leftovers(out) == ["d.index.csv", "d.npy", "d.stats.json"]


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


def read_only(folder: Path) -> str:
    """Shell commands that make `folder` read-only inside the namespace (chmod does not stop root)."""
    return f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"


def test_a_read_only_output_folder_is_one_line(tree, tmp_path):
    """Defect 5: was 71 lines of traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = in_namespace(read_only(ro), "true", *CONVERT, "--src", str(tree), "--out", f"{ro}/d.npy")
    assert proc.returncode == 2
    assert proc.stderr == f"myjepa: error: {ro}/d.npy: cannot write 2.9 MB in {ro}: Read-only file system\n"


def test_out_must_be_a_file_path(tree, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=rf"--out {tmp_path}: is a folder; give a file path"):
        convert("mimic-iv-ecg", tree, tmp_path, progress=False)
    with pytest.raises(UserError, match=rf"--out {tmp_path}/file/sub/d.npy: {tmp_path}/file is a file, not a folder"):
        convert("mimic-iv-ecg", tree, tmp_path / "file" / "sub" / "d.npy", progress=False)
    assert leftovers(tmp_path) == ["file"]


def test_a_failed_rename_never_mixes_old_and_new_sidecars(tree, tmp_path, monkeypatch):
    """Defect 9: the new .npy beside the old stats.json. stats.json goes first and comes back last; a rename
    that fails takes the whole set, so no reader sees a mixed dump."""
    out = tmp_path / "d.npy"
    convert("mimic-iv-ecg", tree, out, shard=(1, 2), progress=False)  # the old dump: 12 records
    rename = os.replace

    def failing(src, dst):
        if str(dst).endswith(".index.csv"):
            raise OSError(28, "No space left on device", str(dst))
        rename(src, dst)

    monkeypatch.setattr(output.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        convert("mimic-iv-ecg", tree, out, progress=False)
    assert leftovers(tmp_path) == []  # the new .npy had been renamed: removed with the rest
    monkeypatch.setattr(output.os, "replace", rename)
    convert("mimic-iv-ecg", tree, out, progress=False)
    assert leftovers(tmp_path) == ["d.index.csv", "d.npy", "d.stats.json"]
    assert open_dump(out).stats["count"] == 24 and len(open_dump(out).index) == 24


@pytest.mark.parametrize(
    "stats, message",
    [
        ({"mean": "zero"}, "key 'mean' must be a list of 12 values (one per lead), got 'zero'"),
        ({"std": [1.0] * 11}, "key 'std' must be a list of 12 values"),
        ({"std": [1.0] * 11 + [None]}, "key 'std' has None for lead V6; expected a finite number"),
        ({"mean": [float("nan")] + [0.0] * 11}, "key 'mean' has nan for lead I"),
        ({"std": [-1.0] + [1.0] * 11}, "key 'std' has -1.0 for lead I"),
        ({"fs": "fast"}, "key 'fs': 'fast' is not a number of Hz"),
        ({"fs": float("nan")}, "key 'fs': nan Hz is not a sampling rate (between 1 and 100000 Hz)"),
        ({"fs": float("inf")}, "key 'fs': inf Hz is not a sampling rate"),
        ({"fs": 0}, "key 'fs': 0 Hz is not a sampling rate"),
    ],
)
def test_malformed_dump_stats_are_named(tmp_path, stats, message):
    path = write_dump(tmp_path / "d.npy", synthetic_ecg(2, length=100), stats=stats)
    with pytest.raises(UserError, match=re.escape(f"{tmp_path}/d.stats.json: {message}")):
        open_dump(path)


def test_a_dump_of_integers_is_refused(tmp_path):
    """Integers (ADC counts) would be read as millivolts, hundreds of times too large."""
    path = write_dump(tmp_path / "d.npy", synthetic_ecg(2, length=100))
    np.save(path, (np.load(path) * 1000).astype(np.int16))
    with pytest.raises(UserError, match=rf"^{path}: holds int16 values; a dump holds millivolts as floats"):
        open_dump(path)


def test_a_text_file_given_as_a_dump_is_named_as_such(tmp_path):
    path = write_dump(tmp_path / "d.npy", synthetic_ecg(2, length=100))
    path.write_text("subject_id,study_id\n1,2\n")
    with pytest.raises(UserError, match=rf"^{path}: not a .npy dump \(no .npy header; a text file\)$"):
        open_dump(path)
    with pytest.raises(UserError, match="a text file"):
        merge([path], tmp_path / "m.npy")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, r"refused: it would build posix.system, which a myjepa checkpoint never holds and which can run code"),
        (b"", r"the file is empty \(0 bytes\)"),
        (b"step: 3\n", r"not written by torch.save \(a text file\)"),
        ("truncated", r"damaged or truncated \(RuntimeError: PytorchStreamReader failed reading zip archive"),
    ],
)
def test_checkpoint_load_errors_give_a_reason_and_never_torch_advice(tmp_path, monkeypatch, content, reason):
    """Defect 8: torch's "weights_only=False will likely succeed" is how a pickle payload runs."""
    path = tmp_path / "last_ckpt.pt"
    if content is None or content == "truncated":
        torch.save({"model": {"w": torch.zeros(3)}, "x": _Payload()}, path)
        if content == "truncated":
            path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        checkpoint.load(path)
    assert re.fullmatch(rf"{path}: cannot load as a checkpoint: {reason}.*", str(info.value))
    assert "weights_only" not in str(info.value) and not (tmp_path / "pwned").exists()


def ptbxl_tree(root: Path, n: int) -> pd.DataFrame:
    """The first `n` records of the PTB-XL sample (100 Hz files) in a PTB-XL layout at `root`."""
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv").head(n)
    db.to_csv(root / "ptbxl_database.csv", index=False)
    for rel in db["filename_lr"]:
        for ext in (".hea", ".dat"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / (rel + ext)).write_bytes((SAMPLE / (rel + ext)).read_bytes())
    return db


def test_header_rates_and_lead_names_are_checked(tmp_path):
    """Defect 7: a header claiming 50 Hz under --source-rate 100 was resampled silently; a lead named twice
    used the first signal of that name."""
    db = ptbxl_tree(tmp_path, 4)
    hea = [tmp_path / (rel + ".hea") for rel in db["filename_lr"]]
    lines = hea[0].read_text().splitlines(keepends=True)
    hea[0].write_text(lines[0].replace(" 12 100 1000", " 12 50 1000") + "".join(lines[1:]))
    lines = hea[1].read_text().splitlines(keepends=True)
    hea[1].write_text("".join(lines[:2]) + lines[2].replace(" II\n", " I\n") + "".join(lines[3:]))
    stats = convert("ptb-xl", tmp_path, tmp_path / "d.npy", source_rate=100, fs=100, max_skip_fraction=0.5)
    reasons = {s["file"]: s["reason"] for s in stats["skipped"]}
    assert reasons == {
        db["filename_lr"][0]: "header says 50 Hz but --source-rate is 100",
        db["filename_lr"][1]: "lead I appears twice (signals 1 and 2 of the header)",
    }
    assert stats["count"] == 2


def test_a_folder_where_a_file_belongs_is_named_a_folder(tmp_path):
    """A folder given where a file belongs once read as "not found" (`--labels FOLDER`, issue 23)."""
    from myjepa.ingest.convert import main as convert_main
    from myjepa.pretrain.train import main as pretrain_main
    from myjepa.release.export import main as export_main

    folder = tmp_path / "x.yaml"  # a folder, named as the file it stands in for
    folder.mkdir()
    dump = write_dump(tmp_path / "d.npy", synthetic_ecg(2, length=100))
    cases = [
        (lambda: open_dump(folder), f"dump {folder}: a folder, not a file"),
        (lambda: pretrain_main(["--data", f"a={dump}", "--out", str(tmp_path / "o"), "--config", str(folder)]),
         f"config file {folder}: a folder, not a file"),
        (lambda: export_main(["--encoder", str(folder), "--out", str(tmp_path / "r")]),
         f"--encoder {folder}: a folder, not a file"),
        (lambda: convert_main(["merge", str(folder), "--out", str(tmp_path / "m.npy")]),
         f"merge: {folder}: a folder, not a file"),
        (lambda: checkpoint.load(folder), f"checkpoint {folder}: a folder, not a file"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(UserError, match=f"^{re.escape(message)}"):
            call()
