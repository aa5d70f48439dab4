"""The two commands of the contract that had no handler: `terminate-seed site=N` tears the kernel at a site down
(rolled back, TERMINATED, final) and `reboot` restarts the device (this run ends; what is on flash remains)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim.device import open_device
from firmware_sim.runner import RunOptions, run_stream
from firmware_sim.telemetry import AUDIT_FILE, AUDIT_KEY_FILE, open_device_telemetry
from kasmina_edge.contracts.commands import sign, verify_ack
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.sources import RecordSource
from kasmina_edge.net.audit import load_or_create_key, verify
from kasmina_edge.net.commands import provision_device_key
from kasmina_edge.runtime.engine import RuntimeConfig


def test_terminate_seed_then_reboot(devices: Path, bundles: Path, keys: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(tmp_path / "ck"))
    dev = open_device("emu://cmd-1")
    dev.flash(bundles / "linux-arm-v1.kedge", keys)
    tel, transport = open_device_telemetry("cmd-1", dev.storage, "wifi", None, emulated=dev)
    key = provision_device_key(dev.storage.root, "cmd-1")
    acks: list[dict[str, object]] = []
    original = tel.link.send_control
    tel.link.send_control = lambda kind, body, wire: (acks.append(body) if kind == "cmd_ack" else None,  # type: ignore[method-assign]
                                                      original(kind, body, wire))[1]
    sent: list[str] = []
    target: dict[str, int] = {}

    def downlinks() -> list[tuple[str, bytes]]:
        rt = tel.runtime
        if rt is None or rt.signal_time() < 5.0:
            return []
        if "terminate" not in sent:
            target["site"] = min(k.site for k in rt.manager.kernels.values())
            sent.append("terminate")
            return [("cmd", sign(key, "cmd-1", "terminate-seed", {"site": target["site"]}).to_json().encode())]
        if "reboot" not in sent and rt.signal_time() >= 10.0:
            sent.append("reboot")
            return [("cmd", sign(key, "cmd-1", "reboot").to_json().encode())]
        return []

    tel.downlinks = downlinks
    log = tmp_path / "run.jsonl"
    s = run_stream(dev, RecordSource(make_scenario("emg-switch", 1.0, seed=2)), out=log, telemetry=tel,
                   options=RunOptions(probation_beats=5, runtime=RuntimeConfig(adapt=False)))
    transport.close()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert s.interrupted and any(e["event"] == "reboot" for e in events)  # the run ended at the reboot
    assert events[-1]["event"] == "stop" and events[-1]["t"] < 60.0
    terminated = [e for e in events if e.get("event") == "transition" and e.get("to") == "TERMINATED"]
    at_site = [n for n, k in _kernels(bundles, keys).items() if k == target["site"]]
    assert sorted(e["seed_id"] for e in terminated) == sorted(at_site) and at_site
    done = [a for a in acks if a.get("status") == "ok"]
    assert [a["name"] for a in done] == ["terminate-seed", "reboot"] and all(verify_ack(key, a) for a in done)
    audit = verify(dev.root / AUDIT_FILE, load_or_create_key(dev.root / AUDIT_KEY_FILE))
    assert [e["event"] for e in audit] == ["accepted", "done", "accepted", "done"]


def _kernels(bundles: Path, keys: Path) -> dict[str, int]:
    from kasmina_edge.contracts.bundle import read_bundle

    return {k.name: int(k.site or 0) for k in read_bundle(bundles / "linux-arm-v1.kedge", keys).manifest.kernels()}
