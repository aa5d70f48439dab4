"""Latency of one invoke on one hardware profile, op by op (a roofline per op).

Per op: ``max(compute, memory)`` where

* compute = the op's operations / (the profile's peak for its dtype x the profile's efficiency);
* memory  = parameter bytes / the bandwidth of where the weights live + activation bytes / the bandwidth
  of where the activations live. Weights live in flash on an MCU or NPU (executed in place), in the
  Edge TPU's parameter cache or streamed over its host link (the co-compile plan says how much fits), in
  the cache of a CPU when all the bundle's weights fit it, in DRAM otherwise. Activations live in on-chip
  memory when the memory plan's peak fits it, off chip otherwise.

Per invoke it adds the interpreter's dispatch and, for an Edge TPU, the host-link transfers. The
profiles state ``per_invoke_overhead_s`` for a ~15-op model (a 49 k-parameter 1-D CNN; each profile's
``[sources]`` says where its figure comes from);
an interpreter that dispatches every op (TFLite Micro, LiteRT, ONNX Runtime) pays a fixed share of it
and the rest in proportion to its op count (``FIXED_OVERHEAD_SHARE``, fitted to ONNX Runtime here: a
3-op model costs ~9 us, a 6-op one ~14 us). An Edge TPU or an NPU runs its part as one command: the
overhead is per invoke.

Edge TPU: ``core.edgetpu_rules.check_model`` predicts the compiler's single partition; ops from the
first one it cannot map run on the host CPU (the accelerator's ``host_profile``, or for a board without
one the slowest Linux CPU profile of the catalog that shares a target), and the tensor at the cut crosses the link back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kasmina_edge.core.catalog import list_hardware
from kasmina_edge.core.profiles import HardwareProfile
from kasmina_edge.profiler.graph import GraphProfile, OpStats

FLASH_KINDS = ("mcu", "npu")
REFERENCE_OPS = 15  # the op count the profiles' per-invoke overheads were stated for
FIXED_OVERHEAD_SHARE = 0.25  # the part of it an invoke pays whatever its op count
_DTYPE_KEYS = {
    "int8": "int8",
    "uint8": "int8",
    "int4": "int4",
    "float32": "fp32",
    "fp32": "fp32",
    "float16": "fp16",
}


@dataclass(frozen=True)
class OpLatency:
    index: int
    op: str
    runs_on: str  # profile name (the host CPU's for an Edge TPU's CPU partition)
    compute_s: float
    memory_s: float

    @property
    def total_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_s": self.total_s, "bound": self.bound}


@dataclass
class ArtifactLatency:
    artifact: str
    profile: str
    ops: list[OpLatency]
    overhead_s: float
    link_s: float
    weights_in: str
    activations_in: str
    total_ops: int
    bytes_moved: int
    partition: dict[str, Any] | None = None  # Edge TPU: mapped / CPU ops and the first CPU op
    notes: list[str] = field(default_factory=list)

    @property
    def compute_s(self) -> float:
        return sum(o.compute_s for o in self.ops)

    @property
    def memory_s(self) -> float:
        return sum(o.memory_s for o in self.ops)

    @property
    def ops_s(self) -> float:
        return sum(o.total_s for o in self.ops)

    @property
    def total_s(self) -> float:
        return self.ops_s + self.overhead_s + self.link_s

    @property
    def bound(self) -> str:
        parts = {
            "compute": self.compute_s,
            "memory": self.memory_s,
            "overhead": self.overhead_s + self.link_s,
        }
        return max(parts, key=lambda k: parts[k])

    @property
    def intensity(self) -> float:
        """Operations per byte moved (the roofline's x axis)."""
        return self.total_ops / max(self.bytes_moved, 1)

    @property
    def achieved_ops_per_s(self) -> float:
        return self.total_ops / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self, per_op: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "artifact": self.artifact,
            "profile": self.profile,
            "total_s": self.total_s,
            "compute_s": self.compute_s,
            "memory_s": self.memory_s,
            "overhead_s": self.overhead_s,
            "link_s": self.link_s,
            "bound": self.bound,
            "weights_in": self.weights_in,
            "activations_in": self.activations_in,
            "intensity_ops_per_byte": self.intensity,
            "achieved_ops_per_s": self.achieved_ops_per_s,
            "partition": self.partition,
            "notes": list(self.notes),
        }
        if per_op:
            out["per_op"] = [o.to_dict() for o in self.ops]
        return out


def dtype_rate(profile: HardwareProfile, dtype: str) -> tuple[float, str | None]:
    """Effective operations per second for ``dtype``; a note when the profile has to stand in for it."""
    key = _DTYPE_KEYS.get(dtype, "int8")
    peaks = profile.peak_ops_per_s
    if key == "int4" and key not in peaks:
        key = "int8"  # int4 weights unpacked to int8 before the MACs
    if key in peaks:
        return profile.effective_ops_per_s(key), None  # type: ignore[arg-type]
    if "fp32" in peaks:
        return profile.effective_ops_per_s("fp32"), f"{profile.name} has no {key} rate: at its fp32 rate"
    # no float unit: software float at a quarter of the int8 rate (as the decision estimate assumes)
    return profile.effective_ops_per_s("int8") / 4.0, f"{profile.name} has no {key} unit: at int8 rate / 4"


def overhead_s(profile: HardwareProfile, n_ops: int) -> float:
    """Dispatch cost of one invoke of ``n_ops`` ops."""
    p = profile.per_invoke_overhead_s
    if profile.runtime == "litert-edgetpu" or profile.kind == "npu":
        return p  # one command for the whole mapped graph
    return p * (FIXED_OVERHEAD_SHARE + (1.0 - FIXED_OVERHEAD_SHARE) * n_ops / REFERENCE_OPS)


def cpu_for(profile: HardwareProfile) -> HardwareProfile:
    """The CPU that runs an accelerator's CPU partition (and its controller)."""
    link = profile.host_link
    if link is not None and link.host_profile:
        from kasmina_edge.core.catalog import hardware

        return hardware(link.host_profile)
    cpus = [
        p
        for p in list_hardware()
        if p.runtime == "litert" and p.kind in ("sbc", "host") and set(p.targets) & set(profile.targets)
    ]
    if not cpus:
        return profile
    # no host named: the slowest Linux CPU profile that shares a target stands in (conservative)
    return min(cpus, key=lambda p: p.peak_ops_per_s.get("int8", 0.0))


def _op(op: OpStats, p: HardwareProfile, w_bw: float, a_bw: float, notes: list[str]) -> OpLatency:
    rate, note = dtype_rate(p, op.dtype)
    if note and note not in notes:
        notes.append(note)
    return OpLatency(
        op.index,
        op.op,
        p.name,
        op.ops / rate,
        op.param_bytes / w_bw + (op.act_in_bytes + op.act_out_bytes) / a_bw,
    )


def _placement(
    graph: GraphProfile, p: HardwareProfile, resident: int, streamed_fraction: float
) -> tuple[str, float, str, float]:
    mem = p.memory
    if p.kind in FLASH_KINDS:
        w = ("flash", mem.offchip_bandwidth_Bps)
    elif mem.param_cache_bytes is not None:
        if streamed_fraction > 0:
            # parameters the cache cannot hold stream over the link every invoke: the blended bandwidth
            link_bw = p.host_link.bandwidth_Bps if p.host_link else mem.offchip_bandwidth_Bps
            inv = (1 - streamed_fraction) / mem.onchip_bandwidth_Bps + streamed_fraction / link_bw
            w = (f"parameter cache + {streamed_fraction:.0%} streamed", 1.0 / inv)
        else:
            w = ("parameter cache", mem.onchip_bandwidth_Bps)
    elif resident <= mem.sram_bytes:
        w = ("cache", mem.onchip_bandwidth_Bps)
    else:
        w = ("dram", mem.offchip_bandwidth_Bps)
    onchip = p.kind in FLASH_KINDS or graph.plan.peak_bytes <= mem.sram_bytes
    a = ("on-chip", mem.onchip_bandwidth_Bps) if onchip else ("off-chip", mem.offchip_bandwidth_Bps)
    return w[0], w[1], a[0], a[1]


def estimate_graph(
    graph: GraphProfile,
    profile: HardwareProfile,
    *,
    resident_weight_bytes: int | None = None,
    mapped_ops: int | None = None,
    first_cpu_op: dict[str, Any] | None = None,
    streamed_fraction: float = 0.0,
) -> ArtifactLatency:
    """One invoke of ``graph`` on ``profile``.

    ``resident_weight_bytes``: every weight that shares the memory with this artifact's (the bundle's, all
    loaded at boot). ``mapped_ops``: for an Edge TPU, how many ops from the start the compiler maps (the
    rest run on the host CPU); ``streamed_fraction``: the part of its parameters the shared cache cannot hold.
    """
    notes: list[str] = []
    resident = graph.param_bytes if resident_weight_bytes is None else resident_weight_bytes
    weights_in, w_bw, acts_in, a_bw = _placement(graph, profile, resident, streamed_fraction)
    edgetpu = profile.runtime == "litert-edgetpu"
    n = len(graph.ops)
    mapped = n if not edgetpu else (n if mapped_ops is None else max(0, min(mapped_ops, n)))
    device_ops = graph.ops[:mapped]
    lat = [_op(o, profile, w_bw, a_bw, notes) for o in device_ops]
    link_s = 0.0
    over = overhead_s(profile, len(device_ops)) if device_ops else 0.0
    partition: dict[str, Any] | None = None
    if edgetpu or profile.kind == "accelerator":
        link = profile.host_link
        bw = link.bandwidth_Bps if link else profile.memory.offchip_bandwidth_Bps
        lat_s = link.latency_s if link else 0.0
        # the outputs come back, or at a partition the tensor at the cut
        out_bytes = graph.output_bytes if mapped == n else graph.ops[mapped].act_in_bytes
        if device_ops:
            link_s = (graph.input_bytes + out_bytes) / bw + lat_s
    if edgetpu:
        cpu_ops = graph.ops[mapped:]
        partition = {"mapped_ops": mapped, "cpu_ops": len(cpu_ops), "first_cpu_op": first_cpu_op}
        if cpu_ops:
            cpu = cpu_for(profile)
            c_weights, c_wbw, _, c_abw = _placement(graph, cpu, resident, 0.0)
            lat += [_op(o, cpu, c_wbw, c_abw, notes) for o in cpu_ops]
            over += overhead_s(cpu, len(cpu_ops))
            partition["cpu"] = cpu.name
            why = (
                f" from op {first_cpu_op['index']} {first_cpu_op['op']} ({first_cpu_op['rule']})"
                if first_cpu_op
                else ""
            )
            notes.append(f"{len(cpu_ops)} of {n} ops on the CPU ({cpu.name}){why}")
            if not device_ops:
                weights_in = c_weights
    return ArtifactLatency(
        artifact=graph.name,
        profile=profile.name,
        ops=lat,
        overhead_s=over,
        link_s=link_s,
        weights_in=weights_in,
        activations_in=acts_in,
        total_ops=graph.total_ops,
        bytes_moved=sum(o.bytes_moved for o in graph.ops),
        partition=partition,
        notes=notes,
    )


def roofline_ceiling(
    profile: HardwareProfile, intensity: Sequence[float], dtype: str = "int8"
) -> list[float]:
    """The profile's attainable ops/s at each arithmetic intensity: min(peak x efficiency, bandwidth x I)."""
    rate, _ = dtype_rate(profile, dtype)
    bw = (
        profile.memory.offchip_bandwidth_Bps
        if profile.kind in FLASH_KINDS
        else profile.memory.onchip_bandwidth_Bps
    )
    return [min(rate, bw * i) for i in intensity]
