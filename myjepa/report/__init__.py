"""The workflow's last two steps, `myjepa report aggregate` and `myjepa report html`."""

from myjepa.report.html import main

__all__ = ["main"]
