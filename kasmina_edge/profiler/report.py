"""A profiler report: a bundle (or a bare .tflite / .onnx) estimated on hardware profiles.

``load_subject`` reads what is profiled once (graph walk, TFLite Micro arena estimate per artifact);
``profile_subject`` then estimates it on each profile: the limits it breaks, per-op latency of every
artifact, the per-beat chain (base segments plus the heaviest kernel at each site), the decision budget
(controller features and rules, the kernel's G0 reference check, the swap), energy and battery life.
Everything is plain data with ``to_dict`` for ``--json``; rendering lives in ``render`` and ``html``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.catalog import list_hardware, list_targets, network
from kasmina_edge.core.profiles import HardwareProfile
from kasmina_edge.profiler import compat
from kasmina_edge.profiler.energy import (
    DEFAULT_HEART_RATE_BPM,
    DEFAULT_NETWORK,
    EnergyEstimate,
    TelemetryFrame,
    default_plan,
    estimate_energy,
)
from kasmina_edge.profiler.estimate import ControllerWork, DecisionEstimate, estimate_decision
from kasmina_edge.profiler.graph import GraphProfile, profile_graph, sniff_format
from kasmina_edge.profiler.latency import ArtifactLatency, cpu_for, estimate_graph
from kasmina_edge.profiler.measure import Measurement
from kasmina_edge.profiler.tflm_arena import ArenaComparison, ArenaEstimate, estimate_arena

PER_BEAT_BUDGET_S = 0.005  # one beat's inference
DECISION_BUDGET_S = 0.050  # one decision with its kernel swap
REFERENCE_ROWS = 8  # reference vectors a kernel runs through (G0) before it goes live
PROFILED_KINDS = ("segment", "kernel", "whole")


class ProfileInputError(KasminaError):
    """A file the profiler cannot take (unknown suffix, unreadable model, no profilable artifact)."""


@dataclass
class Artifact:
    facts: compat.ArtifactFacts
    data: bytes
    graph: GraphProfile
    arena: ArenaEstimate | None
    reference: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.facts.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.facts.kind,
            "site": self.facts.site,
            "format": self.facts.format,
            "bits": self.facts.bits,
            "bytes": self.facts.bytes,
            "graph": self.graph.to_dict(),
            "tflm_arena": self.arena.to_dict() if self.arena else None,
        }


@dataclass
class Subject:
    """What is profiled: a bundle's artifacts, or one model file."""

    name: str
    path: str
    kind: str  # bundle | tflite | onnx
    artifacts: list[Artifact]
    target: str | None = None
    built_for: str | None = None  # the bundle's profile
    segments: list[str] = field(default_factory=list)
    policy_params: int = 0
    notes: list[str] = field(default_factory=list)

    def runnable(self) -> list[Artifact]:
        """What a device loads: segments and kernels (the 'whole' model is a comparison artifact)."""
        out = [a for a in self.artifacts if a.facts.kind != "whole"]
        return out or list(self.artifacts)

    def by_name(self) -> dict[str, Artifact]:
        return {a.name: a for a in self.artifacts}

    def kernels_by_site(self) -> dict[int, list[Artifact]]:
        sites: dict[int, list[Artifact]] = {}
        for a in self.artifacts:
            if a.facts.kind == "kernel" and a.facts.site is not None:
                sites.setdefault(a.facts.site, []).append(a)
        return sites


def _artifact(
    name: str, kind: str, fmt: str, data: bytes, stored: int, bits: int, site: int | None
) -> Artifact:
    graph = profile_graph(data, fmt, name, bits)
    arena = estimate_arena(graph) if graph.format == "tflite" else None
    facts = compat.ArtifactFacts(
        name=name,
        kind=kind,
        format=fmt,
        bits=bits,
        bytes=stored,
        dtype=graph.dtype,
        op_names=tuple(graph.op_names()),
        site=site,
        arena_bytes=arena.total_bytes if arena else None,
    )
    return Artifact(facts, data, graph, arena)


def _count_numbers(blob: Any) -> int:
    if isinstance(blob, list):
        return sum(_count_numbers(b) for b in blob)
    if isinstance(blob, dict):
        return sum(_count_numbers(v) for v in blob.values())
    return 1 if isinstance(blob, int | float) and not isinstance(blob, bool) else 0


def load_subject(path: Path, keys: Path | None = None) -> Subject:
    """Read a signed bundle (``.kedge``, verified with ``keys``) or a bare ``.tflite`` / ``.onnx``."""
    path = Path(path)
    if not path.exists():
        raise ProfileInputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".tflite", ".onnx"):
        data = path.read_bytes()
        fmt = "tflite-int8" if sniff_format(data) == "tflite" else "onnx-qdq"
        if (fmt.startswith("tflite")) != (suffix == ".tflite"):
            raise ProfileInputError(
                f"{path}: the suffix says {suffix[1:]}, the content is {fmt.split('-')[0]}"
            )
        art = _artifact(path.stem, "model", fmt, data, len(data), 8, None)
        return Subject(path.stem, str(path), fmt.split("-")[0], [art])
    if suffix != ".kedge":
        raise ProfileInputError(
            f"{path}: profile a bundle (.kedge) or a model (.tflite, .onnx), not {suffix or 'a file without suffix'}"
        )
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.runtime.image import artifact_bytes

    bundle = read_bundle(path, keys)
    m = bundle.manifest
    artifacts: list[Artifact] = []
    policy = 0
    for entry in m.artifacts:
        if entry.kind == "policy":
            try:
                policy = _count_numbers(json.loads(bundle.artifact_bytes(entry.name)))
            except (ValueError, KasminaError):
                policy = entry.bytes // 4
            continue
        if entry.kind not in PROFILED_KINDS:
            continue
        data = artifact_bytes(bundle, entry)
        art = _artifact(
            entry.name,
            entry.kind,
            entry.format,
            data,
            entry.bytes or len(bundle.read(entry.file)),
            entry.bits,
            entry.site,
        )
        if entry.reference is not None:
            try:
                art.reference = bundle.reference_vectors(entry.name)
            except KasminaError:
                art.reference = None
        artifacts.append(art)
    if not artifacts:
        raise ProfileInputError(
            f"{path}: the bundle has no segment, kernel or whole-model artifact to profile"
        )
    segments = list(m.chain.segments) if m.chain else [a.name for a in artifacts if a.facts.kind == "segment"]
    return Subject(path.stem, str(path), "bundle", artifacts, m.target, m.profile, segments, policy)


# ------------------------------------------------------------------------------------------ per profile


@dataclass
class Settings:
    heart_rate_bpm: float = DEFAULT_HEART_RATE_BPM
    network: str = DEFAULT_NETWORK
    plan: tuple[TelemetryFrame, ...] = field(default_factory=default_plan)


@dataclass
class ProfileResult:
    profile: str
    kind: str
    runtime: str
    compatible: bool
    limits: list[compat.Limit]
    notes: list[str] = field(default_factory=list)
    latencies: dict[str, ArtifactLatency] = field(default_factory=dict)
    base_s: float | None = None  # base segments only
    per_beat_s: float | None = None  # base + the heaviest kernel at every site
    whole_s: float | None = None
    decision: DecisionEstimate | None = None
    energy: EnergyEstimate | None = None
    memory: compat.MemoryUse | None = None
    cache: dict[str, Any] | None = None

    @property
    def per_beat_ok(self) -> bool | None:
        return None if self.per_beat_s is None else self.per_beat_s <= PER_BEAT_BUDGET_S

    @property
    def decision_ok(self) -> bool | None:
        return None if self.decision is None else self.decision.total_s <= DECISION_BUDGET_S

    def to_dict(self, per_op: bool = True) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "kind": self.kind,
            "runtime": self.runtime,
            "compatible": self.compatible,
            "limits": [x.to_dict() for x in self.limits],
            "notes": list(self.notes),
            "base_s": self.base_s,
            "per_beat_s": self.per_beat_s,
            "whole_s": self.whole_s,
            "per_beat_budget_s": PER_BEAT_BUDGET_S,
            "per_beat_ok": self.per_beat_ok,
            "decision": self.decision.to_dict() if self.decision else None,
            "decision_budget_s": DECISION_BUDGET_S,
            "decision_ok": self.decision_ok,
            "energy": self.energy.to_dict() if self.energy else None,
            "memory": self.memory.to_dict() if self.memory else None,
            "edgetpu_cache": self.cache,
            "artifacts": {n: lat.to_dict(per_op) for n, lat in self.latencies.items()},
        }


def _edgetpu(
    subject: Subject, profile: HardwareProfile
) -> tuple[dict[str, Any], dict[str, tuple[int, Any, float]]]:
    """The compiler's predicted partition of every artifact and how they share the parameter cache."""
    from kasmina_edge.core.catalog import target
    from kasmina_edge.core.edgetpu_rules import EdgeTpuRules, check_model, co_compile

    rules = EdgeTpuRules.from_catalog(target("edgetpu"), profile)
    checks = {
        a.name: check_model(a.name, a.data, rules) for a in subject.artifacts if a.graph.format == "tflite"
    }
    plan = co_compile([checks[a.name] for a in subject.runnable() if a.name in checks], rules.cache_bytes)
    out: dict[str, tuple[int, Any, float]] = {}
    for name, chk in checks.items():
        sl = next((s for s in plan.slices if s.name == name), None)
        streamed = sl.streamed_bytes / sl.parameter_bytes if sl and sl.parameter_bytes else 0.0
        first = chk.first_cpu_op
        out[name] = (
            chk.mapped,
            {"index": first.op_index, "op": first.op, "rule": first.rule, "detail": first.detail}
            if first
            else None,
            streamed,
        )
    info = {
        "cache_bytes": plan.cache_bytes,
        "cache_used_bytes": plan.cache_used,
        "fits": plan.fits,
        "ops_mapped": plan.ops_mapped,
        "ops_cpu": plan.ops_cpu,
    }
    return info, out


def profile_one(
    subject: Subject, profile: HardwareProfile, settings: Settings, targets: dict[str, Any]
) -> ProfileResult:
    facts = [a.facts for a in subject.runnable()]
    limits, notes = compat.check(facts, profile, targets)
    res = ProfileResult(profile.name, profile.kind, profile.runtime, not limits, limits, notes)
    res.memory = compat.memory_use(facts, profile)
    if limits:
        return res
    if subject.target and subject.target not in profile.targets:
        notes.append(f"bundle built for {subject.target}")
    partitions: dict[str, tuple[int, Any, float]] = {}
    if profile.runtime == "litert-edgetpu":
        res.cache, partitions = _edgetpu(subject, profile)
        if not res.cache["fits"]:
            notes.append(
                "parameters overflow the Edge TPU cache: the rest stream over the host link every invoke"
            )
    resident = sum(a.graph.param_bytes for a in subject.runnable())
    for a in subject.artifacts:
        mapped, first, streamed = partitions.get(a.name, (None, None, 0.0))
        res.latencies[a.name] = estimate_graph(
            a.graph,
            profile,
            resident_weight_bytes=resident if a.facts.kind != "whole" else a.graph.param_bytes,
            mapped_ops=mapped,
            first_cpu_op=first,
            streamed_fraction=streamed,
        )
    lat = res.latencies
    if subject.kind == "bundle":
        res.base_s = sum(lat[s].total_s for s in subject.segments if s in lat)
        kernels = subject.kernels_by_site()
        res.per_beat_s = res.base_s + sum(max(lat[k.name].total_s for k in ks) for ks in kernels.values())
        whole = [a.name for a in subject.artifacts if a.facts.kind == "whole"]
        res.whole_s = lat[whole[0]].total_s if whole else None
        heaviest = max(
            (k for ks in kernels.values() for k in ks), key=lambda k: lat[k.name].total_s, default=None
        )
    else:
        res.base_s = res.per_beat_s = next(iter(lat.values())).total_s
        heaviest = None
    work = ControllerWork(policy_params=subject.policy_params)
    base = estimate_decision(profile, heaviest.graph.cost() if heaviest else None, work=work)
    decider = (
        cpu_for(profile) if profile.kind == "accelerator" or profile.runtime == "litert-edgetpu" else profile
    )
    if decider.name != base.runs_on:  # an Edge TPU board: the controller runs on its CPU, not on the TPU
        base.decision_s = estimate_decision(decider, None, work=work).decision_s
        base.runs_on = decider.name
        base.notes.append(f"controller on the board's CPU ({decider.name} stands in)")
    if heaviest is not None:
        # the G0 check at this report's per-op estimate of the kernel (the runtime's own uses the coarser roofline)
        base.reference_check_s = REFERENCE_ROWS * lat[heaviest.name].total_s
        base.notes.append(f"heaviest kernel: {heaviest.name}")
    res.decision = base
    res.energy = estimate_energy(
        profile,
        res.per_beat_s or 0.0,
        base.decision_s,
        heart_rate_bpm=settings.heart_rate_bpm,
        link=network(settings.network),
        plan=settings.plan,
        decision_profile=decider,
    )
    return res


@dataclass
class Report:
    subject: Subject
    settings: Settings
    results: list[ProfileResult]
    elapsed_s: float
    measurements: list[Measurement] = field(default_factory=list)
    measure_notes: list[str] = field(default_factory=list)
    arenas: list[ArenaComparison] = field(default_factory=list)

    def result(self, name: str) -> ProfileResult:
        for r in self.results:
            if r.profile == name:
                return r
        raise KeyError(name)

    def compatible(self) -> list[ProfileResult]:
        return [r for r in self.results if r.compatible]

    def host_result(self) -> ProfileResult | None:
        """The profile the measurements stand beside: this machine's kind (the x86 host profile), when
        compatible. A device profile's estimate is for that device: a measurement here says nothing of it."""
        return next((r for r in self.compatible() if r.kind == "host"), None)

    def calibration(self) -> list[dict[str, Any]]:
        """Estimated vs measured for every measurement on the host profile's own runtime."""
        host = self.host_result()
        rows: list[dict[str, Any]] = []
        for m in self.measurements:
            est = host.latencies.get(m.artifact) if host and m.backend.startswith(host.runtime) else None
            if host is None or est is None or m.p50_s <= 0:
                continue
            rows.append(
                {
                    "artifact": m.artifact,
                    "backend": m.backend,
                    "profile": host.profile,
                    "estimate_s": est.total_s,
                    "measured_p50_s": m.p50_s,
                    "ratio": est.total_s / m.p50_s,
                }
            )
        return rows

    def to_dict(self, per_op: bool = True, samples: bool = False) -> dict[str, Any]:
        s = self.subject
        return {
            "subject": {
                "name": s.name,
                "path": s.path,
                "kind": s.kind,
                "target": s.target,
                "built_for": s.built_for,
                "segments": s.segments,
                "policy_params": s.policy_params,
                "artifacts": [a.to_dict() for a in s.artifacts],
            },
            "settings": {
                "heart_rate_bpm": self.settings.heart_rate_bpm,
                "network": self.settings.network,
                "telemetry_plan": [f.__dict__ for f in self.settings.plan],
                "per_beat_budget_s": PER_BEAT_BUDGET_S,
                "decision_budget_s": DECISION_BUDGET_S,
            },
            "elapsed_s": self.elapsed_s,
            "profiles": [r.to_dict(per_op) for r in self.results],
            "measurements": [m.to_dict(samples) for m in self.measurements],
            "calibration": self.calibration(),
            "measure_notes": list(self.measure_notes),
            "tflm_arenas": [a.to_dict() for a in self.arenas],
        }


def profile_subject(
    subject: Subject, profiles: Sequence[HardwareProfile] | None = None, settings: Settings | None = None
) -> Report:
    """Estimate ``subject`` on every profile (default: all of the catalog's); compatible ones first."""
    t0 = time.perf_counter()
    settings = settings or Settings()
    network(settings.network)  # an unknown network name fails here, once, with the known ones
    targets = {t.name: t for t in list_targets()}
    chosen = list(profiles) if profiles is not None else list_hardware()
    results = [profile_one(subject, p, settings, targets) for p in chosen]
    results.sort(key=lambda r: (not r.compatible, r.per_beat_s if r.per_beat_s is not None else 0.0))
    return Report(subject, settings, results, time.perf_counter() - t0)


def measure_subject(report: Report, *, runs: int = 1000, budget_s: float = 2.0, warmup: int = 50) -> Report:
    """Run every artifact on the backends here (one core) and, for TFLite artifacts, ask TFLite Micro for
    its arena; the results go into ``report``."""
    from kasmina_edge.profiler.measure import measure_all
    from kasmina_edge.profiler.tflm_arena import compare_arenas

    arts = {a.name: (a.data, a.facts.format, a.reference) for a in report.subject.artifacts}
    report.measurements, report.measure_notes = measure_all(arts, warmup=warmup, runs=runs, budget_s=budget_s)
    tflite = {a.name: a.data for a in report.subject.artifacts if a.graph.format == "tflite"}
    if tflite:
        report.arenas = compare_arenas(tflite, measure=True)
        if all(c.measured_bytes is None for c in report.arenas):
            report.measure_notes.append(
                "TFLite Micro arenas: the interpreter is not available here (estimates only)"
            )
    return report
