"""Run logging shared by every command: metrics.jsonl always, wandb on request, progress display.

wandb runs offline unless an API key is configured, so it never waits on the network; the names
logged are the same in metrics.jsonl and in wandb.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def wandb_mode() -> str:
    """'online' only when a key is configured (env or ~/.netrc); explicit WANDB_MODE wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )
    return "online" if has_key else "offline"


def logged_lines(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's lines, less any that does not parse (one cut short by a kill or a full disk); [] without it."""
    lines = []
    for text in path.read_text().splitlines() if path.is_file() else []:
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines


class MetricsLogger:
    """Appends one JSON object per log call to DIR/metrics.jsonl and mirrors it to wandb when enabled."""

    def __init__(
        self,
        out_dir: str | Path,
        use_wandb: bool = False,
        project: str = "myjepa",
        name: str | None = None,
        config: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.path.write_text("")
        self.run = None
        if use_wandb:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", project),
                name=name,
                config=config,
                dir=str(out_dir),
                mode=wandb_mode(),
                resume="allow" if resume else None,
            )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    """A tqdm bar on an interactive terminal; otherwise a plain line every `every` seconds."""

    def __init__(self, total: int, desc: str, unit: str = "it", every: float = 10.0, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n = initial
        self.start = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every or self.n >= self.total:
            self.last = now
            rate = (self.n) / max(now - self.start, 1e-9)
            extra = "".join(f" {k}={v}" for k, v in postfix.items())
            print(
                f"{self.desc}: {self.n}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s){extra}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plain_items(items: Iterable[tuple[str, Any]]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)
