"""What one uplink carries (records packed into a frame that fits the data rate) and what the cloud answers (acks).

Binary uplink packet (LoRaWAN; every field big-endian)::

    byte 0     version (3 bits) | flags (5 bits): 0x01 ack requested, 0x02 drop report follows
    byte 1     epoch: bits 8..15 of the first record's 16-bit sequence number
    [drop report: 1 byte n, then n x (start 16 bits, count 8 bits)]   records the device dropped, on purpose
    frames     contracts codec frames back to back (each frame's kind nibble gives its length)

A record's wire ``seq`` is one byte (contracts); the device counts on without end and the packet's epoch byte
extends the first record's number to 16 bits. Every other record in a packet lies within 127 of the first (the
packer makes sure), so it takes the 16-bit value nearest to the first's. The cloud extends 16 bits to an endless
count the same way (:class:`SeqUnwrapper`, nearest to the highest seen). Two bytes of header buy exact
deduplication and gap detection across any outage shorter than 32,768 records.

Downlink ack (binary, LoRaWAN)::

    byte 0     version (3 bits) | type (5 bits): 1 = ack
    bytes 1-2  cum: every record below it arrived (or was reported dropped)
    bytes 3-4  high: the highest record seen
    byte 5     n, then n x 16-bit missing sequence numbers in [cum, high]

Broadband links carry the same content as JSON (:func:`packet_to_json`, :class:`Ack.to_json`) with the endless
sequence numbers written out.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.errors import FrameError
from kasmina_edge.contracts.telemetry import SEQ_MODULUS, Record

PACKET_VERSION = 1
FLAG_ACK_REQ = 0x01
FLAG_DROPS = 0x02
HEADER_BYTES = 2
SEQ16 = 1 << 16
MAX_SPREAD = SEQ_MODULUS // 2 - 1  # records of one packet lie within this of the first one
ACK_TYPE = 1
MAX_ACK_MISSING = 16  # 6 + 16 x 2 = 38 B: fits a LoRaWAN DR0 downlink (51 B)
_SIZE_BY_KIND = {layout.kind: layout.size for layout in codec.LAYOUTS}


@dataclass(frozen=True)
class SeqRecord:
    """A record with the device's endless sequence number (the record's own ``seq`` is its low byte)."""

    fseq: int
    record: Record


@dataclass(frozen=True)
class DropRange:
    """``count`` consecutive records from ``start`` the device dropped on purpose (its queue was full)."""

    start: int
    count: int


@dataclass(frozen=True)
class Packet:
    records: tuple[SeqRecord, ...]
    drops: tuple[DropRange, ...] = ()
    ack_request: bool = False


def frame_bytes(record: Record) -> int:
    return codec.FRAME_SIZES[type(record)]


def with_seq(record: Record, fseq: int) -> Record:
    """The record carrying the low byte of ``fseq`` as its wire sequence number."""
    return replace(record, seq=fseq % SEQ_MODULUS)


def nearest(low_bits: int, modulus: int, reference: int) -> int:
    """The integer congruent to ``low_bits`` modulo ``modulus`` nearest to ``reference``."""
    base = reference - reference % modulus + low_bits
    candidates = (base - modulus, base, base + modulus)
    return min(candidates, key=lambda c: (abs(c - reference), c))


def packet_header_bytes(drops: int = 0) -> int:
    return HEADER_BYTES + (1 + 3 * drops if drops else 0)


# --------------------------------------------------------------------------------------------- binary packet


def encode_packet(packet: Packet) -> bytes:
    if packet.records:
        first = packet.records[0].fseq
        for r in packet.records[1:]:
            if abs(r.fseq - first) > MAX_SPREAD:
                raise FrameError(f"records {first} and {r.fseq} are too far apart for one packet")
    else:
        first = 0
    flags = (FLAG_ACK_REQ if packet.ack_request else 0) | (FLAG_DROPS if packet.drops else 0)
    out = bytearray([PACKET_VERSION << 5 | flags, (first % SEQ16) >> 8])
    if packet.drops:
        if len(packet.drops) > 255:
            raise FrameError("at most 255 drop ranges per packet")
        out.append(len(packet.drops))
        for d in packet.drops:
            if not 1 <= d.count <= 255:
                raise FrameError(f"drop range count {d.count} must be 1..255")
            out += struct.pack(">HB", d.start % SEQ16, d.count)
    for r in packet.records:
        out += codec.encode(with_seq(r.record, r.fseq))
    return bytes(out)


@dataclass
class DecodedPacket:
    """A packet as the cloud reads it: 16-bit sequence numbers, and the frames that failed to decode."""

    records: list[tuple[int, Record]] = field(default_factory=list)  # (seq16, record)
    drops: list[DropRange] = field(default_factory=list)  # start is 16-bit
    ack_request: bool = False
    bad_frames: list[str] = field(default_factory=list)


def decode_packet(data: bytes) -> DecodedPacket:
    """Read a binary packet; a frame with a bad CRC is reported and skipped (its length is known from its
    kind), an unknown kind or version ends the packet. Raises :class:`FrameError` only for a bad header."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FrameError(f"a packet is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise FrameError(f"packet of {len(data)} bytes is shorter than its {HEADER_BYTES}-byte header")
    version, flags = data[0] >> 5, data[0] & 0x1F
    if version != PACKET_VERSION:
        raise FrameError(f"unknown packet version {version} (this decoder reads {PACKET_VERSION})")
    out = DecodedPacket(ack_request=bool(flags & FLAG_ACK_REQ))
    epoch = data[1]
    pos = HEADER_BYTES
    if flags & FLAG_DROPS:
        if pos >= len(data):
            raise FrameError("packet announces a drop report but ends")
        n = data[pos]
        pos += 1
        if pos + 3 * n > len(data):
            raise FrameError(f"drop report of {n} ranges is truncated")
        for _ in range(n):
            start, count = struct.unpack_from(">HB", data, pos)
            out.drops.append(DropRange(start, count))
            pos += 3
    first: int | None = None
    while pos < len(data):
        kind = data[pos] & 0x0F
        size = _SIZE_BY_KIND.get(kind)
        if data[pos] >> 4 != codec.VERSION or size is None:
            out.bad_frames.append(
                f"byte {pos}: unknown frame version/kind 0x{data[pos]:02x}; rest of packet skipped"
            )
            break
        frame = data[pos : pos + size]
        pos += size
        try:
            record = codec.decode(frame)
        except FrameError as exc:
            out.bad_frames.append(str(exc))
            continue
        if first is None:
            first = epoch << 8 | record.seq
            seq16 = first
        else:
            seq16 = nearest(record.seq, SEQ_MODULUS, first) % SEQ16
        out.records.append((seq16, record))
    return out


# --------------------------------------------------------------------------------------------- JSON packet


def packet_to_json(packet: Packet) -> dict[str, Any]:
    return {
        "v": PACKET_VERSION,
        "ack_req": packet.ack_request,
        "drops": [[d.start, d.count] for d in packet.drops],
        "records": [{"fseq": r.fseq, **codec.to_dict(with_seq(r.record, r.fseq))} for r in packet.records],
    }


def json_packet_bytes(packet: Packet) -> int:
    return len(json.dumps(packet_to_json(packet), separators=(",", ":")))


def packet_from_json(data: Any) -> tuple[Packet, list[str]]:
    """A JSON packet and the records in it that failed to decode (endless sequence numbers)."""
    if not isinstance(data, dict) or data.get("v") != PACKET_VERSION:
        raise FrameError(f"JSON packet must be an object with v={PACKET_VERSION}")
    raw_records, raw_drops = data.get("records"), data.get("drops", [])
    if not isinstance(raw_records, list) or not isinstance(raw_drops, list):
        raise FrameError("JSON packet: records and drops must be lists")
    bad: list[str] = []
    records: list[SeqRecord] = []
    for item in raw_records:
        if not isinstance(item, dict):
            bad.append("record is not an object")
            continue
        fseq = item.get("fseq")
        if isinstance(fseq, bool) or not isinstance(fseq, int) or fseq < 0:
            bad.append(f"record without a valid fseq: {fseq!r}")
            continue
        body = {k: v for k, v in item.items() if k != "fseq"}
        try:
            record = codec.from_dict(body)
        except FrameError as exc:
            bad.append(str(exc))
            continue
        if record.seq != fseq % SEQ_MODULUS:
            bad.append(f"record seq {record.seq} does not match fseq {fseq}")
            continue
        records.append(SeqRecord(fseq, record))
    drops: list[DropRange] = []
    for d in raw_drops:
        if (
            not isinstance(d, list)
            or len(d) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in d)
        ):
            raise FrameError(f"JSON packet: bad drop range {d!r}")
        drops.append(DropRange(d[0], d[1]))
    return Packet(tuple(records), tuple(drops), bool(data.get("ack_req"))), bad


# --------------------------------------------------------------------------------------------- acks


@dataclass(frozen=True)
class Ack:
    """The cloud's view of one device's stream: all below ``cum`` done, ``missing`` lost in [cum, high]."""

    cum: int
    high: int
    missing: tuple[int, ...] = ()

    def encode(self) -> bytes:
        missing = self.missing[:MAX_ACK_MISSING]
        out = bytearray([PACKET_VERSION << 5 | ACK_TYPE])
        out += struct.pack(">HHB", self.cum % SEQ16, self.high % SEQ16, len(missing))
        for m in missing:
            out += struct.pack(">H", m % SEQ16)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, reference: int) -> Ack:
        """A binary ack; 16-bit numbers extended nearest to ``reference`` (the device's next sequence number)."""
        if len(data) < 6 or data[0] >> 5 != PACKET_VERSION or data[0] & 0x1F != ACK_TYPE:
            raise FrameError("not an ack downlink")
        cum16, high16, n = struct.unpack_from(">HHB", data, 1)
        if len(data) != 6 + 2 * n:
            raise FrameError(f"ack with {n} missing numbers has {len(data)} bytes")
        missing = struct.unpack_from(f">{n}H", data, 6) if n else ()
        return cls(
            nearest(cum16, SEQ16, reference),
            nearest(high16, SEQ16, reference),
            tuple(nearest(m, SEQ16, reference) for m in missing),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PACKET_VERSION,
            "type": "ack",
            "cum": self.cum,
            "high": self.high,
            "missing": list(self.missing),
        }

    @classmethod
    def from_json(cls, data: Any) -> Ack:
        if not isinstance(data, dict) or data.get("type") != "ack" or data.get("v") != PACKET_VERSION:
            raise FrameError("not a JSON ack")
        try:
            return cls(int(data["cum"]), int(data["high"]), tuple(int(m) for m in data.get("missing", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise FrameError(f"bad JSON ack: {exc}") from None


class SeqUnwrapper:
    """Extends a device's 16-bit sequence numbers to an endless count, nearest to the highest seen so far."""

    def __init__(self) -> None:
        self.high: int | None = None

    def unwrap(self, seq16: int) -> int:
        if self.high is None:
            value = seq16
        else:
            value = nearest(seq16, SEQ16, self.high)
            if value < 0:
                value += SEQ16
        self.high = value if self.high is None else max(self.high, value)
        return value


# --------------------------------------------------------------------------------------------- MQTT envelope


@dataclass(frozen=True)
class Uplink:
    """What the network side publishes for one uplink that arrived: the payload plus the link's metadata.

    LoRaWAN payloads are the binary packet (base64 in JSON, like a network server's integration); broadband
    links carry the JSON packet itself. Times are simulated seconds since the run started.
    """

    device: str
    link: str
    fcnt: int
    sent_at: float
    arrival_at: float
    airtime_s: float
    payload: bytes | dict[str, Any]
    epoch_unix: float = 0.0  # the simulated clock's zero in Unix seconds
    fport: int = (
        1  # LoRaWAN FPort: 1 packed packet, 2 one bare codec frame (a data rate too small for a header)
    )

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "v": PACKET_VERSION,
            "device": self.device,
            "link": self.link,
            "fcnt": self.fcnt,
            "sent_at": round(self.sent_at, 6),
            "arrival_at": round(self.arrival_at, 6),
            "airtime_s": round(self.airtime_s, 6),
            "epoch_unix": self.epoch_unix,
            "fport": self.fport,
        }
        if isinstance(self.payload, bytes):
            body["encoding"] = "lora"
            body["payload"] = base64.b64encode(self.payload).decode()
        else:
            body["encoding"] = "json"
            body["payload"] = self.payload
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Uplink:
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise FrameError(f"uplink envelope is not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("v") != PACKET_VERSION:
            raise FrameError(f"uplink envelope must be an object with v={PACKET_VERSION}")
        try:
            encoding = body["encoding"]
            raw = body["payload"]
            if encoding == "lora":
                payload: bytes | dict[str, Any] = base64.b64decode(raw, validate=True)
            elif encoding == "json" and isinstance(raw, dict):
                payload = raw
            else:
                raise FrameError(f"unknown uplink encoding {encoding!r}")
            return cls(
                device=str(body["device"]),
                link=str(body["link"]),
                fcnt=int(body["fcnt"]),
                sent_at=float(body["sent_at"]),
                arrival_at=float(body["arrival_at"]),
                airtime_s=float(body["airtime_s"]),
                payload=payload,
                epoch_unix=float(body.get("epoch_unix", 0.0)),
                fport=int(body.get("fport", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FrameError(f"uplink envelope: {exc}") from None
