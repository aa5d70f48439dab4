"""The rhythm events that must reach a clinician first, detected on the device from its classified beats.

A run of three or more ventricular beats above 100 bpm is a ventricular-tachycardia run (critical), a slower run a
PVC run (warning); no beat for 3 s is an asystole (critical). Each is reported once per episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, Severity

VT_MIN_BEATS = 3
VT_MIN_BPM = 100.0
ASYSTOLE_S = 3.0


@dataclass
class RhythmState:
    v_run: int = 0
    v_run_start: float = 0.0
    v_run_reported: bool = False
    last_beat_t: float | None = None
    asystole_reported: bool = False
    last_rr: list[float] = field(default_factory=list)


class RhythmAlarms:
    """Beat by beat and tick by tick: the anomaly record to send, or None. ``timestamp`` maps signal seconds to
    the record's Unix time."""

    def __init__(self, timestamp: Callable[[float], int]) -> None:
        self.timestamp = timestamp
        self.state = RhythmState()

    def on_beat(self, t: float, label: str, confidence: float | None) -> AnomalyEvent | None:
        """A ventricular run's record on its third beat (VT above VT_MIN_BPM, else a PVC run)."""
        r = self.state
        if r.last_beat_t is not None:
            r.last_rr = [*r.last_rr[-7:], t - r.last_beat_t]
        r.last_beat_t, r.asystole_reported = t, False
        if label != "V":
            r.v_run, r.v_run_reported = 0, False
            return None
        if r.v_run == 0:
            r.v_run_start = t
        r.v_run += 1
        if r.v_run < VT_MIN_BEATS or r.v_run_reported:
            return None
        rr = r.last_rr[-(r.v_run - 1) :] or [1.0]
        bpm = 60.0 / max(1e-3, sum(rr) / len(rr))
        vt = bpm > VT_MIN_BPM
        duration_ms = int(round((t - r.v_run_start) * 1000))
        r.v_run_reported = True
        return AnomalyEvent(
            0,
            self.timestamp(t),
            AnomalyKind.VT_RUN if vt else AnomalyKind.PVC_RUN,
            Severity.CRITICAL if vt else Severity.WARNING,
            duration_ms,
            duration_ms,
            min(1.0, confidence or 0.0),
        )

    def asystole(self, now: float) -> AnomalyEvent | None:
        """An asystole's record once no beat came for ASYSTOLE_S (before the first beat: none)."""
        r = self.state
        if r.last_beat_t is None or now - r.last_beat_t < ASYSTOLE_S or r.asystole_reported:
            return None
        gap_ms = int(round((now - r.last_beat_t) * 1000))
        r.asystole_reported = True
        return AnomalyEvent(0, self.timestamp(now), AnomalyKind.ASYSTOLE, Severity.CRITICAL, gap_ms, gap_ms, 0.9)
