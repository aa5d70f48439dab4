"""Item 2: replay protection that survives reboot and power loss, signed acks and reports, the keyed audit log
with its signed head, and `kasmina-edge audit verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.storage import FlashStorage
from firmware_sim.telemetry import AUDIT_FILE, AUDIT_KEY_FILE, NONCE_LEDGER_FILE, open_device_telemetry
from kasmina_edge.contracts.commands import LedgerError, PersistentLedger, sign, sign_ack, verify_ack
from kasmina_edge.net.audit import AuditError, AuditLog, head_path, load_or_create_key, verify
from kasmina_edge.net.commands import CommandHandler, provision_device_key

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _boot(root: Path, device: str = "patch-07") -> tuple[object, object]:
    """The device's telemetry and command handler exactly as `kasmina-edge run --link` opens them."""
    tel, transport = open_device_telemetry(device, FlashStorage(root), "lorawan-eu868-dr0", None)
    return tel, transport


def test_a_captured_command_is_refused_after_reboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(tmp_path / "ops"))
    root = tmp_path / "dev"
    tel, transport = _boot(root)
    key = provision_device_key(root, "patch-07")
    captured = sign(key, "patch-07", "pause").to_json()  # what an attacker on the air records
    ack = tel.commands.handle(captured)  # type: ignore[attr-defined]
    assert ack["status"] == "ok" and verify_ack(key, ack)
    transport.close()  # type: ignore[attr-defined]
    assert (root / NONCE_LEDGER_FILE).exists()
    # reboot: every object is new; only the flash remains. LoRaWAN keeps a command fresh for 6 h.
    tel2, transport2 = _boot(root)
    replay = tel2.commands.handle(captured)  # type: ignore[attr-defined]
    assert replay["status"] == "refused" and replay["reason"] == "replay"
    assert verify_ack(key, replay)
    transport2.close()  # type: ignore[attr-defined]
    events = [e["event"] for e in verify(root / AUDIT_FILE, load_or_create_key(root / AUDIT_KEY_FILE))]
    assert events == ["accepted", "done", "refused"]


def test_a_power_cut_while_the_command_acts_still_spends_its_nonce(tmp_path: Path) -> None:
    key, clock = bytes(range(32)), Clock()
    ledger_path = tmp_path / "nonces.json"

    def dies(args: object, envelope: object) -> dict[str, object]:
        raise SystemExit("power cut")  # the device dies in the middle of the action

    handler = CommandHandler("d", key, AuditLog(tmp_path / "a.jsonl"), {"pause": dies}, clock=clock,
                             window_s=6 * 3600, ledger=PersistentLedger(ledger_path))
    envelope = sign(key, "d", "pause", clock=clock).to_json()
    with pytest.raises(SystemExit):
        handler.handle(envelope)
    clock.t += 3 * 3600  # three hours later, still inside the LoRaWAN window
    again = CommandHandler("d", key, AuditLog(tmp_path / "a.jsonl"), {"pause": dies}, clock=clock,
                           window_s=6 * 3600, ledger=PersistentLedger(ledger_path))
    assert again.handle(envelope)["reason"] == "replay"


def test_a_damaged_ledger_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "nonces.json"
    path.write_text('{"format": "kasmina-nonce-ledger/1", "nonces": [1, 2]')
    with pytest.raises(LedgerError, match="nonce ledger unreadable .* commands are refused"):
        PersistentLedger(path)


def test_acks_are_signed_and_a_forged_one_does_not_verify() -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    ack = sign_ack(key, {"device": "d", "nonce": "ab" * 16, "name": "pause", "status": "refused"})
    assert verify_ack(key, ack) and not verify_ack(other, ack)
    assert not verify_ack(key, {**ack, "status": "ok"})  # a broker attacker flips the outcome
    assert not verify_ack(key, {k: v for k, v in ack.items() if k != "mac"})
    assert not verify_ack(key, {**ack, "mac": 5}) and not verify_ack(key, "nope")


def test_ota_server_ignores_reports_the_device_did_not_sign() -> None:
    from kasmina_edge.net.ota import OtaServer

    key = bytes(range(32))
    args = {"session": 7, "bundle_id": "b", "version": 2, "kind": "full", "bytes": 1, "sha256": "0" * 64,
            "mode": "chunks", "piece_bytes": 1, "pieces": 1, "parity": 0, "chunk_sha256": ["0" * 64]}
    server = OtaServer(key, "d", args, b"x", lambda m: None)
    server.on_report({"session": 7, "status": "probation_passed", "final": True})
    assert server.final is None and server.forged_reports == 1
    server.on_report(sign_ack(key, {"session": 7, "status": "probation_passed", "final": True}))
    assert server.final is not None and server.final["status"] == "probation_passed"


def _log(tmp_path: Path, n: int = 5) -> tuple[Path, bytes]:
    key = load_or_create_key(tmp_path / "audit.key")
    log = AuditLog(tmp_path / "audit.jsonl", key=key, clock=Clock())
    for i in range(n):
        log.append("accepted", name="pause", nonce=f"{i:032x}")
    return log.path, key


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_truncation_edits_and_rewrites_are_detected(tmp_path: Path) -> None:
    path, key = _log(tmp_path)
    assert len(verify(path, key)) == 5
    original = path.read_text()
    # dropping the last lines: the chain alone still holds, the signed head does not
    path.write_text("".join(_lines(path)[:3]))
    with pytest.raises(AuditError, match="truncated: the signed head says 5 entries, the log holds 3"):
        verify(path, key)
    # an edited line
    lines = original.splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry["name"] = "resume"
    path.write_text("".join([*lines[:2], json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n", *lines[3:]]))
    with pytest.raises(AuditError, match=r"audit.jsonl:3: hash mismatch"):
        verify(path, key)
    # a whole log rewritten with the old unkeyed chain (what anyone could compute)
    path.unlink()
    head_path(path).unlink()
    forged = AuditLog(path)
    for i in range(5):
        forged.append("accepted", name="resume", nonce=f"{i:032x}")
    with pytest.raises(AuditError, match="audit.jsonl:1: entry is not keyed"):
        verify(path, key)
    # a keyed log whose head was deleted
    path.write_text(original)
    with pytest.raises(AuditError, match="signed head missing"):
        verify(path, key)


def test_a_power_cut_between_line_and_head_still_verifies(tmp_path: Path) -> None:
    path, key = _log(tmp_path, 3)
    stale_head = head_path(path).read_text()
    AuditLog(path, key=key).append("done", name="pause")
    head_path(path).write_text(stale_head)  # the head write never happened
    assert len(verify(path, key)) == 4  # the extra line is keyed: authentic
    reopened = AuditLog(path, key=key)
    reopened.append("done", name="resume")
    assert len(verify(path, key)) == 5


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_audit_verify_cli_on_a_device_and_the_operator_log(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    root = devices / "patch-09"
    key = load_or_create_key(root / AUDIT_KEY_FILE)
    log = AuditLog(root / AUDIT_FILE, key=key)
    for i in range(4):
        log.append("accepted", name="pause", nonce=f"{i:032x}")
    env = {"KASMINA_DEVICES_DIR": str(devices), "KASMINA_COMMAND_KEYS": str(tmp_path / "ops"),
           "KASMINA_AUDIT_DIR": str(tmp_path / "audit")}
    ok = _cli("audit", "verify", "--device", "emu://patch-09", env=env)
    assert ok.returncode == 0 and "4 entries" in ok.stdout, ok.stderr
    (root / AUDIT_FILE).write_text("".join(_lines(root / AUDIT_FILE)[:-1]))
    bad = _cli("audit", "verify", "--device", "emu://patch-09", env=env)
    err = bad.stderr.strip()
    assert bad.returncode == 1 and "truncated" in err  # a check that failed: exit 1, not 2 and len(err.splitlines()) == 1, err
    # the operator's log: keyed with the operator's audit key, made on first use
    from kasmina_edge.net.commands import OPERATOR_AUDIT_KEY

    ops = AuditLog(tmp_path / "audit" / "operator.jsonl", key=load_or_create_key(tmp_path / "ops" / OPERATOR_AUDIT_KEY))
    ops.append("sent", device="patch-09", name="pause")
    assert _cli("audit", "verify", env=env).returncode == 0
    missing = _cli("audit", "verify", "--key", str(tmp_path / "nokey"), env=env)
    assert missing.returncode == 2 and "no audit key" in missing.stderr
