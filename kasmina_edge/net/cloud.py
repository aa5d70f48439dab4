"""The cloud side on a real broker: the monitor subscribed to a fleet, answering with acks.

:class:`MonitorService` connects one MQTT client, subscribes to every device's telemetry and status in the
fleet, feeds each message to a :class:`~kasmina_edge.net.monitor.Monitor` (under a lock: paho delivers on its
own thread) and publishes the monitor's acks to ``kasmina/<fleet>/<device>/ack`` (binary on LoRaWAN, JSON on
broadband, as the device's link carries them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kasmina_edge.net import topics
from kasmina_edge.net.monitor import Monitor, StoredRecord
from kasmina_edge.net.mqtt import BrokerUrl, MqttClient, TlsFiles
from kasmina_edge.net.packet import Ack


class MonitorService:
    def __init__(
        self,
        url: str | BrokerUrl,
        *,
        fleet: str = "+",
        store: Path | str | None = None,
        on_record: Callable[[StoredRecord], None] | None = None,
        log_bad: Callable[[str], None] | None = None,
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "kasmina-monitor",
    ) -> None:
        self.fleet = fleet
        self.lock = threading.Lock()
        self.monitor = Monitor(store, send_ack=self._send_ack, on_record=on_record, log_bad=log_bad)
        self.client = MqttClient(url, client_id, tls=tls, username=username, password=password)
        self.client.subscribe(topics.fleet_filter(fleet), self._on_message, qos=1)
        self.client.subscribe(topics.status_filter(fleet), self._on_message, qos=1)

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.monitor.ingest(topic, payload)

    def _send_ack(self, fleet: str, device: str, ack: Ack, encoding: str) -> None:
        data = (
            ack.encode() if encoding == "lora" else json.dumps(ack.to_json(), separators=(",", ":")).encode()
        )
        self.client.publish(topics.ack(fleet, device), data, qos=1)

    def start(self, timeout_s: float = 10.0) -> MonitorService:
        self.client.connect(timeout_s)
        return self

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return self.monitor.summary()

    def close(self) -> None:
        self.client.close()
        with self.lock:
            self.monitor.close()
