"""An in-memory network between simulated devices and a :class:`~kasmina_edge.net.monitor.Monitor`.

What MQTT does in a deployment, without sockets: uplinks that crossed the medium reach the monitor at their
simulated arrival time (so reordering happens as on the real path), and the monitor's acks go back to the
device's downlink queue. ``broker_down`` windows lose every message that would have passed the broker then
(an MQTT broker restart). Used by the tests and ``tools/bench_net.py``; the device side is the same code that
runs against a real broker.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections.abc import Callable
from typing import Any

from kasmina_edge.net import topics
from kasmina_edge.net.monitor import Monitor
from kasmina_edge.net.packet import Ack, Uplink
from kasmina_edge.net.session import DeviceLink, encode_ack_for

# Cloud -> network server -> gateway queue: a small fixed delay (the downlink then waits for a receive window).
ACK_BACKHAUL_S = 0.2


class LoopbackNetwork:
    def __init__(self, monitor: Monitor | None = None, *, fleet: str = topics.DEFAULT_FLEET) -> None:
        self.fleet = fleet
        self.monitor = monitor or Monitor()
        self.monitor.send_ack = self._send_ack
        self.links: dict[str, DeviceLink] = {}
        self._inflight: list[tuple[float, int, str, bytes]] = []
        self._order = itertools.count()
        self.broker_down: list[tuple[float, float]] = []
        self.lost_at_broker = 0
        self.now = 0.0
        self.published = 0
        # cloud services that answer device reports (an OTA server answering ota_req): kind -> handler
        self.report_handlers: dict[str, Callable[[str, dict[str, Any], float], None]] = {}

    def attach(self, link: DeviceLink) -> None:
        self.links[link.device_id] = link

    def _down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.broker_down)

    # Transport protocol, shared by every attached link
    def publish_uplink(self, uplink: Uplink, kind: str, qos: int) -> None:
        self.published += 1
        topic = topics.telemetry(self.fleet, uplink.device, kind)
        heapq.heappush(self._inflight, (uplink.arrival_at, next(self._order), topic, uplink.to_bytes()))

    def publish_report(self, device: str, kind: str, body: dict[str, Any], arrival_at: float) -> None:
        data = json.dumps(body, separators=(",", ":"), default=str).encode()
        self.publish_raw(topics.telemetry(self.fleet, device, kind), data, arrival_at)

    def publish_raw(self, topic: str, payload: bytes, at: float) -> None:
        heapq.heappush(self._inflight, (at, next(self._order), topic, payload))

    def _send_ack(self, fleet: str, device: str, ack: Ack, encoding: str) -> None:
        link = self.links.get(device)
        if link is None or self._down(self.now):
            return
        link.queue_downlink("ack", encode_ack_for(link.profile, ack), now=self.now + ACK_BACKHAUL_S)

    def advance(self, now: float) -> int:
        """Deliver what arrives by ``now``; returns how many messages reached the monitor."""
        n = 0
        while self._inflight and self._inflight[0][0] <= now:
            at, _, topic, payload = heapq.heappop(self._inflight)
            self.now = at
            if self._down(at):
                self.lost_at_broker += 1
                continue
            self.monitor.ingest(topic, payload)
            n += 1
            parts = topic.split("/")
            handler = self.report_handlers.get(parts[-1]) if len(parts) == 5 else None
            if handler is not None:
                try:
                    body = json.loads(payload)
                except ValueError:
                    continue
                handler(parts[2], body, at)
        self.now = max(self.now, now)
        return n

    def next_arrival(self) -> float:
        return self._inflight[0][0] if self._inflight else math.inf
