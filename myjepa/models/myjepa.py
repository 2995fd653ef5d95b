"""MyJEPA: one encoder predicts its own embeddings of masked ECG blocks; SIGReg keeps them Gaussian.

No EMA teacher and no stop-gradient: the target embeddings come from the same encoder pass over the
full record, and SIGReg on the projected record embedding is what prevents collapse.

Objective options (config keys; all off is the seed's formulation):
- `sigreg_tokens`: SIGReg also on k projected tokens per record (B·k samples a step instead of B), averaged
  with the record mean's term. The mean alone leaves the tokens free to fall into a few directions, and at
  a small batch its B samples make a noisy estimate whose gradient can outweigh the prediction loss's.
- `sigreg_mean`: false drops the record mean's term, leaving SIGReg on the tokens alone.
- `num_masks`: M context masks per record, all predicting from the one full-record pass, whose forward and
  backward dominate the step: more prediction signal per FLOP (V-JEPA, data2vec 2.0).
- `target_norm`: layer norm without affine on the targets (I-JEPA, V-JEPA), so the prediction loss cannot
  shrink by scaling the tokens down.
- `proj_norm`: false drops the projector's LayerNorm, so SIGReg sees the tokens' scale (`Projector`).
- `project_tokens`: false applies the tokens' SIGReg term to the encoder's tokens themselves, the space the
  prediction loss lives in (LeJEPA regularises the embeddings its invariance loss compares). The prediction
  loss can then no longer shrink its targets without SIGReg pushing back; through a projector it can.
- `target_grad`: false stops the prediction loss's gradient through the targets (I-JEPA's stop-gradient, without
  its EMA teacher). Not MyJEPA's objective: a diagnostic that tells whether that gradient is what keeps the
  prediction loss from teaching the encoder.
- `context_grad_scale`: the prediction loss's gradient into the context pass, times this; every value is
  unchanged. That path is what teaches the encoder to predict masked blocks, and on real ECGs it is 0.03–3 %
  of the prediction gradient and thousands of times smaller than λ·SIGReg's (BENCHMARKS.md); Adam's shared
  per-weight statistics then shrink its steps to a thousandth of the learning rate. Scaling it up gives it
  a say without weakening SIGReg or the target path. Too large a scale collapses the encoder (10⁵ on `tiny`;
  1,500 at ViT-XS, one seed of two), because the context path grows as the predictor learns to read it.
- `context_grad_share`: a ceiling on that path's share: its gradient at the encoder's output never more than
  this times the full pass's, however well the predictor has learnt to read the context (models/context_grad.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from myjepa.models.context_grad import ContextGrad
from myjepa.models.predictor import Predictor
from myjepa.models.sigreg import SIGReg
from myjepa.models.vit import VisionTransformer, gather_tokens


class Losses(NamedTuple):
    """The three losses, the projected record embeddings SIGReg saw and the full pass's tokens (detached, for the
    collapse alarms):
    unpack them (`loss, pred, sig, z = model(...)`) or index by name (`out["loss"]`)."""

    loss: torch.Tensor
    pred_loss: torch.Tensor
    sigreg_loss: torch.Tensor
    embeddings: torch.Tensor
    tokens: torch.Tensor  # the full pass's encoder tokens (B, N, dim), detached: the token-level alarms

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


class Projector(nn.Module):
    """MLP dim -> hidden -> out. LayerNorm, not BatchNorm: per-sample, so identical under any DDP split.

    `norm=False` drops the LayerNorm. With it, the projection hardly changes when every token is scaled
    down, so SIGReg cannot see the tokens shrink while the prediction loss (no stop-gradient) gains from it.
    """

    def __init__(self, dim: int, hidden: int, out: int, norm: bool = True) -> None:
        super().__init__()
        hidden_norm = nn.LayerNorm(hidden) if norm else nn.Identity()
        self.net = nn.Sequential(nn.Linear(dim, hidden), hidden_norm, nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MyJEPA(nn.Module):
    def __init__(self, cfg: Any, seed: int = 0) -> None:
        super().__init__()
        self.sigreg_lambda = cfg.sigreg_lambda
        self.sigreg_tokens = cfg.sigreg_tokens
        self.sigreg_mean = cfg.sigreg_mean
        self.target_norm = cfg.target_norm
        self.project_tokens = cfg.project_tokens
        self.target_grad = cfg.target_grad
        self.context_grad = (
            ContextGrad(cfg.context_grad_scale, cfg.context_grad_share)
            if cfg.context_grad_scale != 1 or cfg.context_grad_share
            else None
        )
        self.encoder = VisionTransformer.from_config(cfg)
        self.encoder.activation_checkpointing = cfg.activation_checkpointing
        self.predictor = Predictor(
            cfg.num_patches, cfg.dim, cfg.pred_dim, cfg.pred_depth, cfg.pred_num_heads, cfg.mlp_ratio
        )
        self.projector = Projector(cfg.dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_norm)
        self.sigreg = SIGReg(cfg.sigreg_slices, cfg.sigreg_points, cfg.sigreg_t_max, seed, cfg.sigreg_scaling)

    def forward(self, x: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> Losses:
        """x (B, 12, T); ctx_idx (B·M, K_ctx), tgt_idx (B·M, K_tgt): M context masks per record, rows b·M to
        b·M + M − 1 those of record b, all predicting from its one full pass -> Losses."""
        tokens = self.encoder.embed(x)  # the patch embedding is shared by both passes
        masks = ctx_idx.size(0) // x.size(0)
        z_ctx = self.encoder.encode(repeat_records(tokens, masks), keep=ctx_idx)
        z_full = self.encoder.encode(tokens)
        z_ctx = self.context_grad(z_ctx, z_full) if self.context_grad is not None else z_ctx
        targets = z_full if self.target_grad else z_full.detach()  # false: a diagnostic, see above
        targets = F.layer_norm(targets, targets.shape[-1:]) if self.target_norm else targets
        z_tgt = gather_tokens(repeat_records(targets, masks), tgt_idx)  # no stop-gradient: SIGReg prevents collapse
        z_pred = self.predictor(z_ctx, ctx_idx, tgt_idx)
        pred_loss = F.smooth_l1_loss(z_pred.float(), z_tgt.float())
        embeddings = self.projector(z_full.mean(dim=1))
        terms = [self.sigreg(embeddings)] if self.sigreg_mean else []
        if self.sigreg_tokens:
            picked = sample_tokens(z_full, self.sigreg_tokens, self.sigreg.call_seed()).flatten(0, 1)
            terms.append(self.sigreg(self.projector(picked) if self.project_tokens else picked))
        sigreg_loss = terms[0] if len(terms) == 1 else torch.stack(terms).mean()
        loss = pred_loss + self.sigreg_lambda * sigreg_loss
        return Losses(loss, pred_loss, sigreg_loss, embeddings.detach(), z_full.detach())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Projected record embeddings (B, proj_dim): what SIGReg sees; used to check for collapse."""
        return self.projector(self.encoder(x).mean(dim=1))


def repeat_records(x: torch.Tensor, times: int) -> torch.Tensor:
    """Each record's row `times` times in a row (B·times, ...): one per context mask; x itself for one mask."""
    return x if times == 1 else x.repeat_interleave(times, dim=0)


def sample_tokens(z: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k distinct tokens per record of z (B, N, D) -> (B, k, D), all N when k >= N. The draw comes from `seed`
    (SIGReg's step), not the global generator, so a resumed run draws what an uninterrupted one would."""
    B, N, _ = z.shape
    if k >= N:
        return z
    gen = torch.Generator().manual_seed(seed + 2**40)  # not the directions' own stream
    idx = torch.rand(B, N, generator=gen).argsort(dim=1)[:, :k].to(z.device)
    return gather_tokens(z, idx)
