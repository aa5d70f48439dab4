"""Synthetic ECG after McSharry et al. 2003 (ECGSYN), written for this project.

McSharry's model moves a point around the unit circle at angular speed
omega = 2*pi/RR and pushes the ECG coordinate z with one Gaussian per wave:

    dz/dt = -sum_i a_i * dtheta_i * exp(-dtheta_i^2 / (2 b_i^2)) - (z - z0)

On the limit cycle the phase is known in closed form (theta advances at omega), so
instead of integrating the ODE sample by sample we use its solution with the
relaxation term dropped: each wave contributes (a_i b_i^2 / omega) * exp(-dtheta_i^2 / (2 b_i^2)),
i.e. a Gaussian in time centred at theta_i / omega, of width b_i / omega. We state
amplitudes directly in mV (A_i = a_i b_i^2 / omega) and keep McSharry's angles and
widths in radians, with ECGSYN's rate correction for P and T (see ``_ANGLE_EXP``; the
QRS keeps its duration in seconds at any rate). z0 is a small respiratory baseline.

What we add to the paper, so that anomalies can be labelled beat by beat: the phase
restarts at every beat (each beat carries its own R time, its own "sinus" cycle length
that sets its wave timing, and its own wave parameters per lead), so a premature beat can
be early without squeezing the previous T wave. Beat times come from ECGSYN's RR
tachogram (bimodal spectrum: Mayer waves near 0.1 Hz, respiratory sinus arrhythmia near
0.25 Hz, chosen LF/HF ratio). Events (``kasmina_edge.ecg.anomalies``, scenario changes)
edit the :class:`BeatPlan` before it is rendered.

The rendering is vectorised (one scatter-add per wave), so a minute of two-lead ECG
takes milliseconds; ``tools/bench_ecg.py`` compares it with integrating the ODE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import AAMI_INDEX, DEFAULT_FS, Beats, Interval, Record

WAVES: tuple[str, ...] = ("P", "Q", "R", "S", "T", "R2", "ST")  # R2: R' (bundle branch block); ST: ST offset
W = {name: i for i, name in enumerate(WAVES)}
LEAD_NAMES: tuple[str, ...] = ("MLII", "V1")

# McSharry et al. 2003, Table 1 (angles and widths in radians at 60 bpm), plus R' and ST.
# Q and S sit a little closer to R (0.21 rad, not 0.26) and the QRS Gaussians are a little
# narrower (0.09 rad), so that a normal QRS lasts 80-110 ms and "wide" (> 120 ms) means something.
DEFAULT_ANGLES = np.array([-1.2217, -0.21, 0.0, 0.21, 1.7453, 0.40, 0.75])
DEFAULT_WIDTHS = np.array([0.25, 0.09, 0.09, 0.09, 0.40, 0.10, 0.35])
# Peak amplitudes (mV) per lead: an MLII-like limb lead (upright P, tall R, upright T) and a
# V1-like chest lead (small r, deep S, flat T), so that swapping them is a real "lead change".
DEFAULT_AMPLITUDES = np.array([
    [0.15, -0.10, 1.20, -0.25, 0.30, 0.0, 0.0],
    [0.08, 0.00, 0.25, -0.90, 0.10, 0.0, 0.0],
])
# Rate correction, as exponents e of (HR/60) multiplying angles and widths (in radians).
# ECGSYN: P and T angles by (HR/60)^(1/4), Q and S by (HR/60)^(1/2), all widths by (HR/60)^(1/2),
# so P-R and Q-T shorten with rate (QT ~ RR^0.75). We keep that for P, T and ST, but the
# ventricular waves (Q, R, S, R') get e = 1, i.e. fixed durations in seconds: a QRS does not
# narrow at high rates (a VT run stays wide), nor widen past 120 ms in bradycardia.
_ANGLE_EXP = np.array([0.25, 1.0, 0.0, 1.0, 0.25, 1.0, 0.5])
_WIDTH_EXP = np.array([0.5, 1.0, 1.0, 1.0, 0.5, 1.0, 0.5])
N_WAVES = len(WAVES)
MIN_RR_S = 0.25  # no two beats closer than this (240 bpm)
MARGIN_S = 3.0  # beats are planned this far beyond both ends, so edges look like the middle


@dataclass
class PatientParams:
    """One synthetic patient: rate, HRV and P/Q/R/S/T (+R', ST) morphology per lead."""

    hr_mean: float = 70.0  # bpm
    hr_std: float = 2.5  # bpm, standard deviation of the instantaneous rate (HRV)
    lf_hf: float = 0.5  # LF/HF power ratio of the RR tachogram
    lf_hz: float = 0.1  # Mayer waves
    hf_hz: float = 0.25  # respiration (RSA)
    angles: np.ndarray = field(default_factory=lambda: DEFAULT_ANGLES.copy())  # (N_WAVES,) rad at 60 bpm
    widths: np.ndarray = field(default_factory=lambda: DEFAULT_WIDTHS.copy())  # (N_WAVES,) rad at 60 bpm
    amplitudes: np.ndarray = field(default_factory=lambda: DEFAULT_AMPLITUDES.copy())  # (n_leads, N_WAVES) mV
    amplitude_scale: float = 1.0
    resp_baseline_mv: float = 0.03  # McSharry's z0: respiratory baseline (small: wander proper is an artifact)
    lead_names: tuple[str, ...] = LEAD_NAMES

    @property
    def n_leads(self) -> int:
        return int(self.amplitudes.shape[0])

    def validate(self) -> None:
        if not 20.0 <= self.hr_mean <= 250.0:
            raise KasminaError(f"patient hr_mean {self.hr_mean} bpm out of range 20..250")
        if self.hr_std < 0 or self.lf_hf <= 0:
            raise KasminaError("patient hr_std must be >= 0 and lf_hf > 0")
        if self.angles.shape != (N_WAVES,) or self.widths.shape != (N_WAVES,):
            raise KasminaError(f"patient angles/widths must have {N_WAVES} entries ({', '.join(WAVES)})")
        if self.amplitudes.ndim != 2 or self.amplitudes.shape[1] != N_WAVES:
            raise KasminaError(f"patient amplitudes must be (n_leads, {N_WAVES})")
        if len(self.lead_names) != self.n_leads:
            raise KasminaError("patient lead_names must name every lead of amplitudes")


def random_patient(rng: np.random.Generator) -> PatientParams:
    """A plausible adult at rest: rate, HRV and morphology drawn around McSharry's defaults."""
    angles = DEFAULT_ANGLES + rng.normal(0.0, [0.08, 0.02, 0.0, 0.02, 0.12, 0.0, 0.0])
    widths = DEFAULT_WIDTHS * rng.uniform([0.8, 0.85, 0.85, 0.85, 0.8, 1.0, 1.0], [1.2, 1.15, 1.15, 1.15, 1.25, 1.0, 1.0])
    mlii = [rng.uniform(0.05, 0.25), rng.uniform(-0.2, 0.0), rng.uniform(0.6, 2.0), rng.uniform(-0.5, -0.05),
            rng.uniform(0.1, 0.5), 0.0, 0.0]
    v1 = [rng.uniform(-0.05, 0.15), 0.0, rng.uniform(0.1, 0.5), rng.uniform(-1.5, -0.5), rng.uniform(-0.2, 0.3),
          0.0, 0.0]
    return PatientParams(
        hr_mean=float(rng.uniform(55.0, 95.0)),
        hr_std=float(rng.uniform(1.0, 4.0)),
        lf_hf=float(rng.uniform(0.3, 2.0)),
        lf_hz=float(rng.uniform(0.08, 0.12)),
        hf_hz=float(rng.uniform(0.15, 0.35)),
        angles=angles,
        widths=widths,
        amplitudes=np.array([mlii, v1]),
        amplitude_scale=float(rng.uniform(0.8, 1.25)),
    )


class Event(Protocol):
    """Something that edits the beat plan before rendering (anomalies, scenario changes).

    Events apply in order of ``priority`` (rhythm changes first, then single beats, then
    morphology), then of ``start_s``.
    """

    @property
    def priority(self) -> int: ...

    @property
    def start_s(self) -> float: ...

    def apply(self, plan: BeatPlan, rng: np.random.Generator) -> None: ...


# A component added on top of the beats (AF f-waves, pacing spikes): (t seconds, n_leads, rng) -> (n, n_leads).
Additive = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def tachogram(patient: PatientParams, seconds: float, rng: np.random.Generator, grid_hz: float = 4.0
              ) -> Callable[[float], float]:
    """ECGSYN's RR process: RR(t) with a bimodal (LF + HF) spectrum; returns t -> RR seconds."""
    n = int(np.ceil(seconds * grid_hz)) + 16
    n_fft = 1 << int(np.ceil(np.log2(max(n, 64))))
    f = np.fft.rfftfreq(n_fft, d=1.0 / grid_hz)
    c = 0.01  # ECGSYN's spectral width (Hz)
    lf = np.exp(-((f - patient.lf_hz) ** 2) / (2 * c * c))
    hf = np.exp(-((f - patient.hf_hz) ** 2) / (2 * c * c))
    power = patient.lf_hf * lf / max(lf.sum(), 1e-12) + hf / max(hf.sum(), 1e-12)
    spectrum = np.sqrt(power) * np.exp(2j * np.pi * rng.random(f.shape[0]))
    spectrum[0] = 0.0
    series = np.fft.irfft(spectrum, n_fft)[:n]
    sd = float(series.std())
    rr_mean = 60.0 / patient.hr_mean
    rr_std = 60.0 * patient.hr_std / patient.hr_mean**2  # delta method: sd(60/HR) ~ 60 sd(HR) / HR^2
    rr = rr_mean + (series / sd * rr_std if sd > 0 else 0.0)
    rr = np.maximum(rr, MIN_RR_S)
    grid = np.arange(n) / grid_hz - MARGIN_S

    def at(t: float) -> float:
        return float(np.interp(t, grid, rr))

    return at


def beat_times(start: float, end: float, rr_at: Callable[[float], float], first: float | None = None) -> np.ndarray:
    """Beat times in [start, end): each RR read from the tachogram at the previous beat."""
    t = start if first is None else first
    out: list[float] = []
    while t < end:
        out.append(t)
        t += rr_at(t)
    return np.asarray(out, dtype=np.float64)


class BeatPlan:
    """Beat times, classes, symbols and per-beat wave parameters, edited by events, then rendered.

    Arrays are indexed by beat. ``rr_ref`` is the cycle length that times a beat's own waves
    (the sinus cycle for a premature beat: its T wave is not squeezed by its prematurity).
    """

    def __init__(self, patient: PatientParams, seconds: float, rng: np.random.Generator) -> None:
        self.patient = patient
        self.seconds = float(seconds)
        rr_at = tachogram(patient, seconds + 2 * MARGIN_S, rng)
        self.t = beat_times(-MARGIN_S, seconds + MARGIN_S, rr_at, first=-MARGIN_S + rng.uniform(0, rr_at(0.0)))
        n = self.t.shape[0]
        self.rr_ref = np.append(np.diff(self.t), rr_at(float(self.t[-1]))) if n else np.zeros(0)
        self.classes = np.full(n, AAMI_INDEX["N"], dtype=np.int8)
        self.symbols = ["N"] * n
        self.angles = np.tile(patient.angles, (n, 1))
        self.widths = np.tile(patient.widths, (n, 1))
        self.amps = np.tile(patient.amplitudes * patient.amplitude_scale, (n, 1, 1))
        self.additive: list[Additive] = []
        self.rhythm_spans: list[tuple[float, float, str]] = []  # painted over "N" in order
        self.anomaly_spans: list[tuple[float, float, str]] = []
        self.condition_spans: list[tuple[float, float, str]] = []

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def n_leads(self) -> int:
        return int(self.amps.shape[1])

    def in_span(self, start_s: float, end_s: float) -> np.ndarray:
        return np.flatnonzero((self.t >= start_s) & (self.t < end_s))

    def rr_before(self, i: int) -> float:
        return float(self.t[i] - self.t[i - 1]) if i > 0 else float(self.rr_ref[i])

    def template(self, patient: PatientParams | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = patient or self.patient
        return p.angles.copy(), p.widths.copy(), p.amplitudes * p.amplitude_scale

    def _take(self, keep: np.ndarray) -> None:
        self.t = self.t[keep]
        self.rr_ref = self.rr_ref[keep]
        self.classes = self.classes[keep]
        self.symbols = [self.symbols[i] for i in np.flatnonzero(keep)] if keep.dtype == bool else [
            self.symbols[i] for i in keep]
        self.angles = self.angles[keep]
        self.widths = self.widths[keep]
        self.amps = self.amps[keep]

    def remove(self, i: int) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[i] = False
        self._take(keep)

    def shift_from(self, i: int, dt: float) -> None:
        """Move beat i and every later beat by dt seconds."""
        self.t[i:] += dt

    def retime(
        self, start_s: float, end_s: float, rr_seq: Callable[[int], np.ndarray],
        patient: PatientParams | None = None,
    ) -> np.ndarray:
        """Replace the beats in [start_s, end_s) by beats spaced by ``rr_seq(k)`` (k intervals).

        The first new beat follows the last kept beat before the span by the first interval;
        beats after the span keep their own RR and are moved to follow the last new beat.
        New beats get the (given or own) patient's template, class N. Returns their indices.
        """
        before = np.flatnonzero(self.t < start_s)
        after = np.flatnonzero(self.t >= end_s)
        t0 = float(self.t[before[-1]]) if before.size else start_s
        k = max(4, int(np.ceil((end_s - t0) / MIN_RR_S)) + 2)
        rr = np.maximum(np.asarray(rr_seq(k), dtype=np.float64), MIN_RR_S)
        times = t0 + np.cumsum(rr)
        new_rr = rr[: np.searchsorted(times, end_s, side="left")]
        new_t = times[: new_rr.shape[0]]
        if after.size:
            own_rr = float(self.t[after[0]] - self.t[after[0] - 1]) if after[0] > 0 else float(self.rr_ref[after[0]])
            last = float(new_t[-1]) if new_t.size else t0
            self.t[after] += (last + own_rr) - float(self.t[after[0]])
        a, w, amp = self.template(patient)
        m = new_t.shape[0]
        idx_before, idx_after = before, after
        self.t = np.concatenate([self.t[idx_before], new_t, self.t[idx_after]])
        self.rr_ref = np.concatenate([self.rr_ref[idx_before], new_rr, self.rr_ref[idx_after]])
        self.classes = np.concatenate([self.classes[idx_before], np.full(m, AAMI_INDEX["N"], np.int8),
                                       self.classes[idx_after]])
        self.symbols = [self.symbols[i] for i in idx_before] + ["N"] * m + [self.symbols[i] for i in idx_after]
        self.angles = np.concatenate([self.angles[idx_before], np.tile(a, (m, 1)), self.angles[idx_after]])
        self.widths = np.concatenate([self.widths[idx_before], np.tile(w, (m, 1)), self.widths[idx_after]])
        self.amps = np.concatenate([self.amps[idx_before], np.tile(amp, (m, 1, 1)), self.amps[idx_after]])
        return np.arange(idx_before.size, idx_before.size + m)

    def set_beat(self, i: int, aami: str, symbol: str) -> None:
        self.classes[i] = AAMI_INDEX[aami]
        self.symbols[i] = symbol


def _render_waves(plan: BeatPlan, n: int, fs: float) -> np.ndarray:
    """Sum of per-beat Gaussians (closed-form ECGSYN z), (n, n_leads) float64."""
    out = np.zeros((n, plan.n_leads), dtype=np.float64)
    if len(plan) == 0:
        return out
    rr = np.maximum(plan.rr_ref, MIN_RR_S)
    omega = 2 * np.pi / rr  # rad/s
    rate = (1.0 / rr)[:, None]  # HR/60
    centres = plan.t[:, None] + plan.angles * rate ** _ANGLE_EXP[None, :] / omega[:, None]
    sigmas = np.maximum(plan.widths * rate ** _WIDTH_EXP[None, :] / omega[:, None], 0.5 / fs)
    for wave in range(N_WAVES):
        amp = plan.amps[:, :, wave]  # (beats, leads)
        live = np.any(amp != 0, axis=1)
        if not np.any(live):
            continue
        c = centres[live, wave]
        s = sigmas[live, wave]
        half = int(np.ceil(4.5 * float(s.max()) * fs))
        idx = np.round(c * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
        shape = np.exp(-0.5 * ((idx / fs - c[:, None]) / s[:, None]) ** 2)
        inside = (idx >= 0) & (idx < n)
        if not np.any(inside):
            continue
        flat_idx = idx[inside]
        for lead in range(plan.n_leads):
            weights = (amp[live, lead][:, None] * shape)[inside]
            out[:, lead] += np.bincount(flat_idx, weights=weights, minlength=n)
    return out


def _spans_to_intervals(spans: list[tuple[float, float, str]], n: int, fs: float) -> list[Interval]:
    out = []
    for a, b, label in spans:
        lo, hi = max(0, int(round(a * fs))), min(n, int(round(b * fs)))
        if hi > lo:
            out.append(Interval(lo, hi, label))
    return out


def _rhythm_partition(spans: list[tuple[float, float, str]], n: int, fs: float) -> list[Interval]:
    """Paint rhythm spans over sinus 'N' in order; return the partition as intervals."""
    labels = np.zeros(n, dtype=np.int32)
    names = ["N"]
    for a, b, label in spans:
        if label not in names:
            names.append(label)
        labels[max(0, int(round(a * fs))): min(n, int(round(b * fs)))] = names.index(label)
    if n == 0:
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [n]])
    return [Interval(int(s), int(e), names[int(labels[s])]) for s, e in zip(starts, ends, strict=True)]


def render(plan: BeatPlan, seconds: float, fs: float, rng: np.random.Generator, name: str) -> Record:
    """Turn a plan into a labelled record."""
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    signal = _render_waves(plan, n, fs)
    p = plan.patient
    if p.resp_baseline_mv:
        phase = rng.uniform(0, 2 * np.pi)
        signal += (p.resp_baseline_mv * np.sin(2 * np.pi * p.hf_hz * t + phase))[:, None]
    for component in plan.additive:
        signal += component(t, plan.n_leads, rng)
    r = np.round(plan.t * fs).astype(np.int64)
    labelled = (r >= 0) & (r < n)
    beats = Beats(
        samples=r[labelled],
        classes=plan.classes[labelled].astype(np.int8),
        symbols=[s for s, keep in zip(plan.symbols, labelled, strict=True) if keep],
    )
    return Record(
        name=name,
        fs=float(fs),
        signal=signal.astype(np.float32),
        lead_names=list(p.lead_names),
        beats=beats,
        artifact_mask=np.zeros(n, dtype=np.uint8),
        rhythms=_rhythm_partition(plan.rhythm_spans, n, fs),
        conditions=_spans_to_intervals(plan.condition_spans, n, fs),
        anomalies=_spans_to_intervals(plan.anomaly_spans, n, fs),
    )


def synthesize(
    patient: PatientParams,
    seconds: float,
    fs: float = DEFAULT_FS,
    rng: np.random.Generator | None = None,
    events: Sequence[Event] = (),
    name: str = "synthetic",
) -> Record:
    """A labelled synthetic record: every beat's R sample and AAMI class, rhythms, anomaly spans.

    Reproducible: the same patient, events and rng seed give the same record at a given fs.
    """
    if not np.isfinite(seconds) or seconds <= 0:
        raise KasminaError(f"seconds must be > 0, got {seconds}")
    if not np.isfinite(fs) or not 50.0 <= fs <= 10_000.0:
        raise KasminaError(f"sample rate {fs} Hz is not supported (need 50..10000 Hz)")
    patient.validate()
    rng = rng if rng is not None else np.random.default_rng(0)
    plan = BeatPlan(patient, seconds, rng)
    for event in sorted(events, key=lambda e: (e.priority, e.start_s)):
        event.apply(plan, rng)
    order = np.argsort(plan.t, kind="stable")
    if np.any(order != np.arange(len(plan))):
        plan._take(order)
    return render(plan, seconds, fs, rng, name)
