"""Seed kernels through the lifecycle on the device, with the contracts' :class:`SeedLifecycle`.

    DORMANT ─G0→ GERMINATED → TRAINING ─G1→ BLENDING ─G2→ SHADOWING ─G3→ PROBATIONARY ─G4→ FOSSILIZED
    any live stage → CULLED (reason) → EMBARGOED → RESETTING ─G5→ DORMANT

What each step means here (the host's meaning, with the device's evidence):

* G0 sanity: the kernel loaded on this backend, fits its site, runs within its latency budget, and
  reproduces its reference vectors (the device's check of what it is about to put live).
* TRAINING passes at once: the kernel was trained on the host; G1 is the host's verdict, carried in
  the manifest (``seed_kernel.g1_verdict``). No verdict, no pass.
* BLENDING ramps alpha from 0 to its target over ``blend_windows`` windows; G2 checks the ramp
  advanced, the kernel's change of its site stayed bounded, and nothing faulted.
* SHADOWING runs the kernel beside the path without it (the previous kernel or the identity), both to
  the logits. With ``judge="evidence"`` (the default) the kernel is *on trial* through BLENDING and
  SHADOWING: the answers the device gives are the path without it, the kernel's are only compared,
  so a kernel costs nothing before it has shown it helps. G3: interface and reference vectors as at
  G0, the comparison complete, and the kernel's label-free net evidence (:mod:`evidence`) > 0.
* PROBATIONARY: live, with the path without it still run beside it; its net evidence must stay above
  ``-cull_evidence`` (else it is culled at once, ``evidence_harm``); G4: net evidence over the stage
  ≥ 0 and its mean confidence not collapsed. A FOSSILIZED kernel the controller chose stays watched
  the same way over the last ``recent_windows`` windows: the device keeps a kernel only while it helps.
* ``judge="confidence"``: the earlier rules (kernel live from BLENDING on, G3 the shadow agreement, G4
  the mean confidence against the one before germination), kept for comparison (tools/bench_runtime.py).
* CULLED with a reason: ``health_*`` (a fault; long embargo), ``condition_cleared`` (the controller
  retired it; short hysteresis), ``evidence_*`` (the evidence went against it; ``evidence_s``),
  ``superseded``, ``g2_failed`` ... The slot rolls back before the next window to what it ran before
  the kernel came (the previous kernel or the identity).
* After the embargo (a clock of signal time, so ``--fast`` and ``--realtime`` behave alike):
  RESETTING, and G5 checks no slot still refers to the kernel and clears its breaker and counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from kasmina_edge.contracts.events import (
    EventSink,
    EvidenceVerdict,
    Fault,
    FaultRollback,
    GateVerdict,
    RuntimeEvent,
    SeedTransition,
)
from kasmina_edge.contracts.lifecycle import (
    EmbargoPolicy,
    Gate,
    GateResult,
    SeedLifecycle,
    Stage,
    TransitionEvent,
)
from kasmina_edge.runtime.evidence import BeatContext, EvidenceConfig, KernelEvidence
from kasmina_edge.runtime.executor import SegmentedExecutor, SlotConfig, WindowResult
from kasmina_edge.runtime.health import HealthMonitor
from kasmina_edge.runtime.image import Kernel, ReferenceCheck, check_reference, site_grid

LIVE_STAGES = frozenset({Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED})
IN_FLIGHT = frozenset({Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY})


@dataclass(frozen=True)
class EvidenceEmbargo(EmbargoPolicy):
    """The contracts' embargo, with a middle length for kernels the evidence went against: long enough
    not to retry on the same stretch, short enough to try again when the signal has changed."""

    evidence_s: float = 60.0

    def duration(self, cull_reason: str) -> float:
        code = cull_reason.split(":", 1)[0].strip()
        return self.evidence_s if code.startswith("evidence_") else super().duration(cull_reason)


@dataclass(frozen=True)
class LifecycleConfig:
    blend_windows: int = 4
    shadow_windows: int = 24  # evidence lives on the beats the two paths disagree on: a few per 20 windows
    probation_windows: int = 16
    max_relative_change: float = 4.0  # G2: |k(h) - h| / |h| while blending
    min_shadow_agreement: float = 0.5  # G3: the kernel may change at most half the labels it is shown
    confidence_tolerance: float = 0.15  # G4: mean confidence may fall at most this much
    judge: Literal["evidence", "confidence"] = "evidence"
    min_evidence: float = 0.0  # G3 (evidence): net evidence over SHADOWING must exceed this
    min_disagreements: int = 2  # G3 (evidence): one changed answer in a stage is one observation, not a finding
    min_class_evidence: float = 1.5  # G3 (evidence): and the disagreements' part reach this (a correction backed by
    # rhythm and shape, or two by rhythm: on MIT-BIH 108 and 208, as recorded, one rhythm-backed flip brought a kernel live)
    cull_evidence: float = 1.0  # live: culled once net evidence falls below minus this
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    embargo: EmbargoPolicy = field(default_factory=lambda: EvidenceEmbargo(hysteresis_s=30.0, fault_s=600.0))


@dataclass
class _Progress:
    """A kernel's way through the live stages."""

    alpha_target: float = 1.0
    windows: int = 0  # windows spent in the current stage
    baseline_confidence: float = 1.0
    alphas: list[float] = field(default_factory=list)
    changes: list[float] = field(default_factory=list)
    agreements: list[bool] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    before: SlotConfig | None = None  # what the slot ran before this kernel came
    reference: ReferenceCheck | None = None
    evidence: KernelEvidence | None = None  # label-free evidence (judge="evidence"; not for boot kernels)


def _median_invoke_s(kernel: Kernel, repeats: int = 15) -> float:
    info = kernel.model.inputs[0]
    x = np.zeros(info.shape, dtype=info.numpy_dtype)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernel.model.run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class SeedManager:
    """Owns every kernel's :class:`SeedLifecycle` and the executor's slots; the only code that swaps."""

    def __init__(
        self,
        executor: SegmentedExecutor,
        health: HealthMonitor,
        *,
        clock: Callable[[], float],
        sink: EventSink | None = None,
        config: LifecycleConfig | None = None,
        tolerance_lsb: float = 1.0,
    ) -> None:
        self.executor = executor
        self.image = executor.image
        self.health = health
        self.clock = clock
        self.config = config or LifecycleConfig()
        self.tolerance_lsb = tolerance_lsb
        self._sink = sink
        self.kernels = self.image.kernels
        self.seeds: dict[str, SeedLifecycle] = {
            name: SeedLifecycle(name, clock=clock, embargo=self.config.embargo, sink=self._transition)
            for name in self.kernels
        }
        self.progress: dict[str, _Progress] = {}
        self.rejected: dict[str, str] = {}  # kernels that failed G0 for good (reference mismatch, interface)
        self.boot_invoke_s = {name: _median_invoke_s(k) for name, k in self.kernels.items()}
        self.window = 0

    # ------------------------------------------------------------------ events

    def _emit(self, event: RuntimeEvent) -> None:
        if self._sink is not None:
            self._sink(event)

    def _transition(self, ev: TransitionEvent) -> None:
        k = self.kernels[ev.seed_id]  # one lifecycle per kernel of the image
        self._emit(SeedTransition(ev, k.site, k.name, self.window, self.clock()))

    def _gate_failed(self, name: str, result: GateResult) -> None:
        self._emit(GateVerdict(name, self.kernels[name].site, result, self.window, self.clock()))

    # ------------------------------------------------------------------ queries

    def stage(self, name: str) -> Stage:
        return self.seeds[name].stage

    def live(self) -> dict[str, int]:
        """Kernels whose output is in the chain (any live stage): name -> site."""
        return {n: self.kernels[n].site for n, s in self.seeds.items() if s.stage in LIVE_STAGES}

    def busy_sites(self) -> set[int]:
        return {self.kernels[n].site for n, s in self.seeds.items() if s.stage in IN_FLIGHT}

    def available(self) -> set[str]:
        """Kernels that may germinate now: dormant, not rejected, breaker closed, their site not busy."""
        busy = self.busy_sites()
        return {
            n for n, s in self.seeds.items()
            if s.stage is Stage.DORMANT and n not in self.rejected
            and not self.health.breaker(n).is_open and self.kernels[n].site not in busy
        }

    def slot_summary(self) -> list[dict[str, Any]]:
        out = []
        for site, slot in enumerate(self.executor.config.slots):
            cand = slot.candidate
            name = cand.name if cand is not None else None
            out.append({
                "site": site,
                "kernel": None if slot.trial else name,  # in the answers
                "trial": name if slot.trial else None,  # run beside the answers only
                "stage": self.seeds[cand.name].stage.name if cand is not None else None,
                "alpha": round(slot.alpha, 3) if cand is not None else 0.0,
                "base": slot.base.name if slot.base is not None else None,
            })
        return out

    # ------------------------------------------------------------------ gates

    def gate_g0(self, name: str) -> GateResult:
        k = self.kernels[name]
        budget = self.health.budget_for(self.boot_invoke_s[name])
        check = check_reference(
            k.model, self.image.references.get(name), self.tolerance_lsb, grid=site_grid(self.image, k.site)
        )
        k.reference_check = check
        metrics = {**check.metrics(), "invoke_ms": self.boot_invoke_s[name] * 1e3, "budget_ms": budget * 1e3}
        if not check.passed:
            why = "no reference vectors" if check.rows == 0 else (
                f"reference vectors differ by {check.max_error_lsb:g} LSB (tolerance {check.tolerance_lsb:g})"
                if check.finite else "output on reference vectors is not finite")
            return GateResult(Gate.G0, False, why, metrics)
        if self.boot_invoke_s[name] > budget:
            return GateResult(Gate.G0, False, "slower than its latency budget at boot", metrics)
        return GateResult(Gate.G0, True, "loaded, fits its site, within budget, reference vectors reproduced", metrics)

    def gate_g1(self, name: str) -> GateResult:
        v = self.kernels[name].g1
        if v is None:
            return GateResult(Gate.G1, False, "the manifest carries no host G1 verdict for this kernel")
        return GateResult(Gate.G1, bool(v.passed), f"host verdict: {v.reason}", dict(v.metrics))

    def _germinate_and_train(self, name: str, reason: str) -> tuple[GateResult, GateResult] | None:
        """The one way into the lifecycle on the device: G0 on this device, DORMANT → GERMINATED → TRAINING, then
        the host's G1 verdict. Returns the passed (G0, G1) for the caller's move to BLENDING, or None: a G0
        failure leaves the kernel DORMANT and rejected for good, a G1 failure (or none recorded) culls it."""
        seed = self.seeds[name]
        g0 = self.gate_g0(name)
        if not g0.passed:
            self.rejected[name] = g0.reason
            self._gate_failed(name, g0)
            return None
        seed.move(Stage.GERMINATED, reason=reason, gate=g0)
        seed.move(Stage.TRAINING, reason="trained on the host")
        g1 = self.gate_g1(name)
        if not g1.passed:
            self._gate_failed(name, g1)
            self._cull(name, "g1_failed" if self.kernels[name].g1 is not None else "g1_missing")
            return None
        return g0, g1

    # ------------------------------------------------------------------ actions

    def activate(self, name: str, alpha_target: float, reason: str, baseline_confidence: float) -> bool:
        """DORMANT → GERMINATED → TRAINING → BLENDING in one step; the ramp starts with the next window."""
        seed = self.seeds[name]
        if name not in self.available():
            return False
        k = self.kernels[name]
        gates = self._germinate_and_train(name, reason)
        if gates is None:
            return False
        seed.move(Stage.BLENDING, reason=f"alpha ramp to {alpha_target:.2f} over {self.config.blend_windows} windows",
                  gate=gates[1])
        before = self.executor.config.slots[k.site]
        base = before.candidate if before.candidate is not None and before.alpha >= 1.0 else before.base
        if before.candidate is not None and 0.0 < before.alpha < 1.0:
            base = before.candidate  # a partial blend cannot be a base: take the kernel as it stands
        # an installed (pinned) kernel is the wearer's own, judged on their labelled minutes on the host
        judged = self.config.judge == "evidence" and not k.pinned
        evidence = KernelEvidence(self.config.evidence) if judged else None
        self.progress[name] = _Progress(
            alpha_target=alpha_target, baseline_confidence=baseline_confidence, before=before, reference=k.reference_check,
            evidence=evidence,
        )
        first = alpha_target / max(1, self.config.blend_windows)
        self.executor.set_slot(k.site, SlotConfig(base=base, candidate=k, alpha=first, trial=evidence is not None))
        self.progress[name].alphas.append(first)
        self.health.watch(name, k.site, self.health.budget_for(self.boot_invoke_s[name]), baseline_confidence)
        return True

    def boot_live(self, name: str, reason: str = "live at boot (bundle default)") -> bool:
        """A kernel the bundle declares live at boot: all gates on the device's and the host's evidence."""
        seed = self.seeds[name]
        k = self.kernels[name]
        gates = self._germinate_and_train(name, reason)
        if gates is None:
            return False
        g0, g1 = gates
        seed.move(Stage.BLENDING, reason="boot: full alpha", gate=g1)
        seed.move(Stage.SHADOWING, reason="boot", gate=GateResult(Gate.G2, True, "boot: alpha set to 1"))
        seed.move(Stage.PROBATIONARY, reason="boot", gate=GateResult(
            Gate.G3, True, "interface and reference vectors checked at G0", g0.metrics))
        gain = k.measured_gain
        seed.move(Stage.FOSSILIZED, reason="fossilized on the host", gate=GateResult(
            Gate.G4, True, "host G4 (system impact) held at build time", {"gain": float(gain or 0.0)}))
        self.progress[name] = _Progress(alpha_target=1.0, before=SlotConfig(), reference=k.reference_check)
        self.executor.set_slot(k.site, SlotConfig(candidate=k, alpha=1.0))
        # no confidence from before this kernel exists at boot: only the absolute floor applies
        self.health.watch(name, k.site, self.health.budget_for(self.boot_invoke_s[name]), 0.0)
        return True

    def _rollback(self, name: str) -> None:
        """Give the kernel's site back what it ran before the kernel came (previous kernel or identity)."""
        k = self.kernels[name]
        slot = self.executor.config.slots[k.site]
        prog = self.progress.get(name)
        if slot.candidate is not None and slot.candidate.name == name:
            before = prog.before if prog is not None and prog.before is not None else SlotConfig()
            if before.candidate is not None and self.seeds[before.candidate.name].stage not in LIVE_STAGES:
                before = SlotConfig()
            self.executor.set_slot(k.site, before)
        elif slot.base is not None and slot.base.name == name:
            self.executor.set_slot(k.site, replace(slot, base=None))
        self.health.unwatch(name)

    def _cull(self, name: str, reason: str) -> None:
        seed = self.seeds[name]
        self._rollback(name)
        seed.move(Stage.CULLED, reason=reason)
        seed.move(Stage.EMBARGOED, reason=f"embargo {self.config.embargo.duration(reason):g} s ({reason})")

    def retire(self, name: str, reason: str = "condition_cleared") -> bool:
        if self.seeds[name].stage not in LIVE_STAGES | IN_FLIGHT:
            return False
        self._cull(name, reason)
        return True

    def on_fault(self, fault: Fault) -> None:
        """The breaker is open: roll back within this window and cull with the fault's code."""
        if fault.kernel in self.seeds and self.seeds[fault.kernel].stage in LIVE_STAGES | IN_FLIGHT:
            self._emit(FaultRollback(fault, self.window, self.clock()))
            self._cull(fault.kernel, fault.code)

    # ------------------------------------------------------------------ per window

    def tick(self, result: WindowResult, context: BeatContext | None = None) -> None:
        """Advance ramps and gates after a window; release embargoes that have expired. ``context``: what
        the signal says about this window's beat (:class:`evidence.BeatContextTracker`), for the evidence."""
        self.window += 1
        cfg = self.config
        for name, seed in self.seeds.items():
            stage = seed.stage
            if stage is Stage.EMBARGOED and seed.embargo_expired():
                seed.move(Stage.RESETTING, reason="embargo expired")
                self._reset(name)
                continue
            if stage not in LIVE_STAGES:
                continue
            prog = self.progress.get(name) or self.progress.setdefault(name, _Progress())
            if stage is Stage.FOSSILIZED:
                if prog.evidence is not None:
                    self._judge_live(name, prog, result, context)
                continue
            k = self.kernels[name]
            prog.windows += 1
            obs = result.sites[k.site] if k.site < len(result.sites) else None
            if obs is not None and obs.relative_change is not None:
                prog.changes.append(obs.relative_change)
            if stage is Stage.BLENDING:
                if prog.windows < cfg.blend_windows:
                    alpha = prog.alpha_target * (prog.windows + 1) / cfg.blend_windows
                    self.executor.set_alpha(k.site, alpha)
                    prog.alphas.append(alpha)
                else:
                    self._gate_g2(name, prog)
            elif stage is Stage.SHADOWING:
                if result.shadow_label is not None:
                    prog.agreements.append(result.shadow_label == result.label)
                if prog.evidence is not None:  # on trial: the kernel's answers are the shadow path's
                    prog.evidence.add(result.shadow_probs, result.probs, context)
                if prog.windows >= cfg.shadow_windows:
                    self._gate_g3(name, prog)
            elif stage is Stage.PROBATIONARY:
                if result.finite:
                    prog.confidences.append(float(np.max(result.probs)))
                if prog.evidence is not None and self._judge_live(name, prog, result, context):
                    continue
                if prog.windows >= cfg.probation_windows:
                    self._gate_g4(name, prog)

    def _judge_live(self, name: str, prog: _Progress, result: WindowResult, context: BeatContext | None) -> bool:
        """A live kernel's window of evidence (the base is the shadow path); culled (True) once its net
        evidence, over the stage (PROBATIONARY) or the recent windows (FOSSILIZED), is below -cull_evidence."""
        ev = prog.evidence
        assert ev is not None
        ev.add(result.probs, result.shadow_probs, context)
        net = ev.recent if self.seeds[name].stage is Stage.FOSSILIZED else ev.total
        if net >= -self.config.cull_evidence:
            return False
        self._emit(EvidenceVerdict(name, self.kernels[name].site, self.window, "hurts", self.seeds[name].stage.name,
                                   ev.metrics(), self.clock()))
        self._cull(name, f"evidence_harm: net evidence {net:.2f} over {ev.windows} windows")
        return True

    def _next(self, name: str, prog: _Progress, dst: Stage, gate: GateResult, reason: str) -> None:
        if gate.passed:
            self.seeds[name].move(dst, reason=reason, gate=gate)
            prog.windows = 0
        else:
            self._gate_failed(name, gate)
            self._cull(name, f"{gate.gate.value.lower()}_failed")

    def _gate_g2(self, name: str, prog: _Progress) -> None:
        cfg = self.config
        advancing = all(b >= a for a, b in zip(prog.alphas, prog.alphas[1:], strict=False))
        reached = bool(prog.alphas) and abs(prog.alphas[-1] - prog.alpha_target) < 1e-6
        worst = max(prog.changes) if prog.changes else 0.0
        metrics = {"alpha": prog.alphas[-1] if prog.alphas else 0.0, "max_relative_change": worst,
                   "windows": float(len(prog.alphas))}
        ok = advancing and reached and worst <= cfg.max_relative_change
        why = "alpha ramp complete, site change bounded" if ok else (
            "alpha ramp did not reach its target" if not (advancing and reached)
            else f"kernel changed its site by {worst:.2f}x (limit {cfg.max_relative_change})")
        k = self.kernels[name]
        if ok:
            slot = self.executor.config.slots[k.site]
            self.executor.set_slot(k.site, replace(slot, shadow=True))
        self._next(name, prog, Stage.SHADOWING, GateResult(Gate.G2, ok, why, metrics), "shadow the path without it")

    def _gate_g3(self, name: str, prog: _Progress) -> None:
        cfg = self.config
        k = self.kernels[name]
        slot = self.executor.config.slots[k.site]
        self.executor.set_slot(k.site, replace(slot, shadow=False))
        n = len(prog.agreements)
        agreement = float(np.mean(prog.agreements)) if n else 0.0
        ref_ok = prog.reference is not None and prog.reference.passed
        complete = n >= cfg.shadow_windows
        metrics = {"shadow_agreement": agreement, "shadow_windows": float(n)}
        if prog.evidence is not None:
            self._gate_g3_evidence(name, prog, ref_ok, complete, metrics)
            return
        ok = ref_ok and complete and agreement >= cfg.min_shadow_agreement
        why = (
            f"interface and reference vectors hold; shadow agreement {agreement:.2f} over {n} windows" if ok
            else "reference vectors not reproduced" if not ref_ok
            else f"shadow comparison incomplete ({n} of {cfg.shadow_windows} windows)" if not complete
            else f"kernel changes {1 - agreement:.0%} of the labels (limit {1 - cfg.min_shadow_agreement:.0%})"
        )
        gate = GateResult(Gate.G3, ok, why, metrics)
        self._next(name, prog, Stage.PROBATIONARY, gate, "live and watched")

    def _gate_g3_evidence(self, name: str, prog: _Progress, ref_ok: bool, complete: bool, metrics: dict[str, float]) -> None:
        """G3 on label-free evidence: the kernel goes live only if its answers fit the signal better."""
        cfg = self.config
        ev = prog.evidence
        assert ev is not None
        net = ev.total
        # entropy alone never brings a kernel live: its answers must have differed, and fitted better
        helps = net > cfg.min_evidence and ev.classes >= cfg.min_class_evidence and ev.disagreements >= cfg.min_disagreements
        ok = ref_ok and complete and helps
        why = (
            f"interface and reference vectors hold; net evidence {net:.2f} over {ev.windows} windows "
            f"({ev.disagreements} disagreements)" if ok
            else "reference vectors not reproduced" if not ref_ok
            else f"shadow comparison incomplete ({int(metrics['shadow_windows'])} of {cfg.shadow_windows} windows)"
            if not complete
            else f"no evidence the kernel helps: net {net:.2f} (classes {ev.classes:.2f}) over {ev.windows} windows "
            f"({ev.disagreements} disagreements)"
        )
        gate = GateResult(Gate.G3, ok, why, {**metrics, **ev.metrics()})
        k = self.kernels[name]
        if ok:
            # live from now on: its answers are the device's, the path without it the shadow (still judged)
            slot = self.executor.config.slots[k.site]
            self.executor.set_slot(k.site, replace(slot, trial=False, shadow=True))
            self.seeds[name].move(Stage.PROBATIONARY, reason="live and watched on label-free evidence", gate=gate)
            prog.windows = 0
            ev.restart()
            return
        self._gate_failed(name, gate)
        code = "g3_failed" if not (ref_ok and complete) else "evidence_harm" if net < 0 else "evidence_none"
        self._emit(EvidenceVerdict(name, k.site, self.window, "hurts" if net < 0 else "unproven", "SHADOWING",
                                   ev.metrics(), self.clock()))
        self._cull(name, f"{code}: {why}" if code != "g3_failed" else code)

    def _gate_g4(self, name: str, prog: _Progress) -> None:
        cfg = self.config
        conf = float(np.mean(prog.confidences)) if prog.confidences else 0.0
        gain = conf - prog.baseline_confidence
        ok = bool(prog.confidences) and gain >= -cfg.confidence_tolerance
        why = f"mean confidence {conf:.2f} vs {prog.baseline_confidence:.2f} before germination"
        metrics = {"confidence": conf, "baseline_confidence": prog.baseline_confidence, "gain": gain}
        if prog.evidence is not None:
            net = prog.evidence.total
            ok = ok and net >= 0.0
            why = f"net evidence {net:.2f} over {prog.evidence.windows} live windows; {why}"
            metrics.update(prog.evidence.metrics())
        gate = GateResult(Gate.G4, ok, why, metrics)
        self._next(name, prog, Stage.FOSSILIZED, gate, "kept")
        if ok:
            self._supersede(name)

    def _supersede(self, name: str) -> None:
        """A fossilized kernel at full alpha replaces the kernel it was blended over."""
        k = self.kernels[name]
        slot = self.executor.config.slots[k.site]
        if slot.alpha >= 1.0 and slot.base is not None:
            old = slot.base.name
            self.executor.set_slot(k.site, replace(slot, base=None))
            if self.seeds[old].stage in LIVE_STAGES:
                self.health.unwatch(old)
                self.seeds[old].move(Stage.CULLED, reason="superseded")
                self.seeds[old].move(Stage.EMBARGOED, reason="embargo after being superseded")

    def _reset(self, name: str) -> None:
        in_use = [
            site for site, slot in enumerate(self.executor.config.slots)
            if (slot.candidate is not None and slot.candidate.name == name)
            or (slot.base is not None and slot.base.name == name)
        ]
        self.health.breaker(name).close()
        self.progress.pop(name, None)
        self.health.unwatch(name)
        clean = not in_use
        gate = GateResult(
            Gate.G5, clean,
            "slot clean, breaker closed, counters cleared" if clean else f"still referenced at site {in_use[0]}",
        )
        if clean:
            self.seeds[name].move(Stage.DORMANT, reason="reset", gate=gate)
        else:
            self._gate_failed(name, gate)

