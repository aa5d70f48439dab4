"""The device's main loop: raw ECG chunks in; beat classes, decisions, swaps and faults out.

Per chunk: the beatizer (the very windowing the model was trained on) turns samples into beats.
Per beat: the executor classifies the window under the current chain; the health monitor checks the
live kernels (a fault rolls the slot back before the next window); the controller looks at the
features and decides; the seed manager applies the decision (a swap is one reference assignment)
and advances ramps and gates. Every prediction and every event goes to ``sink`` as one typed record
of :mod:`kasmina_edge.contracts.events`, in order.

The lifecycle's clock is signal time (seconds of ECG seen), so embargoes and hysteresis mean the
same under ``--fast`` and ``--realtime``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.events import (
    BeatClassified,
    DecisionTaken,
    EventSink,
    KernelDecision,
    KernelInstalled,
    KernelRefused,
    ReferenceMeasured,
    RuntimeBooted,
    RuntimeEvent,
    SegmentCheck,
)
from kasmina_edge.core.features import SiteStats, beat_matrix, mean_drift, observation_vector, signal_features
from kasmina_edge.core.symptoms import symptoms_of
from kasmina_edge.ecg.windowing import Beat, StreamingBeatizer, WindowSpec
from kasmina_edge.runtime.controller import (
    ExportedPolicy,
    KernelChoice,
    KernelController,
    KernelControllerConfig,
)
from kasmina_edge.runtime.evidence import BeatContextTracker
from kasmina_edge.runtime.executor import ChainConfig, SegmentedExecutor, WindowResult
from kasmina_edge.runtime.health import HealthLimits, HealthMonitor
from kasmina_edge.runtime.image import (
    PREFIX_NAME,
    SUFFIX_NAME,
    WHOLE_BASE,
    Image,
    ImageError,
    check_reference,
    piece_vectors,
    site_grid,
)
from kasmina_edge.runtime.lifecycle import LifecycleConfig, SeedManager
from kasmina_edge.runtime.observation import (
    RawBuffer,
    RecentProbs,
    ReferenceCollector,
    SiteAccumulator,
    signal_quality_ratio,
)

ANOMALY_CLASSES = frozenset({"S", "V", "F"})


@dataclass(frozen=True)
class RuntimeConfig:
    warmup_windows: int = 12  # clean reference measured on the device when the bundle has none
    feature_seconds: float = 4.0  # raw signal the signal features look at
    decide_every: int = 1  # windows between two controller decisions
    boot_kernels: bool = True  # honour the bundle's chain.default_active
    adapt: bool = True  # apply the controller's decisions (False: the base model alone, for comparison)
    controller: KernelControllerConfig = field(default_factory=KernelControllerConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    health: HealthLimits = field(default_factory=HealthLimits)


@dataclass
class Platform:
    """What the device's platform tells the controller (the emulator updates it)."""

    battery: float = 1.0
    link_state: float = 1.0
    security_alert: bool = False


@dataclass
class Counters:
    beats: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    anomalies: int = 0
    decisions: int = 0
    swaps: int = 0
    faults: int = 0
    infer_s: float = 0.0


def _host_word(stage: str) -> str:
    return "culled" if stage in ("CULLED", "EMBARGOED", "RESETTING") else stage.lower()


class BootError(ImageError):
    """A base segment that does not reproduce its reference vectors: this image must not run."""


class DeviceRuntime:
    def __init__(
        self,
        image: Image,
        *,
        fs: float = 360.0,
        config: RuntimeConfig | None = None,
        sink: EventSink | None = None,
        platform: Platform | None = None,
    ) -> None:
        self.image = image
        self.fs = fs
        self.config = config or RuntimeConfig()
        self.platform = platform or Platform()
        self._sink = sink
        self.classes = image.classes
        spec = WindowSpec(fs=fs)  # the training windows (ecg.windowing): the model was trained on these
        if int(np.prod(image.input.shape)) != spec.length:
            raise ImageError(
                f"the model takes windows of {int(np.prod(image.input.shape))} samples; the runtime's beat "
                f"windows are {spec.length}"
            )
        self.beatizer = StreamingBeatizer(fs, spec)
        self.context = BeatContextTracker(spec, self.config.lifecycle.evidence)  # label-free evidence per beat
        self.executor = SegmentedExecutor(image)
        self.health = HealthMonitor(self.config.health)
        self.samples_seen = 0
        info = image.backend.info()
        self.tolerance_lsb = float(info.reference_tolerance_lsb)
        self.manager = SeedManager(
            self.executor, self.health, clock=self.signal_time, sink=self._emit,
            config=self.config.lifecycle, tolerance_lsb=self.tolerance_lsb,
        )
        policy = ExportedPolicy.from_json(image.policy) if image.policy is not None else None
        kernels = [
            KernelChoice(k.name, k.site, k.blueprint, symptoms_of(k.tags) or symptoms_of(k.name.split("_")),
                         float(k.measured_gain or 0.0))
            for k in image.kernels.values()
            if not k.pinned  # installed kernels (a patient's) are brought live by the runtime, not chosen
        ]
        self.controller = KernelController(kernels, self.executor.n_sites, self.config.controller, policy=policy)
        self.raw = RawBuffer(fs, self.config.feature_seconds)
        self.recent = RecentProbs(8)
        self.site_acc = [SiteAccumulator() for _ in range(self.executor.n_sites)]
        self.collector = ReferenceCollector()
        self.site_ref: list[SiteStats] | None = None
        self.template: np.ndarray | None = None
        self.r_peaks: deque[int] = deque(maxlen=64)
        self.counters = Counters(classes=dict.fromkeys(self.classes, 0))
        self.decision_latency_s: list[float] = []
        self.last_decisions: deque[DecisionTaken] = deque(maxlen=5)
        self._warm: list[np.ndarray] = []
        self._warm_quality: list[float] = []
        self.quality: float | None = None  # the signal quality index of the last decision's seconds
        self._drift: list[float] | None = None
        self._booted = False
        self._refused: set[str] = set()  # pinned kernels the host culled: never brought live
        self._names: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self._names_for: ChainConfig | None = None

    # ------------------------------------------------------------------ plumbing

    def signal_time(self) -> float:
        return self.samples_seen / self.fs

    def _emit(self, event: RuntimeEvent) -> None:
        if self._sink is not None:
            self._sink(event)

    # ------------------------------------------------------------------ boot

    def boot(self) -> list[SegmentCheck]:
        """Check every base segment against its reference vectors; put the bundle's boot kernels live."""
        checks: list[SegmentCheck] = []
        for i, (seg, entry) in enumerate(zip(self.image.segments, self.image.segment_entries, strict=True)):
            last = i == len(self.image.segments) - 1
            grid = None if last else site_grid(self.image, i)
            check = check_reference(seg, self.image.references.get(entry.name), self.tolerance_lsb, logits=last, grid=grid)
            checks.append(SegmentCheck(entry.name, check.passed, check.metrics()))
            if not check.passed:
                raise BootError(
                    f"boot: base segment {entry.name!r} does not reproduce its reference vectors "
                    f"({check.max_error_lsb:g} LSB, tolerance {check.tolerance_lsb:g})"
                )
        if self.image.whole is not None:  # the fused base answers while no kernel is live: the same proof
            check = check_reference(self.image.whole, self.image.references.get(WHOLE_BASE), self.tolerance_lsb,
                                    logits=True)
            checks.append(SegmentCheck(WHOLE_BASE, check.passed, check.metrics()))
            if not check.passed:
                raise BootError(f"boot: the fused base {WHOLE_BASE!r} does not reproduce its reference vectors "
                                f"({check.max_error_lsb:g} LSB, tolerance {check.tolerance_lsb:g})")
        checks += self._check_pieces()
        self._emit(RuntimeBooted(self.image.manifest.bundle_id, self.image.backend.info().name, len(self.image.segments),
                                 len(self.image.kernels), tuple(checks), self.signal_time()))
        if self.config.boot_kernels and self.image.manifest.chain is not None:
            for _site, name in sorted(self.image.manifest.chain.default_active.items()):
                if name in self.image.kernels:
                    self.manager.boot_live(name)
        self._booted = True
        return checks

    def _check_pieces(self) -> list[SegmentCheck]:
        """The fused prefixes and suffixes against the segments they stand for, on those segments' reference
        inputs (the segments passed their own check just before): the same proof as the fused base's."""
        checks = []
        n = len(self.image.segments) - 1
        for suffix, pieces in ((False, self.image.prefixes), (True, self.image.suffixes)):
            for site, model in sorted(pieces.items()):
                name = (SUFFIX_NAME if suffix else PREFIX_NAME).format(site)
                logits = suffix
                grid = None if logits else site_grid(self.image, site)
                check = check_reference(model, piece_vectors(self.image, site, suffix), self.tolerance_lsb,
                                        logits=logits, grid=grid)
                checks.append(SegmentCheck(name, check.passed, check.metrics()))
                if not check.passed:
                    raise BootError(f"boot: the fused piece {name!r} does not reproduce segments "
                                    f"{site + 1 if suffix else 0}..{n if suffix else site} ({check.max_error_lsb:g} "
                                    f"LSB, tolerance {check.tolerance_lsb:g})")
        return checks

    # ------------------------------------------------------------------ streaming

    def feed(self, chunk: np.ndarray) -> list[BeatClassified]:
        """Raw samples (n,) or (n, leads) → the prediction records of the beats they completed."""
        if not self._booted:
            self.boot()
        x = np.asarray(chunk, dtype=np.float32)
        lead = x[:, 0] if x.ndim == 2 else x.reshape(-1)
        self.raw.push(lead)
        self.samples_seen += lead.shape[0]
        return [self.on_beat(b) for b in self.beatizer.process(x)]

    def finish(self) -> list[BeatClassified]:
        return [self.on_beat(b) for b in self.beatizer.flush()]

    # ------------------------------------------------------------------ one beat

    def on_beat(self, beat: Beat) -> BeatClassified:
        self.r_peaks.append(beat.r_peak)
        result = self.executor.infer(beat.window, self._rr(beat.rr))
        self.counters.infer_s += result.latency_s
        drift = self._update_sites(result)
        for fault in self.health.check(result, self.executor.config, self.manager.window, drift):
            self.counters.faults += 1
            self.manager.on_fault(fault)
        self.recent.add(result.probs)
        record = self._prediction(beat, result)
        self._emit(record)
        if self.counters.beats % self.config.decide_every == 0:
            self._decide(drift)
        self.manager.tick(result, self.context.observe(beat.window, beat.rr, beat.valid))
        return record

    def _update_sites(self, result: WindowResult) -> list[float]:
        """Per-site drift against the reference; recomputed when the window brought new statistics."""
        fresh = False
        for acc, obs in zip(self.site_acc, result.sites, strict=True):
            if obs.mean is not None:
                acc.update(obs.mean, obs.meansq)
                fresh = True
        if self.site_ref is None:
            return [0.0] * len(self.site_acc)
        if fresh or self._drift is None:
            self._drift = [
                mean_drift(acc.mean, ref) if acc.mean is not None else 0.0
                for acc, ref in zip(self.site_acc, self.site_ref, strict=True)
            ]
        return self._drift

    def _prediction(self, beat: Beat, result: WindowResult) -> BeatClassified:
        self.counters.beats += 1
        label = self.classes[result.label] if 0 <= result.label < len(self.classes) else "?"
        self.counters.classes[label] = self.counters.classes.get(label, 0) + 1
        anomaly = label in ANOMALY_CLASSES
        self.counters.anomalies += int(anomaly)
        active, trial = self._slot_names()
        return BeatClassified(
            sample=int(beat.r_peak),
            t=round(beat.r_peak / self.fs, 4),
            label=label,
            confidence=round(max(result.probs.tolist()), 4) if result.finite else None,
            valid=bool(beat.valid),
            anomaly=anomaly,
            latency_us=round(result.latency_s * 1e6, 1),
            active=active,
            trial=trial,  # judged beside the answers
            faults=tuple(f"{k}:{c}" for _, k, c in result.faults) if result.faults else (),
        )

    def _slot_names(self) -> tuple[dict[str, str], dict[str, str]]:
        """site -> kernel in the answers, site -> kernel on trial, for the chain now running: rebuilt only when
        the executor's configuration changed (the records share the two dicts, which nobody writes to)."""
        config = self.executor.config
        if self._names_for is not config:
            active: dict[str, str] = {}
            trial: dict[str, str] = {}
            for site, slot in enumerate(config.slots):
                if slot.candidate is not None:
                    (trial if slot.trial else active)[str(site)] = slot.candidate.name
            self._names, self._names_for = (active, trial), config
        return self._names

    def _observation(self, drift: list[float]) -> np.ndarray:
        sig, start = self.raw.view()
        peaks = np.array([r - start for r in self.r_peaks if start <= r < start + sig.shape[0]], dtype=np.int64)
        feats = signal_features(sig, self.fs, peaks, self.template)
        live = self.manager.live()
        obs = observation_vector(
            feats,
            self.recent.entropy(),
            drift,
            battery=self.platform.battery,
            link_state=self.platform.link_state,
            security_alert=self.platform.security_alert,
            live_seeds=len(set(live.values())) / max(1, self.executor.n_sites),
            plateau=not self.manager.busy_sites(),
            calibration=False,
        )
        # the quality index (a filter pass over the buffer) only where a signal symptom needs corroborating
        needed = self.controller.needs_quality(obs, live, self.manager.available())
        self.quality = signal_quality_ratio(sig, self.fs, peaks) if needed else None
        return obs

    def _warmup(self, obs: np.ndarray) -> None:
        """Clean reference from the first windows: median features, median beat, site statistics."""
        self._warm.append(obs)
        if self.quality is not None:
            self._warm_quality.append(self.quality)
        self.collector.add_sites([a.mean for a in self.site_acc], [a.meansq for a in self.site_acc])
        if len(self._warm) < self.config.warmup_windows:
            return
        sig, start = self.raw.view()
        peaks = np.array([r - start for r in self.r_peaks if start <= r < start + sig.shape[0]], dtype=np.int64)
        beats = beat_matrix(sig, self.fs, peaks)
        if beats.shape[0]:
            self.template = np.median(beats, axis=0).astype(np.float32)
        self.site_ref = self.collector.site_stats()
        ref = np.median(np.stack(self._warm), axis=0)
        ref[3] = 1.0  # the template is the median beat of these windows: same shape by definition
        self.controller.reference = ref
        if self._warm_quality:
            self.controller.reference_quality = float(np.median(self._warm_quality))
        self._emit(ReferenceMeasured("device warm-up", len(self._warm), self.controller.reference_quality,
                                     tuple(round(float(v), 4) for v in ref), self.signal_time()))

    def _rr(self, rr: np.ndarray) -> np.ndarray:
        """The RR features as the live kernels expect them: a live pinned kernel's per-patient scale."""
        live = self.manager.live()
        for name in live:
            scale = self.image.kernels[name].rr_scale
            if scale is not None:
                return (np.asarray(rr, np.float32) * np.asarray(scale, np.float32)).astype(np.float32)
        return rr

    def _bring_pinned_live(self) -> None:
        """Installed kernels (kernel-only bundles) go live once the base has been watched through its
        warm-up: GERMINATED → … → FOSSILIZED through the seed manager, health-checked, rolled back on a
        fault (and tried again once its embargo is over). A kernel the host culled is refused."""
        if not self.config.adapt:
            return
        available = self.manager.available()
        for k in self.image.kernels.values():
            if not k.pinned or k.name in self._refused or k.name not in available:
                continue
            if k.host_stage is not None and k.host_stage != "FOSSILIZED":
                self._refused.add(k.name)
                self._emit(KernelRefused(k.name, k.site, f"{_host_word(k.host_stage)} on the host: {k.host_reason}",
                                         self.signal_time()))
                continue
            ok = self.manager.activate(k.name, 1.0, "installed kernel (kernel-only bundle)", self.recent.confidence())
            self.counters.swaps += int(ok)
            if ok:
                self._emit(KernelInstalled(k.name, k.site, k.bundle_id,
                                           tuple(k.rr_scale) if k.rr_scale else None, self.signal_time()))

    def _decide(self, drift: list[float]) -> None:
        t0 = time.perf_counter()
        obs = self._observation(drift)
        if self.controller.reference is None:
            self._warmup(obs)
            return
        self._bring_pinned_live()
        decision = self.controller.decide(obs, self.manager.live(), self.manager.available(), self.quality)
        swapped = self._apply(decision) if self.config.adapt else False
        elapsed = time.perf_counter() - t0
        self.decision_latency_s.append(elapsed)
        self.counters.decisions += 1
        if decision.action != "wait" or swapped:
            taken = DecisionTaken(decision, swapped, round(elapsed * 1e6, 1), self.manager.window, self.signal_time())
            self.last_decisions.append(taken)
            self._emit(taken)

    def _apply(self, d: KernelDecision) -> bool:
        if d.action == "activate" and d.kernel is not None:
            ok = self.manager.activate(d.kernel, d.alpha_target, d.reason, self.recent.confidence())
            self.counters.swaps += int(ok)
            return ok
        if d.action == "retire" and d.kernel is not None:
            ok = self.manager.retire(d.kernel, d.reason)
            self.counters.swaps += int(ok)
            return ok
        return False

    # ------------------------------------------------------------------ reporting

    def status(self) -> dict[str, Any]:
        lat = np.asarray(self.decision_latency_s) * 1e3
        return {
            "beats": self.counters.beats,
            "classes": dict(self.counters.classes),
            "anomalies": self.counters.anomalies,
            "faults": self.counters.faults,
            "swaps": self.counters.swaps,
            "slots": self.manager.slot_summary(),
            "decision_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "decision_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
            "signal_s": self.signal_time(),
            "infer_s": self.counters.infer_s,
        }
