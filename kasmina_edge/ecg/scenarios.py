"""Named scenarios: schedules of signal conditions and anomalies over time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kasmina_edge.ecg.types import DEFAULT_FS, Record


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Callable[..., Record]


SCENARIOS: dict[str, Scenario] = {}


def make_scenario(name: str, minutes: float, fs: float = DEFAULT_FS, seed: int = 0, **levels: float) -> Record:
    raise NotImplementedError
