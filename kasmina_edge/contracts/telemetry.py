"""Telemetry records a device reports: status, beat counts, anomalies, seed and gate events, signal, link.

Every record is a frozen dataclass in engineering units and carries the device-side sequence
number ``seq`` (one counter per device, modulo :data:`SEQ_MODULUS`, so a gap shows lost frames)
and ``timestamp`` (Unix seconds, UTC). The binary and JSON forms live in :mod:`codec`.
Reason codes are a one-byte table with text names, shared by seed and gate events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Gate, GateResult, Stage, TransitionEvent

SEQ_MODULUS = 256  # the sequence number is one byte on the wire (LoRaWAN frames are rare: gaps stay < 256)

# AAMI EC57 beat classes, in the order of the counts in BeatCounts and on the wire; a beat's class is
# stored as its index in this tuple everywhere (``ecg.types`` takes it from here)
AAMI_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")


class InvalidRecordError(KasminaError, ValueError):
    """A telemetry record with a field outside its documented range."""


class ReasonCode(IntEnum):
    """Why a seed moved or a gate decided; one byte on the wire, ``.text`` in JSON and logs.

    The text names are the reason strings the lifecycle uses (``condition_cleared`` gives a short
    embargo, ``health_*`` a long one). Append new codes; never renumber.
    """

    OTHER = 0
    GATE_PASSED = 1
    GATE_FAILED = 2
    CONDITION_DETECTED = 3
    CONDITION_CLEARED = 4
    HEALTH_NAN = 5
    HEALTH_LATENCY = 6
    HEALTH_DRIFT = 7
    HEALTH_ACCURACY = 8
    HEALTH_RUNTIME_ERROR = 9
    HEALTH_MEMORY = 10
    OPERATOR_COMMAND = 11
    EMBARGO_EXPIRED = 12
    ALPHA_RAMP_DONE = 13
    SHADOW_AGREES = 14
    PROBATION_PASSED = 15
    BUDGET_EXCEEDED = 16
    REFERENCE_MISMATCH = 17
    RESET_DONE = 18
    HOST_VERDICT = 19  # a kernel trained on the host passes TRAINING on the host's G1 verdict
    OTA_UPDATE = 20
    ADMINISTRATIVE = 21  # teardown (TERMINATED)
    NOT_EVALUATED = 22
    HEALTH_CONFIDENCE = 23  # the kernel made the model less sure than before it went live
    SUPERSEDED = 24  # a better kernel for the same site took the slot

    @property
    def text(self) -> str:
        return self.name.lower()

    @classmethod
    def from_text(cls, text: str) -> ReasonCode:
        """The code for a reason string; unknown strings map to OTHER (the text is kept in JSON logs).

        Matching is forgiving about case, spaces and hyphens ("embargo expired"), and a detail after
        the code is ignored ("health_nan: output NaN at site 1", "gate_failed (G2)").
        """
        norm = _REASON_SEPARATORS.sub("_", text.strip().lower())
        head = _REASON_HEAD.match(norm)
        for candidate in (norm, head.group(0) if head else ""):
            code = _REASON_ALIASES.get(candidate) or cls.__members__.get(candidate.upper())
            if code is not None:
                return code
        return cls.OTHER


_REASON_SEPARATORS = re.compile(r"[\s\-]+")
_REASON_HEAD = re.compile(r"[a-z0-9_]+?(?=_?[:(]|$)")
_REASON_ALIASES: dict[str, ReasonCode] = {
    "admin": ReasonCode.ADMINISTRATIVE,
    "teardown": ReasonCode.ADMINISTRATIVE,
    "health_confidence_drop": ReasonCode.HEALTH_CONFIDENCE,
    "embargo_over": ReasonCode.EMBARGO_EXPIRED,
}


class Slot(IntEnum):
    """Firmware A/B slot."""

    A = 0
    B = 1


class ErrorFlags(IntFlag):
    """Device error flags of the heartbeat, one byte."""

    NONE = 0
    LOW_BATTERY = 1
    LEAD_OFF = 2
    SENSOR_FAULT = 4
    FLASH_FAULT = 8
    RUNTIME_FAULT = 16
    WATCHDOG_RESET = 32
    CLOCK_UNSYNCED = 64
    LINK_DEGRADED = 128


class AnomalyKind(IntEnum):
    PVC_RUN = 0
    VT_RUN = 1
    SVT_RUN = 2
    AFIB = 3
    ASYSTOLE = 4
    PAUSE = 5
    LEAD_OFF = 6
    BRADYCARDIA = 7
    TACHYCARDIA = 8
    BIGEMINY = 9
    TRIGEMINY = 10
    NOISE_BURST = 11
    OTHER = 255


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


def _check(record: object, name: str, ok: bool, limit: str) -> None:
    if not ok:
        value = getattr(record, name)
        raise InvalidRecordError(f"{type(record).__name__}.{name}={value!r}: must be {limit}")


def _check_type(record: object, name: str, kind: type | tuple[type, ...]) -> None:
    value = getattr(record, name)
    # bool is an int subclass: refuse it where a number is meant.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidRecordError(f"{type(record).__name__}.{name}={value!r}: must not be a bool")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidRecordError(f"{type(record).__name__}.{name}={value!r}: must be {names}")


def _check_common(record: Any) -> None:
    _check_type(record, "seq", int)
    _check_type(record, "timestamp", int)
    _check(record, "seq", 0 <= record.seq < SEQ_MODULUS, f"0..{SEQ_MODULUS - 1}")
    _check(record, "timestamp", record.timestamp >= 0, ">= 0 (Unix seconds)")


def _check_finite(record: object, *names: str) -> None:
    for name in names:
        _check_type(record, name, (int, float))
        value = float(getattr(record, name))
        _check(record, name, value == value and abs(value) != float("inf"), "finite")


@dataclass(frozen=True)
class DeviceStatus:
    """The heartbeat."""

    seq: int
    timestamp: int
    battery_pct: int
    uptime_s: int
    active_slot: Slot
    firmware_version: int
    error_flags: ErrorFlags = ErrorFlags.NONE

    def __post_init__(self) -> None:
        _check_common(self)
        _check_type(self, "battery_pct", int)
        _check(self, "battery_pct", 0 <= self.battery_pct <= 100, "0..100")
        _check_type(self, "uptime_s", int)
        _check(self, "uptime_s", self.uptime_s >= 0, ">= 0")
        _check_type(self, "active_slot", Slot)
        _check_type(self, "firmware_version", int)
        _check(self, "firmware_version", self.firmware_version >= 0, ">= 0")
        _check_type(self, "error_flags", ErrorFlags)


@dataclass(frozen=True)
class BeatCounts:
    """Beats per AAMI class over the ``period_s`` seconds that end at ``timestamp``."""

    seq: int
    timestamp: int
    period_s: int
    n: int
    s: int
    v: int
    f: int
    q: int

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("period_s", *(c.lower() for c in AAMI_CLASSES)):
            _check_type(self, name, int)
            _check(self, name, getattr(self, name) >= 0, ">= 0")

    def as_dict(self) -> dict[str, int]:
        return {c: getattr(self, c.lower()) for c in AAMI_CLASSES}

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


@dataclass(frozen=True)
class AnomalyEvent:
    """A rhythm or signal anomaly that started ``start_offset_ms`` before ``timestamp``."""

    seq: int
    timestamp: int
    kind: AnomalyKind
    severity: Severity
    start_offset_ms: int
    duration_ms: int
    confidence: float

    def __post_init__(self) -> None:
        _check_common(self)
        _check_type(self, "kind", AnomalyKind)
        _check_type(self, "severity", Severity)
        for name in ("start_offset_ms", "duration_ms"):
            _check_type(self, name, int)
            _check(self, name, getattr(self, name) >= 0, ">= 0")
        _check_finite(self, "confidence")
        _check(self, "confidence", 0.0 <= self.confidence <= 1.0, "0..1")


@dataclass(frozen=True)
class SeedEvent:
    """A seed lifecycle move at a site; ``kernel_id`` indexes the bundle's seed kernels."""

    seq: int
    timestamp: int
    site: int
    kernel_id: int
    src: Stage
    dst: Stage
    reason: ReasonCode

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("site", "kernel_id"):
            _check_type(self, name, int)
            _check(self, name, getattr(self, name) >= 0, ">= 0")
        _check_type(self, "src", Stage)
        _check_type(self, "dst", Stage)
        _check_type(self, "reason", ReasonCode)

    @classmethod
    def from_transition(
        cls, event: TransitionEvent, *, seq: int, timestamp: int, site: int, kernel_id: int
    ) -> SeedEvent:
        return cls(seq, timestamp, site, kernel_id, event.src, event.dst, ReasonCode.from_text(event.reason))


@dataclass(frozen=True)
class GateEvent:
    """A gate verdict; ``metric`` is the gate's headline number (float32 on the wire)."""

    seq: int
    timestamp: int
    site: int
    kernel_id: int
    gate: Gate
    passed: bool
    reason: ReasonCode
    metric: float

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("site", "kernel_id"):
            _check_type(self, name, int)
            _check(self, name, getattr(self, name) >= 0, ">= 0")
        _check_type(self, "gate", Gate)
        _check_type(self, "passed", bool)
        _check_type(self, "reason", ReasonCode)
        _check_finite(self, "metric")

    @classmethod
    def from_verdict(
        cls, result: GateResult, *, seq: int, timestamp: int, site: int, kernel_id: int
    ) -> GateEvent:
        """The wire record of a gate's verdict: its headline ``metric`` is the first number among
        ``result.metrics`` (0 when there is none or it is not finite)."""
        metric = next((float(v) for v in result.metrics.values() if isinstance(v, int | float)), 0.0)
        finite = metric == metric and abs(metric) != float("inf")
        return cls(seq, timestamp, site, kernel_id, result.gate, bool(result.passed),
                   ReasonCode.from_text(result.reason), metric if finite else 0.0)


@dataclass(frozen=True)
class SignalQuality:
    """Signal quality over the last period (ECG amplitudes in mV)."""

    seq: int
    timestamp: int
    noise_db: float  # noise power relative to the QRS power
    baseline_wander_mv: float
    powerline_mv: float
    lead_off: bool
    qrs_correlation: float  # correlation of recent beats with the QRS template

    def __post_init__(self) -> None:
        _check_common(self)
        _check_finite(self, "noise_db", "baseline_wander_mv", "powerline_mv", "qrs_correlation")
        _check(self, "baseline_wander_mv", self.baseline_wander_mv >= 0, ">= 0")
        _check(self, "powerline_mv", self.powerline_mv >= 0, ">= 0")
        _check_type(self, "lead_off", bool)
        _check(self, "qrs_correlation", -1.0 <= self.qrs_correlation <= 1.0, "-1..1")


@dataclass(frozen=True)
class LinkStats:
    """Radio link counters over the last period."""

    seq: int
    timestamp: int
    rssi_dbm: int
    snr_db: float
    airtime_ms: int
    duty_cycle_left: float  # fraction of the regulatory duty-cycle budget still unused
    frames_lost: int

    def __post_init__(self) -> None:
        _check_common(self)
        _check_type(self, "rssi_dbm", int)
        _check_finite(self, "snr_db", "duty_cycle_left")
        for name in ("airtime_ms", "frames_lost"):
            _check_type(self, name, int)
            _check(self, name, getattr(self, name) >= 0, ">= 0")
        _check(self, "duty_cycle_left", 0.0 <= self.duty_cycle_left <= 1.0, "0..1")


Record = DeviceStatus | BeatCounts | AnomalyEvent | SeedEvent | GateEvent | SignalQuality | LinkStats

RECORD_TYPES: tuple[type[Record], ...] = (
    DeviceStatus,
    BeatCounts,
    AnomalyEvent,
    SeedEvent,
    GateEvent,
    SignalQuality,
    LinkStats,
)


class SequenceCounter:
    """The device's one sequence counter, modulo :data:`SEQ_MODULUS`."""

    def __init__(self, start: int = 0) -> None:
        self._next = start % SEQ_MODULUS

    def next(self) -> int:
        value = self._next
        self._next = (value + 1) % SEQ_MODULUS
        return value
