"""Labelled rhythm and beat anomalies: events that edit a synthetic beat plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kasmina_edge.ecg.synth import BeatPlan


@dataclass
class Anomaly:
    """Base: an anomaly active over [start_s, end_s) of the record."""

    start_s: float
    end_s: float
    priority = 50
    kind = "anomaly"

    def apply(self, plan: BeatPlan, rng: np.random.Generator) -> None:
        raise NotImplementedError


ANOMALIES: dict[str, type[Anomaly]] = {}


def make_anomaly(kind: str, start_s: float, end_s: float, **params: float) -> Anomaly:
    raise NotImplementedError
