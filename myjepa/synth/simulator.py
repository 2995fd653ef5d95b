"""A small 12-lead ECG simulator: a beating heart vector projected onto the leads.

The heart's electrical activity is a 3-D dipole (x to the patient's left, y inferior, z anterior).
Each beat is a sum of Gaussian waves (P, septal q, R, S, T, optional R', Q, ST plateau), each with
its own direction, so every lead sees its own morphology and Einthoven's relations hold exactly.
Rhythms change the beat times and the atrial activity (P waves, fibrillation, flutter); conduction
and diagnostic changes move, widen or reverse waves (wide QRS, pathological Q, ST shift, inverted
T, voltage). Noise, baseline wander and powerline hum are added per lead.

Everything is drawn from one `numpy.random.Generator`, so a seed fixes the waveform.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def lead_matrix(rng: np.random.Generator | None = None) -> np.ndarray:
    """(12, 3) projections of the heart vector onto I..V6; `rng` jitters electrode placement."""
    i, ii = np.array([1.0, 0.0, 0.0]), np.array([0.5, np.sqrt(3) / 2, 0.0])
    iii = ii - i
    limb = [i, ii, iii, -(i + ii) / 2, (i - iii) / 2, (ii + iii) / 2]
    angles = np.deg2rad([120.0, 100.0, 80.0, 60.0, 30.0, 0.0])
    gains = np.array([1.0, 1.4, 1.5, 1.4, 1.2, 1.0])
    if rng is not None:
        angles = angles + rng.normal(0, np.deg2rad(6), 6)
        gains = gains * rng.uniform(0.85, 1.15, 6)
    chest = [g * np.array([np.cos(a), 0.15, np.sin(a)]) for a, g in zip(angles, gains)]
    return np.stack(limb + chest)


@dataclass
class Wave:
    """One Gaussian bump of the heart vector: direction*amplitude (mV), centre (s from R), width (s)."""

    vector: tuple[float, float, float]
    centre: float
    width: float
    width_after: float | None = None  # asymmetric waves (T) fall with another width


@dataclass
class Heart:
    """All waveform parameters of one record; `simulate` turns them into 12 leads."""

    rhythm: str = "SR"  # SR, STACH, SBRAD, SARRH, AFIB, AFLT
    heart_rate: float = 72.0
    rr_jitter: float = 0.02  # beat-to-beat relative RR noise
    resp_modulation: float = 0.03  # respiratory sinus arrhythmia, relative
    resp_hz: float = 0.25
    pr: float = 0.16  # P centre to R peak, s
    p_amp: float = 0.15
    axis_deg: float = 50.0  # frontal QRS axis
    qrs_amp: float = 1.2
    qrs_width: float = 1.0  # multiplies the QRS wave widths
    s_amp: float = 0.45
    t_amp: float = 0.3  # negative: inverted T
    qt_c: float = 0.40  # Bazett-corrected QT, s
    st_vector: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ST deviation (mV along each axis)
    bundle_branch: str = ""  # "", "L", "R", "IR"
    q_inferior: float = 0.0  # pathological Q amplitude (mV) toward superior (inferior MI)
    q_anterior: float = 0.0  # ... toward posterior (anterior MI)
    t_vector_flip: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-axis sign/scale of T (regional inversion)
    voltage: float = 1.0  # overall QRS scale (low / high voltage)
    pvc_count: int = 0
    f_wave_amp: float = 0.06  # AFIB fibrillation amplitude
    flutter_rate: float = 300.0  # AFLT atrial rate, per min
    flutter_conduction: int = 2
    noise_mv: float = 0.015
    wander_mv: float = 0.08
    hum_mv: float = 0.0
    extra: dict = field(default_factory=dict)


def _rot_frontal(v: np.ndarray, deg: float) -> np.ndarray:
    """Rotate a vector in the frontal (x, y) plane by `deg` (towards inferior for positive)."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])


def beat_waves(h: Heart, rr: float, ectopic: bool = False) -> list[Wave]:
    """The waves of one beat (without the P wave), given the running RR interval in s."""
    w = h.qrs_width
    axis = h.axis_deg - 50.0
    r_dir = _rot_frontal(np.array([0.64, 0.77, -0.35]), axis)
    v = h.voltage
    if ectopic:  # premature ventricular beat: wide, bizarre, discordant T
        d = _rot_frontal(np.array([-0.3, 0.9, 0.6]), 20)
        return [
            Wave(tuple(1.6 * v * d), 0.0, 0.035),
            Wave(tuple(-0.5 * v * d), 0.09, 0.03),
            Wave(tuple(-0.45 * d), 0.33, 0.07, 0.05),
        ]
    waves = []
    if h.bundle_branch != "L":
        waves.append(Wave(tuple(0.15 * v * np.array([-0.4, 0.1, 0.5])), -0.03 * w, 0.008 * w))
    if h.bundle_branch == "L":  # notched, broad, leftward-posterior R; no septal q
        d = np.array([0.75, 0.2, -0.75])
        waves += [
            Wave(tuple(0.9 * h.qrs_amp * v * d), -0.025, 0.022),
            Wave(tuple(1.0 * h.qrs_amp * v * d), 0.035, 0.024),
        ]
    else:
        waves.append(Wave(tuple(h.qrs_amp * v * r_dir), 0.0, 0.011 * w))
        waves.append(Wave(tuple(h.s_amp * v * np.array([-0.35, -0.55, -0.6])), 0.03 * w, 0.011 * w))
    if h.bundle_branch in ("R", "IR"):  # terminal slow rightward-anterior R'
        amp, centre, width = (0.7, 0.065, 0.024) if h.bundle_branch == "R" else (0.35, 0.045, 0.014)
        waves.append(Wave(tuple(amp * v * np.array([-0.6, 0.05, 0.8])), centre, width))
    if h.q_inferior:
        waves.append(Wave((0.0, -h.q_inferior, 0.0), -0.028, 0.014))
    if h.q_anterior:
        waves.append(Wave((0.0, 0.0, -h.q_anterior), -0.022, 0.015))
    qt = h.qt_c * np.sqrt(rr)
    t_dir = np.array([0.6, 0.55, 0.35]) * np.array(h.t_vector_flip)
    if h.bundle_branch == "L":
        t_dir = -0.8 * np.array([0.75, 0.2, -0.75])  # secondary, discordant ST-T
    elif h.bundle_branch == "R":
        t_dir = t_dir * np.array([1.0, 1.0, -0.6])
    waves.append(Wave(tuple(h.t_amp * t_dir), qt - 0.07, 0.06, 0.04))
    if any(h.st_vector):  # ST plateau: a broad bump spanning J point to T peak
        waves.append(Wave(h.st_vector, (qt - 0.07 + 0.05) / 2, (qt - 0.07 - 0.05) / 2.6))
    return waves


def _render(waves: list[Wave], fs: int, t0: float, length: int) -> np.ndarray:
    """(3, length) heart vector of `waves`, sampled at t0 + k/fs."""
    t = t0 + np.arange(length) / fs
    out = np.zeros((3, length))
    for wv in waves:
        z = t - wv.centre
        width = np.where(z > 0, wv.width_after, wv.width) if wv.width_after else wv.width
        out += np.outer(wv.vector, np.exp(-0.5 * (z / width) ** 2))
    return out


def beat_times(h: Heart, duration: float, rng: np.random.Generator) -> np.ndarray:
    """R-peak times (s) covering [-1, duration + 1]."""
    mean_rr = 60.0 / h.heart_rate
    times, t = [], -rng.uniform(0.5, 1.0) - mean_rr
    resp_phase = rng.uniform(0, 2 * np.pi)
    while t < duration + 1.0:
        times.append(t)
        if h.rhythm == "AFIB":
            rr = mean_rr * rng.gamma(1 / h.rr_jitter**2, h.rr_jitter**2)
            rr = max(rr, 0.3)
        elif h.rhythm == "AFLT":
            rr = h.flutter_conduction * 60.0 / h.flutter_rate
        else:
            rr = mean_rr * (
                1 + h.resp_modulation * np.sin(2 * np.pi * h.resp_hz * t + resp_phase) + rng.normal(0, h.rr_jitter)
            )
        t += max(rr, 0.25)
    return np.array(times)


def atrial_activity(h: Heart, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, n) heart vector of fibrillation (AFIB) or flutter (AFLT) waves; zero otherwise."""
    out = np.zeros((3, len(t)))
    if h.rhythm == "AFIB":
        f = np.zeros(len(t))
        for _ in range(3):
            hz = rng.uniform(4.5, 8.0)
            phase = 2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi)
            drift = np.cumsum(rng.normal(0, 0.08, len(t)))  # wandering frequency: no two f-waves alike
            f += np.sin(phase + drift) * rng.uniform(0.5, 1.0)
        out += np.outer(np.array([-0.2, 0.6, 0.7]) * h.f_wave_amp, f / 2)
    elif h.rhythm == "AFLT":
        cycle = (t * h.flutter_rate / 60.0 + h.extra.get("flutter_phase", 0.0)) % 1.0
        saw = np.where(cycle < 0.75, 1 - cycle / 0.75 * 2, -1 + (cycle - 0.75) / 0.25 * 2)  # slow fall, fast rise
        out += np.outer(np.array([0.05, 0.2, -0.08]), saw)
    return out


def simulate(h: Heart, fs: int = 500, duration: float = 10.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Twelve leads (canonical order) in mV, shape (12, duration*fs)."""
    rng = rng or np.random.default_rng()
    n = int(round(duration * fs))
    t = np.arange(n) / fs
    heart = np.zeros((3, n))
    times = beat_times(h, duration, rng)
    rrs = np.diff(times, append=times[-1] + 60 / h.heart_rate)
    pre, post = 0.45, 0.75
    tpl_t0, tpl_len = -pre, int((pre + post) * fs)
    mean_rr = 60.0 / h.heart_rate
    template = _render(beat_waves(h, mean_rr), fs, tpl_t0, tpl_len)
    p_wave = _render([Wave(tuple(h.p_amp * np.array([0.5, 0.8, 0.2])), -h.pr, 0.022)], fs, tpl_t0, tpl_len)
    ectopic_tpl = _render(beat_waves(h, mean_rr, ectopic=True), fs, tpl_t0, tpl_len) if h.pvc_count else None
    inside = np.flatnonzero((times > 0.5) & (times < duration - 0.8))
    pvcs = (
        set(rng.choice(inside, size=min(h.pvc_count, len(inside)), replace=False).tolist())
        if h.pvc_count and len(inside)
        else set()
    )
    sinus = h.rhythm not in ("AFIB", "AFLT")
    resp = rng.uniform(0, 2 * np.pi)
    for k, tb in enumerate(times):
        if k in pvcs:  # comes early, replaces the sinus beat, full compensatory pause
            tb = tb - 0.35 * rrs[k - 1] if k else tb
            beat = ectopic_tpl
        else:
            beat = template * (1 + 0.05 * np.sin(2 * np.pi * h.resp_hz * tb + resp) + rng.normal(0, 0.02))
            if sinus:
                beat = beat + p_wave
        start = int(round((tb + tpl_t0) * fs))
        lo, hi = max(start, 0), min(start + tpl_len, n)
        if hi > lo:
            heart[:, lo:hi] += beat[:, lo - start : hi - start]
    heart += atrial_activity(h, t, rng)
    leads = lead_matrix(rng) @ heart
    # wander (respiration + drift), white noise and hum on the independently measured leads
    # (I, II, V1-V6); III, aVR, aVL, aVF are then derived from I and II as an electrocardiograph does
    measured = [0, 1, 6, 7, 8, 9, 10, 11]
    m = len(measured)
    amp, hz, phase = rng.uniform(0.3, 1.0, (m, 1)), rng.uniform(0.05, 0.4, (m, 1)), rng.uniform(0, 2 * np.pi, (m, 1))
    coarse = np.linspace(0.0, duration, 101)  # wander is below 0.5 Hz: 10 points/s, then linear interpolation
    wander = h.wander_mv * amp * np.sin(2 * np.pi * hz * coarse + phase)
    wander += h.wander_mv * 0.5 * np.sin(2 * np.pi * h.resp_hz * coarse + resp)[None] * rng.uniform(-1, 1, (m, 1))
    pos = t * (100 / duration)
    k = np.minimum(pos.astype(np.int64), 99)
    frac = pos - k
    noise = wander[:, k] * (1 - frac) + wander[:, k + 1] * frac
    noise += h.noise_mv * rng.standard_normal((m, n), dtype=np.float32)
    if h.hum_mv:
        noise += h.hum_mv * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))[None]
    leads[measured] += noise
    i, ii = leads[0], leads[1]
    leads[2], leads[3], leads[4], leads[5] = ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2
    return leads
