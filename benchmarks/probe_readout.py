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
from myjepa.models.vit import VisionTransformer, gather_tokens


def readout_encode(kind: str, n: int) -> Callable[..., torch.Tensor]:
    """A `VisionTransformer.encode` that returns block n's tokens (kind "block") or the last n blocks' mean."""

    def encode(
        self: VisionTransformer, tokens: torch.Tensor, keep: torch.Tensor | None = None, return_registers: bool = False
    ) -> torch.Tensor:
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        if self.registers is not None:
            tokens = torch.cat([self.registers.expand(tokens.size(0), -1, -1), tokens], dim=1)
        if n > len(self.blocks):
            raise SystemExit(f"readout {kind}:{n}: the encoder has {len(self.blocks)} blocks")
        outputs = []
        for blk in self.blocks:
            tokens = blk(tokens)
            outputs.append(self.norm(tokens))
        chosen = outputs[n - 1] if kind == "block" else torch.stack(outputs[-n:]).mean(0)
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
