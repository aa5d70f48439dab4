"""Cloud side of the telemetry path: decode, check, deduplicate, reorder, account and store.

:class:`Monitor` takes MQTT messages (topic, payload) and never raises on what a device or the network sent: a
bad envelope, a packet of an unknown version, a frame whose CRC fails, a record whose topic names another
device are counted and logged (``bad`` lines in the store). Records are deduplicated by (device, sequence
number) and released in sequence order; a gap holds later records back until it fills, the device reports the
missing numbers as dropped, or ``reorder_timeout_s`` of simulated time passes (then they are released and the
gap is counted; a record that fills it later is released as ``late``).

The monitor answers with acks (:class:`~kasmina_edge.net.packet.Ack`) through ``send_ack``: after every packet
on broadband links, and on LoRaWAN only when the device asks or a new gap opens (downlinks are scarce there).
Per device it keeps link statistics: uplinks and their loss (frame counter gaps), airtime over the last hour and
the duty cycle left, link and end-to-end latency, bad frames, duplicates, seed stages, battery.

The JSON-lines store appends one line per released record, bad frame, status, command or update report; a
monitor started on an existing store reads it back first, so a restarted monitor neither asks for nor stores a
record twice. A store given as a database URL (``sqlite:///FILE``, ``postgresql://...``) is a
:class:`~kasmina_edge.net.store.SqlStore` instead: the same objects, written to tables (imported only then).
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.errors import FrameError, KasminaError
from kasmina_edge.contracts.telemetry import (
    SEQ_MODULUS,
    BeatCounts,
    DeviceStatus,
    LinkStats,
    Record,
    SeedEvent,
)
from kasmina_edge.core import catalog
from kasmina_edge.core.profiles import LoRaProfile
from kasmina_edge.net import topics
from kasmina_edge.net.packet import Ack, SeqUnwrapper, Uplink, decode_packet, nearest, packet_from_json

HOUR_S = 3600.0
REORDER_TIMEOUT_LORA_S = 6 * HOUR_S
REORDER_TIMEOUT_IP_S = 120.0
FRESH_DEVICE_SEQ = 4096  # a device first heard below this sequence number is expected from 0


@dataclass
class StoredRecord:
    device: str
    fseq: int
    record: Record
    sent_at: float
    arrival_at: float
    link: str
    late: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "fseq": self.fseq,
            "kind": codec.kind_name(self.record),
            "record": codec.to_dict(self.record),
            "sent_at": round(self.sent_at, 4),
            "arrival_at": round(self.arrival_at, 4),
            "link": self.link,
            **({"late": True} if self.late else {}),
        }


@dataclass
class DeviceView:
    """What the monitor knows of one device."""

    fleet: str
    device: str
    link: str = "?"
    unwrap: SeqUnwrapper = field(default_factory=SeqUnwrapper)
    cum: int | None = None  # every record below has arrived or was dropped
    have: set[int] = field(default_factory=set)  # arrived or dropped, >= cum
    high: int = -1
    next_release: int | None = None
    buffer: list[tuple[int, float]] = field(default_factory=list)  # heap of (fseq, waiting since)
    pending: dict[int, StoredRecord] = field(default_factory=dict)
    released: set[int] = field(default_factory=set)  # below next_release but released out of order (late)
    dropped: set[int] = field(default_factory=set)
    # counters
    uplinks: int = 0
    records: int = 0
    duplicates: int = 0
    bad_frames: int = 0
    gaps_released: int = 0
    late: int = 0
    fcnt_min: int | None = None
    fcnt_max: int = 0
    fcnt_seen: int = 0
    airtime_s: float = 0.0
    airtime_window: deque[tuple[float, float]] = field(default_factory=deque)
    link_latency_s: list[float] = field(default_factory=list)
    e2e_latency_s: list[float] = field(default_factory=list)
    last_arrival: float = 0.0
    status: str = "unknown"
    battery_pct: int | None = None
    firmware_version: int | None = None
    stages: dict[str, str] = field(default_factory=dict)  # "site/kernel" -> stage
    beats: dict[str, int] = field(default_factory=dict)
    reported_duty_left: float | None = None
    last_commands: list[dict[str, Any]] = field(default_factory=list)
    last_ota: dict[str, Any] | None = None

    @property
    def uplinks_lost(self) -> int:
        if self.fcnt_min is None:
            return 0
        return max(0, self.fcnt_max - self.fcnt_min + 1 - self.fcnt_seen)

    @property
    def uplink_loss(self) -> float:
        total = self.fcnt_seen + self.uplinks_lost
        return self.uplinks_lost / total if total else 0.0

    def missing(self) -> list[int]:
        if self.cum is None:
            return []
        return [s for s in range(self.cum, self.high + 1) if s not in self.have]

    def airtime_last_hour(self, now: float) -> float:
        while self.airtime_window and self.airtime_window[0][0] <= now - HOUR_S:
            self.airtime_window.popleft()
        return sum(a for _, a in self.airtime_window)

    def duty_cycle_left(self, now: float) -> float | None:
        try:
            profile = catalog.network(self.link)
        except KasminaError:
            return None
        if not isinstance(profile, LoRaProfile) or profile.duty_cycle is None:
            return None
        return max(0.0, 1.0 - self.airtime_last_hour(now) / (profile.duty_cycle * HOUR_S))

    def summary(self, now: float | None = None) -> dict[str, Any]:
        now = self.last_arrival if now is None else now
        lat = sorted(self.link_latency_s)
        e2e = sorted(self.e2e_latency_s)
        return {
            "fleet": self.fleet,
            "device": self.device,
            "link": self.link,
            "status": self.status,
            "records": self.records,
            "next_expected": self.cum,
            "missing": len(self.missing()),
            "dropped_by_device": len(self.dropped),
            "duplicates": self.duplicates,
            "bad_frames": self.bad_frames,
            "late": self.late,
            "uplinks": self.uplinks,
            "uplink_loss": round(self.uplink_loss, 4),
            "airtime_s": round(self.airtime_s, 3),
            "airtime_last_hour_s": round(self.airtime_last_hour(now), 3),
            "duty_cycle_left": self.duty_cycle_left(now),
            "link_latency_median_s": _quantile(lat, 0.5),
            "link_latency_p99_s": _quantile(lat, 0.99),
            "e2e_latency_median_s": _quantile(e2e, 0.5),
            "battery_pct": self.battery_pct,
            "stages": dict(self.stages),
            "beats": dict(self.beats),
        }


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[i], 4)


@dataclass
class MonitorStats:
    messages: int = 0
    records: int = 0
    duplicates: int = 0
    bad_messages: int = 0
    bad_frames: int = 0
    acks_sent: int = 0
    bad_reasons: dict[str, int] = field(default_factory=dict)


class JsonlStore:
    """Append-only JSON lines; buffered, flushed every ``flush_every`` lines and on close."""

    def __init__(self, path: Path | None, *, flush_every: int = 64) -> None:
        self.path = path
        self.flush_every = flush_every
        self._f: IO[str] | None = None
        self._unflushed = 0
        self.lines = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, obj: dict[str, Any]) -> None:
        self.lines += 1
        if self._f is None:
            return
        self._f.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._unflushed += 1
        if self._unflushed >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()
            self._unflushed = 0

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_store(path: Path) -> Iterator[dict[str, Any]]:
    """The store's lines; a last line cut off by a crash is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


class TelemetryStore(Protocol):
    """Where the monitor writes: :class:`JsonlStore`, or :class:`kasmina_edge.net.store.SqlStore`."""

    lines: int

    def write(self, obj: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


AckSender = Callable[[str, str, Ack, str], None]  # fleet, device, ack, encoding ("lora" | "json")


class Monitor:
    def __init__(
        self,
        store: Path | str | None = None,
        *,
        send_ack: AckSender | None = None,
        on_record: Callable[[StoredRecord], None] | None = None,
        reorder_timeout_s: float | None = None,
        log_bad: Callable[[str], None] | None = None,
        flush_every: int = 64,
    ) -> None:
        self.devices: dict[str, DeviceView] = {}
        self.stats = MonitorStats()
        self.send_ack = send_ack
        self.on_record = on_record
        self.reorder_timeout_s = reorder_timeout_s
        self.log_bad = log_bad
        self.store: TelemetryStore
        self.store_url = store if isinstance(store, str) and "://" in store else None
        if self.store_url is not None:  # a database: the server extra, imported only when asked for
            from kasmina_edge.net.store import open_store

            sql = open_store(self.store_url)
            self.store_path: Path | None = None
            self._resume_rows(sql.resume_rows())
            self.store = sql
            return
        self.store_path = Path(store) if store is not None else None
        if self.store_path is not None:
            self._resume(self.store_path)
        self.store = JsonlStore(self.store_path, flush_every=flush_every)

    # ------------------------------------------------------------------ resume

    def _resume(self, path: Path) -> None:
        self._resume_rows(read_store(path))

    def _resume_rows(self, rows: Iterator[dict[str, Any]]) -> None:
        for obj in rows:
            device, fseq = obj.get("device"), obj.get("fseq")
            if not isinstance(device, str) or not isinstance(fseq, int):
                continue
            view = self.devices.get(device) or self._view(obj.get("fleet", topics.DEFAULT_FLEET), device)
            view.link = obj.get("link", view.link)
            view.have.add(fseq)
            view.released.add(fseq)
            view.high = max(view.high, fseq)
            view.unwrap.high = max(view.unwrap.high or 0, fseq)
        for view in self.devices.values():
            if view.have:
                view.cum = min(view.have)
                self._advance_cum(view)
                view.next_release = view.cum
                view.released = {s for s in view.released if s >= view.cum}

    def _view(self, fleet: str, device: str) -> DeviceView:
        view = self.devices.get(device)
        if view is None:
            view = self.devices[device] = DeviceView(fleet, device)
        return view

    # ------------------------------------------------------------------ ingest

    def _bad(self, reason: str, *, device: str | None = None, topic: str | None = None) -> None:
        self.stats.bad_messages += 1
        key = reason.split(":")[0][:60]
        self.stats.bad_reasons[key] = self.stats.bad_reasons.get(key, 0) + 1
        self.store.write({"bad": reason, "device": device, "topic": topic, "at": time.time()})
        if self.log_bad is not None:
            self.log_bad(f"{device or '?'}: {reason}")

    def ingest(self, topic: str, payload: bytes) -> list[StoredRecord]:
        """One MQTT message; returns the records it released (in sequence order per device)."""
        self.stats.messages += 1
        try:
            t = topics.parse(topic)
        except topics.TopicError as exc:
            self._bad(str(exc), topic=topic)
            return []
        if t.channel == "status":
            self._status(t, payload)
            return []
        if t.channel != "telemetry":
            return []  # our own acks, commands and offers echoed back
        if t.kind in ("cmd_ack", "ota_report", "ota_req", "strip", "drift"):
            self._report(t, payload)
            return []
        try:
            uplink = Uplink.from_bytes(payload)
        except FrameError as exc:
            self._bad(str(exc), device=t.device, topic=topic)
            return []
        if uplink.device != t.device:
            self._bad(
                f"envelope names device {uplink.device!r} on {t.device!r}'s topic",
                device=t.device,
                topic=topic,
            )
            return []
        return self._uplink(t.fleet, uplink)

    def _uplink(self, fleet: str, up: Uplink) -> list[StoredRecord]:
        view = self._view(fleet, up.device)
        view.link = up.link
        view.uplinks += 1
        view.fcnt_seen += 1
        view.fcnt_min = up.fcnt if view.fcnt_min is None else min(view.fcnt_min, up.fcnt)
        view.fcnt_max = max(view.fcnt_max, up.fcnt)
        view.airtime_s += up.airtime_s
        view.airtime_window.append((up.sent_at, up.airtime_s))
        view.link_latency_s.append(up.arrival_at - up.sent_at - up.airtime_s)
        view.last_arrival = max(view.last_arrival, up.arrival_at)
        entries: list[tuple[int, Record]] = []
        drops: list[tuple[int, int]] = []
        ack_request = False
        bad: list[str] = []
        try:
            if isinstance(up.payload, dict):
                packet, bad = packet_from_json(up.payload)
                entries = [(r.fseq, r.record) for r in packet.records]
                drops = [(d.start, d.count) for d in packet.drops]
                ack_request = packet.ack_request
            elif up.fport == 2:
                record = codec.decode(up.payload)
                ref = view.unwrap.high if view.unwrap.high is not None else record.seq
                entries = [(max(0, nearest(record.seq, SEQ_MODULUS, ref)), record)]
            else:
                decoded = decode_packet(up.payload)
                bad = decoded.bad_frames
                entries = [(view.unwrap.unwrap(s16), r) for s16, r in decoded.records]
                drops = [(view.unwrap.unwrap(d.start), d.count) for d in decoded.drops]
                ack_request = decoded.ack_request
        except FrameError as exc:
            self.stats.bad_frames += 1
            view.bad_frames += 1
            self._bad(str(exc), device=up.device)
            return []
        for reason in bad:
            self.stats.bad_frames += 1
            view.bad_frames += 1
            self._bad(reason, device=up.device)
        if view.cum is None and (entries or drops):
            first = min([f for f, _ in entries] + [d for d, _ in drops])
            # a device first heard early in its count is taken to have started at 0 (what came before was lost)
            view.cum = view.next_release = 0 if first < FRESH_DEVICE_SEQ else first
        gaps_before = len(view.missing())
        for fseq, record in entries:
            self._accept(view, fseq, record, up)
        for start, count in drops:
            for s in range(start, start + count):
                if view.cum is not None and s < view.cum:
                    continue
                if s not in view.have:
                    view.dropped.add(s)
                    view.have.add(s)
                    view.high = max(view.high, s)
        self._advance_cum(view)
        released = self._release(view, up.arrival_at)
        new_gap = len(view.missing()) > gaps_before
        if self.send_ack is not None and view.cum is not None:
            broadband = isinstance(up.payload, dict)
            if broadband or ack_request or new_gap:
                missing = tuple(view.missing())
                self.send_ack(
                    fleet,
                    up.device,
                    Ack(view.cum, max(view.high, view.cum - 1), missing),
                    "json" if broadband else "lora",
                )
                self.stats.acks_sent += 1
        return released

    def _accept(self, view: DeviceView, fseq: int, record: Record, up: Uplink) -> None:
        if view.cum is None:
            view.cum = fseq
            view.next_release = fseq
        late_after_drop = fseq in view.dropped and fseq not in view.pending  # dropped, yet it came through
        if late_after_drop:
            view.dropped.discard(fseq)
        elif fseq < view.cum or fseq in view.have:
            view.duplicates += 1
            self.stats.duplicates += 1
            return
        view.have.add(fseq)
        view.high = max(view.high, fseq)
        view.unwrap.high = fseq if view.unwrap.high is None else max(view.unwrap.high, fseq)
        view.records += 1
        self.stats.records += 1
        if not isinstance(record, DeviceStatus):  # the heartbeat's time is to the minute only
            view.e2e_latency_s.append(up.epoch_unix + up.arrival_at - record.timestamp)
        stored = StoredRecord(up.device, fseq, record, up.sent_at, up.arrival_at, up.link)
        view.pending[fseq] = stored
        heapq.heappush(view.buffer, (fseq, up.arrival_at))
        self._observe(view, record)

    def _advance_cum(self, view: DeviceView) -> None:
        if view.cum is None:
            return
        while view.cum in view.have:
            view.have.discard(view.cum)
            view.cum += 1

    def _release(self, view: DeviceView, now: float) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        if view.next_release is None:  # nothing heard from this device yet (an uplink that held no record)
            return out
        timeout = self.reorder_timeout_s
        if timeout is None:
            timeout = REORDER_TIMEOUT_IP_S if not view.link.startswith("lorawan") else REORDER_TIMEOUT_LORA_S
        while view.buffer:
            fseq, since = view.buffer[0]
            if fseq < view.next_release:  # filled a gap that was released past
                heapq.heappop(view.buffer)
                rec = view.pending.pop(fseq)
                rec.late = True
                view.late += 1
                out.append(rec)
                continue
            gap_free = all(s in view.dropped or s in view.released for s in range(view.next_release, fseq))
            if not gap_free and now - since < timeout:
                break
            if not gap_free:
                view.gaps_released += 1
            heapq.heappop(view.buffer)
            out.append(view.pending.pop(fseq))
            view.next_release = fseq + 1
        for rec in out:
            self.store.write({"fleet": view.fleet, **rec.to_json()})
            if self.on_record is not None:
                self.on_record(rec)
        return out

    def _observe(self, view: DeviceView, record: Record) -> None:
        if isinstance(record, DeviceStatus):
            view.battery_pct = record.battery_pct
            view.firmware_version = record.firmware_version
        elif isinstance(record, BeatCounts):
            for k, v in record.as_dict().items():
                view.beats[k] = view.beats.get(k, 0) + v
        elif isinstance(record, SeedEvent):
            view.stages[f"{record.site}/{record.kernel_id}"] = record.dst.name
        elif isinstance(record, LinkStats):
            view.reported_duty_left = record.duty_cycle_left

    # ------------------------------------------------------------------ status and reports

    def _status(self, t: topics.Topic, payload: bytes) -> None:
        view = self._view(t.fleet, t.device)
        try:
            body = json.loads(payload) if payload else {"state": "cleared"}
            state = body.get("state", "?") if isinstance(body, dict) else str(body)
        except ValueError:
            state = payload.decode("utf-8", "replace")[:20]
        view.status = str(state)
        self.store.write({"fleet": t.fleet, "device": t.device, "status": view.status, "at": time.time()})

    def _report(self, t: topics.Topic, payload: bytes) -> None:
        view = self._view(t.fleet, t.device)
        try:
            body = json.loads(payload)
        except ValueError:
            self._bad(f"{t.kind} is not JSON", device=t.device)
            return
        if not isinstance(body, dict):
            self._bad(f"{t.kind} is not an object", device=t.device)
            return
        if t.kind == "cmd_ack":
            view.last_commands = [*view.last_commands[-9:], body]
        elif t.kind == "ota_report":
            view.last_ota = body
        self.store.write({"fleet": t.fleet, "device": t.device, t.kind or "report": body, "at": time.time()})

    # ------------------------------------------------------------------ end

    def flush(self) -> list[StoredRecord]:
        """Release everything still held back (end of a run)."""
        out: list[StoredRecord] = []
        for view in self.devices.values():
            if view.next_release is not None:
                out += self._release(view, math.inf)
        self.store.flush()
        return out

    def close(self) -> None:
        self.flush()
        self.store.close()

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.stats.messages,
            "records": self.stats.records,
            "duplicates": self.stats.duplicates,
            "bad_messages": self.stats.bad_messages,
            "bad_frames": self.stats.bad_frames,
            "acks_sent": self.stats.acks_sent,
            "bad_reasons": dict(self.stats.bad_reasons),
            "devices": {name: view.summary() for name, view in sorted(self.devices.items())},
        }
