"""Model FLOPs with torch's FlopCounterMode, CPU attention included.

torch.utils.flop_counter has formulas for the CUDA attention kernels but none for the CPU flash
kernel (`_scaled_dot_product_flash_attention_for_cpu` and its backward, torch 2.13), so on the CPU it
counted attention as zero: about a tenth of a ViT-S training step, which made every CPU FLOP/s and MFU
figure low. The CPU kernel computes the same products, so it gets the same formulas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import flop_counter


def _attention(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _attention_backward(grad: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_backward_flop_count(grad, query, key, value)


CPU_ATTENTION = {
    op: formula
    for op, formula in (
        (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, _attention),
        (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward, _attention_backward),
    )
    if op not in flop_counter.flop_registry  # a later torch may count them itself
}


def count_flops(fn: Callable[[], object]) -> int:
    """The FLOPs of the matmuls, convolutions and attention that `fn()` runs (a multiply-add is 2)."""
    with flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        fn()
    return counter.get_total_flops()
