"""Atomic file output: write under a temporary name in the same folder, rename when complete."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from myjepa.errors import UserError, stop_on_signals


def tmp_prefix(path: Path) -> str:
    """`.NAME.tmp`, the start of the temporary names of `path`; NAME is cut to leave room for the dot and a
    process id within the 255 bytes a file name may have, so that a long but valid `path` still gets one."""
    return f".{os.fsdecode(os.fsencode(path.name)[:240])}.tmp"


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling of `path` (same folder, so the final rename is atomic)."""
    p = Path(path)
    return p.with_name(f"{tmp_prefix(p)}{os.getpid()}")


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of `path` that processes no longer running on this machine left behind:
    a process killed with SIGKILL (or by the OOM killer) runs no cleanup."""
    for tmp in path.parent.glob(f"{glob.escape(tmp_prefix(path))}*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except PermissionError:  # alive, another user's
                pass


def check_file_path(path: Path, option: str) -> None:
    """`path` can become a file: it is not a folder, and no folder above it is a file (found now, not
    after hours of work when the final rename fails)."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is a file, not a folder")
            return


def not_a_file(path: Path) -> str:
    """Why a file the user named cannot be read: it is a folder, or it is not there (a folder given where a
    file belongs once read as "not found")."""
    return "a folder, not a file" if path.is_dir() else "not found"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file however either is spelled: relative or absolute, with `./` or `..`, through
    a symbolic link, or as a hard link (the same inode); for paths not there yet, the same place once resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return os.path.realpath(a) == os.path.realpath(b)


def outputs_of(option: str, out: str | os.PathLike, files: Iterable[Path] | None = None) -> list[tuple[str, Path]]:
    """The files `option out` writes, each with how a message names it: `out` itself when `files` is None,
    else `files` (its sidecars, or the files of a folder)."""
    out = Path(out)
    if files is None:
        return [(f"{option} {out}", out)]
    return [(f"{option} {out}" if f == out else f"{option} {out}: {f.name}", f) for f in files]


def check_outputs(outputs: Sequence[tuple[str, Path]], inputs: Iterable[tuple[str, Path]], overwrite: bool) -> None:
    """Refuse, before any work, to write `outputs` (`outputs_of`) when one of them is one of the `inputs`
    ((option, path) pairs), which nothing allows, or is another output, or already exists without
    `overwrite`: replacing a file is the user's deliberate choice only."""
    inputs = list(inputs)
    for i, (name, file) in enumerate(outputs):
        for option, path in inputs:
            if same_file(file, path):
                raise UserError(f"{name} is the input {option} {path}; an output never replaces an input")
        for other, other_file in outputs[:i]:
            if same_file(file, other_file):
                raise UserError(f"{name} and {other} are one file; give each output its own path")
    existing = [name for name, file in outputs if os.path.lexists(file)]
    if existing and not overwrite:
        raise UserError(f"{existing[0]} exists; pass --overwrite to replace it")


def umask() -> int:
    """The process's umask (Linux reports it in /proc; elsewhere it is set and put back, which no thread sees
    between the two calls that does not create a file in that instant)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: Path) -> None:
    """Give a written file the permissions a file created by `open` gets (read-write as the umask allows):
    some writers (safetensors) create private files, which colleagues sharing a result cannot read."""
    mode = 0o666 & ~umask()
    if stat.S_IMODE(tmp.stat().st_mode) != mode:
        tmp.chmod(mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it to `path` on success (with the permissions the umask
    gives), delete it on failure. A failure names `path`, never the hidden temporary file."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = tmp_path(final)
    try:
        yield tmp
        publish(tmp)
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):  # on a read-only disk a missing file is EROFS
            tmp.unlink()
        name_the_output(e, {tmp: final})
        raise


@contextlib.contextmanager
def run_outputs(out: Path, files: Iterable[Path], scratch: Path) -> Iterator[Path]:
    """Around a run that writes `files` into the folder `out` and yields `scratch`, a folder for its
    temporary files: `scratch` goes in any case; on an error or a stop signal (SIGTERM from a time
    limit, Ctrl-C) `files` go too, and `out` if the run made it and it is left empty. A failed run
    leaves nothing that looks like a result, nor a file that makes running it again ask for --overwrite."""
    made = not out.exists()
    try:
        with stop_on_signals():
            yield scratch
    except BaseException:
        for file in files:
            with contextlib.suppress(OSError):
                file.unlink()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if made:
            with contextlib.suppress(OSError):  # not empty: a result, or what the user or wandb put there
                out.rmdir()


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
"""Errors only a write raises: one that names no file (numpy's memmap, pandas) is about the output written."""


def name_the_output(error: BaseException, finals: dict[Path, Path]) -> None:
    """An OSError about a temporary file (a key of `finals`), or a write error that names no file, names the
    output instead: the user gave that name, the temporary one would puzzle them."""
    if not isinstance(error, OSError):
        return
    if error.filename is not None and Path(error.filename) in finals:
        error.filename = str(finals[Path(error.filename)])
    elif error.filename is None and error.errno in WRITE_ERRORS:
        error.filename = str(next(iter(finals.values())))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks (images and checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
