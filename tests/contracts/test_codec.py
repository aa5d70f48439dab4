"""Telemetry records and their codecs: round trips, frame sizes, corruption, clear errors."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.errors import FrameError, KasminaError
from kasmina_edge.contracts.lifecycle import Gate, Stage, TransitionEvent
from kasmina_edge.contracts.telemetry import (
    RECORD_TYPES,
    SEQ_MODULUS,
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
    SequenceCounter,
    Severity,
    SignalQuality,
    Slot,
)

EPOCH = codec.KASMINA_EPOCH
U32 = 2**32 - 1

seqs = st.integers(0, SEQ_MODULUS - 1)
times_s = st.integers(EPOCH, EPOCH + U32)
times_min = st.integers(EPOCH, EPOCH + (2**24 - 1) * 60)
finite = {"allow_nan": False, "allow_infinity": False}


def _flags() -> st.SearchStrategy[ErrorFlags]:
    return st.integers(0, 255).map(ErrorFlags)


STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    DeviceStatus: st.builds(
        DeviceStatus,
        seqs,
        times_min,
        st.integers(0, 100),
        st.integers(0, 10**9),
        st.sampled_from(Slot),
        st.integers(0, 255),
        _flags(),
    ),
    BeatCounts: st.builds(
        BeatCounts, seqs, times_s, st.integers(0, 65535), *[st.integers(0, 10**6) for _ in range(5)]
    ),
    AnomalyEvent: st.builds(
        AnomalyEvent,
        seqs,
        times_s,
        st.sampled_from(AnomalyKind),
        st.sampled_from(Severity),
        st.integers(0, U32),
        st.integers(0, U32),
        st.floats(0, 1, **finite),
    ),
    SeedEvent: st.builds(
        SeedEvent,
        seqs,
        times_s,
        st.integers(0, 255),
        st.integers(0, 65535),
        st.sampled_from(Stage),
        st.sampled_from(Stage),
        st.sampled_from(ReasonCode),
    ),
    GateEvent: st.builds(
        GateEvent,
        seqs,
        times_s,
        st.integers(0, 255),
        st.integers(0, 65535),
        st.sampled_from(Gate),
        st.booleans(),
        st.sampled_from(ReasonCode),
        st.floats(-3e38, 3e38, **finite),
    ),
    SignalQuality: st.builds(
        SignalQuality,
        seqs,
        times_s,
        st.floats(-327.68, 327.67, **finite),
        st.floats(0, 1000, **finite),
        st.floats(0, 1000, **finite),
        st.booleans(),
        st.floats(-1, 1, **finite),
    ),
    LinkStats: st.builds(
        LinkStats,
        seqs,
        times_s,
        st.integers(-32768, 32767),
        st.floats(-327.68, 327.67, **finite),
        st.integers(0, 2**40),
        st.floats(0, 1, **finite),
        st.integers(0, 10**6),
    ),
}
any_record = st.one_of(*STRATEGIES.values())


def test_every_record_type_has_a_strategy_and_a_layout() -> None:
    assert set(STRATEGIES) == set(RECORD_TYPES) == set(codec.FRAME_SIZES)


# --- the binary round trip ---------------------------------------------------------------------------

# Steps of each wire unit: decode(encode(r)) differs from r by at most half a step (saturated fields aside).
STEP: dict[str, float] = {
    "confidence": 1 / 250,
    "noise_db": 0.01,
    "baseline_wander_mv": 0.001,
    "powerline_mv": 0.001,
    "qrs_correlation": 1e-4,
    "snr_db": 0.01,
    "duty_cycle_left": 1e-4,
}
SATURATING = {
    "uptime_s": 65535 * 60,
    "n": 65535,
    "s": 65535,
    "v": 65535,
    "f": 65535,
    "q": 65535,
    "airtime_ms": U32,
    "frames_lost": 65535,
    "baseline_wander_mv": 65.535,
    "powerline_mv": 65.535,
}


def assert_close_to_wire(original: Record, decoded: Record) -> None:
    assert type(decoded) is type(original)
    for f in dataclasses.fields(original):
        a, b = getattr(original, f.name), getattr(decoded, f.name)
        if f.name in SATURATING and a >= SATURATING[f.name]:
            assert b == pytest.approx(SATURATING[f.name]), f.name
        elif f.name == "timestamp" and isinstance(original, DeviceStatus):
            assert abs(b - a) <= 30 and (b - EPOCH) % 60 == 0
        elif f.name == "uptime_s":
            assert abs(b - a) <= 30 and b % 60 == 0
        elif f.name == "metric":
            assert b == pytest.approx(a, rel=2**-23, abs=1e-38)
        elif f.name in STEP:
            assert abs(b - a) <= STEP[f.name] / 2 + 1e-9, (f.name, a, b)
        else:
            assert b == a, f.name
            assert type(b) is type(a), f.name


@settings(max_examples=300, deadline=None)
@given(any_record)
def test_binary_round_trip_is_exact_to_the_wire_unit(record: Record) -> None:
    frame = codec.encode(record)
    assert len(frame) == codec.FRAME_SIZES[type(record)]
    decoded = codec.decode(frame)
    assert_close_to_wire(record, decoded)
    # quantizing is idempotent: what came off the wire goes back on it bit for bit
    assert codec.encode(decoded) == frame
    assert codec.decode(codec.encode(decoded)) == decoded
    assert codec.quantize(record) == decoded


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_binary_round_trip_per_type(record_type: type, data: st.DataObject) -> None:
    record = data.draw(STRATEGIES[record_type])
    assert_close_to_wire(record, codec.decode(codec.encode(record)))


# --- JSON ----------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(any_record)
def test_json_round_trip_is_lossless(record: Record) -> None:
    text = codec.to_json(record)
    assert codec.from_json(text) == record
    assert codec.from_json(text.encode()) == record
    data = json.loads(text)
    assert data["version"] == codec.VERSION and data["type"] == codec.kind_name(record)


def test_json_uses_text_names() -> None:
    rec = SeedEvent(3, EPOCH + 5, 1, 7, Stage.SHADOWING, Stage.CULLED, ReasonCode.HEALTH_DRIFT)
    data = json.loads(codec.to_json(rec))
    assert data == {
        "version": 1,
        "type": "seed_event",
        "seq": 3,
        "timestamp": EPOCH + 5,
        "site": 1,
        "kernel_id": 7,
        "src": "SHADOWING",
        "dst": "CULLED",
        "reason": "health_drift",
    }
    hb = DeviceStatus(1, EPOCH, 50, 0, Slot.B, 2, ErrorFlags.LOW_BATTERY | ErrorFlags.CLOCK_UNSYNCED)
    data = json.loads(codec.to_json(hb))
    assert data["error_flags"] == ["low_battery", "clock_unsynced"] and data["active_slot"] == "B"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=2), "unknown JSON frame version 2"),
        (lambda d: d.update(type="weather"), "unknown JSON frame type 'weather'"),
        (lambda d: d.pop("site"), "missing fields \\['site'\\]"),
        (lambda d: d.update(colour="red"), "unknown fields \\['colour'\\]"),
        (lambda d: d.update(site="one"), "seed_event.site: expected an integer"),
        (lambda d: d.update(site=True), "seed_event.site: expected an integer"),
        (lambda d: d.update(dst="ZOMBIE"), "seed_event.dst: unknown Stage 'ZOMBIE'"),
        (lambda d: d.update(reason="bored"), "unknown ReasonCode 'bored'"),
        (lambda d: d.update(seq=300), "SeedEvent.seq=300: must be 0..255"),
    ],
)
def test_bad_json_frames_are_refused_with_the_field_named(mutate: Any, message: str) -> None:
    rec = SeedEvent(3, EPOCH + 5, 1, 7, Stage.SHADOWING, Stage.CULLED, ReasonCode.HEALTH_DRIFT)
    data = codec.to_dict(rec)
    mutate(data)
    with pytest.raises(FrameError, match=message):
        codec.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", b"\xff\xfe"])
def test_json_that_is_not_an_object_is_refused(text: str | bytes) -> None:
    with pytest.raises(FrameError):
        codec.from_json(text)


# --- sizes ---------------------------------------------------------------------------------------------

EXTREMES: list[Record] = [
    DeviceStatus(255, EPOCH + (2**24 - 1) * 60, 100, 10**12, Slot.B, 255, ErrorFlags(255)),
    DeviceStatus(0, EPOCH, 0, 0, Slot.A, 0, ErrorFlags.NONE),
    BeatCounts(255, EPOCH + U32, 65535, 10**9, 10**9, 10**9, 10**9, 10**9),
    AnomalyEvent(255, EPOCH + U32, AnomalyKind.OTHER, Severity.CRITICAL, U32, U32, 1.0),
    SeedEvent(255, EPOCH + U32, 255, 65535, Stage.TERMINATED, Stage.TERMINATED, ReasonCode.NOT_EVALUATED),
    GateEvent(255, EPOCH + U32, 255, 65535, Gate.G5, True, ReasonCode.NOT_EVALUATED, -3.4e38),
    SignalQuality(255, EPOCH + U32, -327.68, 1e6, 1e6, True, -1.0),
    LinkStats(255, EPOCH + U32, -32768, 327.67, 10**15, 1.0, 10**9),
]


@pytest.mark.parametrize("record", EXTREMES, ids=lambda r: type(r).__name__)
def test_frames_fit_the_smallest_lorawan_payloads(record: Record) -> None:
    frame = codec.encode(record)
    limit = codec.MAX_HEARTBEAT_BYTES if isinstance(record, DeviceStatus) else codec.MAX_FRAME_BYTES
    assert len(frame) <= limit
    assert codec.MAX_HEARTBEAT_BYTES == 11 and codec.MAX_FRAME_BYTES == 51
    codec.decode(frame)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (DeviceStatus(0, EPOCH - 60, 0, 0, Slot.A, 0), "timestamp"),
        (DeviceStatus(0, EPOCH + 2**24 * 60, 0, 0, Slot.A, 0), "timestamp"),
        (DeviceStatus(0, EPOCH, 0, 0, Slot.A, 256), "firmware_version"),
        (AnomalyEvent(0, EPOCH, AnomalyKind.AFIB, Severity.INFO, 2**32, 0, 0.5), "start_offset_ms"),
        (BeatCounts(0, EPOCH + 2**32, 60, 0, 0, 0, 0, 0), "timestamp"),
        (SeedEvent(0, EPOCH, 256, 0, Stage.DORMANT, Stage.GERMINATED, ReasonCode.OTHER), "site"),
        (GateEvent(0, EPOCH, 0, 0, Gate.G0, True, ReasonCode.OTHER, 1e39), "metric"),
        (SignalQuality(0, EPOCH, 400.0, 0, 0, False, 0.0), "noise_db"),
    ],
)
def test_values_the_wire_cannot_carry_are_refused_naming_the_field(record: Record, field: str) -> None:
    with pytest.raises(FrameError, match=f"{type(record).__name__}.{field}="):
        codec.encode(record)


# --- corruption ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", EXTREMES, ids=lambda r: type(r).__name__)
def test_every_single_bit_flip_is_rejected(record: Record) -> None:
    frame = codec.encode(record)
    for bit in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FrameError):
            codec.decode(bytes(bad))


@settings(max_examples=200, deadline=None)
@given(any_record, st.data())
def test_random_bit_flips_are_rejected(record: Record, data: st.DataObject) -> None:
    frame = codec.encode(record)
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    bad = bytearray(frame)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError):
        codec.decode(bytes(bad))


@pytest.mark.parametrize("record", EXTREMES, ids=lambda r: type(r).__name__)
def test_truncated_and_padded_frames_are_rejected(record: Record) -> None:
    frame = codec.encode(record)
    for cut in range(len(frame)):
        with pytest.raises(FrameError, match="empty frame|truncated"):
            codec.decode(frame[:cut])
    with pytest.raises(FrameError, match="too long"):
        codec.decode(frame + b"\x00")


def _with_header(frame: bytes, header: int) -> bytes:
    """A frame with a different header byte but a CRC that matches it (so only the header is wrong)."""
    body = bytes([header]) + frame[1:-2]
    return body + codec.crc16(body).to_bytes(2, "big")


def test_unknown_version_and_kind_are_named() -> None:
    frame = codec.encode(EXTREMES[2])
    with pytest.raises(FrameError, match="unknown frame version 2 \\(this decoder reads version 1\\)"):
        codec.decode(_with_header(frame, 0x21))
    with pytest.raises(FrameError, match="unknown frame kind 15"):
        codec.decode(_with_header(frame, 0x1F))
    with pytest.raises(FrameError, match="CRC mismatch"):
        codec.decode(frame[:-1] + bytes([frame[-1] ^ 0xFF]))


def test_valid_crc_around_an_impossible_value_is_still_refused() -> None:
    """A frame can pass its CRC yet carry a value no record allows (a buggy or hostile sender)."""
    frame = bytearray(codec.encode(DeviceStatus(0, EPOCH, 100, 0, Slot.A, 0)))
    payload = int.from_bytes(frame[1:-1], "big")
    payload |= 0x7F << (88 - 8 - 8 - 8 - 24 - 7)  # battery bits all ones: 127 %
    body = bytes(frame[:1]) + payload.to_bytes(9, "big")
    with pytest.raises(FrameError, match="battery_pct=127: must be 0..100"):
        codec.decode(body + bytes([codec.crc8(body)]))


def test_crc_check_values() -> None:
    # the catalogue check values of CRC-8/SMBUS and CRC-16/CCITT-FALSE
    assert codec.crc8(b"123456789") == 0xF4
    assert codec.crc16(b"123456789") == 0x29B1


def test_frame_errors_are_user_errors() -> None:
    with pytest.raises(KasminaError):
        codec.decode(b"")
    with pytest.raises(FrameError, match="not a telemetry record: dict"):
        codec.encode({"seq": 1})  # type: ignore[arg-type]


# --- records -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DeviceStatus(0, EPOCH, 101, 0, Slot.A, 0), "DeviceStatus.battery_pct=101: must be 0..100"),
        (lambda: DeviceStatus(256, EPOCH, 1, 0, Slot.A, 0), "DeviceStatus.seq=256: must be 0..255"),
        (lambda: DeviceStatus(0, EPOCH, 1, 0, 1, 0), "active_slot=1: must be Slot"),
        (
            lambda: AnomalyEvent(0, EPOCH, AnomalyKind.AFIB, Severity.INFO, 0, 0, 1.5),
            "confidence=1.5: must be 0..1",
        ),
        (
            lambda: AnomalyEvent(0, EPOCH, AnomalyKind.AFIB, Severity.INFO, 0, 0, math.nan),
            "confidence=nan: must be finite",
        ),
        (lambda: BeatCounts(0, EPOCH, 60, -1, 0, 0, 0, 0), "BeatCounts.n=-1: must be >= 0"),
        (lambda: SignalQuality(0, EPOCH, 0.0, 0.0, 0.0, False, 1.1), "qrs_correlation=1.1: must be -1..1"),
        (lambda: GateEvent(0, EPOCH, 0, 0, Gate.G0, 1, ReasonCode.OTHER, 0.0), "passed=1: must be bool"),
        (lambda: LinkStats(0, EPOCH, True, 0.0, 0, 0.5, 0), "rssi_dbm=True: must not be a bool"),
    ],
)
def test_records_refuse_out_of_range_fields(build: Any, message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        build()


def test_reason_codes_fit_a_byte_and_have_text_names() -> None:
    codes = list(ReasonCode)
    assert all(0 <= c < 256 for c in codes)
    assert len({c.text for c in codes}) == len(codes)
    assert ReasonCode.from_text("condition_cleared") is ReasonCode.CONDITION_CLEARED
    assert ReasonCode.from_text("HEALTH_NAN") is ReasonCode.HEALTH_NAN
    assert ReasonCode.from_text("something new") is ReasonCode.OTHER


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # the runtime's health fault codes, each its own byte (a fault's embargo is long)
        ("health_nan", ReasonCode.HEALTH_NAN),
        ("health_latency", ReasonCode.HEALTH_LATENCY),
        ("health_confidence", ReasonCode.HEALTH_CONFIDENCE),
        ("health_drift", ReasonCode.HEALTH_DRIFT),
        ("condition_cleared", ReasonCode.CONDITION_CLEARED),
        ("gate_failed", ReasonCode.GATE_FAILED),
        ("admin", ReasonCode.ADMINISTRATIVE),
        ("superseded", ReasonCode.SUPERSEDED),
        # forgiving about case, spaces, hyphens and a trailing detail
        ("embargo expired", ReasonCode.EMBARGO_EXPIRED),
        ("Condition-Cleared", ReasonCode.CONDITION_CLEARED),
        ("health_nan: output NaN at site 1", ReasonCode.HEALTH_NAN),
        ("gate_failed (G2)", ReasonCode.GATE_FAILED),
        ("", ReasonCode.OTHER),
        ("trained on the host", ReasonCode.OTHER),
        ("health", ReasonCode.OTHER),
    ],
)
def test_reason_text_maps_to_its_code(text: str, code: ReasonCode) -> None:
    assert ReasonCode.from_text(text) is code


def test_reason_codes_are_never_renumbered() -> None:
    """Devices in the field send these bytes: the first codes keep their numbers forever."""
    pinned = {"OTHER": 0, "GATE_FAILED": 2, "CONDITION_CLEARED": 4, "HEALTH_NAN": 5, "HEALTH_DRIFT": 7}
    assert {name: ReasonCode[name].value for name in pinned} == pinned
    assert [c.value for c in ReasonCode] == list(range(len(ReasonCode)))


@pytest.mark.parametrize("frame", ["00ff", None, 5, [1, 2, 3]])
def test_decode_refuses_what_is_not_bytes(frame: Any) -> None:
    with pytest.raises(FrameError, match="a frame is bytes"):
        codec.decode(frame)


def test_decode_takes_bytearray_and_memoryview() -> None:
    rec = BeatCounts(0, EPOCH, 60, 70, 2, 3, 0, 1)
    frame = codec.encode(rec)
    assert codec.decode(bytearray(frame)) == codec.decode(memoryview(frame)) == rec


def test_deeply_nested_json_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="not valid JSON"):
        codec.from_json("[" * 100_000 + "]" * 100_000)


def test_seed_event_from_a_lifecycle_transition() -> None:
    event = TransitionEvent("s1", Stage.PROBATIONARY, Stage.CULLED, "health_latency", 12.0)
    rec = SeedEvent.from_transition(event, seq=4, timestamp=EPOCH + 60, site=2, kernel_id=9)
    assert (rec.src, rec.dst, rec.reason) == (Stage.PROBATIONARY, Stage.CULLED, ReasonCode.HEALTH_LATENCY)
    assert codec.decode(codec.encode(rec)) == rec


def test_sequence_counter_wraps_at_the_modulus() -> None:
    counter = SequenceCounter(start=SEQ_MODULUS - 2)
    assert [counter.next() for _ in range(4)] == [SEQ_MODULUS - 2, SEQ_MODULUS - 1, 0, 1]


def test_beat_counts_helpers() -> None:
    rec = BeatCounts(0, EPOCH, 60, 70, 2, 3, 0, 1)
    assert rec.as_dict() == {"N": 70, "S": 2, "V": 3, "F": 0, "Q": 1} and rec.total == 76
