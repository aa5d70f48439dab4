"""Named scenarios: schedules of signal conditions and anomalies over time.

A scenario is built from one seeded random patient; its conditions are labelled as
``Record.conditions`` spans (artifacts with their SNR, ``lead_change``, ``new_patient``)
and its anomalies as beat classes, rhythm spans and ``Record.anomalies``.

Levels (``make_scenario(..., snr_db=0)``) are SNRs in dB; each scenario lists the ones it
takes and their defaults (``kasmina-edge ecg scenarios``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.anomalies import PAC, PVC, make_anomaly
from kasmina_edge.ecg.artifacts import add_noise
from kasmina_edge.ecg.synth import MARGIN_S, BeatPlan, PatientParams, random_patient, synthesize, tachogram
from kasmina_edge.ecg.types import DEFAULT_FS, Record

Build = Callable[[float, float, np.random.Generator, dict[str, float], str], Record]


@dataclass
class PatientChange:
    """From ``start_s`` on, another patient: own rate, HRV and morphology (condition ``new_patient``)."""

    start_s: float
    patient: PatientParams
    priority: ClassVar[int] = 5

    def apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        rr_at = tachogram(self.patient, plan.seconds + 2 * MARGIN_S, rng)
        start = self.start_s

        def seq(k: int) -> np.ndarray:
            out, t = np.empty(k), start
            for i in range(k):
                out[i] = rr_at(t)
                t += out[i]
            return out

        plan.retime(start, plan.seconds + 2 * MARGIN_S, seq, patient=self.patient)
        plan.condition_spans.append((start, plan.seconds, "new_patient"))


@dataclass
class LeadChange:
    """From ``start_s`` on, the two leads are swapped (electrodes moved): condition ``lead_change``."""

    start_s: float
    priority: ClassVar[int] = 45

    def apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        if plan.n_leads < 2:
            raise KasminaError("lead change needs two leads")
        idx = np.flatnonzero(plan.t >= self.start_s)
        plan.amps[idx] = plan.amps[idx][:, ::-1, :]
        plan.condition_spans.append((self.start_s, plan.seconds, "lead_change"))


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Build
    levels: dict[str, float]


def _background(seconds: float) -> list[PVC | PAC]:
    """Everyday ectopy: about one PVC and one PAC a minute."""
    return [PVC(0.0, seconds, per_minute=1.0), PAC(0.0, seconds, per_minute=1.0)]


def _base(seconds: float, fs: float, rng: np.random.Generator, name: str, events: list | None = None) -> Record:
    patient = random_patient(rng)
    return synthesize(patient, seconds, fs, rng, events=[*_background(seconds), *(events or [])], name=name)


def _clean(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str) -> Record:
    return _base(seconds, fs, rng, name)


def _noisy_walk(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str) -> Record:
    rec = _base(seconds, fs, rng, name)
    n = rec.n_samples
    cuts = [int(n * k / 5) for k in range(6)]
    for (kind, key), a, b in zip(
        [("emg", "emg_db"), ("baseline_wander", "bw_db"), ("electrode_motion", "em_db")], cuts[1:4], cuts[2:5],
        strict=True,
    ):
        rec = add_noise(rec, kind, lv[key], rng, start=a, end=b)
    return rec


def _emg_switch(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str) -> Record:
    rec = _base(seconds, fs, rng, name)
    return add_noise(rec, "emg", lv["snr_db"], rng, start=rec.n_samples // 2, end=rec.n_samples)


def _lead_change(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str) -> Record:
    return _base(seconds, fs, rng, name, [LeadChange(seconds / 2)])


def _new_patient(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str) -> Record:
    second = random_patient(rng)
    return _base(seconds, fs, rng, name, [PatientChange(seconds / 2, second)])


MIX_KINDS: tuple[str, ...] = (
    "pvc", "pac", "afib", "vt", "svt", "sinus_bradycardia", "sinus_tachycardia", "bbb",
    "st_elevation", "st_depression", "sinus_pause", "fusion", "paced",
)


def _arrhythmia_mix(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str
                    ) -> Record:
    seg = seconds / len(MIX_KINDS)
    events = []
    for k, kind in enumerate(MIX_KINDS):
        a, b = k * seg + 0.15 * seg, k * seg + 0.85 * seg
        params: dict[str, float | str] = {}
        if kind in ("pvc", "pac"):
            params["per_minute"] = 12.0
        elif kind == "fusion":
            params["per_minute"] = 6.0
        elif kind == "bbb":
            params["side"] = str(rng.choice(["L", "R"]))
        elif kind == "vt":
            b = a + min(0.7 * seg, 4.0)  # a VT run: a few seconds
        events.append(make_anomaly(kind, a, b, **params))
    return synthesize(random_patient(rng), seconds, fs, rng, events=events, name=name)


def _artifact_tour(seconds: float, fs: float, rng: np.random.Generator, lv: dict[str, float], name: str
                   ) -> Record:
    rec = _base(seconds, fs, rng, name)
    kinds = ["emg", "baseline_wander", "powerline", "electrode_motion", "lead_off", "saturation"]
    n = rec.n_samples
    step = n / (len(kinds) + 1)
    for k, kind in enumerate(kinds):
        a, b = int((k + 0.5) * step), int((k + 1.5) * step)
        level = 30.0 if kind == "lead_off" else lv["snr_db"]
        rec = add_noise(rec, kind, level, rng, start=a, end=b)
    return rec


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("clean", "sinus rhythm, about one PVC and one PAC a minute, no artifacts", _clean, {}),
        Scenario("noisy-walk", "clean -> EMG noise -> baseline wander -> electrode motion -> clean (fifths)",
                 _noisy_walk, {"emg_db": 0.0, "bw_db": 0.0, "em_db": 6.0}),
        Scenario("emg-switch", "clean first half, EMG (muscle) noise at snr_db second half", _emg_switch,
                 {"snr_db": 0.0}),
        Scenario("lead-change", "clean; at half time the two leads are swapped (electrodes moved)",
                 _lead_change, {}),
        Scenario("new-patient", "one patient first half, another (rate, HRV, morphology) second half",
                 _new_patient, {}),
        Scenario("arrhythmia-mix", "13 anomaly kinds in turn: PVC, PAC, AFib, VT, SVT, brady, tachy, BBB, "
                 "ST up/down, pause, fusion, paced", _arrhythmia_mix, {}),
        Scenario("artifact-tour", "each artifact in turn: EMG, baseline, powerline, electrode motion, "
                 "lead-off, saturation", _artifact_tour, {"snr_db": 6.0}),
    )
}


def make_scenario(name: str, minutes: float, fs: float = DEFAULT_FS, seed: int = 0, **levels: float) -> Record:
    """Build a named scenario: ``minutes`` long at ``fs``, reproducible from ``seed``."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise KasminaError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    if not np.isfinite(minutes) or minutes <= 0 or minutes > 24 * 60:
        raise KasminaError(f"minutes must be in (0, 1440], got {minutes}")
    unknown = sorted(set(levels) - set(scenario.levels))
    if unknown:
        known = ", ".join(scenario.levels) or "none"
        raise KasminaError(f"scenario {name!r} takes no level {', '.join(unknown)} (levels: {known})")
    lv = {**scenario.levels, **{k: float(v) for k, v in levels.items()}}
    rng = np.random.default_rng(seed)
    return scenario.build(float(minutes) * 60.0, float(fs), rng, lv, f"{name}-s{seed}")
