"""SIGTERM and SIGUSR1 (SLURM's warning before a time limit or preemption) stop training at a step boundary.

The main process remembers the signal, checkpoints after the current step and exits with 128 + the
signal number, so the job can be requeued; DataLoader workers ignore the signals and are stopped by it.
"""

from __future__ import annotations

import signal
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopFlag:
    """Remembers a stop signal until the loop reaches the next step boundary."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous = {sig: signal.signal(sig, self.handle) for sig in STOP_SIGNALS}

    def handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: leave the stop signals to the main process."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
