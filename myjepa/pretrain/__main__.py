"""`python -m myjepa.pretrain` / `torchrun -m myjepa.pretrain`: the same as `myjepa pretrain`."""

from myjepa.errors import run_cli
from myjepa.pretrain.train import main

run_cli(main)
