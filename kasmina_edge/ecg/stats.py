"""Summary statistics of a record: heart rate, HRV, beat classes, QRS detector Se/+P."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from kasmina_edge.ecg.types import Record


@dataclass
class EcgStats:
    name: str
    seconds: float
    n_beats: int
    heart_rate_bpm: float
    sdnn_ms: float
    rmssd_ms: float
    pnn50: float
    class_counts: dict[str, int] | None
    detector_se: float | None = None
    detector_ppv: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def compute_stats(record: Record, lead: int = 0) -> EcgStats:
    raise NotImplementedError
