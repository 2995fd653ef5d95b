"""One exception type for problems a user can fix, and the wrapper that prints it without a traceback."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence


class UserError(Exception):
    """Bad input, config or data: the message names the file, key or record and is shown as is."""


class Stopped(Exception):
    """A stop signal (SIGTERM from a time limit, Ctrl-C) inside `stop_on_signals`: unwinds like an error,
    so every `with` block on the way removes its temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; unfinished output removed")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into `Stopped` for the block (main thread only; others keep their handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def os_error_line(e: OSError) -> str:
    """An OSError as one line naming the path(s) and the reason, e.g. `out/d.npy: Permission denied`."""
    reason = e.strerror or str(e)
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run a command's main(argv); a UserError or an OSError (a path the user gave: read-only, full,
    missing) becomes one line on stderr and exit status 2; a stop signal exits with 128 + its number."""
    try:
        code = main(argv)
    except UserError as e:
        print(f"myjepa: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"myjepa: error: {os_error_line(e)}", file=sys.stderr)
        sys.exit(2)
    except Stopped as e:
        print(f"myjepa: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("myjepa: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
