"""Roofline estimates from a hardware profile: per artifact, per window, and for a decision + swap.

For one invoke of one artifact on one profile:

* compute  = operations / (peak ops/s for the artifact's dtype x the profile's efficiency)
* memory   = weight bytes / the bandwidth of the memory the weights live in
             + activation bytes (read and written) / on-chip bandwidth
             (weights: on-chip when they fit the parameter cache / SRAM, else off-chip: flash on an MCU,
             DRAM on a board, the host link for an accelerator whose cache they overflow)
* time     = max(compute, memory) + per-invoke overhead
             + for an accelerator: inputs and outputs over the host link, and its latency

A chain of segments pays the overhead (and, on an accelerator, the host round trip) once per
artifact: the estimate shows what segmenting costs on each device.

The decision + swap estimate counts the controller's operations (Welch PSD of the feature window,
beat correlations, entropy, drift, rules, the policy MLP when present) at the profile's float rate
(its host's, for an accelerator), the G0 check that runs a kernel on its reference vectors before it
goes live, and the swap's memory traffic (a slot configuration; an Edge TPU refilling its parameter
cache with the kernel's weights when they were not co-compiled).

Artifact costs come from the TFLite flatbuffer (ai-edge-litert's schema: no torch) or, for ONNX,
from ``onnx`` when installed (a host tool) and otherwise from the artifact size (an upper bound that
treats every weight byte as used once per output position of the site).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.core.catalog import hardware
from kasmina_edge.core.profiles import HardwareProfile

FLASH_KINDS = ("mcu", "npu")  # weights stay in flash (execute in place), activations in SRAM


@dataclass(frozen=True)
class ArtifactCost:
    """What one invoke of an artifact does, independent of the device."""

    name: str
    macs: int
    elementwise_ops: int  # adds, activations, pooling, requantization steps
    weight_bytes: int
    activation_bytes: int  # every non-constant tensor read and written once
    io_bytes: int  # inputs + outputs (what crosses a host link)
    dtype: str = "int8"

    @property
    def ops(self) -> int:
        return 2 * self.macs + self.elementwise_ops


@dataclass(frozen=True)
class Estimate:
    profile: str
    artifact: str
    compute_s: float
    memory_s: float
    overhead_s: float
    link_s: float
    weights_in: str

    @property
    def total_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s + self.link_s

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_s": self.total_s, "bound": self.bound}


# ------------------------------------------------------------------------------------------ costs

_TFLITE_DTYPES = {
    0: 4,
    1: 2,
    2: 4,
    3: 1,
    4: 8,
    7: 2,
    9: 1,
    10: 8,
}  # float32, float16, int32, uint8, int64, int16, int8, float64


def tflite_cost(data: bytes, name: str = "artifact") -> ArtifactCost:
    """MACs of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED and tensor traffic, from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    names = {code: n for n, code in vars(schema.BuiltinOperator).items() if not n.startswith("_")}
    model = schema.Model.GetRootAs(bytearray(data), 0)
    sg = model.Subgraphs(0)

    def shape(i: int) -> tuple[int, ...]:
        t = sg.Tensors(i)
        return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def nbytes(i: int) -> int:
        t = sg.Tensors(i)
        return int(np.prod(shape(i) or (1,))) * _TFLITE_DTYPES.get(t.Type(), 1)

    def constant(i: int) -> bool:
        t = sg.Tensors(i)
        b = t.Buffer()
        if b <= 0 or b >= model.BuffersLength():
            return False
        buf = model.Buffers(b)
        return bool(buf.DataLength() or (buf.Offset() > 1 and buf.Size()))

    macs = elem = weights = acts = 0
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        oc = model.OperatorCodes(op.OpcodeIndex())
        opname = names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        out_elems = sum(int(np.prod(shape(o) or (1,))) for o in outs if o >= 0)
        w = shape(ins[1]) if len(ins) > 1 and ins[1] >= 0 else ()
        if opname == "CONV_2D" and len(w) == 4:
            macs += out_elems * w[1] * w[2] * w[3]  # OHWI: each output element sums H*W*I products
        elif opname == "DEPTHWISE_CONV_2D" and len(w) == 4:
            macs += out_elems * w[1] * w[2]
        elif opname == "FULLY_CONNECTED" and len(w) == 2:
            macs += out_elems * w[1]
        elif opname in ("MEAN", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SUM"):
            elem += sum(int(np.prod(shape(i) or (1,))) for i in ins[:1] if i >= 0)
        else:
            elem += out_elems
        acts += sum(nbytes(i) for i in ins if i >= 0 and not constant(i))  # weights: counted once below
        acts += sum(nbytes(o) for o in outs if o >= 0)
    seen: set[int] = set()
    for i in range(sg.TensorsLength()):
        if constant(i) and sg.Tensors(i).Buffer() not in seen:
            seen.add(sg.Tensors(i).Buffer())
            weights += nbytes(i)
    io = sum(nbytes(int(i)) for i in sg.InputsAsNumpy()) + sum(nbytes(int(i)) for i in sg.OutputsAsNumpy())
    return ArtifactCost(name, int(macs), int(elem), int(weights), int(acts), int(io))


def onnx_cost(data: bytes, name: str = "artifact", site_length: int = 64) -> ArtifactCost:
    """Conv/Gemm/MatMul MACs with ``onnx`` (host tools); without it, a bound from the artifact size."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        # no onnx on a device: every weight byte once per output position of the site (upper bound)
        return ArtifactCost(name, len(data) * site_length, 0, len(data), 0, 0, dtype="int8")
    model = shape_inference.infer_shapes(onnx.load_from_string(data))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for v in [*g.value_info, *g.input, *g.output]:
        dims = tuple(d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim)
        shapes[v.name] = dims
    # QDQ: weights are stored as int8 initializers behind DequantizeLinear; find the real weight tensor
    producer = {o: n for n in g.node for o in n.output}

    def weight(name_: str) -> np.ndarray | None:
        if name_ in inits:
            return inits[name_]
        n = producer.get(name_)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[0] in inits:
            return inits[n.input[0]]
        return None

    macs = elem = acts = 0
    for n in g.node:
        out_elems = int(np.prod(shapes.get(n.output[0], (1,)))) if n.output else 0
        if n.op_type == "Conv" and len(n.input) > 1 and (w := weight(n.input[1])) is not None:
            macs += out_elems * int(np.prod(w.shape[1:]))
        elif n.op_type in ("Gemm", "MatMul") and len(n.input) > 1 and (w := weight(n.input[1])) is not None:
            macs += out_elems * int(w.shape[0] if n.op_type == "MatMul" else w.shape[-1])
        elif n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            elem += out_elems
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            acts += out_elems  # int8 activations inside a QDQ graph
    weights = sum(int(a.nbytes) for a in inits.values() if a.dtype in (np.int8, np.uint8, np.int32))
    io = sum(4 * int(np.prod(shapes.get(v.name, (1,)))) for v in [*g.input, *g.output])
    return ArtifactCost(name, int(macs), int(elem), int(weights), int(2 * acts), int(io))


def artifact_cost(data: bytes, fmt: str, name: str = "artifact", site_length: int = 64) -> ArtifactCost:
    if fmt.startswith("tflite"):
        return tflite_cost(data, name)
    if fmt.startswith("onnx"):
        return onnx_cost(data, name, site_length)
    raise ValueError(f"{name}: no cost model for format {fmt!r}")


# ------------------------------------------------------------------------------------------ roofline


def _dtype_rate(profile: HardwareProfile, dtype: str) -> float:
    key = {"int8": "int8", "int4": "int4", "float32": "fp32", "fp32": "fp32", "fp16": "fp16"}.get(
        dtype, "int8"
    )
    if key not in profile.peak_ops_per_s and key == "int4":
        key = "int8"
    return profile.effective_ops_per_s(key)  # type: ignore[arg-type]


def estimate_artifact(
    cost: ArtifactCost, profile: HardwareProfile, *, resident_weight_bytes: int | None = None
) -> Estimate:
    """One invoke of one artifact on ``profile``. ``resident_weight_bytes``: all weights that must share the
    on-chip memory with this artifact's (every artifact of the bundle, loaded at boot)."""
    mem = profile.memory
    compute = cost.ops / _dtype_rate(profile, cost.dtype)
    resident = cost.weight_bytes if resident_weight_bytes is None else resident_weight_bytes
    if profile.kind in FLASH_KINDS:
        weights_in, w_bw = "flash", mem.offchip_bandwidth_Bps
    elif mem.param_cache_bytes is not None:
        fits = resident <= mem.param_cache_bytes
        weights_in, w_bw = (
            ("parameter cache", mem.onchip_bandwidth_Bps)
            if fits
            else ("host link", mem.offchip_bandwidth_Bps)
        )
    else:
        fits = resident <= mem.sram_bytes
        weights_in, w_bw = (
            ("cache", mem.onchip_bandwidth_Bps) if fits else ("dram", mem.offchip_bandwidth_Bps)
        )
    memory = cost.weight_bytes / w_bw + cost.activation_bytes / mem.onchip_bandwidth_Bps
    link = 0.0
    if profile.host_link is not None and profile.kind == "accelerator":
        link = cost.io_bytes / profile.host_link.bandwidth_Bps + profile.host_link.latency_s
    return Estimate(profile.name, cost.name, compute, memory, profile.per_invoke_overhead_s, link, weights_in)


@dataclass
class ChainEstimate:
    profile: str
    per_artifact: list[Estimate]
    whole: Estimate | None = None

    @property
    def total_s(self) -> float:
        return sum(e.total_s for e in self.per_artifact)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "profile": self.profile,
            "total_s": self.total_s,
            "artifacts": [e.to_dict() for e in self.per_artifact],
        }
        if self.whole is not None:
            out["whole_s"] = self.whole.total_s
            out["segmented_over_whole"] = self.total_s / self.whole.total_s if self.whole.total_s else None
        return out


def estimate_chain(
    costs: list[ArtifactCost], profile: HardwareProfile, whole: ArtifactCost | None = None
) -> ChainEstimate:
    resident = sum(c.weight_bytes for c in costs)
    per = [estimate_artifact(c, profile, resident_weight_bytes=resident) for c in costs]
    w = estimate_artifact(whole, profile) if whole is not None else None
    return ChainEstimate(profile.name, per, w)


# ------------------------------------------------------------------------------------------ decision + swap


@dataclass(frozen=True)
class ControllerWork:
    """What one decision computes (float operations and bytes touched)."""

    feature_samples: int = 1440  # 4 s at 360 Hz
    beats_in_window: int = 6
    beat_samples: int = 73  # ±100 ms at 360 Hz
    site_channels: int = 64  # all sites together
    n_classes: int = 5
    recent_windows: int = 8
    policy_params: int = 0  # the exported policy's weights, when the bundle carries one

    def flops(self) -> float:
        n = self.feature_samples
        welch = 2.5 * n * math.log2(max(n, 2)) + 8 * n  # rfft + window/detrend + |X|^2 + band sums
        beats = (
            self.beats_in_window * self.beat_samples * 10
            + self.beat_samples * self.beats_in_window * math.log2(max(self.beats_in_window, 2))
        )  # mean removal, median, correlations
        entropy = self.recent_windows * self.n_classes * 20  # log costs ~ 20 flops
        drift = self.site_channels * 6
        rules = 200
        policy = 2 * self.policy_params
        return welch + beats + entropy + drift + rules + policy

    def bytes(self) -> float:
        return (
            4.0 * (3 * self.feature_samples + self.beats_in_window * self.beat_samples * 3)
            + 4.0 * self.policy_params
        )


@dataclass
class DecisionEstimate:
    profile: str
    runs_on: str
    decision_s: float  # features + rules (every window)
    reference_check_s: float  # G0: the kernel on its reference vectors, before it goes live
    swap_s: float  # the slot change and its memory traffic
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        """Decision + swap on the activating path (the worst case of one decision)."""
        return self.decision_s + self.reference_check_s + self.swap_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_s": self.total_s}


def _float_rate(profile: HardwareProfile) -> tuple[float, list[str]]:
    if "fp32" in profile.peak_ops_per_s:
        return profile.effective_ops_per_s("fp32"), []
    # no float unit in the profile: fixed-point emulation of the feature maths at a quarter of the int8 rate
    return profile.effective_ops_per_s("int8") / 4.0, [
        f"{profile.name} lists no fp32 rate: features at int8 rate / 4"
    ]


def estimate_decision(
    profile: HardwareProfile,
    kernel: ArtifactCost | None,
    *,
    reference_rows: int = 8,
    work: ControllerWork | None = None,
    cache_refill: bool = True,
) -> DecisionEstimate:
    """Decision + swap on ``profile``; the controller runs on the accelerator's host CPU where there is one."""
    work = work or ControllerWork()
    cpu = profile
    notes: list[str] = []
    if profile.kind == "accelerator" and profile.host_link is not None and profile.host_link.host_profile:
        cpu = hardware(profile.host_link.host_profile)
        notes.append(f"controller on the host CPU ({cpu.name})")
    rate, more = _float_rate(cpu)
    notes += more
    decision = work.flops() / rate + work.bytes() / cpu.memory.onchip_bandwidth_Bps
    check = 0.0
    swap = 64 / cpu.memory.onchip_bandwidth_Bps  # the slot configuration: a handful of words
    if kernel is not None:
        check = reference_rows * estimate_artifact(kernel, profile).total_s
        if cache_refill and profile.memory.param_cache_bytes is not None and profile.host_link is not None:
            # a kernel not co-compiled with the segments flushes the Edge TPU parameter cache: refill it
            swap += kernel.weight_bytes / profile.host_link.bandwidth_Bps + profile.host_link.latency_s
            notes.append("swap refills the parameter cache with the kernel's weights over the host link")
    return DecisionEstimate(profile.name, cpu.name, decision, check, swap, notes)
