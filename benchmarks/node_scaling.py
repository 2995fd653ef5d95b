"""Pretraining over several nodes, on paper: all-reduce time per step against compute time per step.

    cd benchmarks && python node_scaling.py                        # ViTS_all, ViTB_all; B = 2048; 4 GPUs a node
    python node_scaling.py --gpus-per-node 8 --links 100 200 400 --nodes 1 2 4 8 16

Computed, not measured. What goes in:
- the parameters DDP all-reduces each step: every trainable parameter of MyJEPA (encoder, predictor,
  projector) of the shipped config, built here; DDP reduces the gradients in their own dtype, float32
  (bf16 autocast keeps float32 weights, and no compression hook is registered), so 4 bytes each;
  SIGReg's all-reduce (its summed characteristic function, forward and backward) and the loss
  all-reduce are added, though they are small;
- a ring all-reduce moves 2(n-1)/n x the volume through each node's link, n the nodes (inside a node
  NVLink is taken as free), so its time is that over the link's bandwidth, latency ignored;
- the step's FLOPs: `train.flops_per_sample` (torch's flop counter on the real forward + backward at
  the mean mask, attention included) x the global batch, shared by nodes x GPUs at `--mfu` of the
  GPU's dense bf16 peak.
Efficiency is compute / (compute + all-reduce): the worst case, no overlap. DDP overlaps its bucketed
all-reduce with the backward (about 2/3 of the step), so the best case hides it up to that; both are
printed. "Near-linear" here means at least 90 % in the worst case.
"""

from __future__ import annotations

import argparse

import torch
from loader import GPU_PEAK

from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain import train
from myjepa.pretrain.config import load_config

GRAD_BYTES = 4  # float32 gradients (DDP reduces them in the parameters' dtype)
NEAR_LINEAR = 0.9
BACKWARD_SHARE = 2 / 3  # of the step's FLOPs: what DDP's all-reduce can hide behind


def reduced_bytes(model: MyJEPA) -> tuple[int, int]:
    """(parameter count, bytes all-reduced per step): gradients, plus SIGReg's sums (forward and backward)
    and the losses."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sig = model.sigreg
    sigreg = 2 * (2 * sig.num_slices * len(sig.t) + 1) * 4  # cos and sin sums, the count; in and back
    losses = 6 * 4
    return params, params * GRAD_BYTES + sigreg + losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["ViTS_all", "ViTB_all"])
    p.add_argument("--batch", type=int, default=2048, help="global batch")
    p.add_argument("--gpus-per-node", type=int, default=4)
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--links", type=float, nargs="+", default=[25, 100, 200], help="Gb/s per node")
    p.add_argument("--mfu", type=float, default=0.4)
    args = p.parse_args()
    torch.manual_seed(0)
    for name in args.configs:
        cfg = load_config(name, batch_size=args.batch)
        model = MyJEPA(cfg)
        params, volume = reduced_bytes(model)
        flops = train.flops_per_sample(model, cfg, train.mask_collator(cfg), torch.device("cpu"))
        print(
            f"\n{name}: {params / 1e6:.1f} M parameters; all-reduce {volume / 1e6:.1f} MB per step; "
            f"{flops / 1e9:.1f} GFLOP per sample, {flops * args.batch / 1e12:.0f} TFLOP per step of {args.batch}"
        )
        for gpu, peak in GPU_PEAK.items():
            print(f"\n{name} on {gpu} ({peak / 1e12:.0f} TFLOP/s bf16 at {args.mfu:.0%}), {args.gpus_per_node} a node:")
            print("| nodes | compute ms | " + " | ".join(f"{b:g} Gb/s: all-reduce ms, eff." for b in args.links) + " |")
            print("|---|---|" + "---|" * len(args.links))
            for n in args.nodes:
                cells = []
                for gbps in args.links:
                    compute, comm = step_times(
                        flops * args.batch, volume, n * args.gpus_per_node, n, gbps, peak * args.mfu
                    )
                    cells.append(f"{comm * 1e3:.0f}, {worst(compute, comm):.0%} ({best(compute, comm):.0%})")
                print(f"| {n} | {compute * 1e3:.0f} | " + " | ".join(cells) + " |")
            for gbps in args.links:
                reach = {}
                for case in (worst, best):
                    fits = [
                        n
                        for n in args.nodes
                        if case(
                            *step_times(flops * args.batch, volume, n * args.gpus_per_node, n, gbps, peak * args.mfu)
                        )
                        >= NEAR_LINEAR
                    ]
                    reach[case.__name__] = max(fits, default=0)
                print(
                    f"  {gbps:g} Gb/s: efficiency >= {NEAR_LINEAR:.0%} up to {reach['worst']} node(s) without overlap, "
                    f"{reach['best']} with the all-reduce hidden behind the backward"
                )


def step_times(step_flops: float, volume: int, gpus: int, nodes: int, gbps: float, flops_per_s: float) -> tuple:
    """(compute, all-reduce) seconds of one step: the FLOPs shared by the GPUs; a ring over the nodes' links."""
    return step_flops / (gpus * flops_per_s), 2 * (nodes - 1) / nodes * volume / (gbps * 1e9 / 8)


def worst(compute: float, comm: float) -> float:
    """Efficiency when the all-reduce follows the step's compute."""
    return compute / (compute + comm)


def best(compute: float, comm: float) -> float:
    """Efficiency when it runs during the backward (DDP's buckets) and only what does not fit adds time."""
    return compute / (compute + max(0.0, comm - BACKWARD_SHARE * compute))


if __name__ == "__main__":
    main()
