"""Hardware profiles, network profiles and build targets: the TOML files under profiles/ and targets/, validated.

The files live in a checkout's top-level ``profiles/`` and ``targets/`` (next to the package) or, once
installed from a wheel, inside the package as ``kasmina_edge/_data/{profiles,targets}``. Every loader takes
``data_dir`` (the folder that holds ``profiles/`` and ``targets/``) to read another copy.

A file that does not validate raises :class:`CatalogError` with one line naming the file, the line and the
field; an unknown name raises one line listing the known names.

Imports only the standard library, pydantic and ``kasmina_edge.contracts`` (devices load profiles too).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from statistics import NormalDist
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.formats import TargetFormat

DType = Literal["int8", "int4", "fp16", "fp32"]
Runtime = Literal["litert", "litert-edgetpu", "tflite-micro", "onnxruntime"]
HardwareKind = Literal["mcu", "sbc", "accelerator", "host", "npu"]
Loc = tuple[str | int, ...]

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


def dotted(loc: Loc) -> str:
    """('data_rates', 2, 'sf') -> 'data_rates[2].sf'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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


def _coding_rate_index(coding_rate: str) -> int:
    return int(coding_rate.split("/")[1]) - 4  # "4/5" -> 1 ... "4/8" -> 4


def lora_time_on_air_s(
    phy_payload_bytes: int,
    spreading_factor: int,
    bandwidth_hz: float,
    *,
    coding_rate: str = "4/5",
    preamble_symbols: int = 8,
    explicit_header: bool = True,
    crc: bool = True,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Time on air of one LoRa frame (Semtech AN1200.13, "LoRa Modem Designer's Guide", and SX1276 datasheet).

    Written out because the formula is eight lines and no library in the base install provides it.
    """
    sf, cr = spreading_factor, _coding_rate_index(coding_rate)
    t_sym = (2**sf) / bandwidth_hz
    de = int(t_sym >= 0.016) if low_data_rate_optimize is None else int(low_data_rate_optimize)
    ih = 0 if explicit_header else 1
    numerator = 8 * phy_payload_bytes - 4 * sf + 28 + 16 * int(crc) - 20 * ih
    payload_symbols = 8 + max(math.ceil(numerator / (4 * (sf - 2 * de))) * (cr + 4), 0)
    return (preamble_symbols + 4.25 + payload_symbols) * t_sym


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

    def time_on_air_s(self, payload_bytes: int) -> float:
        """Time on air of one uplink carrying ``payload_bytes`` of application payload (no FOpts)."""
        if not 0 <= payload_bytes <= self.max_payload_bytes:
            raise CatalogError(
                f"payload of {payload_bytes} B does not fit {self.name} (max {self.max_payload_bytes} B)"
            )
        return lora_time_on_air_s(
            payload_bytes + self.mac_overhead_bytes,
            self.data_rate.spreading_factor,
            self.data_rate.bandwidth_hz,
            coding_rate=self.coding_rate,
            preamble_symbols=self.preamble_symbols,
            explicit_header=self.explicit_header,
            crc=self.crc,
            low_data_rate_optimize=self.data_rate.low_data_rate_optimize,
        )


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
        cr = _coding_rate_index(self.coding_rate)
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


# --------------------------------------------------------------------------------------------- data location


def default_data_dir() -> Path:
    """The checkout's top level when running from one, else the copy installed inside the package."""
    repo_root = Path(__file__).resolve().parent.parent
    if (
        (repo_root / "pyproject.toml").is_file()
        and (repo_root / "profiles").is_dir()
        and (repo_root / "targets").is_dir()
    ):
        return repo_root
    return Path(str(resources.files("kasmina_edge").joinpath("_data")))


def _folder(data_dir: Path | None, *parts: str) -> Path:
    folder = (data_dir if data_dir is not None else default_data_dir()).joinpath(*parts)
    if not folder.is_dir():
        raise CatalogError(f"no {'/'.join(parts)} folder at {folder}")
    return folder


# --------------------------------------------------------------------------------------------- TOML lines

_KEYPART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEYPART}(?:\s*\.\s*{_KEYPART})*"
_ARRAY_TABLE_RE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_RE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=(.*)$")
_TOML_POSITION_RE = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


def _key_parts(dotted_key: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in re.findall(_KEYPART, dotted_key))


def _open_brackets(value: str) -> int:
    """Net [ / { opened by a value (strings and comments skipped): > 0 means it continues on the next line."""
    depth, quote, i = 0, "", 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


def field_lines(text: str) -> dict[Loc, int]:
    """Map each table and key of a TOML text to its 1-based line, as pydantic locations (array tables indexed).

    Hand-written: tomllib drops positions and no library in the base install keeps them. It understands
    what our data files use (tables, arrays of tables, dotted keys, multi-line arrays) and is only used to
    point at a line, so a construct it misreads costs a less precise line, never a wrong value.
    """
    lines: dict[Loc, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    table: Loc = ()
    depth = 0
    in_multiline_string = False

    def resolve(parts: tuple[str, ...]) -> Loc:
        out: list[str | int] = []
        for n, part in enumerate(parts, start=1):
            out.append(part)
            if parts[:n] in array_counts:
                out.append(array_counts[parts[:n]] - 1)
        return tuple(out)

    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline_string:
            if line.count('"""') % 2 == 1:
                in_multiline_string = False
            continue
        if depth > 0:
            depth += _open_brackets(line)
            continue
        if match := _ARRAY_TABLE_RE.match(line):
            parts = _key_parts(match.group(1))
            array_counts[parts] = array_counts.get(parts, 0) + 1
            table = resolve(parts)
            lines.setdefault(table[:-1], lineno)
            lines[table] = lineno
        elif match := _TABLE_RE.match(line):
            table = resolve(_key_parts(match.group(1)))
            lines[table] = lineno
        elif match := _KEY_RE.match(line):
            parts = _key_parts(match.group(1))
            for n in range(1, len(parts) + 1):
                lines.setdefault(table + parts[:n], lineno)
            value = match.group(2)
            if value.count('"""') % 2 == 1:
                in_multiline_string = True
            else:
                depth = max(_open_brackets(value), 0)
    return lines


def line_of(loc: Loc, text: str) -> int:
    """The line of the deepest table or key on ``loc``'s path (line 1 when the file has none of it)."""
    lines = field_lines(text)
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


# --------------------------------------------------------------------------------------------- loading

_Model = TypeVar("_Model", bound=BaseModel)


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        position = re.search(r"at line (\d+)", str(exc))
        line = position.group(1) if position else str(text.count("\n") + 1)
        message = _TOML_POSITION_RE.sub("", str(exc))
        raise CatalogError(f"{path}:{line}: TOML syntax error: {message}") from None


def _problem(path: Path, text: str, loc: Loc, message: str) -> CatalogError:
    return CatalogError(f"{path}:{line_of(loc, text)}: field '{dotted(loc) or '(file)'}': {message}")


def _validate(model: type[_Model], data: dict[str, Any], text: str, path: Path) -> _Model:
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        # A misspelt key gives "extra" at its line and "missing" elsewhere: point at the misspelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            parent, key = tuple(first["loc"][:-1]), str(first["loc"][-1])
            missing = [
                str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == parent
            ]
            close = difflib.get_close_matches(key, missing, n=1)
            message = f"unknown field (did you mean '{close[0]}'?)" if close else "unknown field"
        if first["type"] != "missing" and not isinstance(first.get("input"), dict | list):
            message += f" (got {first.get('input')!r:.60})"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        raise _problem(path, text, tuple(first["loc"]), message) from None
    except FieldProblem as exc:
        raise _problem(path, text, exc.loc, exc.problem) from None
    name = getattr(obj, "name", path.stem)
    if name != path.stem:
        raise _problem(path, text, ("name",), f"'{name}' must match the file name '{path.stem}'")
    return obj


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=256)
def _load_cached(path: Path, stamp: tuple[int, int], kind: str) -> Any:
    """Parse and validate one file; the (mtime, size) stamp in the key makes an edited file load afresh."""
    data, text = _read_toml(path)
    if kind == "hardware":
        hw = _validate(HardwareProfile, data, text, path)
        _check_sources(data, text, path)  # after the fields themselves: a missing field is named as such
        return hw
    if kind == "target":
        return _validate(Target, data, text, path)
    network_kind = data.get("kind")
    if network_kind not in NETWORK_KINDS:
        raise _problem(
            path, text, ("kind",), f"must be one of {', '.join(NETWORK_KINDS)} (got {network_kind!r})"
        )
    if network_kind == "lorawan":
        region = _validate(LoRaRegion, data, text, path)
        _check_sources(data, text, path)
        return tuple(region.profiles())
    ip = _validate(IpLinkProfile, data, text, path)
    _check_sources(data, text, path)
    return (ip,)


def _check_sources(data: dict[str, Any], text: str, path: Path) -> None:
    """A profile with a [sources] table gives every number one, and names no field it lacks."""
    sources = data.get("sources")
    if sources is None:
        return  # a profile of one's own may leave provenance out; the shipped ones may not (tests)
    if not isinstance(sources, dict):
        raise _problem(path, text, ("sources",), "must be a table of field -> {kind, source}")
    fields = numbers(data, every_value=True)
    for key in sources:
        if not any(p == key or p.startswith(key + ".") or p.startswith(key + "[") for p in fields):
            raise _problem(path, text, ("sources",), f"'{key}' names no field of this profile")
    parsed = {k: NumberSource.model_validate(v) for k, v in sources.items() if isinstance(v, dict)}
    for p in numbers(data):
        if source_of(parsed, p) is None:
            raise _problem(path, text, ("sources",), f"no source for {p} (say measured, published, estimated or derived)")


def _load(path: Path, kind: str) -> Any:
    return _load_cached(path, _stamp(path), kind)


def _unknown(what: str, name: str, known: list[str]) -> CatalogError:
    return CatalogError(f"unknown {what} '{name}'; known: {', '.join(known) or 'none'}")


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.toml"))


def _named_file(folder: Path, name: str) -> Path | None:
    path = folder / f"{name}.toml"
    return path if re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) and path.is_file() else None


def hardware_names(data_dir: Path | None = None) -> list[str]:
    """Names of the hardware profiles (the file names: nothing is parsed)."""
    return [path.stem for path in _files(_folder(data_dir, "profiles", "hardware"))]


def network_names(data_dir: Path | None = None) -> list[str]:
    """Names of the network profiles, each LoRaWAN data rate on its own."""
    return [profile.name for profile in list_network(data_dir)]


def target_names(data_dir: Path | None = None) -> list[str]:
    """Names of the build targets (the file names: nothing is parsed)."""
    return [path.stem for path in _files(_folder(data_dir, "targets"))]


def list_hardware(data_dir: Path | None = None) -> list[HardwareProfile]:
    """Every hardware profile, sorted by name."""
    return [_load(path, "hardware") for path in _files(_folder(data_dir, "profiles", "hardware"))]


def hardware(name: str, data_dir: Path | None = None) -> HardwareProfile:
    folder = _folder(data_dir, "profiles", "hardware")
    path = _named_file(folder, name)
    if path is None:
        raise _unknown("hardware profile", name, hardware_names(data_dir))
    profile: HardwareProfile = _load(path, "hardware")
    return profile


def list_network(data_dir: Path | None = None) -> list[NetworkProfile]:
    """Every network profile (each LoRaWAN data rate on its own), sorted by file then data rate."""
    folder = _folder(data_dir, "profiles", "network")
    return [profile for path in _files(folder) for profile in _load(path, "network")]


def network(name: str, data_dir: Path | None = None) -> NetworkProfile:
    folder = _folder(data_dir, "profiles", "network")
    match = re.fullmatch(r"(lorawan-[a-z0-9-]+?)-dr\d+", name)
    path = _named_file(folder, match.group(1) if match else name)
    if path is not None:
        for profile in _load(path, "network"):
            if profile.name == name:
                return profile  # type: ignore[no-any-return]
    raise _unknown("network profile", name, network_names(data_dir))


def list_targets(data_dir: Path | None = None) -> list[Target]:
    """Every build target, sorted by name."""
    return [_load(path, "target") for path in _files(_folder(data_dir, "targets"))]


def target(name: str, data_dir: Path | None = None) -> Target:
    folder = _folder(data_dir, "targets")
    path = _named_file(folder, name)
    if path is None:
        raise _unknown("target", name, target_names(data_dir))
    found: Target = _load(path, "target")
    return found


def check_catalog(data_dir: Path | None = None) -> None:
    """Cross-references between files: targets named by profiles, default profiles, host profiles."""
    hw_folder = _folder(data_dir, "profiles", "hardware")
    profiles = {p.name: p for p in list_hardware(data_dir)}
    targets = {t.name: t for t in list_targets(data_dir)}

    def at(path: Path, loc: Loc, message: str) -> CatalogError:
        return _problem(path, path.read_text(encoding="utf-8"), loc, message)

    for profile in profiles.values():
        path = hw_folder / f"{profile.name}.toml"
        for target_name in profile.targets:
            if target_name not in targets:
                raise at(path, ("targets",), f"unknown target '{target_name}'; known: {', '.join(targets)}")
        host = profile.host_link.host_profile if profile.host_link else None
        if host is not None and host not in profiles:
            raise at(path, ("host_link", "host_profile"), f"unknown hardware profile '{host}'")
    for tgt in targets.values():
        path = _folder(data_dir, "targets") / f"{tgt.name}.toml"
        default = profiles.get(tgt.default_profile)
        if default is None:
            raise at(path, ("default_profile",), f"unknown hardware profile '{tgt.default_profile}'")
        if tgt.name not in default.targets:
            raise at(path, ("default_profile",), f"'{default.name}' does not list target '{tgt.name}'")
        if default.runtime != tgt.runtime:
            raise at(
                path, ("runtime",), f"{tgt.runtime} differs from {default.name}'s runtime {default.runtime}"
            )
