"""The TFLite Micro arena an int8 model needs, estimated from the flatbuffer and measured by the interpreter.

TFLite Micro's arena has two ends (``RecordingMicroAllocator`` reports both):

* the **head**: every activation buffer, placed by ``GreedyMemoryPlanner`` over the tensors' lifetimes.
  ``graph.greedy_plan`` places them the same way, so this part is exact (it matched the interpreter's head
  on every model tried, to the byte);
* the **tail**: what stays for the interpreter's life, per tensor, per op and per graph. Its sizes are the
  C structs of the 64-bit interpreter the ``tflite-micro`` wheel runs, read off ``print_allocations()``
  on small models built for the purpose (one op kind at a time, several channel counts):
  ``TfLiteEvalTensor`` 24 B per tensor, ``NodeAndRegistration`` 64 B per op, a ``TfLiteTensor`` (64 B) and
  its quantization (24 B + the zero-point array) per graph input and output, each kernel's ``OpData``
  (+ 8 B per output channel for the per-channel multipliers and shifts of conv / depthwise / fully
  connected), the op's builtin options, and 488 B for the interpreter's own objects.

A 32-bit MCU build has smaller structs (pointers are 4 bytes), so there the tail estimate is an upper
bound; the head does not change. Ops not measured get a generic size (``DEFAULT_*``) and a note.

``measure_arenas`` asks the interpreter itself (in a child process, ``core.tflm``: a too-small arena
can crash it) for the number to compare with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kasmina_edge.profiler.graph import ALIGN, GraphProfile, profile_tflite

EVAL_TENSOR_BYTES = 24  # sizeof(TfLiteEvalTensor) on x86-64
NODE_BYTES = 64  # sizeof(NodeAndRegistration)
IO_TENSOR_BYTES = 64  # the persistent TfLiteTensor of each graph input and output
IO_QUANT_BYTES = 24  # TfLiteAffineQuantization of a quantized input/output (+ its zero-point array)
INTERPRETER_BYTES = 488  # allocator, graph and subgraph records of a one-subgraph model
PERSISTENT_ONCE_BYTES = 16  # one persistent buffer every model allocates
PER_CHANNEL_BYTES = 8  # int32 multiplier + int32 shift per output channel

# Kernel OpData (persistent buffer bytes, before alignment) of the ops measured.
OP_DATA_BYTES: dict[str, int] = {
    "CONV_2D": 80,
    "DEPTHWISE_CONV_2D": 80,
    "FULLY_CONNECTED": 72,
    "PAD": 56,
    "MEAN": 44,
    "CONCATENATION": 88,
    "AVERAGE_POOL_2D": 32,
    "MAX_POOL_2D": 32,
    "LOGISTIC": 16,
    "QUANTIZE": 32,
    "MUL": 36,
    "ADD": 60,
    "RESHAPE": 0,
    "TRANSPOSE": 0,
    "SQUEEZE": 0,
    "EXPAND_DIMS": 0,
}
# Builtin options the interpreter copies out of the flatbuffer (TfLite*Params).
BUILTIN_BYTES: dict[str, int] = {
    "RESHAPE": 36,
    "CONV_2D": 28,
    "DEPTHWISE_CONV_2D": 28,
    "FULLY_CONNECTED": 32,
    "AVERAGE_POOL_2D": 40,
    "MAX_POOL_2D": 40,
    "MEAN": 25,
    "CONCATENATION": 8,
    "ADD": 8,
    "SUB": 8,
    "MUL": 4,
    "SOFTMAX": 4,
    "PAD": 0,
    "TRANSPOSE": 0,
    "LOGISTIC": 0,
    "QUANTIZE": 0,
}
DEFAULT_OP_DATA_BYTES = 48
DEFAULT_BUILTIN_BYTES = 8
_PER_CHANNEL_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})


def _up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class ArenaEstimate:
    name: str
    head_bytes: int  # the greedy activation plan
    tail_bytes: int  # persistent interpreter data
    parts: dict[str, int] = field(default_factory=dict)
    unmeasured_ops: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.head_bytes + self.tail_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def estimate_arena(profile: GraphProfile, per_channel: Mapping[int, int] | None = None) -> ArenaEstimate:
    """The arena TFLite Micro's recording allocator reports for this TFLite graph.

    ``per_channel``: output channels per op index of the ops with per-channel quantization (taken from
    the op's output shape when not given: the innermost dimension, NHWC).
    """
    if profile.format != "tflite":
        raise ValueError(f"{profile.name}: TFLite Micro runs TFLite flatbuffers, not {profile.format}")
    op_data = [PERSISTENT_ONCE_BYTES]
    builtin = 0
    unmeasured: list[str] = []
    for op in profile.ops:
        if op.op not in OP_DATA_BYTES or op.op not in BUILTIN_BYTES:
            unmeasured.append(op.op)
        base = OP_DATA_BYTES.get(op.op, DEFAULT_OP_DATA_BYTES)
        if base:
            op_data.append(base)
        if op.op in _PER_CHANNEL_OPS:
            channels = (per_channel or {}).get(op.index, op.out_shape[-1] if op.out_shape else 1)
            op_data += [PER_CHANNEL_BYTES // 2 * channels] * 2
        builtin += BUILTIN_BYTES.get(op.op, DEFAULT_BUILTIN_BYTES)
    io = profile.inputs + profile.outputs
    parts = {
        "eval_tensors": EVAL_TENSOR_BYTES * profile.tensors,
        "io_tensors": (IO_TENSOR_BYTES + IO_QUANT_BYTES + 8) * io,
        "nodes": NODE_BYTES * len(profile.ops),
        # each persistent buffer starts 16-aligned; the first one also pays for the tail's own alignment
        "op_data": sum(_up(b) for b in op_data) + ALIGN,
        "builtin_options": builtin,
        "interpreter": INTERPRETER_BYTES,
    }
    return ArenaEstimate(
        profile.name,
        profile.plan.peak_bytes,
        sum(parts.values()),
        parts,
        tuple(sorted(set(unmeasured))),
    )


def estimate_arena_bytes(data: bytes, name: str = "model") -> ArenaEstimate:
    return estimate_arena(profile_tflite(data, name))


@dataclass(frozen=True)
class ArenaComparison:
    name: str
    estimated_bytes: int
    measured_bytes: int | None  # None: the interpreter is not available here

    @property
    def ratio(self) -> float | None:
        return self.estimated_bytes / self.measured_bytes if self.measured_bytes else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def measure_arenas(models: Mapping[str, bytes]) -> dict[str, int]:
    """What TFLite Micro's recording allocator reports for each model (one child process for all)."""
    from kasmina_edge.core.tflm import run_micro

    reported, _ = run_micro(models)
    return reported


def compare_arenas(models: Mapping[str, bytes], measure: bool = True) -> list[ArenaComparison]:
    """Estimate every model's arena; beside it the interpreter's report when ``measure`` and it runs here."""
    estimates = {n: estimate_arena_bytes(d, n).total_bytes for n, d in models.items()}
    measured: dict[str, int] = {}
    if measure:
        try:
            measured = measure_arenas(models)
        except Exception:  # noqa: BLE001 - no tflite-micro wheel (not x86-64) or it failed: estimates only
            measured = {}
    return [ArenaComparison(n, estimates[n], measured.get(n)) for n in models]
