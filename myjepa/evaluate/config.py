"""The evaluation config: one protocol. Shipped beside this file in `configs/` (linear, finetune,
finetune_after_linear); any other YAML by path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from myjepa.config import check, load

CONFIG_DIR = Path(__file__).parent / "configs"
PROTOCOLS = ("linear", "finetune", "finetune_after_linear")


@dataclass
class FinetuneConfig:
    """One evaluation protocol: what is trained, for how long, and how records are cropped."""

    protocol: str  # linear (frozen encoder) | finetune | finetune_after_linear (needs --init)
    # optimisation
    steps: int
    batch_size: int
    lr: float
    min_lr: float  # cosine decay from lr to min_lr after warm-up; min_lr == lr keeps it constant
    warmup_steps: int
    weight_decay: float  # on weight matrices only, not on biases, norms or the query
    betas: list[float]
    grad_clip: float  # 0 disables clipping
    dropout: float  # before the probe's linear layer
    head_num_heads: int
    # crops, in seconds (converted with the dump's sampling rate)
    crop_s: float
    stride_s: float
    # labels
    min_samples: int  # classes with fewer records are dropped
    # evaluation and early stopping
    eval_interval: int  # steps between validation evaluations (and always at the last step)
    patience: int  # stop after this many evaluations without a better val macro AUC; 0 never stops early
    bootstrap_samples: int  # test-set resamples for the 95 % CI
    # speed
    feature_cache: bool  # linear only: encode the strided crops once and train the head on the cache
    eval_batch_size: int  # crops per encoder forward pass when encoding
    amp: str  # bfloat16 | float32: autocast dtype on CUDA (CPU runs float32)
    log_interval: int

    def __post_init__(self) -> None:
        check(self.protocol in PROTOCOLS, f"config key 'protocol': {self.protocol!r} is not one of {list(PROTOCOLS)}")
        check(self.steps > 0 and self.batch_size > 0, "config keys 'steps' and 'batch_size' must be positive")
        check(0 < self.min_lr <= self.lr, "config keys: need 0 < min_lr <= lr")
        check(
            self.warmup_steps >= 0 and self.eval_interval > 0 and self.patience >= 0,
            "config keys: need warmup_steps >= 0, eval_interval > 0, patience >= 0",
        )
        check(len(self.betas) == 2, "config key 'betas' must have two values")
        check(0 <= self.dropout < 1, "config key 'dropout' must be in [0, 1)")
        check(self.crop_s > 0 and self.stride_s > 0, "config keys 'crop_s' and 'stride_s' must be positive")
        check(
            self.bootstrap_samples > 0 and self.eval_batch_size > 0 and self.log_interval > 0,
            "config keys 'bootstrap_samples', 'eval_batch_size' and 'log_interval' must be positive",
        )
        check(self.amp in ("bfloat16", "float32"), f"config key 'amp': {self.amp!r} is not bfloat16 or float32")

    @property
    def frozen(self) -> bool:
        return self.protocol == "linear"


def load_finetune_config(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> FinetuneConfig:
    return load(FinetuneConfig, name_or_path, CONFIG_DIR, overrides)
