"""Mapping the device's state onto the wire records of ``contracts.telemetry``: seed transitions and gate
verdicts (their ``from_*`` constructors), the periodic beat counts, the heartbeat and the link statistics."""

from __future__ import annotations

from typing import Any

from kasmina_edge.contracts.events import GateVerdict, SeedTransition
from kasmina_edge.contracts.telemetry import (
    AAMI_CLASSES,
    BeatCounts,
    DeviceStatus,
    ErrorFlags,
    GateEvent,
    LinkStats,
    SeedEvent,
    Slot,
)
from kasmina_edge.net.session import DeviceLink


class KernelIds:
    """A small number per kernel name for the wire (names are too long for a LoRa frame), given in order of first
    use unless the bundle named them."""

    def __init__(self, known: dict[str, int] | None = None) -> None:
        self.ids = dict(known or {})

    def __call__(self, name: str | None) -> int:
        if not name:
            return 0
        if name not in self.ids:
            self.ids[name] = len(self.ids)
        return self.ids[name]


def seed_event(event: SeedTransition, timestamp: int, kernel_id: int) -> SeedEvent:
    return SeedEvent.from_transition(
        event.transition, seq=0, timestamp=timestamp, site=event.site, kernel_id=kernel_id
    )


def gate_event(event: GateVerdict, timestamp: int, kernel_id: int) -> GateEvent:
    return GateEvent.from_verdict(event.result, seq=0, timestamp=timestamp, site=event.site, kernel_id=kernel_id)


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(AAMI_CLASSES, 0)


def beat_counts(counts: dict[str, int], timestamp: int, period_s: int) -> BeatCounts:
    c = counts
    return BeatCounts(0, timestamp, period_s, c["N"], c["S"], c["V"], c["F"], c["Q"])


def heartbeat(status: dict[str, Any], timestamp: int, uptime_s: float) -> DeviceStatus:
    """The device status from what the platform reports (battery, slot, firmware, error flags)."""
    return DeviceStatus(
        0,
        timestamp,
        int(max(0, min(100, round(float(status.get("battery_pct", 100)))))),
        int(uptime_s),
        Slot.B if status.get("slot") == "b" else Slot.A,
        int(status.get("firmware_version", 0)) % 256,
        ErrorFlags(int(status.get("error_flags", 0))),
    )


def link_stats(link: DeviceLink, timestamp: int, t: float) -> LinkStats:
    """Airtime, duty cycle left and frames lost so far (RSSI and SNR: fixed nominal values, nothing measures
    them in the emulator)."""
    led = link.ledger
    return LinkStats(
        0,
        timestamp,
        -110,
        7.5,
        int(led.airtime_s * 1000),
        round(min(1.0, max(0.0, link.budget.duty_cycle_left(t))), 4),
        led.lost + led.outage,
    )
