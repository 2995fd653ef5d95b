"""One exception type for problems a user can fix, and the wrapper that prints it without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """Bad input, config or data: the message names the file, key or record and is shown as is."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run a command's main(argv); a UserError becomes one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except UserError as e:
        print(f"myjepa: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("myjepa: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
