"""Which term drives the encoder? The prediction loss's and λ·SIGReg's gradients on the encoder, per variant.

    python benchmarks/gradient_balance.py --dump /tmp/pq/ptb-xl.npy                       # tiny, batch 32
    python benchmarks/gradient_balance.py --dump D --encoder RUN/last_ckpt.pt --set sigreg_tokens=200

On real batches (the PTB-XL dump's train folds, as pretraining draws them) and a fixed model (a fresh one of
the config, or a run's checkpoint), for each of --batches batches: the encoder's gradient of pred_loss and
of λ·sigreg_loss, separately. Printed: their norms, and how much of each is signal: the norm of the mean
gradient over the batches against the mean of the norms (1: every batch pulls the same way; 1/sqrt(batches):
the batches' gradients are unrelated, i.e. noise). A term whose gradient is both larger and mostly noise
moves the encoder at random; Adam's per-parameter normalisation then follows it, not the prediction task.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from myjepa.config import parse_overrides
from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain import checkpoints
from myjepa.pretrain.batches import CropBatches, SourceNorm, open_sources
from myjepa.pretrain.config import load_config
from myjepa.pretrain.train import mask_collator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dump", required=True, type=Path, help="a PTB-XL dump (its train folds are drawn)")
    p.add_argument("--config", default="tiny")
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. sigreg_tokens=200")
    p.add_argument("--encoder", type=Path, help="last_ckpt.pt of a run (default: a fresh model, seed 0)")
    p.add_argument("--batches", type=int, default=8)
    args = p.parse_args()
    cfg = load_config(args.config, **parse_overrides(["datasets={ptb-xl: 1.0}", *args.set]))
    torch.manual_seed(0)
    model = MyJEPA(cfg)
    if args.encoder is not None:
        training = checkpoints.read(args.encoder).training
        model.load_state_dict(training.model, strict=False) if training else None
    sources = open_sources([("ptb-xl", args.dump)], cfg)
    batches = CropBatches(sources, cfg.batch_size, cfg.channel_size, mask_collator(cfg), seed=0)
    norm = SourceNorm(sources)
    params = [q for q in model.encoder.parameters() if q.requires_grad]
    grads: dict[str, list[torch.Tensor]] = {"pred_loss": [], "lambda*sigreg": []}
    for step in range(args.batches):
        x, source, ctx_idx, tgt_idx = batches[step]
        out = model(norm(x, source), ctx_idx, tgt_idx)
        for name, term in (("pred_loss", out.pred_loss), ("lambda*sigreg", cfg.sigreg_lambda * out.sigreg_loss)):
            g = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            grads[name].append(torch.cat([(gi if gi is not None else torch.zeros_like(q)).flatten()
                                          for gi, q in zip(g, params)]))  # fmt: skip
    print(f"{args.config} {' '.join(args.set)}: encoder gradients over {args.batches} batches of {cfg.batch_size}")
    for name, gs in grads.items():
        stack = torch.stack(gs)
        norms = stack.norm(dim=1)
        coherence = float(stack.mean(0).norm() / norms.mean())
        spread = f"(min {float(norms.min()):.4g}, max {float(norms.max()):.4g})"
        print(f"  {name:14s} norm {float(norms.mean()):.4g} {spread}; "
              f"signal fraction {coherence:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
