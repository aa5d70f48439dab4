"""Synthetic ECG after McSharry et al. 2003 (ECGSYN), written for this project.

Skeleton: the public names are fixed; the body lands in the next commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kasmina_edge.ecg.types import DEFAULT_FS, Record

WAVES: tuple[str, ...] = ("P", "Q", "R", "S", "T")
LEAD_NAMES: tuple[str, ...] = ("MLII", "V1")


@dataclass
class PatientParams:
    """One synthetic patient: rate, HRV and P/Q/R/S/T morphology per lead."""

    hr_mean: float = 70.0
    hr_std: float = 2.0
    lf_hf: float = 0.5
    lf_hz: float = 0.1
    hf_hz: float = 0.25
    angles: np.ndarray | None = None  # (5,) radians, R at 0
    widths: np.ndarray | None = None  # (5,) radians
    amplitudes: np.ndarray | None = None  # (n_leads, 5) mV
    amplitude_scale: float = 1.0


class Event(Protocol):
    """Something that edits the beat plan before rendering (anomalies, scenario changes)."""

    priority: int

    def apply(self, plan: BeatPlan, rng: np.random.Generator) -> None: ...


class BeatPlan:
    """Beat times, classes and per-beat morphology, edited by events, then rendered."""


def random_patient(rng: np.random.Generator) -> PatientParams:
    raise NotImplementedError


def synthesize(
    patient: PatientParams,
    seconds: float,
    fs: float = DEFAULT_FS,
    rng: np.random.Generator | None = None,
    events: Sequence[Event] = (),
    name: str = "synthetic",
) -> Record:
    raise NotImplementedError
