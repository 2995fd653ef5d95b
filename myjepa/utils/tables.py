"""The checked CSV reading every archive's metadata goes through (converters and evaluation)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from myjepa.errors import UserError


def read_csv(path: str | Path, required: Sequence[str], what: str, **read_options: Any) -> pd.DataFrame:
    """A metadata CSV of the `what` layout with at least the `required` columns and one row, or a
    UserError naming `path`. `read_options` go to pandas (e.g. index_col)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a CSV file (the {what} layout needs a file)")
    if not path.is_file():
        raise UserError(f"{path}: not found (the {what} layout needs it)")
    try:
        df = pd.read_csv(path, **read_options)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read as CSV: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise UserError(f"{path}: lists no records")
    return df
