"""The report's HTML building blocks: numbers as text, escaping, a table."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any


def fmt(x: Any, digits: int = 3) -> str:
    """A number rounded for display; — for a missing or undefined one."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def mean_std(mean: float, std: float) -> str:
    return fmt(mean) if not math.isfinite(std) else f"{fmt(mean)} ± {fmt(std)}"


def interval(lo: float, hi: float) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def esc(x: Any) -> str:
    return html.escape(str(x))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """Header cells are escaped here; body cells are inserted as given (escape text with `esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
