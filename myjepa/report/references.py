"""Published macro AUCs on PTB-XL's test fold, shown beside ours."""

from __future__ import annotations

PTBXL_BENCHMARK = {
    "all": 0.925,
    "diagnostic": 0.937,
    "subdiagnostic": 0.930,
    "superdiagnostic": 0.930,
    "form": 0.899,
    "rhythm": 0.957,
}
PTBXL_SOURCE = (
    "Strodthoff et al. 2021, Deep learning for ECG analysis: benchmarks and insights from PTB-XL, "
    "IEEE JBHI 25(5) — best supervised model per task"
)

# ECG-JEPA reports a frozen encoder's linear probe and a finetuned encoder.
ECGJEPA = {("all", "linear"): 0.940, ("all", "finetune"): 0.944}
ECGJEPA_SOURCE = (
    "Kim 2024, Learning general representation of 12-lead electrocardiogram with a joint-embedding "
    "predictive architecture (ECG-JEPA), arXiv:2410.08559 — ViT-S pretrained on MIMIC-IV-ECG"
)
# The protocol kind (results.json's "protocol") -> which of ECG-JEPA's two regimes it compares with.
ECGJEPA_REGIME = {"linear": "linear", "finetune": "finetune", "finetune_after_linear": "finetune"}


def ecgjepa(task: str, protocol_kind: str) -> float | None:
    """ECG-JEPA's number for a task evaluated with a protocol of this kind, or None."""
    return ECGJEPA.get((task, ECGJEPA_REGIME.get(protocol_kind, "")))
