"""Blueprint registry: a decorator that files each blueprint with its metadata, and a factory.

A blueprint is an ``nn.Module`` mapping activations (B, C, L) -> (B, C, L) that starts
function-preserving (its output path is zero-initialised), so a germinated seed never changes
the host's output at step 0. Beside each entry the registry keeps what the build and the
controller need without instantiating it: a parameter-count formula, a MAC estimate, the
primitive (TFLite builtin) ops it lowers to, and the targets that can run it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from kasmina_edge.contracts.errors import KasminaError

TARGETS: tuple[str, ...] = ("edgetpu", "cortex-m", "linux-arm", "x86")

# Published Edge TPU op set (coral.ai "TensorFlow models on the Edge TPU", supported operations),
# named as TFLite builtins. Everything else falls back to the CPU from the first unsupported op on.
EDGETPU_OPS: frozenset[str] = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
        "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
        "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
        "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
        "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
        "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip

# TFLite Micro's builtin resolver (tensorflow/lite/micro/micro_mutable_op_resolver.h), the ops
# the blueprints here can lower to. TOPK_V2 is absent from TFLM.
CORTEX_M_OPS: frozenset[str] = EDGETPU_OPS | frozenset(
    {"BATCH_MATMUL", "SELECT_V2", "EQUAL", "LESS", "GREATER_EQUAL", "ABS", "GATHER", "DEQUANTIZE"}
)

# Full TFLite builtins (LiteRT on Linux): every op the blueprints here lower to.
FULL_TFLITE_OPS: frozenset[str] = CORTEX_M_OPS | frozenset({"TOPK_V2", "IS_FINITE"})

TARGET_OPS: dict[str, frozenset[str]] = {
    "edgetpu": EDGETPU_OPS,
    "cortex-m": CORTEX_M_OPS,
    "linux-arm": FULL_TFLITE_OPS,
    "x86": FULL_TFLITE_OPS,
}


class UnknownBlueprintError(KasminaError):
    """A blueprint name that is not in the registry."""


class BlueprintParamError(KasminaError):
    """A blueprint parameter that the blueprint does not take or cannot use."""


ParamCount = Callable[..., int]  # (channels, **params) -> int
MacCount = Callable[..., int]  # (channels, length, **params) -> int
TargetFilter = Callable[..., bool]  # (target, channels, **params) -> bool


@dataclass(frozen=True)
class BlueprintSpec:
    """What the registry knows of one blueprint without building it."""

    name: str
    description: str
    factory: Callable[..., nn.Module]
    param_formula: ParamCount
    mac_formula: MacCount
    ops: tuple[str, ...]
    targets: frozenset[str]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    blueprint_id: int = -1
    # Extra per-parameter restriction (e.g. 4-bit weights are not for the int8-only Edge TPU).
    target_filter: TargetFilter | None = None
    # True where the chunked seed-layer kernel (kernels.reference) computes it exactly.
    chunk_kernel: bool = False

    def resolve(self, **params: Any) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown names are refused."""
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise BlueprintParamError(
                f"blueprint {self.name!r}: unknown parameter(s) {', '.join(unknown)}; it takes: {known}"
            )
        return {**self.defaults, **params}

    def param_count(self, channels: int, **params: Any) -> int:
        return int(self.param_formula(channels, **self.resolve(**params)))

    def macs(self, channels: int, length: int, **params: Any) -> int:
        return int(self.mac_formula(channels, length, **self.resolve(**params)))

    def supports(self, target: str, channels: int = 1, **params: Any) -> bool:
        """Whether ``target`` can run this blueprint with these parameters."""
        if target not in self.targets:
            return False
        if self.target_filter is None:
            return True
        return bool(self.target_filter(target, channels, **self.resolve(**params)))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.blueprint_id,
            "description": self.description,
            "ops": list(self.ops),
            "targets": sorted(self.targets),
            "defaults": dict(self.defaults),
        }


_REGISTRY: dict[str, BlueprintSpec] = {}
_BY_ID: list[str] = []

M = TypeVar("M", bound=Callable[..., nn.Module])


def register_blueprint(
    name: str,
    *,
    description: str,
    param_count: ParamCount,
    macs: MacCount,
    ops: tuple[str, ...],
    targets: tuple[str, ...] | frozenset[str] = TARGETS,
    defaults: Mapping[str, Any] | None = None,
    target_filter: TargetFilter | None = None,
    chunk_kernel: bool = False,
) -> Callable[[M], M]:
    """Class (or factory) decorator: file ``factory(channels, length=None, **params)`` under ``name``."""
    bad = sorted(set(targets) - set(TARGETS))
    if bad:
        raise ValueError(f"blueprint {name!r}: unknown target(s) {bad}; known: {TARGETS}")

    def wrap(factory: M) -> M:
        if name in _REGISTRY:
            raise ValueError(f"blueprint {name!r} registered twice")
        _REGISTRY[name] = BlueprintSpec(
            name=name,
            description=description,
            factory=factory,
            param_formula=param_count,
            mac_formula=macs,
            ops=tuple(ops),
            targets=frozenset(targets),
            defaults=dict(defaults or {}),
            blueprint_id=len(_BY_ID),
            target_filter=target_filter,
            chunk_kernel=chunk_kernel,
        )
        _BY_ID.append(name)
        return factory

    return wrap


def get_blueprint(name: str) -> BlueprintSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBlueprintError(
            f"unknown blueprint {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def blueprint_by_id(blueprint_id: int) -> BlueprintSpec:
    if not 0 <= blueprint_id < len(_BY_ID):
        raise UnknownBlueprintError(f"unknown blueprint id {blueprint_id}")
    return _REGISTRY[_BY_ID[blueprint_id]]


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def list_blueprints() -> list[BlueprintSpec]:
    """Every registered blueprint, in registration (= id) order."""
    return [_REGISTRY[n] for n in _BY_ID]


def create_blueprint(name: str, channels: int, length: int | None = None, **params: Any) -> nn.Module:
    """Build blueprint ``name`` for ``channels`` channels (and sequence ``length`` where it matters)."""
    spec = get_blueprint(name)
    if channels < 1:
        raise BlueprintParamError(f"blueprint {name!r}: channels must be >= 1, got {channels}")
    resolved = spec.resolve(**params)
    module = spec.factory(channels, length, **resolved)
    module.blueprint_name = name  # type: ignore[assignment]
    return module
