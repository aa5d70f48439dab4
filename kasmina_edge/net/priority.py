"""Which telemetry records matter most when airtime is short.

Three classes, in the order the uplink scheduler spends airtime and the store keeps records:

* ``CRITICAL`` — a ventricular-tachycardia run, asystole or lead-off, a circuit breaker opening (a seed culled
  for a health fault), a security alert: sent at the next uplink opportunity, ahead of everything, and allowed
  past the fair-use budget (never past the duty cycle);
* ``EVENT`` — other anomalies, seed and gate events: delivered exactly once, batched on slow links;
* ``PERIODIC`` — beat counts, heartbeats, signal quality, link stats: merged into the latest summary, and the
  first to go when the budget or the queue runs short.

A security alert has no record type of its own in the contracts yet: the caller marks the record it uses for it
(``submit(record, priority=Priority.CRITICAL)``).
"""

from __future__ import annotations

from enum import IntEnum

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.contracts.telemetry import (
    AnomalyEvent,
    AnomalyKind,
    BeatCounts,
    DeviceStatus,
    LinkStats,
    ReasonCode,
    Record,
    SeedEvent,
    Severity,
    SignalQuality,
)


class Priority(IntEnum):
    """Higher sends first and is dropped last."""

    PERIODIC = 0
    EVENT = 1
    CRITICAL = 2


CRITICAL_ANOMALIES = frozenset({AnomalyKind.VT_RUN, AnomalyKind.ASYSTOLE, AnomalyKind.LEAD_OFF})
# A seed leaving the live path for one of these is the runtime's circuit breaker opening.
BREAKER_REASONS = frozenset(
    {
        ReasonCode.HEALTH_NAN,
        ReasonCode.HEALTH_LATENCY,
        ReasonCode.HEALTH_DRIFT,
        ReasonCode.HEALTH_ACCURACY,
        ReasonCode.HEALTH_RUNTIME_ERROR,
        ReasonCode.HEALTH_MEMORY,
        ReasonCode.HEALTH_CONFIDENCE,
    }
)
PERIODIC_TYPES = (BeatCounts, DeviceStatus, SignalQuality, LinkStats)


def priority_of(record: Record) -> Priority:
    if isinstance(record, AnomalyEvent):
        critical = record.kind in CRITICAL_ANOMALIES or record.severity == Severity.CRITICAL
        return Priority.CRITICAL if critical else Priority.EVENT
    if isinstance(record, SeedEvent):
        breaker = record.dst == Stage.CULLED and record.reason in BREAKER_REASONS
        return Priority.CRITICAL if breaker else Priority.EVENT
    if isinstance(record, PERIODIC_TYPES):
        return Priority.PERIODIC
    return Priority.EVENT
