"""How much say the context pass gets in the encoder's gradient: the `context_grad_scale` and `context_grad_share`
objective options (models/myjepa.py).

The context pass is the path through which the prediction loss teaches the encoder to predict masked blocks. On
real ECGs its gradient starts thousands of times weaker than the full pass's (the targets' and SIGReg's), so Adam
barely moves along it. A fixed scale k gives it a say, but the path grows as the predictor learns to read the
context (640-fold in 300 steps on `tiny`), so a k that is safe early collapses the encoder later (ViT-XS). A share
s caps it: the factor is min(k, s · full / context), the two passes' gradient norms at the encoder's output, so
the context pass never gets more than s times the full pass's say.
"""

from __future__ import annotations

import torch
from torch import nn


class ContextGrad(nn.Module):
    """Scales the gradient into the context pass's output (values unchanged) and keeps running means of the two
    passes' gradient norms at the encoder's output, unscaled: the ratio that a share holds and a scale lets grow.

    With a share the cap comes from the steps before this one: this step's norms exist only after its
    backward. The first step gets the fixed scale. The running means are a buffer, so a resumed run
    scales as an uninterrupted one would, and DDP hands every rank rank 0's, so all ranks scale alike.
    """

    def __init__(self, scale: float = 1.0, share: float = 0.0, momentum: float = 0.9) -> None:
        super().__init__()
        self.fixed_scale, self.share, self.momentum = scale, share, momentum
        # running means of ||grad|| at the context pass's and the full pass's outputs; state only with a share
        self.register_buffer("norms", torch.zeros(2), persistent=share > 0)

    def scale(self) -> torch.Tensor:
        """The factor for the next backward."""
        if not self.share:
            return torch.tensor(self.fixed_scale, device=self.norms.device)
        ctx, full = self.norms.unbind()
        cap = torch.where(ctx > 0, self.share * full / ctx.clamp_min(1e-30), torch.full_like(ctx, torch.inf))
        return cap.clamp_max(self.fixed_scale)

    def ratio(self) -> torch.Tensor:
        """Running mean of the context pass's unscaled gradient norm over the full pass's."""
        ctx, full = self.norms.unbind()
        return ctx / full.clamp_min(1e-30)

    def forward(self, z_ctx: torch.Tensor, z_full: torch.Tensor) -> torch.Tensor:
        """z_ctx itself, its gradient scaled; in training, both outputs' gradient norms join the running means."""
        if not (torch.is_grad_enabled() and z_ctx.requires_grad):
            return z_ctx
        k, measure = self.scale(), self.training and z_full.requires_grad

        def scale_context(grad: torch.Tensor) -> torch.Tensor:
            if measure:
                self.observe(0, grad)
            return grad * k.to(grad.dtype)

        z_ctx.register_hook(scale_context)
        if measure:
            z_full.register_hook(lambda grad: self.observe(1, grad))
        return z_ctx

    def observe(self, which: int, grad: torch.Tensor) -> None:
        """Fold this backward's gradient norm into running mean `which` (0: context pass, 1: full pass)."""
        self.norms[which].lerp_(torch.linalg.vector_norm(grad, dtype=torch.float32), 1 - self.momentum)
