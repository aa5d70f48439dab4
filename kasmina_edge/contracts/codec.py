"""Binary and JSON forms of the telemetry records.

Binary frame (fixed size per kind, big-endian)::

    byte 0        version (high nibble) | kind (low nibble)
    bytes 1..n-k  the record's fields, bit-packed in the order of its layout below
    last k bytes  CRC over everything before it: CRC-8 (heartbeat) or CRC-16/CCITT-FALSE (others)

Every frame fits LoRaWAN EU868 DR0–DR2 (51 bytes); the heartbeat fits US915 DR0 (11 bytes).
Numbers go on the wire as integers in a stated unit (``scale``); the codec rounds to that unit,
so ``decode(encode(r)) == quantize(r)`` and quantizing twice changes nothing. The heartbeat's
bit budget is what sets its units: 88 bits = header 8 + seq 8 + time 24 (minutes since
2024-01-01, to 2055) + battery 7 + A/B slot 1 + uptime 16 (minutes, saturating at ~45 days)
+ firmware 8 + flags 8 + CRC 8. Event frames carry the time to the second.

The bit packer and the CRC-8 are written by hand: ``struct`` has no sub-byte or 24-bit fields
and the standard library has no CRC-8 (CRC-16 is ``binascii.crc_hqx``).
"""

from __future__ import annotations

import binascii
import json
import math
import struct
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum, IntEnum, IntFlag
from typing import Any

from kasmina_edge.contracts.errors import FrameError
from kasmina_edge.contracts.lifecycle import Gate, Stage
from kasmina_edge.contracts.telemetry import (
    AnomalyEvent,
    AnomalyKind,
    BeatCounts,
    DeviceStatus,
    ErrorFlags,
    GateEvent,
    InvalidRecordError,
    LinkStats,
    ReasonCode,
    Record,
    SeedEvent,
    Severity,
    SignalQuality,
    Slot,
)

VERSION = 1
MAX_FRAME_BYTES = 51  # LoRaWAN EU868 DR0–DR2 application payload
MAX_HEARTBEAT_BYTES = 11  # LoRaWAN US915 DR0 application payload
KASMINA_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: wire times count from here


# ---------------------------------------------------------------------------------------------
# Field codecs: record value <-> unsigned wire integer of ``bits`` bits.


@dataclass(frozen=True)
class Num:
    """A number sent as ``round((value - offset) / scale)``; ``signed`` uses two's complement."""

    bits: int
    scale: float = 1
    offset: int = 0
    signed: bool = False
    saturate: bool = False  # clamp instead of refusing values past the top (counters, uptime)
    as_float: bool = False

    def _range(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def to_wire(self, value: Any, where: str) -> int:
        steps = math.floor((value - self.offset) / self.scale + 0.5)
        lo, hi = self._range()
        if self.saturate:
            steps = min(steps, hi)
        if not lo <= steps <= hi:
            first, last = self.offset + lo * self.scale, self.offset + hi * self.scale
            raise FrameError(f"cannot encode {where}={value!r}: wire range is {first:g}..{last:g}")
        return steps & ((1 << self.bits) - 1)

    def from_wire(self, raw: int) -> Any:
        if self.signed and raw >= 1 << (self.bits - 1):
            raw -= 1 << self.bits
        if self.as_float:
            return raw * self.scale + self.offset
        return int(raw * self.scale) + self.offset


@dataclass(frozen=True)
class EnumField:
    enum: type[IntEnum] | type[IntFlag]
    bits: int

    def to_wire(self, value: Any, where: str) -> int:
        raw = int(value)
        if not 0 <= raw < 1 << self.bits:
            raise FrameError(f"cannot encode {where}={value!r}: does not fit {self.bits} bits")
        return raw

    def from_wire(self, raw: int) -> Any:
        try:
            return self.enum(raw)
        except ValueError:
            raise FrameError(f"unknown {self.enum.__name__} code {raw}") from None


@dataclass(frozen=True)
class GateField:
    """Gate G0..G5 sent as its number."""

    bits: int = 3

    def to_wire(self, value: Any, where: str) -> int:
        return list(Gate).index(value)

    def from_wire(self, raw: int) -> Any:
        gates = list(Gate)
        if raw >= len(gates):
            raise FrameError(f"unknown gate code {raw}")
        return gates[raw]


@dataclass(frozen=True)
class Flag:
    bits: int = 1

    def to_wire(self, value: Any, where: str) -> int:
        return int(bool(value))

    def from_wire(self, raw: int) -> Any:
        return bool(raw)


@dataclass(frozen=True)
class Float32:
    bits: int = 32

    def to_wire(self, value: Any, where: str) -> int:
        try:
            return int(struct.unpack(">I", struct.pack(">f", value))[0])
        except OverflowError:
            raise FrameError(f"cannot encode {where}={value!r}: outside float32") from None

    def from_wire(self, raw: int) -> Any:
        return float(struct.unpack(">f", struct.pack(">I", raw))[0])


FieldCodec = Num | EnumField | GateField | Flag | Float32

SEQ = Num(8)
TIME_S = Num(32, offset=KASMINA_EPOCH)  # to 2160
TIME_MIN = Num(24, scale=60, offset=KASMINA_EPOCH)  # to 2055
COUNT16 = Num(16, saturate=True)
REASON = EnumField(ReasonCode, 8)


@dataclass(frozen=True)
class Layout:
    kind: int
    name: str  # the JSON "kind"
    record: type[Record]
    fields: tuple[tuple[str, FieldCodec], ...]
    crc_bytes: int

    @property
    def payload_bits(self) -> int:
        return sum(codec.bits for _, codec in self.fields)

    @property
    def size(self) -> int:
        return 1 + self.payload_bits // 8 + self.crc_bytes


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        0,
        "device_status",
        DeviceStatus,
        (
            ("seq", SEQ),
            ("timestamp", TIME_MIN),
            ("battery_pct", Num(7)),
            ("active_slot", EnumField(Slot, 1)),
            ("uptime_s", Num(16, scale=60, saturate=True)),
            ("firmware_version", Num(8)),
            ("error_flags", EnumField(ErrorFlags, 8)),
        ),
        crc_bytes=1,
    ),
    Layout(
        1,
        "beat_counts",
        BeatCounts,
        (
            ("seq", SEQ),
            ("timestamp", TIME_S),
            ("period_s", Num(16)),
            ("n", COUNT16),
            ("s", COUNT16),
            ("v", COUNT16),
            ("f", COUNT16),
            ("q", COUNT16),
        ),
        crc_bytes=2,
    ),
    Layout(
        2,
        "anomaly",
        AnomalyEvent,
        (
            ("seq", SEQ),
            ("timestamp", TIME_S),
            ("kind", EnumField(AnomalyKind, 8)),
            ("severity", EnumField(Severity, 8)),
            ("start_offset_ms", Num(32)),
            ("duration_ms", Num(32)),
            ("confidence", Num(8, scale=1 / 250, as_float=True)),
        ),
        crc_bytes=2,
    ),
    Layout(
        3,
        "seed_event",
        SeedEvent,
        (
            ("seq", SEQ),
            ("timestamp", TIME_S),
            ("site", Num(8)),
            ("kernel_id", Num(16)),
            ("src", EnumField(Stage, 4)),
            ("dst", EnumField(Stage, 4)),
            ("reason", REASON),
        ),
        crc_bytes=2,
    ),
    Layout(
        4,
        "gate_event",
        GateEvent,
        (
            ("seq", SEQ),
            ("timestamp", TIME_S),
            ("site", Num(8)),
            ("kernel_id", Num(16)),
            ("gate", GateField(7)),
            ("passed", Flag()),
            ("reason", REASON),
            ("metric", Float32()),
        ),
        crc_bytes=2,
    ),
    Layout(
        5,
        "signal_quality",
        SignalQuality,
        (
            ("seq", SEQ),
            ("timestamp", TIME_S),
            ("noise_db", Num(16, scale=0.01, signed=True, as_float=True)),
            ("baseline_wander_mv", Num(16, scale=0.001, saturate=True, as_float=True)),
            ("powerline_mv", Num(16, scale=0.001, saturate=True, as_float=True)),
            ("lead_off", Flag(8)),
            ("qrs_correlation", Num(16, scale=1e-4, signed=True, as_float=True)),
        ),
        crc_bytes=2,
    ),
    Layout(
        6,
        "link_stats",
        LinkStats,
        (
            ("seq", SEQ),
            ("timestamp", TIME_S),
            ("rssi_dbm", Num(16, signed=True)),
            ("snr_db", Num(16, scale=0.01, signed=True, as_float=True)),
            ("airtime_ms", Num(32, saturate=True)),
            ("duty_cycle_left", Num(16, scale=1e-4, as_float=True)),
            ("frames_lost", COUNT16),
        ),
        crc_bytes=2,
    ),
)

_BY_KIND = {layout.kind: layout for layout in LAYOUTS}
_BY_TYPE = {layout.record: layout for layout in LAYOUTS}
_BY_NAME = {layout.name: layout for layout in LAYOUTS}

for _layout in LAYOUTS:  # a layout that breaks the link limits must not even import
    assert _layout.payload_bits % 8 == 0, _layout.name
    assert sorted(n for n, _ in _layout.fields) == sorted(f.name for f in fields(_layout.record)), (
        _layout.name
    )
    assert _layout.size <= (MAX_HEARTBEAT_BYTES if _layout.record is DeviceStatus else MAX_FRAME_BYTES)

FRAME_SIZES: dict[type[Record], int] = {layout.record: layout.size for layout in LAYOUTS}


# ---------------------------------------------------------------------------------------------
# CRCs


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0): detects every single-bit and every burst error up to 8 bits."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def _crc(data: bytes, width: int) -> bytes:
    return bytes([crc8(data)]) if width == 1 else struct.pack(">H", crc16(data))


# ---------------------------------------------------------------------------------------------
# Binary


def _layout_of(record: object) -> Layout:
    layout = _BY_TYPE.get(type(record))  # type: ignore[arg-type]
    if layout is None:
        raise FrameError(f"not a telemetry record: {type(record).__name__}")
    return layout


def encode(record: Record) -> bytes:
    """The record as one binary frame; refuses values its wire units cannot carry."""
    layout = _layout_of(record)
    acc = 0
    for name, codec in layout.fields:
        value = getattr(record, name)
        acc = (acc << codec.bits) | codec.to_wire(value, f"{layout.record.__name__}.{name}")
    head = struct.pack(">B", VERSION << 4 | layout.kind) + acc.to_bytes(layout.payload_bits // 8, "big")
    return head + _crc(head, layout.crc_bytes)


def decode(frame: bytes) -> Record:
    """The record in ``frame``; raises :class:`FrameError` for anything but an intact, known frame."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise FrameError(f"a frame is bytes, got {type(frame).__name__}")
    frame = bytes(frame)
    if not frame:
        raise FrameError("empty frame")
    version, kind = frame[0] >> 4, frame[0] & 0x0F
    if version != VERSION:
        raise FrameError(f"unknown frame version {version} (this decoder reads version {VERSION})")
    layout = _BY_KIND.get(kind)
    if layout is None:
        raise FrameError(f"unknown frame kind {kind} (known: 0..{len(LAYOUTS) - 1})")
    if len(frame) != layout.size:
        what = "truncated" if len(frame) < layout.size else "too long"
        raise FrameError(f"{layout.name} frame {what}: {len(frame)} bytes, expected {layout.size}")
    body, check = frame[: -layout.crc_bytes], frame[-layout.crc_bytes :]
    if _crc(body, layout.crc_bytes) != check:
        raise FrameError(f"{layout.name} frame: CRC mismatch (corrupted in transit)")
    acc = int.from_bytes(body[1:], "big")
    values: dict[str, Any] = {}
    shift = layout.payload_bits
    for name, codec in layout.fields:
        shift -= codec.bits
        values[name] = codec.from_wire((acc >> shift) & ((1 << codec.bits) - 1))
    try:
        return layout.record(**values)
    except InvalidRecordError as exc:
        raise FrameError(f"{layout.name} frame: {exc}") from None


def quantize(record: Record) -> Record:
    """The record as the binary frame carries it (rounded to wire units, counters saturated)."""
    return decode(encode(record))


# ---------------------------------------------------------------------------------------------
# JSON (broadband links): lossless, enums by their text names.


def _to_json_value(value: Any) -> Any:
    if isinstance(value, IntFlag):
        return [flag.name.lower() for flag in type(value) if flag.value and flag in value]  # type: ignore[union-attr]
    if isinstance(value, Stage | Slot):
        return value.name
    if isinstance(value, ReasonCode):
        return value.text
    if isinstance(value, Gate):
        return value.value
    if isinstance(value, Enum):
        return value.name.lower()
    return value


def to_dict(record: Record) -> dict[str, Any]:
    layout = _layout_of(record)
    out: dict[str, Any] = {"version": VERSION, "type": layout.name}
    for f in fields(record):
        out[f.name] = _to_json_value(getattr(record, f.name))
    return out


def to_json(record: Record) -> str:
    return json.dumps(to_dict(record), separators=(",", ":"), allow_nan=False)


def _enum_by_name(cls: type[Enum], raw: Any, where: str) -> Any:
    if not isinstance(raw, str):
        raise FrameError(f"{where}: expected a name, got {raw!r}")
    if cls is Gate:
        try:
            return Gate(raw)
        except ValueError:
            raise FrameError(f"{where}: unknown gate {raw!r}") from None
    try:
        return cls[raw.upper()]
    except KeyError:
        names = ", ".join(m.name if cls in (Stage, Slot) else m.name.lower() for m in cls)
        raise FrameError(f"{where}: unknown {cls.__name__} {raw!r} (known: {names})") from None


def _from_json_value(hint: Any, raw: Any, where: str) -> Any:
    if isinstance(hint, type) and issubclass(hint, IntFlag):
        if not isinstance(raw, list):
            raise FrameError(f"{where}: expected a list of flag names, got {raw!r}")
        value = hint(0)
        for name in raw:
            value |= _enum_by_name(hint, name, where)
        return value
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_by_name(hint, raw, where)
    if hint is bool:
        if not isinstance(raw, bool):
            raise FrameError(f"{where}: expected true/false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise FrameError(f"{where}: expected an integer, got {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise FrameError(f"{where}: expected a number, got {raw!r}")
        return float(raw)
    raise AssertionError(f"no JSON rule for {hint}")  # a record field type the codec does not know


JSON_ENVELOPE = ("version", "type")  # keys every JSON frame carries besides the record's fields
for _layout in LAYOUTS:
    assert not set(JSON_ENVELOPE) & {f.name for f in fields(_layout.record)}, _layout.name

_HINTS: dict[type, dict[str, Any]] = {
    layout.record: typing.get_type_hints(layout.record) for layout in LAYOUTS
}


def from_dict(data: Mapping[str, Any]) -> Record:
    if not isinstance(data, Mapping):
        raise FrameError(f"JSON frame must be an object, got {type(data).__name__}")
    if data.get("version") != VERSION:
        raise FrameError(f"unknown JSON frame version {data.get('version')!r} (this decoder reads {VERSION})")
    kind = data.get("type")
    layout = _BY_NAME.get(kind) if isinstance(kind, str) else None  # a dict or list is no type name (fuzzing)
    if layout is None:
        raise FrameError(f"unknown JSON frame type {str(kind)[:60]!r} (known: {', '.join(_BY_NAME)})")
    hints = _HINTS[layout.record]
    expected = [f.name for f in fields(layout.record)]
    missing = [n for n in expected if n not in data]
    extra = sorted(set(data) - set(expected) - set(JSON_ENVELOPE))
    if missing or extra:
        raise FrameError(f"{layout.name} JSON: missing fields {missing}, unknown fields {extra}")
    values = {n: _from_json_value(hints[n], data[n], f"{layout.name}.{n}") for n in expected}
    try:
        return layout.record(**values)
    except InvalidRecordError as exc:
        raise FrameError(f"{layout.name} JSON: {exc}") from None


def from_json(text: str | bytes) -> Record:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError(f"JSON frame is not valid JSON: {exc}") from None
    return from_dict(data)


def kind_name(record_or_type: Record | type[Record]) -> str:
    """The record's type name as used in JSON frames and MQTT topics (``telemetry/<kind>``)."""
    cls = record_or_type if isinstance(record_or_type, type) else type(record_or_type)
    return _layout_of_type(cls).name


def _layout_of_type(cls: type) -> Layout:
    layout = _BY_TYPE.get(cls)
    if layout is None:
        raise FrameError(f"not a telemetry record type: {cls.__name__}")
    return layout


__all__ = [
    "FRAME_SIZES",
    "KASMINA_EPOCH",
    "LAYOUTS",
    "MAX_FRAME_BYTES",
    "MAX_HEARTBEAT_BYTES",
    "VERSION",
    "crc8",
    "crc16",
    "decode",
    "encode",
    "from_dict",
    "from_json",
    "kind_name",
    "quantize",
    "to_dict",
    "to_json",
]
