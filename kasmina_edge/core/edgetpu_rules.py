"""Coral's published Edge TPU model requirements, checked on int8 TFLite models before compiling.

Rules (coral.ai/docs/edgetpu/models-intro, .../compiler), each checked per op in execution order:

* the op is in the supported set (with the known limitations that can be read off the model: no
  fused activation on pools and concatenation, a MEAN over the innermost axis needs it a multiple of 4);
* every tensor it touches is int8 (int32 only for constant biases and shape operands);
* tensor sizes are static;
* at most 3 dimensions larger than 1, and only the 3 innermost ones.

The compiler partitions once: the first op that breaks a rule and *every op after it* run on the
CPU. The checker predicts that split, the parameter bytes of the mapped part, and how co-compiled
models share the ~8 MB parameter cache (in the order given; what does not fit streams from the host).
When ``edgetpu_compiler`` is on PATH it is run (``-s``) and its log parsed; otherwise the step is
recorded as pending.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.core.tflite_graph import GraphTensor, OpInfo, TfliteGraph, read_graph

# models-intro "Supported operations" as TFLite builtins (targets/edgetpu.toml carries the same list;
# the catalog's list wins when given)
DEFAULT_ALLOWED_OPS: frozenset[str] = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
        "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
        "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX",
        "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE",
        "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip
DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
_NO_FUSED_ACTIVATION = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"})


@dataclass(frozen=True)
class EdgeTpuRules:
    allowed_ops: frozenset[str] = DEFAULT_ALLOWED_OPS
    dtypes: frozenset[str] = frozenset({"int8", "int32"})
    max_nontrivial_dims: int = 3
    static_shapes: bool = True
    cache_bytes: int = DEFAULT_CACHE_BYTES

    @classmethod
    def from_catalog(cls, target: Any, profile: Any | None = None) -> EdgeTpuRules:
        """Rules from a catalog ``Target`` (and the cache size from a ``HardwareProfile``)."""
        rules = target.rules
        cache = DEFAULT_CACHE_BYTES
        if profile is not None and getattr(profile.memory, "param_cache_bytes", None):
            cache = int(profile.memory.param_cache_bytes)
        return cls(
            allowed_ops=frozenset(rules.allowed_ops) if rules.allowed_ops else DEFAULT_ALLOWED_OPS,
            dtypes=frozenset(rules.dtypes),
            max_nontrivial_dims=int(rules.max_nontrivial_dims or 3),
            static_shapes=bool(rules.static_shapes),
            cache_bytes=cache,
        )


@dataclass(frozen=True)
class Violation:
    op_index: int
    op: str
    rule: str  # unsupported_op | dtype | dynamic_shape | dims | op_limit
    detail: str


@dataclass(frozen=True)
class ModelCheck:
    """The predicted compilation of one model."""

    name: str
    ops: tuple[str, ...]
    mapped: int  # ops before the first violation: compiled into the Edge TPU custom op
    violations: tuple[Violation, ...]
    parameter_bytes: int  # constant data of the mapped ops (weights, biases)
    cpu_parameter_bytes: int

    @property
    def first_cpu_op(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    @property
    def cpu(self) -> int:
        return len(self.ops) - self.mapped

    @property
    def fully_mapped(self) -> bool:
        return not self.violations

    def mapped_ops(self) -> list[str]:
        return list(self.ops[: self.mapped])

    def cpu_ops(self) -> list[str]:
        return list(self.ops[self.mapped :])

    def to_dict(self) -> dict[str, Any]:
        first = self.first_cpu_op
        return {
            "name": self.name,
            "ops_total": len(self.ops),
            "ops_mapped": self.mapped,
            "ops_cpu": self.cpu,
            "cpu_from": None
            if first is None
            else {"index": first.op_index, "op": first.op, "rule": first.rule, "detail": first.detail},
            "violations": [v.__dict__ for v in self.violations],
            "parameter_bytes": self.parameter_bytes,
        }


def _tensor_problems(t: GraphTensor, rules: EdgeTpuRules) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    allowed = rules.dtypes - {"int32"}
    if t.dtype not in allowed and not (t.dtype == "int32" and t.is_constant and "int32" in rules.dtypes):
        out.append(
            ("dtype", f"tensor {t.name!r} is {t.dtype}; the Edge TPU takes int8 (int32 only for biases)")
        )
    if rules.static_shapes and t.is_dynamic:
        out.append(("dynamic_shape", f"tensor {t.name!r} has a dynamic shape {list(t.shape_signature)}"))
    if t.shape and not t.is_constant:
        outer = t.shape[:-3]
        if t.non_trivial_dims > rules.max_nontrivial_dims or any(d != 1 for d in outer):
            out.append(
                (
                    "dims",
                    f"tensor {t.name!r} {list(t.shape)}: only the {rules.max_nontrivial_dims} innermost dimensions may exceed 1",
                )
            )
    return out


def _op_limit(op: OpInfo, graph: TfliteGraph, data: bytes) -> str | None:
    if op.name in _NO_FUSED_ACTIVATION and op.fused_activation:
        return f"{op.name} with a fused {op.fused_activation} is not supported"
    if op.name == "MEAN" and len(op.inputs) > 1:
        from kasmina_edge.core.tflite_graph import constant_array

        axes_t = graph.tensors[op.inputs[1]]
        x = graph.tensors[op.inputs[0]]
        if axes_t.is_constant and x.shape:
            axes = {int(a) % len(x.shape) for a in constant_array(data, axes_t).reshape(-1)}
            if 0 in axes and x.shape[0] != 1:
                return "MEAN over the batch dimension"
            z = len(x.shape) - 1
            if z in axes and x.shape[z] % 4:
                return f"MEAN over the innermost axis of size {x.shape[z]} (must be a multiple of 4)"
    return None


def check_model(name: str, data: bytes, rules: EdgeTpuRules | None = None) -> ModelCheck:
    """Walk the ops in execution order; the first violation starts the CPU partition."""
    rules = rules or EdgeTpuRules()
    graph = read_graph(data)
    violations: list[Violation] = []
    if graph.subgraphs > 1:
        violations.append(
            Violation(0, graph.ops[0].name if graph.ops else "-", "unsupported_op", "more than one subgraph")
        )
    for op in graph.ops:
        if op.name not in rules.allowed_ops:
            violations.append(
                Violation(op.index, op.name, "unsupported_op", f"{op.name} is not an Edge TPU operation")
            )
        limit = _op_limit(op, graph, data)
        if limit:
            violations.append(Violation(op.index, op.name, "op_limit", limit))
        for ti in (*op.inputs, *op.outputs):
            if ti < 0:
                continue
            for rule, detail in _tensor_problems(graph.tensors[ti], rules):
                violations.append(Violation(op.index, op.name, rule, detail))
    violations.sort(key=lambda v: v.op_index)
    mapped = violations[0].op_index if violations else len(graph.ops)

    def params(ops: Iterable[OpInfo]) -> int:
        seen: set[int] = set()
        for op in ops:
            seen.update(i for i in op.inputs if i >= 0 and graph.tensors[i].is_constant)
        return sum(graph.tensors[i].constant_bytes for i in seen)

    return ModelCheck(
        name=name,
        ops=tuple(graph.op_names()),
        mapped=mapped,
        violations=tuple(violations),
        parameter_bytes=params(graph.ops[:mapped]),
        cpu_parameter_bytes=params(graph.ops[mapped:]),
    )


@dataclass(frozen=True)
class CacheSlice:
    name: str
    parameter_bytes: int
    cached_bytes: int
    streamed_bytes: int  # parameters that do not fit and stream from the host every invoke


@dataclass
class CoCompilation:
    """All models compiled together so they share the parameter cache (swapping among them keeps it)."""

    models: list[ModelCheck]
    cache_bytes: int
    slices: list[CacheSlice]
    compiler: str = "pending"  # "pending" (no edgetpu_compiler on PATH) or "ran"
    compiler_log: list[dict[str, Any]] = field(default_factory=list)
    compiled_files: list[str] = field(default_factory=list)

    @property
    def cache_used(self) -> int:
        return sum(s.cached_bytes for s in self.slices)

    @property
    def fits(self) -> bool:
        return all(s.streamed_bytes == 0 for s in self.slices)

    @property
    def ops_mapped(self) -> int:
        return sum(m.mapped for m in self.models)

    @property
    def ops_cpu(self) -> int:
        return sum(m.cpu for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compiler": self.compiler,
            "cache_bytes": self.cache_bytes,
            "cache_used_bytes": self.cache_used,
            "fits_cache": self.fits,
            "ops_mapped": self.ops_mapped,
            "ops_cpu": self.ops_cpu,
            "models": [m.to_dict() for m in self.models],
            "cache": [s.__dict__ for s in self.slices],
            "compiler_log": self.compiler_log,
            "compiled_files": self.compiled_files,
        }


def co_compile(models: Sequence[ModelCheck], cache_bytes: int = DEFAULT_CACHE_BYTES) -> CoCompilation:
    """Share the cache in the given order: each model caches what still fits, the rest streams."""
    left = cache_bytes
    slices: list[CacheSlice] = []
    for m in models:
        cached = min(left, m.parameter_bytes)
        left -= cached
        slices.append(CacheSlice(m.name, m.parameter_bytes, cached, m.parameter_bytes - cached))
    return CoCompilation(list(models), cache_bytes, slices)


# ------------------------------------------------------------------ the real compiler, when present

_SIZE = re.compile(r"([\d.]+)\s*(B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _size(text: str) -> int | None:
    m = _SIZE.search(text)
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def parse_compiler_log(text: str) -> list[dict[str, Any]]:
    """Per-model figures from ``edgetpu_compiler -s`` output (one section per ``Input model:``)."""
    models: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Input model:"):
            cur = {"input": line.split(":", 1)[1].strip(), "operators": []}
            models.append(cur)
            in_table = False
            continue
        if cur is None:
            continue
        key, _, value = line.partition(":")
        if line.startswith("Output model:"):
            cur["output"] = value.strip()
        elif line.startswith("On-chip memory used for caching model parameters"):
            cur["cache_used_bytes"] = _size(value)
        elif line.startswith("Off-chip memory used for streaming uncached model parameters"):
            cur["streamed_bytes"] = _size(value)
        elif line.startswith("Number of Edge TPU subgraphs"):
            cur["tpu_subgraphs"] = int(value)
        elif line.startswith("Total number of operations"):
            cur["ops_total"] = int(value)
        elif line.startswith("Number of operations that will run on Edge TPU"):
            cur["ops_mapped"] = int(value)
        elif line.startswith("Number of operations that will run on CPU"):
            cur["ops_cpu"] = int(value)
        elif line.startswith("Operator") and "Status" in line:
            in_table = True
        elif in_table and line:
            parts = re.split(r"\s{2,}", line)
            if len(parts) >= 3 and parts[1].isdigit():
                cur["operators"].append({"op": parts[0], "count": int(parts[1]), "status": parts[2]})
        del key
    for m in models:
        m.setdefault("ops_cpu", 0)
        if "ops_total" in m:
            m.setdefault("ops_mapped", m["ops_total"] - m["ops_cpu"])
    return models


def compiler_path() -> str | None:
    return shutil.which("edgetpu_compiler")


def run_compiler(
    models: Mapping[str, bytes], out_dir: Path, timeout: float = 300.0
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Co-compile every model with ``edgetpu_compiler -s``; return the parsed log and the
    ``*_edgetpu.tflite`` files by model name. Raises ``FileNotFoundError`` when the compiler is absent."""
    exe = compiler_path()
    if exe is None:
        raise FileNotFoundError("edgetpu_compiler is not on PATH")
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / "src"
    src.mkdir(exist_ok=True)
    paths = []
    for name, data in models.items():
        p = src / f"{name}.tflite"
        p.write_bytes(data)
        paths.append(str(p))
    proc = subprocess.run(
        [exe, "-s", "-o", str(out_dir), *paths], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"edgetpu_compiler failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    compiled = {
        name: (out_dir / f"{name}_edgetpu.tflite").read_bytes()
        for name in models
        if (out_dir / f"{name}_edgetpu.tflite").exists()
    }
    return parse_compiler_log(proc.stdout), compiled


def check_and_compile(
    models: Mapping[str, bytes], rules: EdgeTpuRules | None = None, work_dir: Path | None = None
) -> tuple[CoCompilation, dict[str, bytes]]:
    """Predict every model's split and the shared cache; run the compiler when it is installed."""
    rules = rules or EdgeTpuRules()
    checks = [check_model(name, data, rules) for name, data in models.items()]
    plan = co_compile(checks, rules.cache_bytes)
    compiled: dict[str, bytes] = {}
    if compiler_path() is not None and work_dir is not None:
        log, compiled = run_compiler(models, work_dir)
        plan.compiler = "ran"
        plan.compiler_log = log
        plan.compiled_files = [f"{n}_edgetpu.tflite" for n in compiled]
    return plan, compiled
