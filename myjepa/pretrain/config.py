"""The pretraining config: the encoder's fields, then predictor, SIGReg, masking, optimisation.

Shipped configs live beside this file in `configs/` (`ViTS_mimic`, `ViTXS_mimic`, `tiny`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from myjepa import config
from myjepa.config import check, check_positive
from myjepa.models.config import SIGREG_SCALINGS, EncoderConfig
from myjepa.tasks.names import check_task, is_multiclass

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class PretrainConfig(EncoderConfig):
    """Everything that defines a pretraining run."""

    # predictor
    pred_dim: int
    pred_depth: int
    pred_num_heads: int
    # projector and SIGReg
    proj_hidden: int
    proj_dim: int
    sigreg_lambda: float
    sigreg_slices: int
    sigreg_points: int
    sigreg_t_max: float
    # masking (the mask collator checks the ratios)
    min_block_size: int
    min_keep_ratio: float
    max_keep_ratio: float
    # optimisation
    batch_size: int  # global batch, split over DDP ranks
    steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    final_weight_decay: float
    betas: list[float]
    grad_clip: float  # 0 disables clipping
    accum_steps: int
    # data sampling: dump name -> sampling weight
    datasets: dict[str, float]
    folds: list[int]  # dumps with a strat_fold column (PTB-XL) contribute only these folds
    num_workers: int
    # bookkeeping
    log_interval: int
    checkpoint_interval: int
    best_loss_window: int  # steps in the running mean that picks best_ckpt.pt
    # collapse alarms (collapse.py) and the online probe (probe.py)
    collapse: str = "stop"  # stop: exit 4 at a collapse alarm, keeping the last checkpoint; warn: say so, go on
    probe_interval: int = 1000  # steps between online probes when --probe-data is given
    probe_task: str = "superdiagnostic"
    probe_records: int = 3000  # the probe fits on at most this many training records
    activation_checkpointing: bool = False  # recompute encoder blocks in the backward: less memory, ~1/3 more compute
    # objective options (models/myjepa.py; all off: the seed's formulation)
    sigreg_tokens: int = 0  # SIGReg also on this many tokens per record (>= num_patches: all); 0: off
    sigreg_mean: bool = True  # SIGReg on the projected record mean; false: on the tokens alone
    sigreg_scaling: str = "pull"  # what λ keeps equal across batches: SIGReg's pull, or its noise (models/sigreg.py)
    num_masks: int = 1  # context masks per record sharing one full-record pass
    target_norm: bool = False  # layer norm (no affine) on the target embeddings
    proj_norm: bool = True  # LayerNorm in the projector's hidden layer; false: SIGReg sees the tokens' scale
    project_tokens: bool = True  # SIGReg on projected tokens; false: on the encoder's tokens, the targets' own space
    target_grad: bool = True  # false: stop-gradient on the targets; a diagnostic, not MyJEPA's objective
    context_grad_scale: float = 1.0  # the prediction gradient into the context pass, times this (values unchanged)
    context_grad_share: float = 0.0  # the context pass's gradient capped at this share of the full pass's; 0: off
    # augmentations of the pretraining crops (pretrain/augment.py; 0: off)
    augment_shift_s: float = 0.0  # circular time shift of up to this many seconds
    augment_lead_dropout: float = 0.0  # probability that a lead is blanked (set to its mean)
    augment_scale: float = 0.0  # amplitude scaled by a factor in [1 - a, 1 + a] per record

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "pred_dim", "pred_depth", "pred_num_heads", "proj_hidden", "proj_dim", "lr")
        check_positive(self, "sigreg_slices", "sigreg_points", "sigreg_t_max", "min_block_size", "context_grad_scale")
        check(0 <= self.min_lr <= self.lr, f"need 0 <= min_lr <= lr, got min_lr {self.min_lr}, lr {self.lr}")
        check(self.context_grad_share >= 0, f"context_grad_share must be 0 or more, got {self.context_grad_share}")
        check(self.warmup_steps >= 0, f"warmup_steps must be 0 or more, got {self.warmup_steps}")
        check(
            min(self.sigreg_lambda, self.weight_decay, self.final_weight_decay, self.grad_clip) >= 0,
            "sigreg_lambda, weight_decay, final_weight_decay and grad_clip must be 0 or more",
        )
        check(
            self.pred_dim % self.pred_num_heads == 0,
            f"pred_dim {self.pred_dim} is not divisible by pred_num_heads {self.pred_num_heads}",
        )
        check(len(self.betas) == 2, "betas must have two values")
        check(
            self.batch_size > 0 and self.steps > 0 and self.accum_steps > 0,
            "batch_size, steps and accum_steps must be positive",
        )
        check(
            self.batch_size >= 2 * self.accum_steps,
            f"batch_size {self.batch_size} / accum_steps {self.accum_steps} leaves fewer than the 2 samples "
            "SIGReg compares",
        )
        check(
            bool(self.datasets) and all(w > 0 for w in self.datasets.values()),
            "datasets needs at least one name with a positive weight",
        )
        check(self.sigreg_tokens >= 0, f"sigreg_tokens must be 0 or more, got {self.sigreg_tokens}")
        check(
            self.sigreg_mean or self.sigreg_tokens > 0,
            "sigreg_mean: false needs sigreg_tokens > 0 (SIGReg on something)",
        )
        check(
            self.project_tokens or self.sigreg_tokens > 0,
            "project_tokens: false needs sigreg_tokens > 0 (it says where the tokens' SIGReg term looks)",
        )
        check(
            self.sigreg_scaling in SIGREG_SCALINGS,
            f"sigreg_scaling must be one of {SIGREG_SCALINGS}, not {self.sigreg_scaling!r}",
        )
        check(self.num_masks >= 1, f"num_masks must be 1 or more, got {self.num_masks}")
        check(
            self.augment_shift_s >= 0 and 0 <= self.augment_lead_dropout < 1 and 0 <= self.augment_scale < 1,
            "need augment_shift_s >= 0, 0 <= augment_lead_dropout < 1 and 0 <= augment_scale < 1",
        )
        check(self.collapse in ("stop", "warn"), f"collapse must be 'stop' or 'warn', not {self.collapse!r}")
        check(self.probe_interval > 0 and self.probe_records > 0, "probe_interval and probe_records must be positive")
        check(
            self.probe_interval % self.log_interval == 0,
            f"probe_interval {self.probe_interval} is not a multiple of log_interval {self.log_interval}",
        )
        check(
            not is_multiclass(check_task(self.probe_task)),
            f"probe_task {self.probe_task!r} is single-label; the online probe takes a multi-label task",
        )
        check(
            min(self.log_interval, self.checkpoint_interval, self.best_loss_window) > 0,
            "log_interval, checkpoint_interval and best_loss_window must be positive",
        )

    def logs_at(self, step: int) -> bool:
        """Whether `step` (counted from 1) is logged: every `log_interval` steps, and the last one."""
        return step % self.log_interval == 0 or step == self.steps


def shipped_configs() -> list[str]:
    return config.shipped_configs(CONFIG_DIR)


def load_config(name_or_path: str | Path, **overrides: Any) -> PretrainConfig:
    """The validated pretraining config: `load_config('ViTS_mimic', batch_size=32)`."""
    return config.load(PretrainConfig, name_or_path, CONFIG_DIR, overrides)
