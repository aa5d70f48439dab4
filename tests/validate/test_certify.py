"""certify on a compliant set-up passes; each planted violation is caught by the check meant for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from certify_setup import DEVICE, Setup, inputs, make_setup

from kasmina_edge.validate.certify import run_checks


@pytest.fixture
def setup(good_bundle: Path, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(tmp_path / "command-keys"))
    return make_setup(tmp_path / "site", good_bundle, keys)


def _by_id(s: Setup, erase: str | None = None) -> dict[str, tuple[str, str]]:
    rep = run_checks(inputs(s, erase))
    return {c.id: (c.status, c.evidence) for c in rep.checks}


def test_a_compliant_setup_passes_every_check(setup: Setup) -> None:
    rep = run_checks(inputs(setup, erase="P-001"))
    status = {c.id: c.status for c in rep.checks}
    assert rep.passed and set(status.values()) == {"pass"}, [(c.id, c.evidence) for c in rep.checks]
    assert all(c.requirements for c in rep.checks)
    assert "not a certification" in rep.scope
    sbom = json.loads((setup.root / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and any(c["name"].lower() == "numpy" for c in sbom["components"])


def test_erasure_removes_one_patient_and_the_rescan_proves_it(setup: Setup) -> None:
    status, evidence = _by_id(setup, erase="P-001")["erasure"]
    assert status == "pass" and "6 record(s) erased of 6; a re-scan finds 0" in evidence
    left = [json.loads(line)["device"] for line in setup.store.read_text().splitlines()]
    assert left == ["patch-02"] * 6  # the other patient's records stay


def test_plain_text_ecg_in_a_log_is_caught(setup: Setup) -> None:
    strip = [round(0.01 * i, 3) for i in range(720)]
    (setup.logs / "telemetry.jsonl").write_text(json.dumps({"device": DEVICE, "kind": "strip", "samples": strip}) + "\n")
    got = _by_id(setup)
    assert got["raw-ecg"][0] == "fail" and "telemetry.jsonl:1: samples: 720 samples in plain text" in got["raw-ecg"][1]
    assert got["logs-encrypted"][0] == "fail"


def test_an_encrypted_strip_answering_a_request_is_allowed(setup: Setup) -> None:
    import numpy as np

    from kasmina_edge.net.commands import seal_strip

    sealed = seal_strip(b"d" * 32, DEVICE, "abc123", np.sin(np.arange(720) / 20.0), 360.0)
    (setup.logs / "strips.jsonl").write_text(json.dumps({"device": DEVICE, "strip": sealed}) + "\n")
    assert _by_id(setup)["raw-ecg"][0] == "pass"
    del sealed["nonce"]  # a strip nobody asked for
    (setup.logs / "strips.jsonl").write_text(json.dumps({"device": DEVICE, "strip": sealed}) + "\n")
    assert _by_id(setup)["raw-ecg"][0] == "fail"


def test_a_world_readable_key_is_caught(setup: Setup) -> None:
    (setup.keys / "bundle-signing.key").chmod(0o644)
    status, evidence = _by_id(setup)["keys-private"]
    assert status == "fail" and "bundle-signing.key is world-readable (mode 644" in evidence


def test_an_unsigned_command_accepted_is_caught(setup: Setup) -> None:
    from kasmina_edge.net.audit import AuditLog, load_or_create_key

    log = AuditLog(setup.device_audit, key=load_or_create_key(setup.device_audit.with_name("audit.key")))
    log.append("accepted", name="reboot", nonce="", args={})  # the chain stays intact: only the envelope is missing
    got = _by_id(setup)
    assert got["audit-chain"][0] == "pass"
    assert got["signed"][0] == "fail" and "command 'reboot' accepted without a signed envelope" in got["signed"][1]


def test_a_command_no_operator_sent_is_caught(setup: Setup) -> None:
    from kasmina_edge.net.audit import AuditLog, load_or_create_key

    log = AuditLog(setup.device_audit, key=load_or_create_key(setup.device_audit.with_name("audit.key")))
    log.append("accepted", name="terminate", nonce="f00d", args={}, issued_at=1.0)
    status, evidence = _by_id(setup)["signed"]
    assert status == "fail" and "no operator log signed and sent it" in evidence


def test_a_broken_audit_chain_is_caught(setup: Setup) -> None:
    lines = setup.device_audit.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["name"] = "reboot"  # edited after the fact
    setup.device_audit.write_text("\n".join([json.dumps(entry, sort_keys=True), *lines[1:]]) + "\n")
    status, evidence = _by_id(setup)["audit-chain"]
    assert status == "fail" and "audit.jsonl:1: hash mismatch" in evidence


def test_an_mqtt_topic_open_to_all_is_caught(setup: Setup) -> None:
    from kasmina_edge.validate.checks_network import default_acl

    acl = setup.root / "acl"
    acl.write_text(default_acl().read_text() + "\npattern readwrite kasmina/#\n")
    cfg = setup.config.read_text().replace("[mqtt]\n", '[mqtt]\nacl = "acl"\n')
    setup.config.write_text(cfg)
    status, evidence = _by_id(setup)["mqtt-acl"]
    assert status == "fail" and "pattern readwrite kasmina/# opens every device's topics to every client" in evidence


def test_a_broker_without_tls_is_caught(setup: Setup) -> None:
    setup.config.write_text(setup.config.read_text().replace("mqtts://broker.example:8883",
                                                               "mqtt://broker.example:1883"))
    status, evidence = _by_id(setup)["tls"]
    assert status == "fail" and "broker mqtt://broker.example:1883: not TLS" in evidence


def test_data_without_a_licence_line_is_caught(setup: Setup) -> None:
    (setup.data / "README.md").write_text("Records used.\n")
    assert _by_id(setup)["data-licences"][0] == "fail"


def test_records_past_the_retention_period_are_caught(setup: Setup) -> None:
    import time

    now = int(time.time())
    lines = [{"device": DEVICE, "fseq": 0, "kind": "beat_counts", "record": {"timestamp": now - 400 * 86400}},
             {"device": DEVICE, "fseq": 1, "kind": "beat_counts", "record": {"timestamp": now - 3600}}]
    setup.store.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert "retention_days = 365" in setup.config.read_text()
    status, evidence = _by_id(setup)["retention"]
    assert status == "fail" and "1 of 2 record(s) in monitor.jsonl older than 365 days" in evidence
    setup.store.write_text(json.dumps(lines[1]) + "\n")
    assert _by_id(setup)["retention"][0] == "pass"
