"""Collapse alarms: is the encoder still telling records apart?

Without an EMA teacher the one failure that looks like success is collapse: every record gets the
same embedding, the prediction loss falls towards 0, and SIGReg sits at its collapsed value. Two
signals catch it, from the projected record embeddings SIGReg sees (which it pushes towards an
isotropic N(0, 1), so a healthy per-dimension std is near 1):
- `embed_std`, the per-dimension std over the batch, averaged over dimensions, below `STD_FLOOR`
  once the warmup is over (a freshly initialised projector starts near 0.03: SIGReg has not pushed
  it out yet);
- the prediction loss 100 times below its highest logged value while `sigreg_loss` has not moved by
  more than 2 % over the last FLAT_LOGS logs: the encoder wins the prediction task by agreeing with
  itself, and SIGReg sits at the value of a collapsed batch.
A third watches the encoder's tokens, which SIGReg on the record mean does not see: `token_std`
TOKEN_SHRINK times below its highest logged value. Without a stop-gradient the prediction loss pulls
the targets, and so every token, towards 0, and the projector's LayerNorm hides that scale from
`embed_std`. On the real runs measured (BENCHMARKS.md) healthy ones end within 1.2 of their peak; where
the prediction loss outweighed SIGReg the tokens shrank 30-fold, but embed_std's alarm came first:
this one is the net for a collapse the projection does not show.
`rankme` (RankMe, Garrido et al. 2023: exp of the entropy of the normalised singular values) is
logged beside them; it falls towards 1 as the embeddings collapse to a point or a line.

Short of a collapse, an encoder can narrow: ViT-XS `ctx700` seed 0 (BENCHMARKS.md) kept embed_std near 1
and its tokens' scale, so no alarm fired, while its tokens' effective rank fell 8.6-fold from its peak
(every other run measured: at most 2.9-fold) and the online probe fell below the untrained encoder's
(no other run did). `NarrowingWatch` warns of that and lets the run go on: the healthy range at ViT-B's
width and at long budgets is unmeasured, and a false stop would end a costly run.
"""

from __future__ import annotations

import torch

STD_FLOOR = 0.01
PRED_DROP = 100.0
SIGREG_FLAT = 0.02
TOKEN_SAMPLE = 4096  # tokens per logged step in token_stats
FLAT_LOGS = 5
TOKEN_SHRINK = 10.0
RANK_FALL = 5.0  # narrowing: token_rankme this many times below its peak
PROBE_FALL = 0.02  # narrowing: the online probe's AUC this far below its value at step 0
REMEDY = (
    "raise sigreg_lambda (it means the same at any batch; try x4), lower lr, or check that the data is not constant"
)


def effective_rank(z: torch.Tensor, center: bool = False) -> torch.Tensor:
    """exp of the entropy of the normalised singular values of z (N, D): RankMe uncentred, as logged in
    training; centred (`center`), the number of directions the samples spread over around their mean."""
    z = z.float()
    s = torch.linalg.svdvals(z - z.mean(0) if center else z)
    p = s / s.sum().clamp_min(1e-12) + 1e-7
    return torch.exp(-(p * p.log()).sum())


def embedding_stats(z: torch.Tensor) -> torch.Tensor:
    """(embed_std, rankme) of embeddings z (N, D), as a float32 tensor of 2 on z's device; NaN for non-finite z
    (the loop's loss check then stops the run)."""
    z = z.float()
    if not bool(z.isfinite().all()):
        return torch.full((2,), float("nan"), device=z.device)
    return torch.stack([z.std(dim=0).mean(), effective_rank(z)])


def token_stats(tokens: torch.Tensor, max_tokens: int = TOKEN_SAMPLE) -> torch.Tensor:
    """(token_std, token_rankme): `embedding_stats` of the encoder's tokens (B, N, D) taken as B·N samples, at
    most `max_tokens` of them (an even stride over the batch's tokens) so the SVD stays cheap at large batches.
    A record-level penalty (SIGReg on the mean) leaves the tokens free to collapse; this shows it."""
    flat = tokens.reshape(-1, tokens.size(-1))
    return embedding_stats(flat[:: max(1, len(flat) // max_tokens)])


class CollapseMonitor:
    """Fed the logged metrics in step order; `check` returns the alarm line the first time collapse shows."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.peak_pred = 0.0
        self.peak_token_std = 0.0
        self.recent_sigreg: list[float] = []
        self.alarmed = False

    def check(self, step: int, metrics: dict[str, float]) -> str | None:
        """`metrics`: pred_loss, sigreg_loss, embed_std and token_std of this step (others are ignored)."""
        pred_loss, sigreg_loss, embed_std = metrics["pred_loss"], metrics["sigreg_loss"], metrics["embed_std"]
        token_std = metrics["token_std"]
        self.peak_pred = max(self.peak_pred, pred_loss)
        self.peak_token_std = max(self.peak_token_std, token_std)
        self.recent_sigreg = [*self.recent_sigreg, sigreg_loss][-FLAT_LOGS:]
        if embed_std < STD_FLOOR and step > self.warmup_steps:
            why = f"embed_std {embed_std:.3g} < {STD_FLOOR}"
        elif pred_loss * PRED_DROP < self.peak_pred and self.flat(self.recent_sigreg):
            why = (
                f"pred_loss fell from {self.peak_pred:.3g} to {pred_loss:.3g} while sigreg_loss stayed at "
                f"{sigreg_loss:.3g}"
            )
        elif token_std * TOKEN_SHRINK < self.peak_token_std:
            why = f"token_std fell from {self.peak_token_std:.3g} to {token_std:.3g}"
        else:
            return None
        if self.alarmed:
            return None
        self.alarmed = True
        return f"myjepa: the embeddings collapsed by step {step} ({why}); {REMEDY}"

    @staticmethod
    def flat(values: list[float]) -> bool:
        """FLAT_LOGS values within SIGREG_FLAT of each other, relative to their size."""
        return len(values) == FLAT_LOGS and max(values) - min(values) <= SIGREG_FLAT * max(abs(v) for v in values)


class NarrowingWatch:
    """Fed every logged metrics line in step order (a probe at step 0 is the untrained encoder's); `check`
    returns the warning line the first time the tokens' effective rank or the online probe falls too far."""

    def __init__(self) -> None:
        self.peak_rank = 0.0
        self.start_auc: float | None = None
        self.warned = False

    def check(self, step: int, metrics: dict[str, float]) -> str | None:
        """`metrics`: one logged line; train/token_rankme and probe/auc are read where present."""
        rank, auc, why = metrics.get("train/token_rankme"), metrics.get("probe/auc"), None
        if rank is not None:
            self.peak_rank = max(self.peak_rank, rank)
            if rank * RANK_FALL < self.peak_rank:
                why = f"the tokens' effective rank fell from {self.peak_rank:.3g} to {rank:.3g}"
        if auc is not None and step == 0:
            self.start_auc = auc
        elif auc is not None and self.start_auc is not None and auc < self.start_auc - PROBE_FALL:
            why = why or f"the online probe's AUC fell to {auc:.3f}, below the untrained encoder's {self.start_auc:.3f}"
        if why is None or self.warned:
            return None
        self.warned = True
        return (
            f"myjepa: warning: the encoder narrowed by step {step} ({why}); the run goes on: compare it with "
            "random init in the report before using it (the one measured cause: a large context_grad_scale)"
        )
