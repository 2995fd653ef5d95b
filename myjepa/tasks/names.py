"""PTB-XL's task names and their kind: what the configs and the workflow are checked against, without pandas."""

from __future__ import annotations

from myjepa.errors import UserError

TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm", "ST-MEM")
DIAGNOSTIC_TASKS = ("diagnostic", "subdiagnostic", "superdiagnostic", "ST-MEM")


def check_task(task: str) -> str:
    if task not in TASKS:
        lower = {t.lower(): t for t in TASKS}
        hint = f" (did you mean {lower[task.lower()]!r}?)" if task.lower() in lower else ""
        raise UserError(f"unknown task {task!r}{hint}: choose one of {list(TASKS)}")
    return task


def is_multiclass(task: str) -> bool:
    """Single-label tasks use softmax + cross-entropy; the others sigmoid + binary cross-entropy."""
    return task == "ST-MEM"
