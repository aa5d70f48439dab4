"""`run --link/--mqtt`: the on-device runtime's events go through the telemetry hook, the link and MQTT."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_sim.device import open_device
from firmware_sim.runner import RunOptions, run_stream
from firmware_sim.telemetry import AUDIT_FILE, QUEUE_FILE, open_device_telemetry
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.sources import RecordSource
from kasmina_edge.runtime.engine import RuntimeConfig

REPO = Path(__file__).resolve().parents[2]


def test_runtime_events_reach_the_monitor_over_a_lora_link(
    devices: Path, bundles: Path, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(tmp_path / "command-keys"))
    dev = open_device("emu://tel-1")
    dev.flash(bundles / "linux-arm-v1.kedge", keys)
    tel, transport = open_device_telemetry("tel-1", dev.storage, "lorawan-eu868-dr5", None, emulated=dev)
    tel.keep_produced = True
    record = make_scenario("noisy-walk", 3.0, seed=4)
    # the fixture's kernels have random weights: with the controller adapting, which ones fault (and how many
    # critical breaker records take the airtime) depends on its choices; this test is about the telemetry path
    options = RunOptions(probation_beats=20, runtime=RuntimeConfig(adapt=False))
    s = run_stream(dev, RecordSource(record), options=options, telemetry=tel)
    transport.drain()
    transport.close()
    assert s.telemetry is not None and s.telemetry["uplinks"] >= 1
    assert s.telemetry["records"] == len(tel.produced) > 0  # every record the device made went to the queue
    view = transport.net.monitor.devices["tel-1"]
    counts = sum(view.beats.values())
    assert 0 < counts <= s.status["beats"]  # the beat counts that went up are the device's own beats
    assert (dev.root / QUEUE_FILE).exists() and (dev.root / "command.key").exists()
    assert (tmp_path / "command-keys" / "tel-1.key").exists()
    assert tel.runtime is not None  # attached: commands can pause it, strips read its raw buffer
    assert not (dev.root / AUDIT_FILE).exists() or (dev.root / AUDIT_FILE).read_text() == ""


def test_cli_run_with_link_and_mqtt(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    pytest.importorskip("amqtt")
    from kasmina_edge.net.broker import EmbeddedBroker, free_port
    from kasmina_edge.net.cloud import MonitorService

    env = {**os.environ, "KASMINA_DEVICES_DIR": str(devices), "KASMINA_COMMAND_KEYS": str(tmp_path / "ck")}
    with EmbeddedBroker(free_port()) as broker:
        service = MonitorService(broker.url, fleet="default").start()
        try:
            cmds = [
                [
                    "flash",
                    str(bundles / "linux-arm-v1.kedge"),
                    "--device",
                    "emu://cli-tel",
                    "--keys",
                    str(keys),
                ],
                [
                    "run",
                    "--device",
                    "emu://cli-tel",
                    "--ecg",
                    "synthetic:clean?minutes=2",
                    "--fast",
                    "--out",
                    str(tmp_path / "p.jsonl"),
                    "--link",
                    "wifi",
                    "--mqtt",
                    broker.url,
                ],
            ]
            for args in cmds:
                proc = subprocess.run(
                    [sys.executable, "-m", "kasmina_edge.cli.app", *args],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert proc.returncode == 0, proc.stderr
            assert "telemetry:" in proc.stdout
            end = time.monotonic() + 10
            while time.monotonic() < end and "cli-tel" not in service.summary()["devices"]:
                time.sleep(0.1)
            dev = service.summary()["devices"]["cli-tel"]
            assert dev["records"] >= 2 and dev["link"] == "wifi" and dev["status"] == "offline"
        finally:
            service.close()
