"""Hardware profiles, network profiles and build targets as validated models (pydantic).

What the TOML files under ``profiles/`` and ``targets/`` may say, and the cross-field rules each file must
keep (a peak rate is 2 x MACs x clock x cores, a LoRa bit rate follows from SF, bandwidth and coding rate,
a target's runtime can run its format, ...). :mod:`kasmina_edge.core.catalog` finds and loads the files;
every number of a shipped profile names its source (``[sources]``: measured, published, estimated or
derived).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.formats import TargetFormat
from kasmina_edge.core.toml_lines import Loc, dotted

DType = Literal["int8", "int4", "fp16", "fp32"]
Runtime = Literal["litert", "litert-edgetpu", "tflite-micro", "onnxruntime"]
HardwareKind = Literal["mcu", "sbc", "accelerator", "host", "npu"]

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
PositiveFloat = Annotated[float, Field(gt=0)]

# A peak rate must match 2 x MACs x clock x cores this closely (datasheet peaks are rounded, e.g. "4 TOPS").
PEAK_TOLERANCE = 0.05
# A LoRa data rate's listed bit rate must match SF x BW / 2^SF x CR this closely (RP002 rounds them).
BIT_RATE_TOLERANCE = 0.03
_Z99 = NormalDist().inv_cdf(0.99)


class CatalogError(KasminaError):
    """A profile or target file that cannot be used (syntax, field, cross-reference), or an unknown name."""


class FieldProblem(KasminaError):
    """A value that contradicts another field of the same file.

    Raised from model validators instead of ValueError so that it keeps the full field path
    (pydantic would pin a ValueError on the model, not the field); the loader adds file and line.
    """

    def __init__(self, loc: Loc, problem: str) -> None:
        super().__init__(f"field '{dotted(loc)}': {problem}")
        self.loc = loc
        self.problem = problem


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SourceKind = Literal["measured", "published", "estimated", "derived"]


class NumberSource(_Frozen):
    """Where one number of a profile comes from: measured here, published (datasheet, standard, paper),
    estimated, or derived from the others; ``source`` names the reference."""

    kind: SourceKind
    source: str = Field(min_length=1)


Sources = dict[str, NumberSource]
_SOURCES_HELP = (
    "field path (memory.sram_bytes, data_rates[0].dr; a table or array covers everything in it) -> its source"
)


def source_of(sources: Sources, path: str) -> NumberSource | None:
    """The source of ``path`` (dotted, arrays as [i]): its own entry, else the nearest table or array above it."""
    probe = path
    while probe:
        if probe in sources:
            return sources[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return None


def numbers(data: Any, prefix: str = "", *, every_value: bool = False) -> list[str]:
    """Dotted paths of every number in a profile's data (not its sources); of every value with ``every_value``."""
    out: list[str] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        if key == "sources" and not prefix:
            continue
        path = f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix else str(key))
        if isinstance(value, dict | list):
            out.extend(numbers(value, path, every_value=every_value))
        elif every_value or (isinstance(value, int | float) and not isinstance(value, bool)):
            out.append(path)
    return out


def estimated(profile: Any) -> list[str]:
    """The fields of a loaded profile whose numbers are estimates (for tables that mark estimated rows)."""
    sources: Sources = getattr(profile, "sources", {}) or {}
    return [p for p in numbers(profile.model_dump(mode="json")) if (src := source_of(sources, p)) and src.kind == "estimated"]


# --------------------------------------------------------------------------------------------- hardware


class Memory(_Frozen):
    """On-chip memory (SRAM, or the caches a CPU has instead) and the memory the weights live in otherwise."""

    sram_bytes: int = Field(ge=0)
    flash_bytes: int = Field(ge=0)
    dram_bytes: int = Field(ge=0)
    onchip_bandwidth_Bps: PositiveFloat
    offchip_bandwidth_Bps: PositiveFloat
    param_cache_bytes: int | None = Field(default=None, ge=0)


class HostLink(_Frozen):
    """How an accelerator talks to the CPU that drives it."""

    kind: str = Field(min_length=1)
    bandwidth_Bps: PositiveFloat
    latency_s: float = Field(ge=0)
    host_profile: Name | None = None


class Power(_Frozen):
    active_w: PositiveFloat
    idle_w: float = Field(ge=0)
    radio_tx_w: PositiveFloat | None = None
    radio_rx_w: PositiveFloat | None = None


class Battery(_Frozen):
    capacity_mAh: PositiveFloat
    voltage_v: PositiveFloat

    @property
    def energy_j(self) -> float:
        return self.capacity_mAh * 3.6 * self.voltage_v


class HardwareProfile(_Frozen):
    """One device: compute, memories, power; ``macs_per_cycle`` is per core, ``peak_ops_per_s`` for all cores."""

    name: Name
    kind: HardwareKind
    description: str = Field(min_length=1)
    runtime: Runtime
    targets: list[Name] = Field(min_length=1)
    clock_hz: PositiveFloat
    cores: int = Field(ge=1)
    efficiency: float = Field(gt=0, le=1)
    per_invoke_overhead_s: float = Field(ge=0)
    macs_per_cycle: dict[DType, PositiveFloat] = Field(min_length=1)
    peak_ops_per_s: dict[DType, PositiveFloat] = Field(min_length=1)
    memory: Memory
    host_link: HostLink | None = None
    power: Power
    battery: Battery | None = None
    sources: Sources = Field(default_factory=dict, description=_SOURCES_HELP)

    def model_post_init(self, __context: Any) -> None:
        for dtype in self.macs_per_cycle:
            if dtype not in self.peak_ops_per_s:
                raise FieldProblem(("peak_ops_per_s",), f"missing {dtype} (macs_per_cycle has it)")
        for dtype, peak in self.peak_ops_per_s.items():
            if dtype not in self.macs_per_cycle:
                raise FieldProblem(("peak_ops_per_s", dtype), f"no macs_per_cycle.{dtype} to derive it from")
            derived = 2.0 * self.macs_per_cycle[dtype] * self.clock_hz * self.cores
            if abs(peak / derived - 1.0) > PEAK_TOLERANCE:
                raise FieldProblem(
                    ("peak_ops_per_s", dtype),
                    f"{peak:.4g} is not 2 x macs_per_cycle x clock_hz x cores = {derived:.4g} "
                    f"(tolerance {PEAK_TOLERANCE:.0%})",
                )
        if len(set(self.targets)) != len(self.targets):
            raise FieldProblem(("targets",), "lists a target twice")
        if self.kind == "accelerator" and self.host_link is None:
            raise FieldProblem(("host_link",), "an accelerator needs a [host_link] table")
        cache = self.memory.param_cache_bytes
        if cache is not None and cache > self.memory.sram_bytes:
            raise FieldProblem(("memory", "param_cache_bytes"), f"{cache} is larger than sram_bytes")
        if self.power.idle_w > self.power.active_w:
            raise FieldProblem(("power", "idle_w"), "is larger than active_w")

    def peak(self, dtype: DType) -> float:
        """Peak operations per second for ``dtype``; one clear error if the device cannot compute it."""
        if dtype not in self.peak_ops_per_s:
            raise CatalogError(
                f"hardware profile '{self.name}' has no {dtype} compute; it has {', '.join(self.peak_ops_per_s)}"
            )
        return self.peak_ops_per_s[dtype]

    def effective_ops_per_s(self, dtype: DType) -> float:
        """What a small CNN realistically gets: peak x efficiency (both in the profile)."""
        return self.peak(dtype) * self.efficiency


# --------------------------------------------------------------------------------------------- network


class FairUse(_Frozen):
    uplink_airtime_s_per_day: PositiveFloat
    downlinks_per_day: int = Field(ge=0)


class LoRaRadio(_Frozen):
    tx_dbm: float
    tx_power_w: PositiveFloat
    rx_power_w: PositiveFloat
    sleep_power_w: float = Field(ge=0)


class SubBand(_Frozen):
    name: str = Field(min_length=1)
    low_hz: PositiveFloat
    high_hz: PositiveFloat
    duty_cycle: float = Field(gt=0, le=1)


class LoRaDataRate(_Frozen):
    dr: int = Field(ge=0, le=15)
    spreading_factor: int = Field(ge=5, le=12)
    bandwidth_hz: Literal[125_000, 250_000, 500_000]
    bit_rate_bps: PositiveFloat
    # 255 PHY bytes at most; LoRaWAN's 13 bytes of framing leave 242 for the application.
    max_payload_bytes: int = Field(ge=1, le=242)

    @property
    def low_data_rate_optimize(self) -> bool:
        """LoRaWAN switches it on when a symbol lasts 16 ms or more (SF11/SF12 at 125 kHz)."""
        return (2**self.spreading_factor) / self.bandwidth_hz >= 0.016


def coding_rate_index(coding_rate: str) -> int:
    """LoRa's coding rate as the Semtech formulas count it: "4/5" -> 1 ... "4/8" -> 4."""
    return int(coding_rate.split("/")[1]) - 4


class _LoRaCommon(_Frozen):
    description: str = Field(min_length=1)
    region: str = Field(min_length=1)
    coding_rate: Literal["4/5", "4/6", "4/7", "4/8"]
    preamble_symbols: int = Field(ge=6, le=65535)
    explicit_header: bool
    crc: bool
    mac_overhead_bytes: int = Field(ge=0)
    dwell_time_s: PositiveFloat | None = None
    fair_use: FairUse
    radio: LoRaRadio
    sources: Sources = Field(default_factory=dict, description=_SOURCES_HELP)


class LoRaProfile(_LoRaCommon):
    """One LoRaWAN data rate of one region (``lorawan-eu868-dr0``): what a link simulator needs."""

    name: Name
    kind: Literal["lorawan"] = "lorawan"
    data_rate: LoRaDataRate
    duty_cycle: float | None = Field(
        default=None, gt=0, le=1
    )  # of the uplink sub-band; None where none applies
    downlink_duty_cycle: float | None = Field(default=None, gt=0, le=1)

    @property
    def max_payload_bytes(self) -> int:
        return self.data_rate.max_payload_bytes

    @property
    def bit_rate_bps(self) -> float:
        return self.data_rate.bit_rate_bps


class LoRaRegion(_LoRaCommon):
    """One region file (``profiles/network/lorawan-eu868.toml``): shared settings plus a table of data rates."""

    name: Name
    kind: Literal["lorawan"]
    uplink_sub_band: str | None = None
    downlink_sub_band: str | None = None
    sub_bands: list[SubBand] = Field(default_factory=list)
    data_rates: list[LoRaDataRate] = Field(min_length=1)

    def model_post_init(self, __context: Any) -> None:
        bands = {band.name: band for band in self.sub_bands}
        for i, band in enumerate(self.sub_bands):
            if band.high_hz <= band.low_hz:
                raise FieldProblem(("sub_bands", i, "high_hz"), "must be above low_hz")
        for field in ("uplink_sub_band", "downlink_sub_band"):
            value = getattr(self, field)
            if value is not None and value not in bands:
                raise FieldProblem(
                    (field,), f"'{value}' is not one of the sub_bands ({', '.join(bands) or 'none'})"
                )
        if self.uplink_sub_band is None and self.dwell_time_s is None:
            raise FieldProblem(
                ("uplink_sub_band",), "a region needs a duty-cycled uplink_sub_band or a dwell_time_s"
            )
        seen: set[int] = set()
        cr = coding_rate_index(self.coding_rate)
        for i, rate in enumerate(self.data_rates):
            if rate.dr in seen:
                raise FieldProblem(("data_rates", i, "dr"), f"DR{rate.dr} is listed twice")
            seen.add(rate.dr)
            # Bits per second from the modulation; SF11/SF12 lose two bits per symbol to low-data-rate optimisation.
            bits_per_symbol = rate.spreading_factor - (2 if rate.low_data_rate_optimize else 0)
            derived = bits_per_symbol * rate.bandwidth_hz / 2**rate.spreading_factor * 4 / (4 + cr)
            if abs(rate.bit_rate_bps / derived - 1.0) > BIT_RATE_TOLERANCE:
                raise FieldProblem(
                    ("data_rates", i, "bit_rate_bps"),
                    f"{rate.bit_rate_bps:g} does not match SF{rate.spreading_factor}/{rate.bandwidth_hz} Hz "
                    f"at CR {self.coding_rate} ({derived:.0f} bit/s)",
                )

    def profiles(self) -> list[LoRaProfile]:
        duty = {band.name: band.duty_cycle for band in self.sub_bands}
        common = self.model_dump(include=set(_LoRaCommon.model_fields) - {"sources"})
        out = []
        for i, rate in sorted(enumerate(self.data_rates), key=lambda ir: ir[1].dr):
            # one data rate's profile: data_rates[i] (or the whole table's source) becomes data_rate
            sources = dict(self.sources)
            rate_source = source_of(self.sources, f"data_rates[{i}]")
            if rate_source is not None:
                sources["data_rate"] = rate_source
            for key, src in self.sources.items():
                if key.startswith(f"data_rates[{i}]."):
                    sources["data_rate." + key.split(".", 1)[1]] = src
            out.append(
                LoRaProfile(
                    name=f"{self.name}-dr{rate.dr}",
                    data_rate=rate,
                    duty_cycle=duty.get(self.uplink_sub_band or ""),
                    downlink_duty_cycle=duty.get(self.downlink_sub_band or ""),
                    sources=sources,
                    **common,
                )
            )
        return out


class Latency(_Frozen):
    distribution: Literal["lognormal"]
    median_s: PositiveFloat
    p99_s: PositiveFloat

    @property
    def sigma(self) -> float:
        """Log-space standard deviation of the lognormal whose median and 99th percentile these are."""
        return math.log(self.p99_s / self.median_s) / _Z99


class IpRadio(_Frozen):
    tx_power_w: PositiveFloat
    rx_power_w: PositiveFloat
    idle_power_w: float = Field(ge=0)
    sleep_power_w: float = Field(ge=0)
    tail_s: float = Field(ge=0)  # how long the radio stays connected after the last packet


class IpLinkProfile(_Frozen):
    """A cellular or Wi-Fi link carrying IP: rates, latency distribution, loss, radio power."""

    name: Name
    kind: Literal["cellular", "wifi"]
    description: str = Field(min_length=1)
    uplink_bps: PositiveFloat
    downlink_bps: PositiveFloat
    max_payload_bytes: int = Field(ge=1)
    loss_rate: float = Field(ge=0, lt=1)
    latency: Latency
    radio: IpRadio
    sources: Sources = Field(default_factory=dict, description=_SOURCES_HELP)

    def model_post_init(self, __context: Any) -> None:
        if self.latency.p99_s < self.latency.median_s:
            raise FieldProblem(("latency", "p99_s"), "is below median_s")


NetworkProfile: TypeAlias = LoRaProfile | IpLinkProfile
NETWORK_KINDS = ("lorawan", "cellular", "wifi")

# --------------------------------------------------------------------------------------------- targets


class Quantization(_Frozen):
    weights_dtype: Literal["int8"]
    weights_granularity: Literal["per-channel", "per-tensor"]
    weights_symmetric: bool
    activations_dtype: Literal["int8", "int16"]
    activations_granularity: Literal["per-tensor", "per-channel"]
    io_dtype: Literal["int8", "fp32"]
    int4_weights: bool
    int4_ops: list[str] = Field(default_factory=list)


class OpRules(_Frozen):
    static_shapes: bool
    max_nontrivial_dims: int | None = Field(default=None, ge=1)
    dtypes: list[Literal["int8", "int16", "int32", "float32"]] = Field(min_length=1)
    cpu_fallback: Literal["partition", "none"]
    allowed_ops: list[str] | None = None  # None: any op the runtime has
    op_notes: dict[str, str] = Field(default_factory=dict)

    def allows(self, op: str) -> bool:
        return self.allowed_ops is None or op in self.allowed_ops


class Target(_Frozen):
    """A build target: artifact format, quantization scheme, op rules, runtime, default device."""

    name: Name
    description: str = Field(min_length=1)
    format: TargetFormat
    runtime: Runtime
    default_profile: Name
    bits_allowed: list[Literal[4, 8]] = Field(min_length=1)
    onnx_opset_min: int | None = Field(default=None, ge=7)
    quantization: Quantization
    rules: OpRules

    def model_post_init(self, __context: Any) -> None:
        if 8 not in self.bits_allowed:
            raise FieldProblem(("bits_allowed",), "every target must allow 8 bits")
        if (4 in self.bits_allowed) != self.quantization.int4_weights:
            raise FieldProblem(
                ("quantization", "int4_weights"), "must be true exactly when bits_allowed has 4"
            )
        if self.quantization.int4_weights and not self.quantization.int4_ops:
            raise FieldProblem(("quantization", "int4_ops"), "name the ops that take 4-bit weights")
        tflite_runtimes = ("litert", "litert-edgetpu", "tflite-micro")
        if (self.format == "onnx-qdq") != (self.runtime == "onnxruntime") or (
            self.format == "tflite-int8" and self.runtime not in tflite_runtimes
        ):
            raise FieldProblem(("runtime",), f"{self.runtime} cannot run the {self.format} format")
        if (self.format == "onnx-qdq") != (self.onnx_opset_min is not None):
            raise FieldProblem(("onnx_opset_min",), "is required for onnx-qdq and only for it")
        allowed = self.rules.allowed_ops
        if allowed is not None:
            if len(set(allowed)) != len(allowed):
                raise FieldProblem(("rules", "allowed_ops"), "lists an op twice")
            for op in self.rules.op_notes:
                if op not in allowed:
                    raise FieldProblem(("rules", "op_notes", op), f"{op} is not in allowed_ops")
            for op in self.quantization.int4_ops:
                if op not in allowed:
                    raise FieldProblem(("quantization", "int4_ops"), f"{op} is not in rules.allowed_ops")
