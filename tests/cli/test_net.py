"""`kasmina-edge broker`, `monitor --json`, `send`, `ota`: they work, and a user's mistake is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.core import catalog
from kasmina_edge.net.broker import EmbeddedBroker, free_port
from kasmina_edge.net.mqtt import MqttDeviceTransport
from kasmina_edge.net.session import DeviceLink

pytest.importorskip("amqtt")


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kasmina_edge.cli.app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    env = {"KASMINA_COMMAND_KEYS": str(tmp_path / "keys"), "KASMINA_AUDIT_DIR": str(tmp_path / "audit")}
    assert "no command key" in one_error_line(cli("send", "nobody", "pause", env=env))
    assert "expected mqtt://" in one_error_line(cli("monitor", "--mqtt", "http://x", "--seconds", "1"))
    assert "cannot connect" in one_error_line(
        cli(
            "monitor",
            "--mqtt",
            f"mqtt://127.0.0.1:{free_port()}",
            "--seconds",
            "1",
            "--store",
            str(tmp_path / "s"),
        )
    )
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "dev.key").write_text("00" * 32)
    assert "none.kedge: no such" in one_error_line(
        cli("ota", str(tmp_path / "none.kedge"), "--device", "dev", env=env)
    )
    (tmp_path / "some.kedge").write_bytes(b"PK")
    assert "carrier-pigeon" in one_error_line(
        cli("ota", str(tmp_path / "some.kedge"), "--device", "dev", "--link", "carrier-pigeon", env=env)
    )


def test_monitor_json_prints_records_and_a_summary(tmp_path: Path) -> None:
    with EmbeddedBroker(free_port()) as broker:
        stop = threading.Event()

        def device() -> None:
            transport = MqttDeviceTransport(broker.url, "f1", "cli-dev")
            transport.connect()
            link = DeviceLink("cli-dev", catalog.network("wifi"), transport)
            tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0, downlinks=transport.drain)
            t = 0.0
            while not stop.is_set():
                tel.on_event(BeatClassified(round(t * 360), t, "N", 0.9))
                tel.tick(t)
                t += 5.0
                time.sleep(0.01)
            transport.close()

        thread = threading.Thread(target=device, daemon=True)
        thread.start()
        try:
            proc = cli(
                "monitor",
                "--mqtt",
                broker.url,
                "--fleet",
                "f1",
                "--json",
                "--seconds",
                "4",
                "--store",
                str(tmp_path / "store.jsonl"),
            )
        finally:
            stop.set()
            thread.join(5)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    records = [x for x in lines if "fseq" in x]
    assert records and all(x["device"] == "cli-dev" for x in records)
    assert [x["fseq"] for x in records] == sorted(x["fseq"] for x in records)
    summary = lines[-1]["summary"]
    assert summary["devices"]["cli-dev"]["records"] >= len(records)
    assert (tmp_path / "store.jsonl").exists()


def test_broker_command_runs_and_stops() -> None:
    port = free_port()
    proc = cli("broker", "--port", str(port), "--seconds", "1", timeout=60)
    assert proc.returncode == 0 and f"127.0.0.1:{port}" in proc.stdout
