"""`myjepa finetune` with the encoder's tokens read from another layer than the last.

    python benchmarks/probe_readout.py READOUT finetune --data-dir tests/data/ptb-xl-sample --dump DUMP \\
        --encoder ENCODER --task superdiagnostic --config linear --out OUT --seed 0

READOUT: `block:L`, the tokens after block L (1-based) through the encoder's final LayerNorm; or `mean:K`,
the mean of the last K blocks' tokens, each through the final LayerNorm. Issue #22 asks where a pretrained
encoder keeps what the attentive probe reads (BENCHMARKS.md, "The predictor's depth, six seeds on
`tiny`, and which layer the probe reads").
"""

import sys
from collections.abc import Callable

import torch

from myjepa.cli import main
from myjepa.errors import UserError
from myjepa.models.vit import VisionTransformer


def readout_encode(kind: str, n: int) -> Callable[..., torch.Tensor]:
    """A `VisionTransformer.encode` that returns block n's tokens (kind "block") or the last n blocks' mean: the
    shipped encode runs as it is, and forward hooks keep each block's output."""
    shipped = VisionTransformer.encode

    def encode(
        self: VisionTransformer, tokens: torch.Tensor, keep: torch.Tensor | None = None, return_registers: bool = False
    ) -> torch.Tensor:
        if n > len(self.blocks):
            raise UserError(f"readout {kind}:{n}: the encoder has {len(self.blocks)} blocks")
        outputs: list[torch.Tensor] = []
        hooks = [blk.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for blk in self.blocks]
        try:
            shipped(self, tokens, keep, return_registers=True)
        finally:
            for hook in hooks:
                hook.remove()
        picked = outputs[n - 1 : n] if kind == "block" else outputs[-n:]
        chosen = torch.stack([self.norm(out) for out in picked]).mean(0)
        return chosen if return_registers else chosen[:, self.num_registers :]

    return encode


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    kind, _, n = sys.argv[1].partition(":")
    if kind not in ("block", "mean") or not n.isdigit() or int(n) < 1:
        sys.exit(f"readout {sys.argv[1]!r}: expected block:L or mean:K with L, K >= 1")
    VisionTransformer.encode = readout_encode(kind, int(n))
    main(sys.argv[2:])
