"""Lifecycle engine: the host's only way to change a seed's stage.

It keeps one contracts ``SeedLifecycle`` per seed, evaluates the gate a move needs from the
measurements it is given, and turns every failure into CULLED (reason code) -> EMBARGOED.
``tick()`` later moves expired embargoes through RESETTING (the owner clears the slot) back to
DORMANT behind G5. Every transition and every gate verdict reaches the sink as a JSON-ready dict.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kasmina_edge.contracts.errors import IllegalTransitionError
from kasmina_edge.contracts.lifecycle import (
    EmbargoPolicy,
    GateResult,
    SeedLifecycle,
    Stage,
    TransitionEvent,
    required_gate,
)
from kasmina_edge.host.kasmina.gates import ResetInputs, evaluate_gate

EventSink = Callable[[dict[str, object]], None]
OnMove = Callable[[TransitionEvent], None]
OnReset = Callable[[], ResetInputs]  # clears the seed's slot and measures how clean it is

# The forward path of a seed's life; each step is guarded by the gate the contract names.
NEXT_STAGE: dict[Stage, Stage] = {
    Stage.DORMANT: Stage.GERMINATED,
    Stage.GERMINATED: Stage.TRAINING,
    Stage.TRAINING: Stage.BLENDING,
    Stage.BLENDING: Stage.SHADOWING,
    Stage.SHADOWING: Stage.PROBATIONARY,
    Stage.PROBATIONARY: Stage.FOSSILIZED,
}


@dataclass
class _Entry:
    lifecycle: SeedLifecycle
    on_move: OnMove | None
    on_reset: OnReset | None


def gate_event(seed_id: str, stage: Stage, result: GateResult, at: float) -> dict[str, object]:
    return {
        "event": "gate",
        "seed_id": seed_id,
        "stage": stage.name,
        "gate": result.gate.value,
        "passed": result.passed,
        "reason": result.reason,
        "metrics": dict(result.metrics),
        "at": at,
    }


class LifecycleEngine:
    """Drives every seed of a model (all sites) through the contracts' 11 stages."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        embargo: EmbargoPolicy | None = None,
        sink: EventSink | None = None,
        keep_events: bool = True,
    ) -> None:
        self.clock = clock
        self.embargo = embargo or EmbargoPolicy()
        self._sinks: list[EventSink] = [sink] if sink is not None else []
        self._seeds: dict[str, _Entry] = {}
        self.events: list[dict[str, object]] = []
        self._keep = keep_events

    # -- plumbing ---------------------------------------------------------------------------
    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def _emit(self, event: dict[str, object]) -> None:
        if self._keep:
            self.events.append(event)
        for sink in self._sinks:
            sink(event)

    def register(self, seed_id: str, *, on_move: OnMove | None = None, on_reset: OnReset | None = None) -> SeedLifecycle:
        """Track ``seed_id`` (idempotent: callbacks are replaced, the stage is kept)."""
        entry = self._seeds.get(seed_id)
        if entry is None:
            lc = SeedLifecycle(seed_id, clock=self.clock, embargo=self.embargo, sink=self._on_transition)
            entry = self._seeds[seed_id] = _Entry(lc, on_move, on_reset)
        else:
            entry.on_move, entry.on_reset = on_move or entry.on_move, on_reset or entry.on_reset
        return entry.lifecycle

    def _on_transition(self, event: TransitionEvent) -> None:
        entry = self._seeds[event.seed_id]
        if entry.on_move is not None:
            entry.on_move(event)  # the owner mirrors the stage into its tensors first
        self._emit(event.to_json())

    def lifecycle(self, seed_id: str) -> SeedLifecycle:
        try:
            return self._seeds[seed_id].lifecycle
        except KeyError:
            raise IllegalTransitionError(f"unknown seed {seed_id!r}") from None

    def stage(self, seed_id: str) -> Stage:
        return self.lifecycle(seed_id).stage

    def knows(self, seed_id: str) -> bool:
        return seed_id in self._seeds

    def seed_ids(self) -> list[str]:
        return list(self._seeds)

    # -- moves ------------------------------------------------------------------------------
    def evaluate(self, seed_id: str, dst: Stage, measurements: object | None) -> GateResult | None:
        """Evaluate (and report) the gate guarding the move to ``dst``; None where no gate is needed."""
        lc = self.lifecycle(seed_id)
        needed = required_gate(lc.stage, dst)
        if needed is None:
            return None
        result = evaluate_gate(needed, measurements)
        self._emit(gate_event(seed_id, lc.stage, result, self.clock()))
        return result

    def move(self, seed_id: str, dst: Stage, *, reason: str, gate: GateResult | None = None) -> TransitionEvent:
        """Low-level move through the contract (raises IllegalTransitionError where it forbids it)."""
        return self.lifecycle(seed_id).move(dst, reason=reason, gate=gate)

    def try_advance(
        self, seed_id: str, measurements: object | None = None, *, reason: str = "", cull_on_fail: bool = True
    ) -> TransitionEvent:
        """Move one step along the forward path, behind its gate. A failed gate culls the seed
        (reason ``gate_<G>_failed: ...``) unless ``cull_on_fail`` is False, which raises instead.
        """
        lc = self.lifecycle(seed_id)
        dst = NEXT_STAGE.get(lc.stage)
        if dst is None:
            raise IllegalTransitionError(f"seed {seed_id}: no forward move from {lc.stage.name}")
        result = self.evaluate(seed_id, dst, measurements)
        if result is not None and not result.passed:
            code = f"gate_{result.gate.value}_failed: {result.reason}"
            if cull_on_fail and lc.can_move(Stage.CULLED):
                return self.cull(seed_id, code)
            raise IllegalTransitionError(f"seed {seed_id}: {code}")
        return self.move(seed_id, dst, reason=reason or f"advance to {dst.name}", gate=result)

    def cull(self, seed_id: str, reason: str) -> TransitionEvent:
        """CULLED with a reason code, then EMBARGOED at once (its length depends on the reason)."""
        self.move(seed_id, Stage.CULLED, reason=reason)
        return self.move(seed_id, Stage.EMBARGOED, reason=f"embargo after {reason}")

    def terminate(self, seed_id: str, reason: str = "administrative teardown") -> TransitionEvent:
        return self.move(seed_id, Stage.TERMINATED, reason=reason)

    def tick(self) -> list[TransitionEvent]:
        """Release expired embargoes: EMBARGOED -> RESETTING -> (G5) -> DORMANT; retries stuck resets."""
        moved: list[TransitionEvent] = []
        for seed_id, entry in self._seeds.items():
            lc = entry.lifecycle
            if lc.stage is Stage.EMBARGOED and lc.embargo_expired():
                moved.append(lc.move(Stage.RESETTING, reason="embargo expired"))
            if lc.stage is Stage.RESETTING:
                measured = entry.on_reset() if entry.on_reset is not None else None
                result = self.evaluate(seed_id, Stage.DORMANT, measured)
                if result is not None and result.passed:
                    moved.append(lc.move(Stage.DORMANT, reason="slot reset", gate=result))
        return moved
