"""Signed commands: verified, executed and acked on the device; forged, replayed, stale, future ones refused and
audited; hash-chained audit logs on both sides; strips encrypted end to end; Class A delivery; over MQTT."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from net_helpers import make_harness

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts.commands import sign, verify_ack
from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind
from kasmina_edge.core import catalog
from kasmina_edge.net.audit import AuditError, AuditLog, verify
from kasmina_edge.net.commands import (
    CommandError,
    freshness_window_s,
    open_strip,
    parse_set_args,
    provision_device_key,
    send_command,
)
from kasmina_edge.net.priority import Priority
from kasmina_edge.net.session import DeviceLink

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class FakeConfig:
    adapt: bool = True


@dataclass
class FakePlatform:
    battery: float = 0.8
    security_alert: bool = False


class FakeRaw:
    def view(self) -> tuple[np.ndarray, int]:
        return np.sin(np.arange(1440) / 20.0).astype(np.float32), 0


@dataclass
class FakeRuntime:
    config: Any = field(default_factory=FakeConfig)
    platform: FakePlatform = field(default_factory=FakePlatform)
    raw: FakeRaw = field(default_factory=FakeRaw)
    fs: float = 360.0


def device(tmp_path: Path, profile: str = "wifi") -> tuple[RuntimeTelemetry, FakeRuntime, Clock, Any]:
    h = make_harness(profile)
    clock = Clock()
    tel = h.tel
    runtime = FakeRuntime()
    tel.attach(runtime)
    tel.enable_commands(KEY, AuditLog(tmp_path / "device-audit.jsonl", clock=clock), clock=clock)
    return tel, runtime, clock, h


def envelope(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    key: bytes = KEY,
    at: float = 1_800_000_000.0,
    device_id: str = "d1",
) -> bytes:
    return sign(key, device_id, name, args or {}, clock=lambda: at).to_json().encode()


def test_pause_resume_set_are_executed_and_acked(tmp_path: Path) -> None:
    tel, rt, clock, _ = device(tmp_path)
    assert tel.commands is not None
    ack = tel.commands.handle(envelope("pause"))
    assert ack["status"] == "ok" and rt.config.adapt is False and tel.paused
    assert tel.commands.handle(envelope("resume"))["status"] == "ok" and rt.config.adapt is True
    ack = tel.commands.handle(envelope("set", {"summary_every_s": 600}))
    assert ack["status"] == "ok" and tel.summary_every_s == 600.0
    bad = tel.commands.handle(envelope("set", {"battery_pct": 100}))
    assert bad["status"] == "failed" and "not settable" in bad["reason"]
    events = [e["event"] for e in verify(tmp_path / "device-audit.jsonl")]
    assert events == ["accepted", "done"] * 3 + ["accepted", "failed"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "bad_signature"),
        ("replayed", "replay"),
        ("stale", "stale"),
        ("future", "future_dated"),
        ("other-device", "wrong_device"),
        ("garbage", "malformed"),
    ],
)
def test_bad_commands_are_refused_logged_and_raise_the_security_alert(
    tmp_path: Path, case: str, reason: str
) -> None:
    tel, rt, clock, _ = device(tmp_path)
    assert tel.commands is not None
    good = envelope("pause")
    payload = {
        "forged": envelope("pause", key=OTHER_KEY),
        "replayed": good,
        "stale": envelope("pause", at=clock.t - 120),
        "future": envelope("pause", at=clock.t + 120),
        "other-device": envelope("pause", device_id="d2"),
        "garbage": b'{"name": "pause"',
    }[case]
    if case == "replayed":
        assert tel.commands.handle(good)["status"] == "ok"
        rt.config.adapt = True
    ack = tel.commands.handle(payload)
    assert ack["status"] == "refused" and ack["reason"] == reason
    assert rt.config.adapt is True  # nothing was done
    assert rt.platform.security_alert
    alerts = [e for e in tel.queue.entries.values() if isinstance(e.record, AnomalyEvent)]
    assert alerts and alerts[-1].record.kind == AnomalyKind.OTHER and alerts[-1].priority == Priority.CRITICAL
    log = verify(tmp_path / "device-audit.jsonl")
    assert log[-1]["event"] == "refused" and log[-1]["reason"] == reason


def test_request_strip_is_encrypted_end_to_end(tmp_path: Path) -> None:
    tel, rt, clock, h = device(tmp_path)
    assert tel.commands is not None
    ack = tel.commands.handle(envelope("request-strip", {"seconds": 2}))
    assert ack["status"] == "ok" and ack["result"]["samples"] == 720
    strip = next(c for c in tel.link.controls if c.kind == "strip").body
    assert "ciphertext" in strip and not any(isinstance(v, list) for v in strip.values())  # no plain samples
    samples = open_strip(KEY, strip)
    expected = rt.raw.view()[0][-720:]
    assert np.max(np.abs(samples - expected)) <= 0.0025 + 1e-6  # 5 uV steps
    with pytest.raises(CommandError, match="authenticate"):
        open_strip(OTHER_KEY, strip)
    tampered = dict(
        strip, ciphertext=("00" if strip["ciphertext"][:2] != "00" else "11") + strip["ciphertext"][2:]
    )
    with pytest.raises(CommandError):
        open_strip(KEY, tampered)
    with pytest.raises(CommandError):
        open_strip(KEY, dict(strip, nonce="0" * 32))  # bound to the request that asked for it
    assert tel.commands.handle(envelope("request-strip", {"seconds": 60}))["status"] == "failed"


def test_audit_chain_detects_edits_removals_and_reorders(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    for i in range(5):
        log.append("sent", n=i)
    assert len(verify(path)) == 5
    lines = path.read_text().splitlines()
    for broken in (
        [*lines[:2], lines[2].replace('"n":2', '"n":7'), *lines[3:]],
        [*lines[:2], *lines[3:]],
        [lines[1], lines[0], *lines[2:]],
    ):
        path.write_text("\n".join(broken) + "\n")
        with pytest.raises(AuditError):
            verify(path)
    path.write_text("\n".join(lines) + "\n")
    again = AuditLog(path)  # reopening continues the chain
    again.append("acked", n=5)
    assert [e["i"] for e in verify(path)] == list(range(6))


def test_lora_class_a_command_waits_for_an_uplink_and_is_acked_over_the_air(tmp_path: Path) -> None:
    tel, rt, clock, h = device(tmp_path, "lorawan-eu868-dr0")
    assert freshness_window_s(tel.link.profile) > 3600
    tel.link.queue_downlink("cmd", envelope("pause"), now=10.0)
    assert rt.config.adapt is True  # nothing reaches a Class A device before it sends
    tel.tick(4000.0)  # the first uplink (a summary) opens a receive window: the command arrives in RX1
    assert tel.link.ledger.uplinks == 1 and rt.config.adapt is False
    assert [c.kind for c in tel.link.controls] == ["cmd_ack"]
    tel.tick(4400.0)  # the ack goes out as the next uplink the duty cycle allows
    h.net.advance(float("inf"))
    view = h.net.monitor.devices["d1"]
    assert view.last_commands and view.last_commands[-1]["status"] == "ok"


def test_parse_set_args_and_key_provisioning(tmp_path: Path) -> None:
    assert parse_set_args(["summary_every_s=600", "name=x", "flag=true"]) == {
        "summary_every_s": 600,
        "name": "x",
        "flag": True,
    }
    with pytest.raises(CommandError):
        parse_set_args(["novalue"])
    key = provision_device_key(tmp_path / "dev", "dev", tmp_path / "ops")
    assert provision_device_key(tmp_path / "dev", "dev", tmp_path / "ops") == key
    assert (tmp_path / "ops" / "dev.key").stat().st_mode & 0o777 == 0o600


def test_send_over_mqtt_is_acked_and_audited_on_both_sides(tmp_path: Path) -> None:
    pytest.importorskip("amqtt")
    from kasmina_edge.net.broker import EmbeddedBroker, free_port
    from kasmina_edge.net.mqtt import MqttDeviceTransport

    with EmbeddedBroker(free_port()) as broker:
        transport = MqttDeviceTransport(broker.url, "f1", "d1")
        transport.connect()
        link = DeviceLink("d1", catalog.network("wifi"), transport)
        tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0, downlinks=transport.drain)
        rt = FakeRuntime()
        tel.attach(rt)
        tel.enable_commands(KEY, AuditLog(tmp_path / "device.jsonl"))
        stop = threading.Event()

        def device_loop() -> None:
            t = 0.0
            while not stop.is_set():
                tel.tick(t)
                t += 0.5
                time.sleep(0.01)

        thread = threading.Thread(target=device_loop, daemon=True)
        thread.start()
        try:
            ops = AuditLog(tmp_path / "operator.jsonl")
            result = send_command(broker.url, "d1", "pause", {}, KEY, ops, fleet="f1", timeout_s=10)
            assert result.status == "ok" and rt.config.adapt is False
            forged = send_command(broker.url, "d1", "resume", {}, OTHER_KEY, ops, fleet="f1", timeout_s=3)
            # the device refuses it and says so in an ack signed with *its* key: a sender without that key
            # cannot tell a real ack from one forged on the broker, so it believes none
            assert forged.status == "timeout" and forged.forged_acks == 1
            assert rt.config.adapt is False
        finally:
            stop.set()
            thread.join(5)
            transport.close()
    op_events = [e["event"] for e in verify(tmp_path / "operator.jsonl")]
    dev_events = [(e["event"], e.get("reason")) for e in verify(tmp_path / "device.jsonl")]
    assert op_events == ["sent", "acked", "sent", "forged_ack", "no_ack"]
    assert verify_ack(KEY, result.ack) and not verify_ack(OTHER_KEY, result.ack)
    assert dev_events == [("accepted", None), ("done", None), ("refused", "bad_signature")]
    assert json.loads(json.dumps(result.ack))["nonce"] == result.nonce
