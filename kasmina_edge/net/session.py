"""One device on one link: its uplink scheduler, the simulated medium, and the network's downlink queue.

:class:`DeviceLink` is the device side of the whole telemetry path in simulated time. ``tick(now)`` sends what
the scheduler wants to send, passes every uplink through the :class:`~kasmina_edge.net.link.Channel` (loss,
latency, faults) and hands the ones that arrive to a :class:`Transport` (an MQTT client, or an in-memory
monitor in tests and benchmarks) as :class:`~kasmina_edge.net.packet.Uplink` envelopes. Downlinks from the cloud
(acks, signed commands, OTA fragments) are queued with :meth:`DeviceLink.queue_downlink`: on LoRaWAN they reach
the device only in the receive window after one of its uplinks (Class A), on IP links after the channel's latency.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kasmina_edge.contracts.errors import FrameError, KasminaError
from kasmina_edge.core.airtime import time_on_air_s
from kasmina_edge.core.profiles import LoRaProfile, NetworkProfile
from kasmina_edge.net.link import Channel, ClassADownlinks
from kasmina_edge.net.packet import Ack, Uplink
from kasmina_edge.net.priority import Priority
from kasmina_edge.net.radio_budget import FairUseLedger, radio_budget
from kasmina_edge.net.uplink import RecordQueue, SentPacket, TelemetryPlan, UplinkScheduler

# Downlink kinds, each with a one-byte tag on LoRaWAN (ack, signed command, OTA) so one queue carries all three.
DOWNLINK_TAGS = {"ack": 0xA0, "cmd": 0xC0, "ota": 0xD0}
_TAG_KINDS = {v: k for k, v in DOWNLINK_TAGS.items()}


class Transport(Protocol):
    """Where uplinks that crossed the medium go (the network server's integration: MQTT, or a test's monitor)."""

    def publish_uplink(self, uplink: Uplink, kind: str, qos: int) -> None: ...

    def publish_report(self, device: str, kind: str, body: dict[str, Any], arrival_at: float) -> None: ...


@dataclass
class Control:
    """A device message that is not a telemetry record (command ack, update report, strip), sized for the air."""

    kind: str
    body: dict[str, Any]
    wire_bytes: int
    sent_parts: int = 0
    lost_parts: int = 0


@dataclass
class LinkLedger:
    """What the device spent and what became of it."""

    uplinks: int = 0
    delivered: int = 0
    lost: int = 0
    outage: int = 0
    airtime_s: float = 0.0
    downlinks_received: int = 0
    downlinks_lost: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # the airtime ledger (keep_log)


def _kind_of(sent: SentPacket) -> str:
    from kasmina_edge.contracts.codec import kind_name

    kinds = {kind_name(r.record) for r in sent.packet.records}
    return kinds.pop() if len(kinds) == 1 else "batch"


class DeviceLink:
    """A device's radio, the medium and the network side, driven in simulated seconds."""

    def __init__(
        self,
        device_id: str,
        profile: NetworkProfile,
        transport: Transport,
        *,
        queue: RecordQueue | None = None,
        plan: TelemetryPlan | None = None,
        channel: Channel | None = None,
        fair_use: bool = True,
        keep_log: bool = False,
        on_downlink: Callable[[str, bytes, float], None] | None = None,
        epoch_unix: float = 0.0,
    ) -> None:
        self.device_id = device_id
        self.profile = profile
        self.transport = transport
        self.queue = queue if queue is not None else RecordQueue()
        self.budget = radio_budget(profile, fair_use=fair_use, keep_log=keep_log)
        self.scheduler = UplinkScheduler(self.queue, self.budget, plan)
        self.queue.coalesce_seed_events = self.scheduler.plan.coalesce_seed_events
        self.channel = channel or Channel(profile)
        self.lora = isinstance(profile, LoRaProfile)
        self.network: ClassADownlinks | None = None
        if isinstance(profile, LoRaProfile):
            fair = (
                FairUseLedger(profile.fair_use.uplink_airtime_s_per_day, profile.fair_use.downlinks_per_day)
                if fair_use
                else None
            )
            self.network = ClassADownlinks(self.channel, fair_use=fair)
        self._ip_downlinks: list[tuple[float, int, str, bytes]] = []  # (arrival, order, kind, payload)
        self._order = itertools.count()
        self.on_downlink = on_downlink
        self.epoch_unix = epoch_unix
        self.ledger = LinkLedger()
        self.keep_log = keep_log
        self.now = 0.0
        self.controls: list[Control] = []
        self._mc_duty: Any = None
        self._mc_free = 0.0
        self.multicast_sent = 0
        self.controls_sent = 0
        self.controls_lost = 0

    # ------------------------------------------------------------------ uplink

    def tick(self, now: float) -> list[SentPacket]:
        """Everything the device sends at ``now`` (several packets only on broadband links)."""
        self.now = max(self.now, now)
        self._deliver_ip_downlinks(now)
        if self.controls and self._send_control(now) and self.lora:
            return []  # the uplink opportunity went to the control message
        sent: list[SentPacket] = []
        for _ in range(64):  # a broadband link may drain a backlog; LoRa sends at most one
            packet = self.scheduler.poll(now)
            if packet is None:
                break
            sent.append(packet)
            self._carry(packet)
            if self.lora:
                break
        return sent

    def _carry(self, sent: SentPacket) -> None:
        from kasmina_edge.net.radio_budget import Transmission

        tx = Transmission(sent.start, sent.airtime_s, sent.size_bytes)
        delivery = self.channel.uplink(tx)
        led = self.ledger
        led.uplinks += 1
        led.airtime_s += sent.airtime_s
        led.delivered += delivery.delivered
        led.lost += delivery.reason == "lost"
        led.outage += delivery.reason == "outage"
        if self.keep_log:
            led.log.append(
                {
                    "t": round(sent.start, 3),
                    "airtime_s": round(sent.airtime_s, 4),
                    "bytes": sent.size_bytes,
                    "records": len(sent.packet.records),
                    "priority": sent.priority.name.lower(),
                    "outcome": delivery.reason,
                }
            )
        if delivery.delivered:
            uplink = Uplink(
                device=self.device_id,
                link=self.profile.name,
                fcnt=sent.fcnt,
                sent_at=sent.start,
                arrival_at=delivery.arrival_at,
                airtime_s=sent.airtime_s,
                payload=sent.payload,
                epoch_unix=self.epoch_unix,
                fport=sent.fport,
            )
            qos = 1 if sent.priority >= Priority.EVENT else 0
            self.transport.publish_uplink(uplink, _kind_of(sent), qos)
        if self.network is not None:
            down = self.network.on_uplink(delivery)
            if down is not None:
                if down.delivery.delivered:
                    self._device_receives(down.payload, down.delivery.arrival_at)
                else:
                    self.ledger.downlinks_lost += 1

    # ------------------------------------------------------------------ control messages

    def send_control(self, kind: str, body: dict[str, Any], wire_bytes: int) -> None:
        """Queue a control message; it goes ahead of telemetry, split into link-sized parts if it must be."""
        self.controls.append(Control(kind, body, max(1, wire_bytes)))

    def _send_control(self, now: float) -> bool:
        """Send the next part of the first control message if the radio may; True if something went out."""
        from kasmina_edge.net.radio_budget import Transmission

        c = self.controls[0]
        limit = self.budget.max_payload_bytes
        parts = -(-c.wire_bytes // limit)
        size = min(limit, c.wire_bytes - c.sent_parts * limit)
        try:
            start = self.budget.earliest_tx(now, size)
        except KasminaError:
            self.controls.pop(0)
            return False
        if start > now + 1e-9:
            return False
        tx = self.budget.commit(now, size)
        delivery = self.channel.uplink(Transmission(tx.start, tx.airtime_s, size))
        self.ledger.uplinks += 1
        self.ledger.airtime_s += tx.airtime_s
        self.ledger.delivered += delivery.delivered
        c.sent_parts += 1
        c.lost_parts += not delivery.delivered
        if self.keep_log:
            self.ledger.log.append(
                {
                    "t": round(tx.start, 3),
                    "airtime_s": round(tx.airtime_s, 4),
                    "bytes": size,
                    "records": 0,
                    "priority": "control",
                    "outcome": delivery.reason,
                }
            )
        if c.sent_parts >= parts:
            self.controls.pop(0)
            if c.lost_parts == 0:  # a message with a lost part does not reassemble
                self.controls_sent += 1
                self.transport.publish_report(self.device_id, c.kind, c.body, delivery.arrival_at)
            else:
                self.controls_lost += 1
        if self.network is not None:
            down = self.network.on_uplink(delivery)
            if down is not None and down.delivery.delivered:
                self._device_receives(down.payload, down.delivery.arrival_at)
        return True

    # ------------------------------------------------------------------ downlink

    def queue_downlink(self, kind: str, payload: bytes, now: float | None = None) -> None:
        """A downlink from the cloud for this device (``kind``: ack, cmd, ota)."""
        if kind not in DOWNLINK_TAGS:
            raise FrameError(f"unknown downlink kind {kind!r}")
        at = self.now if now is None else now
        if self.network is not None and kind == "ota":
            self._multicast_enqueue(payload, at)
            return
        if self.network is not None:
            framed = bytes([DOWNLINK_TAGS[kind]]) + payload
            if kind == "ack":  # a newer ack supersedes one still waiting
                kept = [p for p in self.network.queue if p[:1] != bytes([DOWNLINK_TAGS["ack"]])]
                self.network.queue.clear()
                self.network.queue.extend(kept)
            self.network.enqueue(framed)
            return
        delivery = self.channel.downlink(at, len(payload))
        if delivery.delivered:
            heapq.heappush(self._ip_downlinks, (delivery.arrival_at, next(self._order), kind, payload))
        else:
            self.ledger.downlinks_lost += 1

    def _multicast_enqueue(self, payload: bytes, at: float) -> None:
        """LoRaWAN updates travel in a multicast (Class C) session: the gateway sends whenever its downlink
        duty cycle allows, the device listens continuously. The session set-up (TS005) is not modelled."""
        from kasmina_edge.net.radio_budget import DutyCycleLedger, Transmission

        profile = self.profile
        assert isinstance(profile, LoRaProfile)
        if self._mc_duty is None and profile.downlink_duty_cycle is not None:
            self._mc_duty = DutyCycleLedger(profile.downlink_duty_cycle)
        size = min(len(payload), profile.max_payload_bytes)
        airtime = time_on_air_s(profile, size)
        parts = -(-len(payload) // profile.max_payload_bytes)  # a signed offer spans several downlinks
        delivered = True
        for _ in range(parts):
            start = max(at, self._mc_free)
            if self._mc_duty is not None:
                start = self._mc_duty.earliest(start, airtime)
                self._mc_duty.record(Transmission(start, airtime, size))
            self._mc_free = start + airtime
            delivery = self.channel.downlink(start, size)
            delivered = delivered and delivery.delivered
        if delivered:
            heapq.heappush(self._ip_downlinks, (delivery.arrival_at, next(self._order), "ota", payload))
        else:
            self.ledger.downlinks_lost += 1
        self.multicast_sent += 1

    def _deliver_ip_downlinks(self, now: float) -> None:
        while self._ip_downlinks and self._ip_downlinks[0][0] <= now:
            at, _, kind, payload = heapq.heappop(self._ip_downlinks)
            self._dispatch(kind, payload, at)

    def _device_receives(self, framed: bytes, at: float) -> None:
        kind = _TAG_KINDS.get(framed[0]) if framed else None
        if kind is None:
            return
        self._dispatch(kind, framed[1:], at)

    def _dispatch(self, kind: str, payload: bytes, at: float) -> None:
        self.ledger.downlinks_received += 1
        if kind == "ack":
            try:
                ack = (
                    Ack.decode(payload, self.queue.next_seq)
                    if self.lora
                    else Ack.from_json(json.loads(payload))
                )
            except (FrameError, ValueError):
                return
            self.scheduler.on_ack(ack, at)
        if self.on_downlink is not None:
            self.on_downlink(kind, payload, at)

    def next_wakeup(self, now: float) -> float:
        t = self.scheduler.next_wakeup(now)
        if self._ip_downlinks:
            t = min(t, self._ip_downlinks[0][0])
        return t

    def pending_downlinks(self) -> int:
        return len(self.network.queue) if self.network is not None else len(self._ip_downlinks)


def encode_ack_for(profile: NetworkProfile, ack: Ack) -> bytes:
    """An ack as the link carries it: binary on LoRaWAN, JSON elsewhere."""
    if isinstance(profile, LoRaProfile):
        return ack.encode()
    return json.dumps(ack.to_json(), separators=(",", ":")).encode()
