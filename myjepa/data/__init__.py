"""Data: dumps (memory-mapped arrays with sidecars), masking, converters and demo generators.

`MaskCollator` (torch) is imported lazily, so `import myjepa.data` stays cheap for converter workers.
"""

from typing import Any

from myjepa.data.dump import Dump, open_dump

__all__ = ["Dump", "MaskCollator", "open_dump"]


def __getattr__(name: str) -> Any:
    if name == "MaskCollator":
        from myjepa.data.masks import MaskCollator

        return MaskCollator
    raise AttributeError(f"module 'myjepa.data' has no attribute {name!r}")
