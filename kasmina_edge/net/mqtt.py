"""MQTT for devices and the cloud side: a paho-mqtt client that reconnects, and the device's transport over it.

``mqtt://HOST[:PORT]`` (default port 1883) or ``mqtts://[USER:PASSWORD@]HOST[:PORT]`` (default 8883; TLS with a
CA file, optional client certificate, per-device credentials). :class:`MqttClient` runs paho's network loop in
its own thread, reconnects by itself after a broker restart and subscribes again on every connect.

:class:`MqttDeviceTransport` is what a device (or its emulator) uses: uplinks go to
``kasmina/<fleet>/<device>/telemetry/<kind>`` (QoS 1 for events, 0 for periodic counts), its status is retained
``online`` with a last will ``offline``, and what the cloud sends it (acks, signed commands, OTA) is collected
from ``.../ack``, ``.../cmd`` and ``.../ota`` for the device loop to pick up (:meth:`drain`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.net import topics
from kasmina_edge.net.packet import Uplink

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
CONNECT_TIMEOUT_S = 10.0



def _without_share(topic_filter: str) -> str:
    """``$share/GROUP/a/b`` -> ``a/b``: the broker delivers a shared subscription's messages on their own
    topics (MQTT 5.0 section 4.8.2), so they match the filter without its prefix."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else topic_filter
    return topic_filter

class MqttError(KasminaError):
    """A broker that cannot be reached or refuses us, or a bad --mqtt URL."""


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise MqttError(f"--mqtt {url!r}: expected mqtt://HOST[:PORT] or mqtts://[USER:PASS@]HOST[:PORT]")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
        except ValueError:
            raise MqttError(f"--mqtt {url!r}: the port is not a number in 1..65535") from None
        return cls(
            parts.hostname,
            port,
            tls,
            urllib.parse.unquote(parts.username) if parts.username else None,
            urllib.parse.unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


MessageHandler = Callable[[str, bytes], None]


class MqttClient:
    """A paho client with its loop in a thread, auto-reconnect and resubscribe."""

    def __init__(
        self,
        url: str | BrokerUrl,
        client_id: str,
        *,
        will: tuple[str, bytes, int, bool] | None = None,
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.url = url if isinstance(url, BrokerUrl) else BrokerUrl.parse(url)
        self.client_id = client_id
        self._client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        self._client.max_queued_messages_set(10_000)
        self._client.reconnect_delay_set(min_delay=1, max_delay=4)
        user = username or self.url.username
        if user:
            self._client.username_pw_set(user, password or self.url.password)
        if self.url.tls:
            if tls is None:
                raise MqttError(f"{self.url}: mqtts needs a CA file (--ca)")
            self._client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
        if will is not None:
            topic, payload, qos, retain = will
            self._client.will_set(topic, payload, qos=qos, retain=retain)
        self._subs: dict[str, tuple[int, MessageHandler]] = {}
        self._connected = threading.Event()
        self._refused: str | None = None
        self._user_on_connect = on_connect
        self.connects = 0
        self.disconnects = 0
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._keepalive = keepalive
        self._started = False

    # ------------------------------------------------------------------ callbacks (paho's thread)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
            return
        self._refused = None
        self.connects += 1
        for filt, (qos, _) in list(self._subs.items()):
            client.subscribe(filt, qos)
        self._connected.set()
        if self._user_on_connect is not None:
            self._user_on_connect()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        self.disconnects += 1

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        for filt, (_, handler) in list(self._subs.items()):
            if paho.topic_matches_sub(_without_share(filt), msg.topic):
                handler(msg.topic, bytes(msg.payload))
                return

    # ------------------------------------------------------------------ API

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect (blocking until the broker answers); afterwards paho reconnects by itself."""
        if not self._started:
            try:
                self._client.connect_async(self.url.host, self.url.port, keepalive=self._keepalive)
            except (OSError, ValueError) as exc:
                raise MqttError(f"{self.url}: {exc}") from None
            self._client.loop_start()
            self._started = True
        if not self._connected.wait(timeout_s):
            why = f"refused: {self._refused}" if self._refused else f"no answer within {timeout_s:.0f} s"
            self.close()
            raise MqttError(f"cannot connect to the MQTT broker at {self.url} ({why})")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        self._subs[topic_filter] = (qos, handler)
        if self.connected:
            self._client.subscribe(topic_filter, qos)

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        if self._started:
            try:
                self._client.disconnect()
            finally:
                self._client.loop_stop()
                self._started = False
        self._connected.clear()


def status_payload(state: str, **extra: Any) -> bytes:
    return json.dumps({"state": state, "at": round(time.time(), 3), **extra}, separators=(",", ":")).encode()


class MqttDeviceTransport:
    """A device's uplinks out, and its downlinks in, over one MQTT connection."""

    def __init__(
        self,
        url: str | BrokerUrl,
        fleet: str,
        device: str,
        *,
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.fleet = topics.check_name("fleet", fleet)
        self.device = topics.check_name("device", device)
        self._status_topic = topics.status(fleet, device)
        self.client = MqttClient(
            url,
            f"kasmina-{fleet}-{device}",
            will=(self._status_topic, status_payload("offline"), 1, True),
            tls=tls,
            username=username,
            password=password,
            on_connect=self._online,
        )
        self._inbox: deque[tuple[str, bytes]] = deque()
        self._lock = threading.Lock()
        self.published = 0
        for channel in ("ack", "cmd", "ota"):
            topic = getattr(topics, {"ack": "ack", "cmd": "command", "ota": "ota"}[channel])(fleet, device)
            self.client.subscribe(topic, self._make_handler(channel), qos=1)

    def _online(self) -> None:
        self.client.publish(self._status_topic, status_payload("online"), qos=1, retain=True)

    def _make_handler(self, channel: str) -> MessageHandler:
        def handler(topic: str, payload: bytes) -> None:
            with self._lock:
                self._inbox.append((channel, payload))

        return handler

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.client.connect(timeout_s)

    def publish_uplink(self, uplink: Uplink, kind: str, qos: int) -> None:
        self.published += 1
        self.client.publish(topics.telemetry(self.fleet, self.device, kind), uplink.to_bytes(), qos=qos)

    def publish_report(self, device: str, kind: str, body: dict[str, Any], arrival_at: float = 0.0) -> None:
        """A command acknowledgement, update report or strip (``cmd_ack``, ``ota_report``, ``strip``)."""
        data = json.dumps(body, separators=(",", ":"), default=str).encode()
        self.client.publish(topics.telemetry(self.fleet, self.device, kind), data, qos=1)

    def drain(self) -> list[tuple[str, bytes]]:
        with self._lock:
            out = list(self._inbox)
            self._inbox.clear()
        return out

    def close(self) -> None:
        if self.client.connected:
            info = self.client.publish(self._status_topic, status_payload("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.close()
