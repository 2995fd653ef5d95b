"""Per-step schedules: pure functions of the step, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Cosine from `start` at step 0 to `end` at step `total` (held at `end` after)."""
    progress = min(max(step / max(total, 1), 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


def warmup_cosine(step: int, warmup: int, total: int, peak: float, final: float) -> float:
    """Linear warm-up from 0 to `peak` over `warmup` steps, then cosine down to `final` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine(step - warmup, total - warmup, peak, final)
