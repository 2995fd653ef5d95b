"""The attentive probe: one learned query cross-attends over an encoder's patch tokens, then a linear layer;
and how a record's class scores come from its crops.

The same head serves the linear protocol (frozen encoder, tokens possibly from the feature cache),
finetuning (encoder and head trained together, `head(encoder(x))`) and a classifier release
(`myjepa.encoders.classifier`), which score records with the same `record_scores`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalise_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """The probe's input LayerNorm. It has no affine part (that would only rescale the key/value
    weights), so it is a fixed function of a frozen encoder's tokens and the cache can store its output."""
    return F.layer_norm(tokens, tokens.shape[-1:])


class AttentiveProbe(nn.Module):
    """(B, N, dim) tokens -> (B, num_classes) logits."""

    def __init__(self, dim: int, num_classes: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.query, std=0.02)
        for m in (self.q, self.kv, self.proj, self.linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, normed: bool = False) -> torch.Tensor:
        """Cross-attention of the one query over the tokens, computed without projecting every token.

        With a single query, each head's scores are q_h . (W_k x + b_k) = (W_k^T q_h) . x + const, and
        its output is W_v (sum_n a_n x_n) + b_v. So the tokens are only dotted with one vector per
        head and pooled, and the key/value weights act on the pooled vectors: about 2 * heads
        instead of 3 * dim multiply-adds per token and channel. This keeps the probe cheap next to
        the encoder, which is what makes training it on cached features fast. `reference_forward`
        is the textbook computation; both give the same logits. `normed`: the tokens already went
        through `normalise_tokens` (the feature cache stores them that way).
        """
        B, N, D = tokens.shape
        h, d = self.num_heads, D // self.num_heads
        x = tokens if normed else normalise_tokens(tokens)
        q = self.q(self.query).view(h, d) * d**-0.5
        w_k, w_v = self.kv.weight[:D].view(h, d, D), self.kv.weight[D:].view(h, d, D)
        u = (q.unsqueeze(1) @ w_k).squeeze(1)  # (h, D): the query seen through each head's key weights
        scores = (
            (x.reshape(B * N, D) @ u.t()).view(B, N, h).transpose(1, 2)
        )  # the key bias shifts a head's scores equally
        pooled = torch.bmm(scores.softmax(-1), x)  # (B, h, D)
        values = torch.bmm(pooled.transpose(0, 1), w_v.transpose(1, 2)).transpose(0, 1) + self.kv.bias[D:].view(h, d)
        return self.finish(values.reshape(B, D))

    def reference_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Keys and values for every token, then scaled dot-product attention: slow, for tests."""
        B, N, D = tokens.shape
        h = self.num_heads
        x = normalise_tokens(tokens)
        q = self.q(self.query).expand(B, -1, -1).view(B, 1, h, D // h).transpose(1, 2)
        k, v = self.kv(x).view(B, N, 2, h, D // h).permute(2, 0, 3, 1, 4)
        return self.finish(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, D))

    def finish(self, attended: torch.Tensor) -> torch.Tensor:
        pooled = self.query[:, 0] + self.proj(attended)
        return self.linear(self.dropout(self.out_norm(pooled)))


def scores_from_logits(logits: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """Class probabilities: softmax for a multi-class (single-label) task, a sigmoid per class otherwise."""
    return logits.softmax(-1) if multiclass else logits.sigmoid()


def record_scores(logits: torch.Tensor, records: int, multiclass: bool) -> torch.Tensor:
    """(records, C) scores from the logits (records * crops, C) of each record's crops, record-major: each crop's
    probabilities, averaged over the record's crops."""
    scores = scores_from_logits(logits.float(), multiclass)
    return scores.view(records, -1, scores.shape[-1]).mean(1)
