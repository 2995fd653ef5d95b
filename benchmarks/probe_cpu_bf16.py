"""`myjepa finetune` with the encoder and probe under CPU bfloat16 autocast, as `amp: bfloat16` runs them on CUDA.

    python benchmarks/probe_cpu_bf16.py finetune --data-dir tests/data/ptb-xl-sample --dump DUMP \\
        --encoder ENCODER --task superdiagnostic --config linear --out OUT --seed 0

The shipped protocol runs float32 on a CPU; this tells bfloat16's share of a GPU probe's difference from a
CPU probe apart from the device's (issue #22: BENCHMARKS.md, "2,700 steps on one GPU").
"""

import contextlib
import sys

import torch

import myjepa.evaluate.features as features
import myjepa.evaluate.training as training
from myjepa.cli import main


def cpu_bfloat16(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bfloat16" else contextlib.nullcontext()


if __name__ == "__main__":
    features.autocast = training.autocast = cpu_bfloat16
    main(sys.argv[1:])
