"""Against a real Mosquitto broker: nothing lost through an outage, a broker crash and burst loss; per-device
ACLs; TLS with a test CA and per-device credentials. Skipped, with the reason, where mosquitto is not installed."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mosquitto_broker import Mosquitto, make_test_ca, require_mosquitto

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.core import catalog
from kasmina_edge.net import topics
from kasmina_edge.net.cloud import MonitorService
from kasmina_edge.net.faults import FaultInjector, LossBurst, Outage
from kasmina_edge.net.link import Channel
from kasmina_edge.net.monitor import read_store
from kasmina_edge.net.mqtt import MqttClient, MqttDeviceTransport, MqttError, TlsFiles
from kasmina_edge.net.session import DeviceLink

pytestmark = pytest.mark.usefixtures("needs_mosquitto")


@pytest.fixture
def needs_mosquitto() -> None:
    require_mosquitto()


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_nothing_lost_through_outage_broker_crash_and_burst_loss(tmp_path: Path) -> None:
    """10 min link outage, Mosquitto SIGKILLed and restarted, 20 % burst loss: every record exactly once."""
    broker = Mosquitto(tmp_path / "mosq").start()
    store = tmp_path / "monitor.jsonl"
    service = MonitorService(broker.url, fleet="f1", store=store).start()
    transport = MqttDeviceTransport(broker.url, "f1", "patch-01")
    transport.connect()
    profile = catalog.network("nb-iot")
    faults = FaultInjector([Outage(600, 600), LossBurst(1500, 1500, 0.2)])
    link = DeviceLink("patch-01", profile, transport, channel=Channel(profile, faults=faults, seed=5))
    tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0, downlinks=transport.drain)
    tel.keep_produced = True
    t, beat, crashed, restarted = 0.0, 0.0, False, False
    try:
        while t < 3600:
            while beat <= t:
                vt = int(beat) % 600 in (300, 301)  # a VT run every 10 minutes
                tel.on_event(BeatClassified(round(beat * 360), beat, "V" if vt else "N", 0.9))
                beat += 0.4 if vt else 0.8
            tel.tick(t)
            if t == 1800 and not crashed:
                broker.kill()  # the broker crashes: in-flight and queued messages are gone
                crashed = True
            if t == 1830 and not restarted:
                broker.start()
                restarted = True
            t += 1.0
            time.sleep(0.002)
        produced = sorted({f for f, _, _ in tel.produced})
        # the link alone (nothing new produced) until the monitor has everything, or a deadline
        view = lambda: service.monitor.devices.get("patch-01")  # noqa: E731

        def complete() -> bool:
            nonlocal t
            t += 5.0
            link.tick(t)
            for kind, payload in transport.drain():
                link.queue_downlink(kind, payload, t)
            v = view()
            return v is not None and v.cum == produced[-1] + 1

        assert wait_for(complete, timeout=40.0), view().missing() if view() else None  # type: ignore[union-attr]
    finally:
        transport.close()
        service.close()
        broker.stop()
    v = service.monitor.devices["patch-01"]
    assert v.records == len(produced) and not v.dropped and v.missing() == []
    counts = collections.Counter(x["fseq"] for x in read_store(store) if "fseq" in x)
    assert sorted(counts) == produced and set(counts.values()) == {1}  # stored exactly once each
    assert link.ledger.outage > 0 and link.ledger.lost > 0
    assert transport.client.disconnects >= 1 and service.client.disconnects >= 1  # the crash was felt
    assert v.duplicates > 0  # resends happened, deduplicated


ACL = """\
pattern write kasmina/+/%u/telemetry/#
pattern write kasmina/+/%u/status
pattern read kasmina/+/%u/cmd
pattern read kasmina/+/%u/ota
pattern read kasmina/+/%u/ack

user ops
topic readwrite kasmina/#
"""
USERS = {"patch-01": "pw-one", "patch-02": "pw-two", "ops": "pw-ops"}


def test_acl_a_device_cannot_publish_or_read_under_another_device(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosq", users=USERS, acl=ACL).start()
    port = broker.port
    got: list[str] = []
    ops = MqttClient(f"mqtt://ops:pw-ops@127.0.0.1:{port}", "ops")
    ops.subscribe("kasmina/#", lambda topic, p: got.append(topic))
    try:
        ops.connect()
        dev = MqttClient(f"mqtt://patch-01:pw-one@127.0.0.1:{port}", "patch-01")
        snooped: list[str] = []
        dev.subscribe(topics.command("f1", "patch-02"), lambda topic, p: snooped.append(topic))
        dev.connect()
        own = topics.telemetry("f1", "patch-01", "batch")
        other = topics.telemetry("f1", "patch-02", "batch")
        dev.publish(other, b"forged", qos=1).wait_for_publish(5)
        dev.publish(own, b"mine", qos=1).wait_for_publish(5)
        ops.publish(topics.command("f1", "patch-02"), b"for patch-02 only", qos=1).wait_for_publish(5)
        assert wait_for(lambda: own in got)
        time.sleep(0.3)
        assert other not in got  # the broker dropped the publish under patch-02's topic
        assert snooped == []  # and patch-01 cannot read patch-02's commands
        dev.close()
        with pytest.raises(MqttError, match="refused|no answer"):
            MqttClient(f"mqtt://patch-01:wrong@127.0.0.1:{port}", "x").connect(timeout_s=3)
    finally:
        ops.close()
        broker.stop()


def test_tls_with_a_test_ca_and_per_device_credentials(tmp_path: Path) -> None:
    ca, cert, key = make_test_ca(tmp_path / "ca")
    broker = Mosquitto(tmp_path / "mosq", users=USERS, acl=ACL, tls=(ca, cert, key)).start()
    tls = TlsFiles(ca)
    service = MonitorService(f"mqtts://ops:pw-ops@127.0.0.1:{broker.port}", fleet="f1", tls=tls).start()
    try:
        transport = MqttDeviceTransport(
            f"mqtts://patch-01:pw-one@127.0.0.1:{broker.port}", "f1", "patch-01", tls=tls
        )
        transport.connect()
        link = DeviceLink("patch-01", catalog.network("wifi"), transport)
        tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0, downlinks=transport.drain)
        for t in range(0, 130):
            tel.on_event(BeatClassified(round(t * 360), float(t), "N", 0.9))
            tel.tick(float(t))
        assert wait_for(lambda: service.summary()["devices"].get("patch-01", {}).get("records", 0) >= 2)
        transport.close()
        with pytest.raises(MqttError):  # plain MQTT to the TLS listener gets nowhere
            MqttClient(f"mqtt://patch-01:pw-one@127.0.0.1:{broker.port}", "plain").connect(timeout_s=3)
        with pytest.raises(MqttError, match="CA"):
            MqttClient(f"mqtts://127.0.0.1:{broker.port}", "no-ca")
    finally:
        service.close()
        broker.stop()
