"""A compliant deployment for the certify tests, written into a folder: keys (0600), sealed run logs, a device
audit log of a really signed and verified command beside its operator's log of sending it, a TLS broker
config with the shipped per-device ACL, a monitor store with two patients' records, licensed data folders."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DEVICE = "patch-01"


@dataclass
class Setup:
    root: Path
    keys: Path
    logs: Path
    config: Path
    store: Path
    bundle: Path
    device_audit: Path
    data: Path


def _signed_command_logs(logs: Path) -> Path:
    """The device verifies and runs a signed `pause`; the operator's log records sending it."""
    from kasmina_edge.contracts.commands import sign
    from kasmina_edge.net.audit import AuditLog, load_or_create_key
    from kasmina_edge.net.commands import CommandHandler

    key = b"k" * 32
    (logs / "device").mkdir(parents=True)
    (logs / "operator").mkdir(parents=True)
    dev_audit = AuditLog(logs / "device" / "audit.jsonl", key=load_or_create_key(logs / "device" / "audit.key"))
    op_audit = AuditLog(logs / "operator" / "operator.jsonl", key=load_or_create_key(logs / "operator" / "audit.key"))
    handler = CommandHandler(DEVICE, key, dev_audit, {"pause": lambda args, env: {"paused": True}})
    cmd = sign(key, DEVICE, "pause")
    op_audit.append("sent", device=DEVICE, name="pause", nonce=cmd.command.nonce, args={},
                    issued_at=cmd.command.issued_at)
    ack = handler.handle(cmd.to_json())
    assert ack["status"] == "ok", ack
    return logs / "device" / "audit.jsonl"


def make_setup(root: Path, bundle: Path, bundle_keys: Path) -> Setup:
    from kasmina_edge.validate.log_crypto import load_or_create_key, seal_file

    keys = root / "keys"
    shutil.copytree(bundle_keys, keys)
    (keys / "bundle-signing.key").chmod(0o600)
    logs = root / "logs"
    logs.mkdir()
    run = logs / "run.jsonl"
    run.write_text("".join(json.dumps({"event": "beat", "sample": 360 * i, "class": "N"}) + "\n" for i in range(50)))
    seal_file(run, load_or_create_key(root / "secure" / "logs.key"))
    device_audit = _signed_command_logs(logs)
    store = root / "monitor.jsonl"
    now = int(time.time())
    store.write_text("".join(json.dumps({"device": d, "fseq": i, "kind": "beat_counts",
                                         "record": {"n": i, "timestamp": now - 3600 * (i + 1)}}) + "\n"
                             for i in range(6) for d in (DEVICE, "patch-02")))
    data = root / "data"
    data.mkdir()
    (data / "README.md").write_text("Records used.\nLicense: Open Data Commons Attribution License v1.0.\n")
    config = root / "certify.toml"
    config.write_text(f'''[mqtt]
brokers = ["mqtts://broker.example:8883"]
[store]
monitor = "monitor.jsonl"
retention_days = 365
[patients]
"P-001" = ["{DEVICE}"]
[data]
folders = ["data"]
''')
    dst = root / "bundle.kedge"
    shutil.copy(bundle, dst)
    return Setup(root, keys, logs, config, store, dst, device_audit, data)


def inputs(s: Setup, erase: str | None = None):  # type: ignore[no-untyped-def]
    from kasmina_edge.validate.certify import CertifyInputs, load_config

    cfg, base = load_config(s.config)
    return CertifyInputs(bundle=s.bundle, keys=s.keys, logs=s.logs, config=cfg, base=base, erase=erase,
                         sbom_out=s.root / "sbom.cdx.json")
