"""Telemetry over a real MQTT connection (the embedded amqtt broker): topics, QoS, acks, retained status, will."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.core import catalog
from kasmina_edge.net import topics
from kasmina_edge.net.broker import BrokerError, EmbeddedBroker, free_port
from kasmina_edge.net.cloud import MonitorService
from kasmina_edge.net.monitor import read_store
from kasmina_edge.net.mqtt import BrokerUrl, MqttClient, MqttDeviceTransport, MqttError
from kasmina_edge.net.session import DeviceLink

pytest.importorskip("amqtt")


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(free_port()) as b:
        yield b


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_broker_url_parsing() -> None:
    assert BrokerUrl.parse("mqtt://127.0.0.1") == BrokerUrl("127.0.0.1", 1883)
    u = BrokerUrl.parse("mqtts://dev%2D1:s3cret@example.org:8884")
    assert (u.tls, u.port, u.username, u.password) == (True, 8884, "dev-1", "s3cret")
    for bad in ("http://x", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(MqttError):
            BrokerUrl.parse(bad)


def test_topics_refuse_wildcards() -> None:
    assert topics.telemetry("f", "d-1", "anomaly") == "kasmina/f/d-1/telemetry/anomaly"
    with pytest.raises(topics.TopicError):
        topics.telemetry("f", "d/+", "x")
    assert topics.parse("kasmina/f/d/telemetry/batch").kind == "batch"
    with pytest.raises(topics.TopicError):
        topics.parse("kasmina/f/d/nope")


def test_embedded_broker_refuses_a_busy_port_and_a_public_bind(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError, match="in use"):
        EmbeddedBroker(broker.port).start()
    with pytest.raises(BrokerError, match="loopback"):
        EmbeddedBroker(1883, host="0.0.0.0")


def test_unreachable_broker_is_one_clear_error() -> None:
    with pytest.raises(MqttError, match="cannot connect"):
        MqttClient(f"mqtt://127.0.0.1:{free_port()}", "x").connect(timeout_s=1.5)


def test_telemetry_over_mqtt_end_to_end(broker: EmbeddedBroker, tmp_path: Path) -> None:
    store = tmp_path / "monitor.jsonl"
    service = MonitorService(broker.url, fleet="f1", store=store).start()
    transport = MqttDeviceTransport(broker.url, "f1", "patch-01")
    transport.connect()
    profile = catalog.network("wifi")
    link = DeviceLink("patch-01", profile, transport)
    tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0, downlinks=transport.drain)
    tel.keep_produced = True
    t, beat = 0.0, 0.0
    while t < 300:
        while beat <= t:
            tel.on_event(BeatClassified(round(beat * 360), beat, "V" if 100 < beat < 102 else "N", 0.9))
            beat += 0.8 if not 100 < beat < 102 else 0.4
        tel.tick(t)
        t += 1.0
        time.sleep(0.002)
    produced = {f for f, _, _ in tel.produced}
    assert wait_for(
        lambda: service.summary()["devices"].get("patch-01", {}).get("records", 0) == len(produced)
    )
    # the monitor's acks came back over MQTT and emptied the device's queue
    clock = [t]

    def drained() -> bool:
        clock[0] += 1.0  # simulated time goes on while the acks come back
        tel.tick(clock[0])
        return all(e.sent for e in link.queue.entries.values()) and not any(
            e.created_at < t for e in link.queue.entries.values()
        )

    assert wait_for(drained)
    s = service.summary()["devices"]["patch-01"]
    assert s["status"] == "online" and s["missing"] == 0 and s["link"] == "wifi"
    transport.close()
    assert wait_for(lambda: service.summary()["devices"]["patch-01"]["status"] == "offline")
    # a late subscriber sees the retained status
    seen: list[bytes] = []
    late = MqttClient(broker.url, "late")
    late.subscribe(topics.status("f1", "patch-01"), lambda topic, p: seen.append(p))
    late.connect()
    assert wait_for(lambda: bool(seen)) and json.loads(seen[0])["state"] == "offline"
    late.close()
    service.close()
    kinds = {x["kind"] for x in read_store(store) if "kind" in x}
    assert {"anomaly", "beat_counts", "device_status"} <= kinds


def test_last_will_says_offline_when_a_device_vanishes(broker: EmbeddedBroker) -> None:
    seen: list[str] = []
    watcher = MqttClient(broker.url, "watcher")
    watcher.subscribe(topics.status("f2", "gone"), lambda t, p: seen.append(json.loads(p)["state"]))
    watcher.connect()
    dev = MqttDeviceTransport(broker.url, "f2", "gone")
    dev.connect()
    assert wait_for(lambda: seen[-1:] == ["online"])
    sock = dev.client._client.socket()  # the device loses power: no DISCONNECT, the broker sends the will
    dev.client._client.loop_stop()
    assert sock is not None
    sock.close()
    assert wait_for(lambda: seen[-1:] == ["offline"], timeout=10.0)
    watcher.close()


def test_a_shared_subscription_matches_its_topics_without_the_prefix() -> None:
    from paho.mqtt.client import topic_matches_sub

    from kasmina_edge.net.mqtt import _without_share

    assert _without_share("$share/monitors/kedge/fleet/+/up") == "kedge/fleet/+/up"
    assert _without_share("kedge/fleet/+/up") == "kedge/fleet/+/up"
    assert topic_matches_sub(_without_share("$share/g/kedge/#"), "kedge/fleet/d1/up")
    assert not topic_matches_sub("$share/g/kedge/#", "kedge/fleet/d1/up")  # what the prefix alone would miss
