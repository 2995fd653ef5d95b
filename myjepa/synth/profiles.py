"""The demo data's labels: which SCP codes a synthetic record carries, and what they do to its heart.

`sample_profile` draws a rhythm, a diagnostic group and subtype (real PTB-XL SCP codes, at rough
PTB-XL frequencies), then the `simulator.Heart` parameters those labels imply, so the labels are
learnable from the waveforms. `assign_folds` deals each label profile over the ten folds. Every
draw comes from the caller's generator, in a fixed order: a seed fixes labels and waveform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from myjepa.synth.simulator import Heart

RHYTHMS = {"SR": 0.46, "STACH": 0.12, "SBRAD": 0.12, "SARRH": 0.10, "AFIB": 0.12, "AFLT": 0.08}
GROUPS = {"NORM": 0.38, "MI": 0.16, "STTC": 0.16, "CD": 0.18, "HYP": 0.12}
SUBTYPES = {
    "MI": {"IMI": 0.55, "ASMI": 0.45},
    "STTC": {"ISC_": 0.35, "ISCAL": 0.2, "NDT": 0.25, "NST_": 0.2},
    "CD": {"CLBBB": 0.25, "CRBBB": 0.25, "IRBBB": 0.2, "LAFB": 0.2, "1AVB": 0.1},
    "HYP": {"LVH": 1.0},
    "NORM": {"NORM": 1.0},
}
LIKELIHOODS = [100.0, 100.0, 100.0, 80.0, 50.0, 35.0, 15.0]


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    keys = list(table)
    p = np.array([table[k] for k in keys])
    return keys[rng.choice(len(keys), p=p / p.sum())]


@dataclass
class Profile:
    """One record's labels (SCP code -> likelihood), its waveform parameters and metadata."""

    codes: dict[str, float]
    heart: Heart
    rhythm: str
    group: str
    axis: str
    stadium: str | None
    extra_beats: str | None


def _normal_heart(rng: np.random.Generator, rhythm: str, sex: int) -> Heart:
    """A healthy heart with normal variation, before the labels change it."""
    h = Heart(
        rhythm=rhythm,
        axis_deg=rng.normal(45, 18),
        qrs_amp=rng.uniform(0.9, 1.5) * (0.9 if sex else 1.0),
        p_amp=rng.uniform(0.1, 0.2),
        s_amp=rng.uniform(0.3, 0.6),
        t_amp=rng.uniform(0.22, 0.4),
        qt_c=rng.uniform(0.38, 0.44),
        pr=rng.uniform(0.13, 0.19),
        qrs_width=rng.uniform(0.9, 1.1),
        noise_mv=rng.uniform(0.005, 0.03),
        wander_mv=rng.uniform(0.02, 0.15),
        hum_mv=rng.uniform(0.005, 0.02) if rng.random() < 0.2 else 0.0,
    )
    h.extra["flutter_phase"] = rng.uniform()
    return h


def _infarct(h: Heart, sub: str, codes: dict[str, float], rng: np.random.Generator) -> str:
    """Q waves of an inferior (IMI) or anteroseptal (ASMI) infarct, maybe T inversion; returns the stadium."""
    if sub == "IMI":
        h.q_inferior = rng.uniform(0.35, 0.7)
        h.qrs_amp *= 0.85
    elif sub == "ASMI":
        h.q_anterior = rng.uniform(0.45, 0.9)
    stadium = str(rng.choice(["Stadium I", "Stadium II", "Stadium III", "Stadium II-III", "unknown"]))
    if rng.random() < 0.4:
        codes["QWAVE"] = 0.0
    if rng.random() < 0.5:  # regional T inversion over the infarct
        h.t_vector_flip = (1.0, -1.0, 1.0) if sub == "IMI" else (1.0, 1.0, -1.5)
        codes["INVT"] = 0.0
    return stadium


def _st_t_conduction_hypertrophy(h: Heart, sub: str, codes: dict[str, float], rng: np.random.Generator) -> None:
    """The waveform changes of the STTC, CD and HYP subtypes (NORM: none)."""
    if sub in ("ISC_", "ISCAL"):
        depth = rng.uniform(0.1, 0.22)
        h.st_vector = tuple(-depth * np.array([0.6, 0.6, 0.2] if sub == "ISC_" else [0.5, 0.1, 0.7]))
        h.t_amp *= rng.uniform(-0.6, 0.3)
        if rng.random() < 0.6:
            codes["STD_"] = 0.0
    elif sub == "NDT":
        h.t_amp *= rng.uniform(-0.5, 0.15)
        if h.t_amp < 0 and rng.random() < 0.5:
            codes["INVT"] = 0.0
    elif sub == "NST_":
        h.st_vector = tuple(rng.choice([-1, 1]) * rng.uniform(0.05, 0.1) * np.array([0.5, 0.5, 0.3]))
        h.t_amp *= rng.uniform(0.3, 0.6)
    elif sub == "CLBBB":
        h.bundle_branch, h.qrs_width = "L", 1.0
    elif sub == "CRBBB":
        h.bundle_branch = "R"
    elif sub == "IRBBB":
        h.bundle_branch = "IR"
    elif sub == "LAFB":
        h.axis_deg = rng.uniform(-75, -45)
    elif sub == "1AVB":
        h.pr = rng.uniform(0.25, 0.34)
        if rng.random() < 0.4:
            codes["LPR"] = 0.0
    elif sub == "LVH":
        h.voltage = rng.uniform(1.8, 2.5)
        h.axis_deg -= 15
        if rng.random() < 0.5:
            codes["VCLVH"] = 0.0
        if rng.random() < 0.4:  # strain pattern
            h.st_vector = tuple(-0.12 * np.array([0.6, 0.3, -0.2]))
            h.t_vector_flip = (-1.0, 1.0, -0.5)
            codes["STD_"] = 0.0


def _rhythm(h: Heart, rhythm: str, rng: np.random.Generator) -> None:
    """Heart rate and beat-to-beat variation of the rhythm; atrial activity of AFIB and AFLT."""
    if rhythm == "SR":
        h.heart_rate = rng.uniform(60, 98)
    elif rhythm == "STACH":
        h.heart_rate = rng.uniform(105, 150)
    elif rhythm == "SBRAD":
        h.heart_rate = rng.uniform(40, 56)
    elif rhythm == "SARRH":
        h.heart_rate, h.resp_modulation, h.resp_hz = (
            rng.uniform(58, 90),
            rng.uniform(0.12, 0.22),
            rng.uniform(0.2, 0.35),
        )
    elif rhythm == "AFIB":
        h.heart_rate, h.rr_jitter, h.f_wave_amp = rng.uniform(65, 135), rng.uniform(0.18, 0.3), rng.uniform(0.05, 0.12)
    elif rhythm == "AFLT":
        h.flutter_rate = rng.uniform(250, 330)
        h.flutter_conduction = int(rng.choice([2, 2, 3, 4]))
        h.heart_rate = h.flutter_rate / h.flutter_conduction
    if rhythm in ("SR", "SARRH"):
        h.rr_jitter = rng.uniform(0.01, 0.03)


def sample_profile(rng: np.random.Generator, sex: int = 0, age: float = 60.0) -> Profile:
    """Draw labels, then the waveform parameters those labels imply (plus normal variation)."""
    rhythm, group = _pick(rng, RHYTHMS), _pick(rng, GROUPS)
    sub = _pick(rng, SUBTYPES[group])
    h = _normal_heart(rng, rhythm, sex)
    like = float(rng.choice(LIKELIHOODS))
    codes = {"NORM": float(rng.choice([100.0, 100.0, 80.0]))} if group == "NORM" else {sub: like}
    stadium = None
    if group == "MI":
        stadium = _infarct(h, sub, codes, rng)
    else:
        _st_t_conduction_hypertrophy(h, sub, codes, rng)
    if group != "HYP" and rng.random() < 0.08:
        h.voltage *= rng.uniform(0.25, 0.4)
        codes["LVOLT"] = 0.0
    extra_beats = None
    if rng.random() < 0.06:
        h.pvc_count = int(rng.integers(1, 3))
        codes["PVC"] = 0.0
        extra_beats = f"{h.pvc_count}VES"
    _rhythm(h, rhythm, rng)
    codes[rhythm] = 0.0
    axis = "ALAD" if h.axis_deg < -30 else "LAD" if h.axis_deg < 0 else "RAD" if h.axis_deg > 90 else "MID"
    return Profile(codes, h, rhythm, group, axis, stadium, extra_beats)


def assign_folds(keys: Sequence[str], rng: np.random.Generator, n_folds: int = 10) -> np.ndarray:
    """strat_fold 1..n_folds: records of each label profile are dealt round-robin across folds."""
    keys = np.asarray(keys)
    folds = np.empty(len(keys), dtype=np.int64)
    offset = 0
    for key in sorted(set(keys.tolist())):
        members = rng.permutation(np.flatnonzero(keys == key))
        folds[members] = (offset + np.arange(len(members))) % n_folds + 1
        offset += len(members)  # continue where the last profile stopped: totals stay balanced
    return folds
