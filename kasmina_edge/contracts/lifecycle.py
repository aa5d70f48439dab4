"""The seed lifecycle: 11 stages, the one legal transition table, gates G0–G5.

Host engine and device runtime both drive seeds through :class:`SeedLifecycle`; nothing
else may change a seed's stage. Every move and every gate verdict becomes an event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from kasmina_edge.contracts.errors import IllegalTransitionError


class Stage(IntEnum):
    DORMANT = 0
    GERMINATED = 1
    TRAINING = 2
    BLENDING = 3
    SHADOWING = 4
    PROBATIONARY = 5
    FOSSILIZED = 6
    CULLED = 7
    EMBARGOED = 8
    RESETTING = 9
    TERMINATED = 10


class Gate(StrEnum):
    G0 = "G0"  # sanity
    G1 = "G1"  # gradient health
    G2 = "G2"  # stability
    G3 = "G3"  # interface
    G4 = "G4"  # system impact
    G5 = "G5"  # reset sanity

    @property
    def purpose(self) -> str:
        return GATE_TITLES[self]


GATE_TITLES: dict[Gate, str] = {
    Gate.G0: "sanity",
    Gate.G1: "gradient health",
    Gate.G2: "stability",
    Gate.G3: "interface",
    Gate.G4: "system impact",
    Gate.G5: "reset sanity",
}

_LIVE_STAGES = (
    Stage.GERMINATED,
    Stage.TRAINING,
    Stage.BLENDING,
    Stage.SHADOWING,
    Stage.PROBATIONARY,
    Stage.FOSSILIZED,
)

# (from, to) -> gate that must pass, or None where the move needs no gate.
TRANSITIONS: dict[tuple[Stage, Stage], Gate | None] = {
    (Stage.DORMANT, Stage.GERMINATED): Gate.G0,
    (Stage.GERMINATED, Stage.TRAINING): None,
    (Stage.TRAINING, Stage.BLENDING): Gate.G1,
    (Stage.BLENDING, Stage.SHADOWING): Gate.G2,
    (Stage.SHADOWING, Stage.PROBATIONARY): Gate.G3,
    (Stage.PROBATIONARY, Stage.FOSSILIZED): Gate.G4,
    **{(s, Stage.CULLED): None for s in _LIVE_STAGES},
    (Stage.CULLED, Stage.EMBARGOED): None,
    (Stage.EMBARGOED, Stage.RESETTING): None,
    (Stage.RESETTING, Stage.DORMANT): Gate.G5,
    **{(s, Stage.TERMINATED): None for s in Stage if s is not Stage.TERMINATED},
}


def legal_targets(src: Stage) -> frozenset[Stage]:
    """Stages reachable from ``src`` in one move."""
    return frozenset(dst for (s, dst) in TRANSITIONS if s == src)


def required_gate(src: Stage, dst: Stage) -> Gate | None:
    """The gate guarding ``src -> dst``; raises if the move is not in the table."""
    if (src, dst) not in TRANSITIONS:
        allowed = ", ".join(s.name for s in sorted(legal_targets(src))) or "none (final)"
        raise IllegalTransitionError(
            f"illegal lifecycle move {src.name} -> {dst.name}; from {src.name} only: {allowed}"
        )
    return TRANSITIONS[(src, dst)]


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict. A gate that was not evaluated is represented by its absence, and fails."""

    gate: Gate
    passed: bool
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TransitionEvent:
    seed_id: str
    src: Stage
    dst: Stage
    reason: str
    at: float
    gate: GateResult | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "event": "transition",
            "seed_id": self.seed_id,
            "from": self.src.name,
            "to": self.dst.name,
            "reason": self.reason,
            "at": self.at,
        }
        if self.gate is not None:
            out["gate"] = self.gate.gate.value
            out["gate_passed"] = self.gate.passed
            out["gate_reason"] = self.gate.reason
            out["gate_metrics"] = dict(self.gate.metrics)
        return out


@dataclass(frozen=True)
class EmbargoPolicy:
    """How long a culled seed waits before its slot may be reused, by reason."""

    hysteresis_s: float = 30.0  # `condition_cleared`: short, only against flapping
    fault_s: float = 600.0  # `health_*` and failed gates: long

    def duration(self, cull_reason: str) -> float:
        # The code is what comes before any ":" detail ("condition_cleared: emg gone").
        code = cull_reason.split(":", 1)[0].strip()
        return self.hysteresis_s if code == "condition_cleared" else self.fault_s


class SeedLifecycle:
    """One seed's stage with the only API allowed to change it.

    ``clock`` is injectable so embargo expiry is testable without sleeping.
    """

    def __init__(
        self,
        seed_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        embargo: EmbargoPolicy | None = None,
        sink: Callable[[TransitionEvent], None] | None = None,
    ) -> None:
        self.seed_id = seed_id
        self.stage = Stage.DORMANT
        self.clock = clock
        self.embargo = embargo or EmbargoPolicy()
        self.history: list[TransitionEvent] = []
        self.cull_reason: str | None = None
        self.embargo_until: float | None = None
        self.entered_at = clock()
        self._sink = sink

    def can_move(self, dst: Stage) -> bool:
        return (self.stage, dst) in TRANSITIONS

    def move(self, dst: Stage, *, reason: str, gate: GateResult | None = None) -> TransitionEvent:
        """Move to ``dst``. Raises :class:`IllegalTransitionError` if the table or its gate forbids it."""
        needed = required_gate(self.stage, dst)
        if needed is not None:
            if gate is None:
                raise IllegalTransitionError(
                    f"seed {self.seed_id}: {self.stage.name} -> {dst.name} needs gate {needed.value} "
                    f"({needed.purpose}), which was not evaluated"
                )
            if gate.gate is not needed:
                raise IllegalTransitionError(
                    f"seed {self.seed_id}: {self.stage.name} -> {dst.name} needs gate {needed.value}, "
                    f"got {gate.gate.value}"
                )
            if not gate.passed:
                raise IllegalTransitionError(
                    f"seed {self.seed_id}: gate {needed.value} ({needed.purpose}) failed: {gate.reason}"
                )
        if dst is Stage.CULLED and not reason.strip():
            raise IllegalTransitionError(f"seed {self.seed_id}: culling needs a reason code")
        now = self.clock()
        if dst is Stage.RESETTING and self.embargo_until is not None and now < self.embargo_until:
            raise IllegalTransitionError(
                f"seed {self.seed_id}: embargo runs until t={self.embargo_until:.1f}s (now {now:.1f}s)"
            )
        if dst is Stage.CULLED:
            self.cull_reason = reason
        if dst is Stage.EMBARGOED:
            self.embargo_until = now + self.embargo.duration(self.cull_reason or "")
        if dst is Stage.DORMANT:
            self.cull_reason = None
            self.embargo_until = None
        event = TransitionEvent(self.seed_id, self.stage, dst, reason, now, gate)
        self.stage = dst
        self.entered_at = now
        self.history.append(event)
        if self._sink is not None:
            self._sink(event)
        return event

    def embargo_expired(self) -> bool:
        return self.stage is Stage.EMBARGOED and (
            self.embargo_until is None or self.clock() >= self.embargo_until
        )
