"""`kasmina-edge fleet up | rollout | status` on a real Mosquitto broker with the monitor writing a SQLite store.

A small fleet (20 emulated devices on LoRaWAN EU868 DR3, ~15 s of wall time = 15 simulated minutes) loses
nothing: every sequence number a device handed to MQTT is stored exactly once. A rollout whose canary fails
probation halts before the rest: the canary devices rolled back to their previous slot by themselves, nobody
else was offered the update. Skipped with the reason when mosquitto is not installed.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "net"))

from mosquitto_broker import Mosquitto, require_mosquitto  # noqa: E402

pytest.importorskip("sqlalchemy", reason="the server extra is not installed")


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require_mosquitto()
    b = Mosquitto(tmp_path / "mq").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture()
def monitor(broker: Mosquitto, tmp_path: Path) -> Iterator[Any]:
    """The dashboard's back end (monitor + store), without the web server."""
    from kasmina_edge.dashboard.server import DashboardBackend

    backend = DashboardBackend(broker.url, f"sqlite:///{tmp_path / 'store.sqlite'}").start()
    backend.url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    try:
        yield backend
    finally:
        backend.close()


def test_a_small_fleet_loses_nothing(kasmina: Any, broker: Mosquitto, monitor: Any, tmp_path: Path) -> None:
    from kasmina_edge.net.store import open_store, records

    report = tmp_path / "fleet.json"
    out = kasmina("fleet", "up", "--devices", "20", "--link", "lorawan-eu868-dr3", "--mqtt", broker.url,
                  "--minutes", "0.25", "--speed", "60", "--home", str(tmp_path / "fleet"), "--report", str(report),
                  "--json")  # fmt: skip
    assert out.code == 0, out.err
    totals = json.loads(out.out)["totals"]
    assert totals["devices"] == 20 and totals["dropped_by_devices"] == 0
    time.sleep(1.0)
    monitor.close()  # releases anything the monitor still held back for reordering
    delivered = {n: d["fseqs"] for n, d in json.loads(report.read_text())["devices"].items()}
    assert sum(map(len, delivered.values())) == totals["delivered_records"] >= 20 * 5  # a few uplinks each
    store = open_store(monitor.url)
    for name, fseqs in delivered.items():
        assert store.fseqs(name) == sorted(fseqs), name  # every one stored, once, nothing else
    assert store.count(records) == totals["delivered_records"]
    store.close()

    status = kasmina("fleet", "status", "--store", monitor.url, "--json")
    assert status.code == 0, status.err
    rows = {r["device"]: r for r in json.loads(status.out)["devices"]}
    assert sorted(rows) == sorted(delivered)
    assert all(r["link"] == "lorawan-eu868-dr3" and r["status"] == "offline" for r in rows.values())
    assert all(r["records"] == len(delivered[n]) for n, r in rows.items())


def _manifest(version: int) -> dict[str, Any]:
    from kasmina_edge.contracts.manifest import SCHEMA

    art = {"kind": "segment", "format": "tflite-int8", "sha256": "", "bytes": 0}
    return {
        "schema": SCHEMA, "kind": "full", "version": version, "target": "cortex-m", "profile": "stm32h743",
        "format": "tflite-int8", "model": {"checkpoint_sha256": "ab" * 32},
        "chain": {"segments": ["seg0"], "default_active": {}},
        "artifacts": [{**art, "name": "seg0", "file": "artifacts/seg0.tflite"}],
        "provenance": {"kasmina_edge": "0.1.0", "built_at": "2026-12-07T00:00:00Z"},
    }  # fmt: skip


@pytest.mark.parametrize(
    "canary_fails", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["canary-fails", "all-pass"]
)
def test_a_rollout_halts_when_the_canary_fails_and_completes_when_it_passes(
    kasmina: Any, home: Path, broker: Mosquitto, monitor: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    canary_fails: bool,
) -> None:
    from firmware_sim.device import DeviceAddress, EmulatedDevice
    from kasmina_edge.contracts.bundle import init_keys, write_bundle
    from kasmina_edge.dashboard.fleet_up import FleetSpec, fleet_up

    keys = tmp_path / "keys"
    init_keys(keys)
    seg = random.Random(0).randbytes(20_000)
    v1, v2 = tmp_path / "v1.kedge", tmp_path / "v2.kedge"
    write_bundle(v1, _manifest(1), {"artifacts/seg0.tflite": seg}, keys)
    write_bundle(v2, _manifest(2), {"artifacts/seg0.tflite": seg[::-1]}, keys)
    # the devices (started here, not through the CLI) provision their keys where the CLI's operator looks
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(home / "command-keys"))
    fleet_home = tmp_path / "fleet"
    names = [f"dev{i:03d}" for i in range(6)]
    spec = FleetSpec(6, "wifi", broker.url, 120.0, home=fleet_home, speed=5.0, base_bundle=v1, keys=keys,
                     fail_probation=("dev000", "dev001") if canary_fails else ())  # fmt: skip
    runner = threading.Thread(target=fleet_up, args=(spec,), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(v["link"] == "wifi" for v in monitor.live().values()) < 6:
            time.sleep(0.2)  # every device announced itself (its boot heartbeat names its link)
        time.sleep(0.5)  # and the store has it
        out = kasmina("fleet", "rollout", str(v2), "--mqtt", broker.url, "--store", monitor.url, "--canary", "2",
                      "--halt-on", "probation-failures>1", "--keys", str(keys), "--timeout", "60", "--json")  # fmt: skip
    finally:
        (fleet_home / "STOP").touch()
        runner.join(60)
    result = json.loads(out.out)
    assert "devices" in result, (result, out.err[-1500:])
    statuses = [d["status"] for d in sorted(result["devices"], key=lambda d: d["device"])]
    if not canary_fails:  # the canary passed probation: the rest followed, every device runs v2 from slot b
        assert out.code == 0 and not result["halted"] and statuses == ["probation_passed"] * 6, result["devices"]
        for name in names:
            state = EmulatedDevice(DeviceAddress.parse(f"emu://{name}", fleet_home / "flash")).state()
            assert state["active"] == "b" and state["version_counter"] == 2, (name, state)
        return
    assert out.code == 1, (out.code, out.err[-2000:])  # halted: a check failed
    assert result["halted"] and "probation-failures = 2 after the canary" in result["halt_reason"]
    assert statuses == ["rolled_back"] * 2 + ["held"] * 4
    for name in names:  # every device runs v1 from slot a; none of the held ones saw an offer
        dev = EmulatedDevice(DeviceAddress.parse(f"emu://{name}", fleet_home / "flash"))
        state = dev.state()
        assert state["active"] == "a" and state["version_counter"] == 1, (name, state)
        assert (dev.storage.root / "ota" / "state.json").exists() == (name in ("dev000", "dev001"))


def test_retention_and_erasure_from_the_command_line(kasmina: Any, tmp_path: Path) -> None:
    from kasmina_edge.contracts import codec
    from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, Severity
    from kasmina_edge.net.store import open_store

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    st = open_store(url)
    rec = codec.to_dict(AnomalyEvent(0, 1_800_000_000, AnomalyKind.VT_RUN, Severity.CRITICAL, 0, 900, 0.9))
    for device in ("a", "b"):
        for i in range(3):
            st.write({"fleet": "f", "device": device, "fseq": i, "kind": "anomaly", "record": rec, "link": "wifi"})
    st.close()
    out = kasmina("fleet", "retention", "--days", "30", "--store", url, "--json")
    assert out.code == 0 and json.loads(out.out)["deleted"]["records"] == 0  # all stored just now
    assert kasmina("fleet", "erase", "--device", "a", "--assign", "p-1", "--store", url).code == 0
    out = kasmina("fleet", "erase", "--patient", "p-1", "--store", url, "--json")
    assert out.code == 0 and json.loads(out.out)["deleted"] == {
        "records": 3, "lifecycle": 0, "alerts": 3, "strips": 0, "reports": 0, "bad_messages": 0, "devices": 1}
    st = open_store(url)
    assert st.fseqs("a") == [] and st.fseqs("b") == [0, 1, 2]
    st.close()
    bad = kasmina("fleet", "erase", "--store", url)
    assert bad.code == 2 and "exactly one of --device or --patient" in bad.err
    bad = kasmina("fleet", "erase", "--device", "zz", "--assign", "p", "--store", url)
    assert bad.code == 2 and "not in the store" in bad.err


def test_bad_fleet_input_is_one_line(kasmina: Any, broker: Mosquitto, tmp_path: Path) -> None:
    bundle = tmp_path / "b.kedge"
    bundle.write_bytes(b"not a bundle")
    store = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    cases = [
        (["up", "--link", "lorawan-mars", "--mqtt", broker.url], "lorawan-mars"),
        (["up", "--devices", "0", "--mqtt", broker.url], "--devices"),
        (["rollout", str(bundle), "--mqtt", broker.url, "--canary", "150%", "--store", store], "--canary"),
        (["rollout", str(bundle), "--mqtt", broker.url, "--halt-on", "crashes>1", "--store", store], "--halt-on"),
        (["rollout", str(bundle), "--mqtt", broker.url, "--store", store], "no devices to update"),
        (["rollout", str(tmp_path / "none.kedge"), "--mqtt", broker.url], "none.kedge"),
        (["status", "--store", "mysql://x@h/db"], "only sqlite"),
    ]
    for args, message in cases:
        out = kasmina("fleet", *args)
        assert out.code == 2, (args, out.out, out.err)
        assert len(out.err_lines) == 1 and message in out.err, (args, out.err)
