"""The yardstick MyJEPA is measured against: an ECG-JEPA-style JEPA with an EMA teacher, same everything else.

    python benchmarks/reference_jepa.py --data ptb-xl=ptb-xl.npy --out runs/ref --config tiny --seed 0 \\
        --set "datasets={ptb-xl: 1.0}" steps=300

Not part of MyJEPA (whose point is to need no teacher): a benchmark reference, so that "does MyJEPA learn
as much per step and per FLOP as the teacher-based recipe" is answered on the same records, encoder,
predictor, block masks, batches, optimiser and schedules. The target encoder is an EMA of the context
encoder (momentum 0.996 -> 1.0 over the run, I-JEPA's schedule), embeds the full record without
gradients, and its tokens are layer-normed before the smooth-L1 regression; no SIGReg. It writes
encoder.pt (the EMA encoder, as I-JEPA evaluates) in the format `myjepa finetune` reads, the resolved
config.yaml, and a metrics.jsonl with the keys `benchmarks/pretrain_quality.py` reads (pred_loss, step time,
TFLOP/s), as `myjepa pretrain` writes them into its run folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from myjepa.config import parse_overrides
from myjepa.models.optim import param_groups
from myjepa.models.predictor import Predictor
from myjepa.models.vit import VisionTransformer, gather_tokens
from myjepa.pretrain import checkpoints
from myjepa.pretrain.batches import CropBatches, SourceNorm, open_sources, parse_data_args
from myjepa.pretrain.config import PretrainConfig, load_config
from myjepa.pretrain.options import RunOptions
from myjepa.pretrain.run_folder import RunFolder, prepare
from myjepa.pretrain.train import mask_collator, set_schedules
from myjepa.utils.flops import count_flops

MOMENTUM = (0.996, 1.0)  # EMA momentum, linear from the first to the last step


class ReferenceJEPA(nn.Module):
    """ECG-JEPA's step: the EMA target encoder embeds the full record without gradients (layer-normed), the
    context encoder sees the kept patches, the predictor regresses the targets; the EMA follows each step."""

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.encoder = VisionTransformer.from_config(cfg)
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Predictor(
            cfg.num_patches, cfg.dim, cfg.pred_dim, cfg.pred_depth, cfg.pred_num_heads, cfg.mlp_ratio
        )

    def forward(self, x: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            h = self.target(x)
            h = gather_tokens(F.layer_norm(h, h.shape[-1:]), tgt_idx)
        z = self.predictor(self.encoder(x, keep=ctx_idx), ctx_idx, tgt_idx)
        return {"loss": F.smooth_l1_loss(z.float(), h.float())}

    @torch.no_grad()
    def update_target(self, momentum: float = 0.996) -> None:
        ema, online = list(self.target.parameters()), list(self.encoder.parameters())
        torch._foreach_mul_(ema, momentum)
        torch._foreach_add_(ema, online, alpha=1 - momentum)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", required=True, metavar="NAME=PATH.npy")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--config", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    cfg = load_config(args.config, **parse_overrides(args.overrides))
    data = parse_data_args(args.data)
    sources = open_sources(data, cfg)
    torch.manual_seed(args.seed)
    model = ReferenceJEPA(cfg)
    optimizer = torch.optim.AdamW(param_groups([model.encoder, model.predictor], cfg.weight_decay), lr=cfg.lr,
                                  betas=tuple(cfg.betas))  # fmt: skip
    collator = mask_collator(cfg)
    batches = CropBatches(sources, cfg.batch_size, cfg.channel_size, collator, args.seed)
    norm = SourceNorm(sources)
    flops = sample_flops(model, cfg, collator)
    folder = RunFolder(args.out)
    prepare(folder, cfg, resumed_step=None)  # config.yaml, as `myjepa pretrain` writes it: random init's source
    with folder.metrics.open("w") as log:
        for step in range(cfg.steps):
            t0 = time.perf_counter()
            set_schedules(optimizer, cfg, step)
            x, source, ctx_idx, tgt_idx = batches[step]
            loss = model(norm(x, source), ctx_idx, tgt_idx)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.update_target(MOMENTUM[0] + (MOMENTUM[1] - MOMENTUM[0]) * step / max(cfg.steps - 1, 1))
            if cfg.logs_at(step + 1):
                seconds = time.perf_counter() - t0
                line = {"step": step + 1, "train/pred_loss": loss.item(), "train/step_time": seconds,
                        "train/tflops": flops * cfg.batch_size / seconds / 1e12}  # fmt: skip
                log.write(json.dumps(line) + "\n")
                log.flush()  # readable while it runs, like myjepa pretrain's
                print(
                    f"reference: {step + 1}/{cfg.steps} step pred_loss={line['train/pred_loss']:.4f}", file=sys.stderr
                )
    record = checkpoints.run_record(cfg, RunOptions(tuple(data), args.out, seed=args.seed, amp="float32"), sources)
    checkpoints.save_encoder(folder.encoder, SimpleNamespace(encoder=model.target), cfg.steps, record)


def sample_flops(model: ReferenceJEPA, cfg: PretrainConfig, collator) -> float:
    """Model FLOPs of one training sample (the target pass forward only), as MyJEPA's are counted."""
    x, ctx_idx, tgt_idx = collator(torch.zeros(2, len(cfg.leads), cfg.channel_size), torch.Generator().manual_seed(0))
    flops = count_flops(lambda: model(x, ctx_idx, tgt_idx)["loss"].backward())
    model.zero_grad(set_to_none=True)
    return flops / 2


if __name__ == "__main__":
    main()
