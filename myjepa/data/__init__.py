"""Data: dumps (memory-mapped arrays with sidecars), masking, converters and demo generators."""

from myjepa.data.dump import Dump, open_dump

__all__ = ["Dump", "open_dump"]
