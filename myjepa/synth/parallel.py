"""Writing a synthetic archive's records in worker processes: each record depends only on its task."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from typing import Any

from myjepa.utils.logging import Progress


def run_tasks(fn: Any, tasks: list[Any], workers: int, desc: str, progress: bool) -> list[dict[str, Any]]:
    """fn over tasks in order, in `workers` processes; each record depends only on its task."""
    rows = []
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(tasks) > 1:
            results = stack.enter_context(mp.get_context("fork").Pool(workers)).imap(fn, tasks, chunksize=8)
        else:
            results = map(fn, tasks)
        bar = Progress(len(tasks), desc, unit="rec") if progress else None  # after the fork: tqdm runs a thread
        for row in results:
            rows.append(row)
            if bar:
                bar.update()
    if bar:
        bar.close()
    return rows
