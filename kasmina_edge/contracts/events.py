"""What the on-device runtime reports, as typed records: beats, boot, seed moves, gate verdicts, faults, decisions.

The runtime (``kasmina_edge.runtime``) emits one of these per thing that happened, in order, to its sink;
the emulator (``firmware_sim``) writes each as a JSON line (:meth:`to_json`, the run log that
``kasmina-edge evaluate`` reads) and hands the ones a clinician or operator must hear of to its telemetry,
which turns them into the wire records of :mod:`telemetry` (``SeedEvent.from_transition``,
``GateEvent.from_verdict``) for :mod:`codec`. Consumers dispatch on the type, never on a string key.

Every event carries ``t``, seconds of signal the device had seen when it happened (the runtime's clock:
embargoes and hysteresis mean the same at any replay speed). The JSON forms keep the keys of the run
log as it has always been written (``"event"`` names the kind).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from kasmina_edge.contracts.lifecycle import GateResult, TransitionEvent

FaultCode = Literal["health_nan", "health_latency", "health_confidence", "health_drift"]
DecisionAction = Literal["wait", "activate", "retire"]


def _t(t: float) -> float:
    return round(float(t), 4)


# --------------------------------------------------------------------------------------------- beats


@dataclass(frozen=True)
class BeatClassified:
    """One beat: its R peak (``sample``, counted from the start of the stream), the class the device gave
    it, and which kernel answered at which site (``active``) or was only judged beside the answer (``trial``)."""

    KIND: ClassVar[str] = "beat"

    sample: int
    t: float
    label: str  # an AAMI class letter, "?" where the model's output was not a class
    confidence: float | None = None  # top-class probability; None when the output was not finite
    valid: bool = True  # the beat window was readable (the beatizer's flag)
    anomaly: bool = False  # S, V or F
    latency_us: float = 0.0  # host inference time of the window
    active: Mapping[str, str] = field(default_factory=dict)  # site -> kernel in the answers
    trial: Mapping[str, str] = field(default_factory=dict)  # site -> kernel judged beside them
    faults: tuple[str, ...] = ()  # "kernel:code" of kernels whose output was not finite this window
    device_us: float | None = None  # the emulator's estimate of the window on the target

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "event": self.KIND,
            "sample": self.sample,
            "t": _t(self.t),
            "class": self.label,
            "p": self.confidence,
            "valid": self.valid,
            "anomaly": self.anomaly,
            "latency_us": self.latency_us,
            "active": dict(self.active),
        }
        if self.trial:
            out["trial"] = dict(self.trial)
        if self.faults:
            out["faults"] = list(self.faults)
        if self.device_us is not None:
            out["device_us"] = self.device_us
        return out


# --------------------------------------------------------------------------------------------- boot


@dataclass(frozen=True)
class SegmentCheck:
    """A base segment against its reference vectors at boot."""

    artifact: str
    passed: bool
    metrics: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"artifact": self.artifact, "passed": self.passed, **self.metrics}


@dataclass(frozen=True)
class RuntimeBooted:
    """Every base segment reproduced its reference vectors: the image runs."""

    KIND: ClassVar[str] = "boot"

    bundle: str | None
    backend: str
    segments: int
    kernels: int
    checks: tuple[SegmentCheck, ...]
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, "bundle": self.bundle, "backend": self.backend, "segments": self.segments,
                "kernels": self.kernels, "checks": [c.to_json() for c in self.checks], "t": _t(self.t)}


@dataclass(frozen=True)
class ReferenceMeasured:
    """The clean reference the controller compares with, measured on the device's first windows."""

    KIND: ClassVar[str] = "reference"

    source: str
    windows: int
    quality: float | None  # the signal quality index over those windows
    features: tuple[float, ...]
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, "source": self.source, "windows": self.windows, "quality": self.quality,
                "features": list(self.features), "t": _t(self.t)}


# --------------------------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class KernelInstalled:
    """A kernel of a kernel-only bundle (a patient's) brought live after the base's warm-up."""

    KIND: ClassVar[str] = "kernel_installed"

    kernel: str
    site: int
    bundle: str | None
    rr_scale: tuple[float, ...] | None
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, "kernel": self.kernel, "site": self.site, "bundle": self.bundle,
                "rr_scale": list(self.rr_scale) if self.rr_scale else None, "t": _t(self.t)}


@dataclass(frozen=True)
class KernelRefused:
    """An installed kernel the host culled: never brought live."""

    KIND: ClassVar[str] = "kernel_refused"

    kernel: str
    site: int
    reason: str
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, "kernel": self.kernel, "site": self.site, "reason": self.reason, "t": _t(self.t)}


@dataclass(frozen=True)
class KernelDecision:
    """What the on-device controller decided for one window: wait, or activate / retire a kernel at a site."""

    action: DecisionAction
    reason: str
    site: int | None = None
    kernel: str | None = None
    alpha_target: float = 0.0
    symptom: str | None = None
    severity: float = 0.0
    source: Literal["heuristic", "policy"] = "heuristic"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action, "reason": self.reason, "source": self.source}
        if self.action != "wait":
            out.update({"site": self.site, "kernel": self.kernel, "alpha_target": round(self.alpha_target, 3)})
        if self.symptom is not None:
            out.update({"symptom": self.symptom, "severity": round(self.severity, 3)})
        return out


@dataclass(frozen=True)
class DecisionTaken:
    """A decision other than a plain wait, or one that swapped: whether it was applied, and how long it took."""

    KIND: ClassVar[str] = "decision"

    decision: KernelDecision
    applied: bool
    latency_us: float
    window: int
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, **self.decision.to_json(), "applied": self.applied,
                "latency_us": self.latency_us, "window": self.window, "t": _t(self.t)}


# --------------------------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class SeedTransition:
    """A kernel's lifecycle move (the contracts' :class:`TransitionEvent`) at its site."""

    KIND: ClassVar[str] = "transition"

    transition: TransitionEvent
    site: int
    kernel: str
    window: int
    t: float

    def to_json(self) -> dict[str, object]:
        return {**self.transition.to_json(), "site": self.site, "kernel": self.kernel, "window": self.window,
                "t": _t(self.t)}


@dataclass(frozen=True)
class GateVerdict:
    """A gate verdict that did not come with a move (a failed gate; a passed one rides on its transition)."""

    KIND: ClassVar[str] = "gate"

    kernel: str
    site: int
    result: GateResult
    window: int
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, "seed_id": self.kernel, "kernel": self.kernel, "site": self.site,
                "gate": self.result.gate.value, "passed": self.result.passed, "reason": self.result.reason,
                "metrics": dict(self.result.metrics), "window": self.window, "t": _t(self.t)}


@dataclass(frozen=True)
class Fault:
    """A live kernel's health fault: its breaker opens and the slot rolls back (``health_*`` cull codes)."""

    code: FaultCode
    site: int
    kernel: str
    detail: str
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FaultRollback:
    """A fault that took a kernel out of the chain before the next window."""

    KIND: ClassVar[str] = "fault"

    fault: Fault
    window: int
    t: float

    def to_json(self) -> dict[str, object]:
        f = self.fault
        return {"event": self.KIND, "code": f.code, "site": f.site, "kernel": f.kernel, "detail": f.detail,
                "metrics": dict(f.metrics), "window": self.window, "action": "rollback", "t": _t(self.t)}


@dataclass(frozen=True)
class EvidenceVerdict:
    """The label-free evidence went against a kernel (``hurts``) or never showed it helps (``unproven``)."""

    KIND: ClassVar[str] = "evidence"

    kernel: str
    site: int
    window: int
    verdict: Literal["hurts", "unproven"]
    stage: str  # the stage it was judged in
    metrics: Mapping[str, float]
    t: float

    def to_json(self) -> dict[str, object]:
        return {"event": self.KIND, "kernel": self.kernel, "site": self.site, "window": self.window,
                "verdict": self.verdict, "stage": self.stage, **self.metrics, "t": _t(self.t)}


RuntimeEvent = (
    BeatClassified
    | RuntimeBooted
    | ReferenceMeasured
    | KernelInstalled
    | KernelRefused
    | DecisionTaken
    | SeedTransition
    | GateVerdict
    | FaultRollback
    | EvidenceVerdict
)

EVENT_TYPES: tuple[type[RuntimeEvent], ...] = (
    BeatClassified,
    RuntimeBooted,
    ReferenceMeasured,
    KernelInstalled,
    KernelRefused,
    DecisionTaken,
    SeedTransition,
    GateVerdict,
    FaultRollback,
    EvidenceVerdict,
)

EventSink = Callable[[RuntimeEvent], None]
