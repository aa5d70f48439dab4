"""Labelled rhythm and beat anomalies: events that edit a synthetic :class:`BeatPlan`.

Each anomaly acts over [start_s, end_s) and labels what it does: beat classes and
MIT-BIH symbols (AAMI per EC57: bundle-branch-block beats are N, as MIT-BIH L/R),
rhythm spans with MIT-BIH rhythm codes where one exists (AFIB, VT, SVTA, SBR, P) and our
own otherwise (STACH), and an anomaly span with the anomaly's kind.

Physiology encoded here (checked on generated signals in tests/ecg/test_anomalies.py):
- ventricular beats (PVC, VT, paced) have no P wave, a QRS wider than 120 ms and a T wave
  of opposite polarity; a PVC leaves a full compensatory pause (the sinus node is not
  reset), a PAC resets it (non-compensatory) and has an abnormal P;
- atrial fibrillation: no P waves, irregularly irregular RR (coefficient of variation ~0.2),
  4-9 Hz fibrillatory waves, larger in the V1-like lead;
- bundle-branch block: QRS > 120 ms (left: broad notched R; right: rsR' in V1, broad S in MLII);
- ST elevation / depression: an ST-segment offset of the chosen sign and size;
- sinus pause / missed beat: a cycle (or more) without a beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.synth import MIN_RR_S, BeatPlan, W

# Event priorities: rhythm (re-timing) first, then single premature/missing beats, then morphology.
RHYTHM, BEAT, MORPHOLOGY = 10, 20, 40


@dataclass
class Anomaly:
    """Base: an anomaly active over [start_s, end_s) of the record."""

    start_s: float
    end_s: float

    priority: ClassVar[int] = BEAT
    kind: ClassVar[str] = "anomaly"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.start_s) and np.isfinite(self.end_s)) or self.end_s <= self.start_s:
            raise KasminaError(f"{self.kind}: bad span [{self.start_s}, {self.end_s}) s")

    def apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        self._apply(plan, rng)
        plan.anomaly_spans.append((self.start_s, self.end_s, self.kind))

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        raise NotImplementedError


# -- morphology helpers ----------------------------------------------------------------

@dataclass
class VentricularShape:
    """A ventricular focus: wide QRS, no P, discordant T. One per event (unifocal beats look alike)."""

    r_gain: float  # MLII R relative to the patient's sinus R
    v1_sign: float  # +1: upright in V1 (left-ventricular focus), -1: negative (right)
    width: float  # R width in rad at 60 bpm (sinus R is ~0.1)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> VentricularShape:
        return cls(float(rng.uniform(1.1, 1.6)), float(rng.choice([-1.0, 1.0])), float(rng.uniform(0.17, 0.22)))

    def apply(self, plan: BeatPlan, i: int, rng: np.random.Generator) -> None:
        amp, ang, wid = plan.amps[i], plan.angles[i], plan.widths[i]
        r = max(abs(float(amp[0, W["R"]])), 0.3)
        amp[:, [W["P"], W["Q"], W["R2"], W["ST"]]] = 0.0
        wid[W["R"]] = self.width * rng.uniform(0.95, 1.05)
        wid[W["S"]], ang[W["S"]] = 0.18, 0.42
        ang[W["T"]], wid[W["T"]] = 2.0, 0.45
        amp[0, W["R"]] = self.r_gain * r
        amp[0, W["S"]] = -0.25 * r
        amp[0, W["T"]] = -0.4 * r
        if plan.n_leads > 1:
            amp[1, W["R"]] = self.v1_sign * rng.uniform(0.8, 1.2)
            amp[1, W["S"]] = -0.3 * self.v1_sign
            amp[1, W["T"]] = -0.35 * self.v1_sign


def _abnormal_p(plan: BeatPlan, i: int, rng: np.random.Generator) -> None:
    """Ectopic atrial focus: a P wave of another shape (inverted or flattened), closer to the QRS."""
    plan.amps[i, :, W["P"]] *= rng.choice([-0.8, -0.5, 0.4, 1.6])
    plan.angles[i, W["P"]] *= 0.8
    plan.widths[i, W["P"]] *= 0.8


def _bundle_branch_block(plan: BeatPlan, i: int, side: str) -> None:
    amp, ang, wid = plan.amps[i], plan.angles[i], plan.widths[i]
    r = max(abs(float(amp[0, W["R"]])), 0.3)
    if side == "L":  # broad, notched R in MLII; deep broad QS in V1; discordant T
        wid[W["R"]] = 0.16
        amp[0, W["Q"]] = 0.0
        amp[0, W["R2"]], ang[W["R2"]], wid[W["R2"]] = 0.7 * r, 0.30, 0.13
        amp[0, W["S"]] = 0.0
        amp[0, W["T"]] = -0.25 * r
        if plan.n_leads > 1:
            amp[1, W["R"]] = 0.1
            amp[1, W["S"]], ang[W["S"]], wid[W["S"]] = -1.4, 0.35, 0.22
            amp[1, W["R2"]] = 0.0
            amp[1, W["T"]] = 0.3
    else:  # right: rsR' in V1, broad slurred S in MLII
        amp[0, W["S"]], ang[W["S"]], wid[W["S"]] = -0.45 * r, 0.45, 0.24
        amp[0, W["R2"]] = 0.0
        if plan.n_leads > 1:
            amp[1, W["S"]] = -0.5
            amp[1, W["R2"]], ang[W["R2"]], wid[W["R2"]] = 0.9, 0.55, 0.16
            amp[1, W["T"]] = -0.2


def _pick(rng: np.random.Generator, candidates: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` beats among candidates, no two adjacent, in time order."""
    chosen: list[int] = []
    for i in rng.permutation(candidates):
        if len(chosen) >= count:
            break
        if all(abs(int(i) - c) > 1 for c in chosen):
            chosen.append(int(i))
    return sorted(chosen)


def _count(per_minute: float, start_s: float, end_s: float, available: int) -> int:
    return int(min(available, max(1, round(per_minute * (end_s - start_s) / 60.0)))) if available else 0


def _sinus_candidates(plan: BeatPlan, start_s: float, end_s: float) -> np.ndarray:
    """Normal beats in the span whose neighbours are normal too (room for an ectopic beat)."""
    idx = plan.in_span(start_s, end_s)
    idx = idx[(idx > 0) & (idx < len(plan) - 1)]
    ok = [i for i in idx if plan.symbols[i - 1] == "N" and plan.symbols[i] == "N" and plan.symbols[i + 1] == "N"]
    return np.asarray(ok, dtype=np.int64)


def _iid_rr(rng: np.random.Generator, mean_rr: float, cv: float) -> Callable[[int], np.ndarray]:
    def seq(k: int) -> np.ndarray:
        sigma = np.sqrt(np.log(1 + cv * cv))
        return np.maximum(mean_rr * rng.lognormal(-sigma * sigma / 2, sigma, k), MIN_RR_S)

    return seq


# -- single beats -----------------------------------------------------------------------

@dataclass
class PVC(Anomaly):
    """Premature ventricular contractions (V): early, wide, no P, full compensatory pause."""

    per_minute: float = 6.0
    kind: ClassVar[str] = "pvc"

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        cand = _sinus_candidates(plan, self.start_s, self.end_s)
        shape = VentricularShape.draw(rng)
        for i in _pick(rng, cand, _count(self.per_minute, self.start_s, self.end_s, cand.size)):
            rr = plan.rr_before(i)
            # The sinus beat it replaces is hidden; the next sinus beat keeps its time: pre + post = 2 RR.
            plan.t[i] = plan.t[i - 1] + rng.uniform(0.55, 0.7) * rr
            shape.apply(plan, i, rng)
            plan.set_beat(i, "V", "V")


@dataclass
class PAC(Anomaly):
    """Premature atrial contractions (S): early, abnormal P, narrow QRS, sinus node reset."""

    per_minute: float = 6.0
    kind: ClassVar[str] = "pac"

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        cand = _sinus_candidates(plan, self.start_s, self.end_s)
        for i in _pick(rng, cand, _count(self.per_minute, self.start_s, self.end_s, cand.size)):
            rr = plan.rr_before(i)
            new_t = plan.t[i - 1] + rng.uniform(0.6, 0.78) * rr
            plan.shift_from(i, new_t - plan.t[i])  # the reset sinus node restarts from the PAC
            _abnormal_p(plan, i, rng)
            plan.set_beat(i, "S", "A")


@dataclass
class Fusion(Anomaly):
    """Fusion beats (F): sinus and ventricular activation meet; shape half way, slightly early."""

    per_minute: float = 3.0
    kind: ClassVar[str] = "fusion"

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        cand = _sinus_candidates(plan, self.start_s, self.end_s)
        shape = VentricularShape.draw(rng)
        for i in _pick(rng, cand, _count(self.per_minute, self.start_s, self.end_s, cand.size)):
            sinus = (plan.amps[i].copy(), plan.angles[i].copy(), plan.widths[i].copy())
            shape.apply(plan, i, rng)
            mix = rng.uniform(0.4, 0.6)
            plan.amps[i] = mix * plan.amps[i] + (1 - mix) * sinus[0]
            plan.angles[i] = mix * plan.angles[i] + (1 - mix) * sinus[1]
            plan.widths[i] = mix * plan.widths[i] + (1 - mix) * sinus[2]
            plan.amps[i, :, W["P"]] = sinus[0][:, W["P"]]  # the sinus P still came
            plan.t[i] = plan.t[i - 1] + rng.uniform(0.9, 0.97) * plan.rr_before(i)
            plan.set_beat(i, "F", "F")


@dataclass
class SinusPause(Anomaly):
    """Sinus pause / missed beat: a sinus beat does not come (pause >= 2 RR with pause_s)."""

    per_minute: float = 2.0
    pause_s: float | None = None  # total gap; default: exactly the missed beat (2 RR)
    kind: ClassVar[str] = "sinus_pause"

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        cand = _sinus_candidates(plan, self.start_s, self.end_s)
        chosen = _pick(rng, cand, _count(self.per_minute, self.start_s, self.end_s, cand.size))
        for i in reversed(chosen):  # from the end: removing a beat does not move earlier indices
            gap = plan.t[i + 1] - plan.t[i - 1]
            plan.remove(i)
            if self.pause_s is not None and self.pause_s > gap:
                plan.shift_from(i, self.pause_s - gap)


# -- rhythms ----------------------------------------------------------------------------

@dataclass
class AtrialFibrillation(Anomaly):
    """Atrial fibrillation: irregular RR, no P, fibrillatory waves; beats N (AAMI), rhythm AFIB."""

    rate_bpm: float | None = None  # mean ventricular rate; default 80..130
    rr_cv: float = 0.2
    f_wave_mv: float = 0.05
    priority: ClassVar[int] = RHYTHM
    kind: ClassVar[str] = "afib"

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        rate = self.rate_bpm or float(rng.uniform(80, 130))
        new = plan.retime(self.start_s, self.end_s, _iid_rr(rng, 60.0 / rate, self.rr_cv))
        plan.amps[new, :, W["P"]] = 0.0
        plan.rhythm_spans.append((self.start_s, self.end_s, "AFIB"))
        start, end, amp = self.start_s, self.end_s, self.f_wave_mv
        f0, seed = float(rng.uniform(5.0, 7.5)), int(rng.integers(2**31))

        def f_waves(t: np.ndarray, n_leads: int, _: np.random.Generator) -> np.ndarray:
            out = np.zeros((t.shape[0], n_leads))
            sel = (t >= start) & (t < end)
            if not np.any(sel):
                return out
            local = np.random.default_rng(seed)
            ts = t[sel]
            # Frequency wanders around f0 (4-9 Hz): integrate a slowly varying frequency.
            knots = np.arange(start, end + 1.0, 0.5)
            freq = np.clip(f0 + local.normal(0, 0.8, knots.shape[0]), 4.0, 9.0)
            phase = 2 * np.pi * np.cumsum(np.interp(ts, knots, freq)) * (ts[1] - ts[0] if ts.shape[0] > 1 else 0)
            wave = np.sin(phase) + 0.35 * np.sin(2 * phase + local.uniform(0, 2 * np.pi))
            envelope = np.interp(ts, knots, local.uniform(0.6, 1.0, knots.shape[0]))
            out[sel, 0] = amp * envelope * wave
            if n_leads > 1:
                out[sel, 1] = 2.0 * amp * envelope * wave  # f-waves are best seen in V1
            return out

        plan.additive.append(f_waves)


@dataclass
class _RateRhythm(Anomaly):
    """A run at a given rate (sinus HRV-like jitter), beats of one class/shape, a rhythm label."""

    rate_bpm: float | None = None
    priority: ClassVar[int] = RHYTHM
    label: ClassVar[str] = "N"
    rate_range: ClassVar[tuple[float, float]] = (60.0, 100.0)
    jitter_cv: ClassVar[float] = 0.02

    def _rate(self, rng: np.random.Generator) -> float:
        return self.rate_bpm or float(rng.uniform(*self.rate_range))

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        new = plan.retime(self.start_s, self.end_s, _iid_rr(rng, 60.0 / self._rate(rng), self.jitter_cv))
        self._shape(plan, new, rng)
        if self.label:
            plan.rhythm_spans.append((self.start_s, self.end_s, self.label))

    def _shape(self, plan: BeatPlan, new: np.ndarray, rng: np.random.Generator) -> None:
        pass


@dataclass
class SinusBradycardia(_RateRhythm):
    kind: ClassVar[str] = "sinus_bradycardia"
    label: ClassVar[str] = "SBR"
    rate_range: ClassVar[tuple[float, float]] = (38.0, 52.0)


@dataclass
class SinusTachycardia(_RateRhythm):
    kind: ClassVar[str] = "sinus_tachycardia"
    label: ClassVar[str] = "STACH"  # no MIT-BIH code for sinus tachycardia
    rate_range: ClassVar[tuple[float, float]] = (110.0, 145.0)


@dataclass
class VentricularTachycardia(_RateRhythm):
    """A run of consecutive ventricular beats (V), 140-200 bpm."""

    kind: ClassVar[str] = "vt"
    label: ClassVar[str] = "VT"
    rate_range: ClassVar[tuple[float, float]] = (140.0, 200.0)

    def _shape(self, plan: BeatPlan, new: np.ndarray, rng: np.random.Generator) -> None:
        shape = VentricularShape.draw(rng)
        for i in new:
            shape.apply(plan, int(i), rng)
            plan.set_beat(int(i), "V", "V")


@dataclass
class SupraventricularTachycardia(_RateRhythm):
    """A run of supraventricular beats (S), 150-220 bpm, narrow QRS, P hidden or retrograde."""

    kind: ClassVar[str] = "svt"
    label: ClassVar[str] = "SVTA"
    rate_range: ClassVar[tuple[float, float]] = (150.0, 220.0)
    jitter_cv: ClassVar[float] = 0.01

    def _shape(self, plan: BeatPlan, new: np.ndarray, rng: np.random.Generator) -> None:
        plan.amps[new, :, W["P"]] *= -0.4  # small retrograde P
        for i in new:
            plan.set_beat(int(i), "S", "A")


@dataclass
class Paced(_RateRhythm):
    """Ventricular pacing (Q, MIT-BIH '/'): fixed rate, a pacing spike before each wide QRS."""

    spike_mv: float = 1.0
    kind: ClassVar[str] = "paced"
    label: ClassVar[str] = "P"
    rate_range: ClassVar[tuple[float, float]] = (60.0, 80.0)
    jitter_cv: ClassVar[float] = 0.0

    def _shape(self, plan: BeatPlan, new: np.ndarray, rng: np.random.Generator) -> None:
        shape = VentricularShape.draw(rng)
        for i in new:
            shape.apply(plan, int(i), rng)
            plan.set_beat(int(i), "Q", "/")
        spikes = plan.t[new] - 0.06
        amp = self.spike_mv

        def spike_train(t: np.ndarray, n_leads: int, _: np.random.Generator) -> np.ndarray:
            out = np.zeros((t.shape[0], n_leads))
            if t.shape[0] < 2:
                return out
            fs = 1.0 / (t[1] - t[0])
            idx = np.round(spikes * fs).astype(np.int64)
            idx = idx[(idx >= 0) & (idx < t.shape[0] - 1)]
            out[idx, :] += amp  # a ~3 ms biphasic spike: up one sample, down the next
            out[idx + 1, :] -= 0.4 * amp
            return out

        plan.additive.append(spike_train)


# -- morphology -------------------------------------------------------------------------

@dataclass
class BundleBranchBlock(Anomaly):
    """Bundle-branch block: QRS > 120 ms on every beat of the span; class N, symbol L or R."""

    side: str = "L"
    priority: ClassVar[int] = MORPHOLOGY
    kind: ClassVar[str] = "bbb"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.side not in ("L", "R"):
            raise KasminaError(f"bbb side must be 'L' or 'R', got {self.side!r}")

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        for i in plan.in_span(self.start_s, self.end_s):
            if plan.symbols[i] == "N":
                _bundle_branch_block(plan, int(i), self.side)
                plan.set_beat(int(i), "N", self.side)


@dataclass
class STElevation(Anomaly):
    """ST-segment elevation of ``mv`` (MLII; half in V1) on every beat of the span."""

    mv: float = 0.2
    priority: ClassVar[int] = MORPHOLOGY
    kind: ClassVar[str] = "st_elevation"
    sign: ClassVar[float] = 1.0

    def _apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        idx = plan.in_span(self.start_s, self.end_s)
        plan.amps[idx, 0, W["ST"]] += self.sign * abs(self.mv)
        if plan.n_leads > 1:
            plan.amps[idx, 1, W["ST"]] += 0.5 * self.sign * abs(self.mv)


@dataclass
class STDepression(STElevation):
    """ST-segment depression of ``mv``."""

    mv: float = 0.15
    kind: ClassVar[str] = "st_depression"
    sign: ClassVar[float] = -1.0


ANOMALIES: dict[str, type[Anomaly]] = {
    cls.kind: cls
    for cls in (
        PVC, PAC, Fusion, SinusPause, AtrialFibrillation, SinusBradycardia, SinusTachycardia,
        VentricularTachycardia, SupraventricularTachycardia, Paced, BundleBranchBlock, STElevation, STDepression,
    )
}


def make_anomaly(kind: str, start_s: float, end_s: float, **params: float | str) -> Anomaly:
    """An anomaly by name (see ``ANOMALIES``); unknown names and parameters are one-line errors."""
    cls = ANOMALIES.get(kind)
    if cls is None:
        raise KasminaError(f"unknown anomaly {kind!r} (known: {', '.join(sorted(ANOMALIES))})")
    try:
        return cls(start_s, end_s, **params)  # type: ignore[arg-type]
    except TypeError as exc:
        raise KasminaError(f"bad parameters for anomaly {kind!r}: {exc}") from exc
