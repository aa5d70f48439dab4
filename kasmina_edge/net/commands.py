"""Signed operator commands: the operator signs and waits for the ack, the device verifies, acts and acks.

The envelope and its checks are the contracts' (:mod:`kasmina_edge.contracts.commands`: HMAC-SHA256, nonce
ledger, freshness, signed acks). What this module adds is what surrounds them: per-device command keys, the
device's :class:`CommandHandler` (verify -> act -> signed ack, every step to the device's keyed audit log, a
refused command raises the platform's security alert; its nonce ledger persisted when given one), the operator's
:func:`send_command` over MQTT (sign -> publish -> wait for a *verified* ack with the same nonce, both steps to
the operator's keyed audit log), and the raw-strip payload that leaves the
device only on a signed ``request-strip``, encrypted end to end with AES-256-GCM under a per-device key.

On LoRaWAN a command waits for the device's next uplink (Class A), which may be an hour or more at the slowest
data rate: the device's freshness window there is the link's downlink latency bound (:func:`freshness_window_s`),
not the contracts' default 60 s; the nonce ledger grows with it, so a replay is refused just the same.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kasmina_edge.contracts.commands import (
    FRESHNESS_WINDOW_S,
    MIN_KEY_BYTES,
    NonceLedger,
    Rejected,
    RejectReason,
    SignedCommand,
    Verifier,
    sign,
    sign_ack,
    verify_ack,
)
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.profiles import LoRaProfile, NetworkProfile
from kasmina_edge.net.audit import AuditLog

KEY_FILE = "command.key"
OPERATOR_COMMANDS = ("pause", "resume", "request-strip", "set", "reboot", "terminate-seed")
ACK_WIRE_BYTES = 16  # on LoRaWAN: tag, 4 bytes of the nonce, status, reason code, spare, 8-byte truncated MAC
OPERATOR_AUDIT_KEY = "operator-audit.key"
STRIP_INFO = b"kasmina-edge strip v1"


class CommandError(KasminaError):
    """A command the operator cannot send (no key, bad argument) or that got no acknowledgement."""


# --------------------------------------------------------------------------------------------- keys


def operator_keys_dir() -> Path:
    env = os.environ.get("KASMINA_COMMAND_KEYS")
    return Path(env) if env else Path.home() / ".local" / "share" / "kasmina-edge" / "command-keys"


def _write_key(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.hex().encode() + b"\n")
    os.replace(tmp, path)


def read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: not a command key ({exc})") from None
    if len(key) < MIN_KEY_BYTES:
        raise CommandError(f"{path}: command key shorter than {MIN_KEY_BYTES} bytes")
    return key


def provision_device_key(device_dir: Path, device: str, operator_dir: Path | None = None) -> bytes:
    """The device's command key (made on first use); the operator's key store gets a copy (emulator convenience:
    a real device is provisioned at manufacture and the key travels to the fleet's key store, never over MQTT)."""
    path = Path(device_dir) / KEY_FILE
    if path.exists():
        key = read_key(path)
    else:
        key = secrets.token_bytes(32)
        _write_key(path, key)
    op = (operator_dir or operator_keys_dir()) / f"{device}.key"
    if not op.exists():
        _write_key(op, key)
    return key


def operator_audit_key(directory: Path | None = None) -> bytes:
    """The operator's audit key (made on first use) in the operator key store: it keys the operator's log."""
    from kasmina_edge.net.audit import load_or_create_key

    return load_or_create_key((directory or operator_keys_dir()) / OPERATOR_AUDIT_KEY)


def operator_key(device: str, key_file: Path | None = None) -> bytes:
    path = key_file or operator_keys_dir() / f"{device}.key"
    if not path.exists():
        raise CommandError(
            f"no command key for {device} at {path} (run the device once with --mqtt to provision it, or --key FILE)"
        )
    return read_key(path)


def freshness_window_s(profile: NetworkProfile) -> float:
    """How old a command may be when the device sees it: Class A LoRaWAN waits for an uplink."""
    if isinstance(profile, LoRaProfile):
        return 6 * 3600.0  # the slowest plan uplinks every ~1.5 h; acks and resends can stretch it
    return FRESHNESS_WINDOW_S


# --------------------------------------------------------------------------------------------- strips


def strip_key(device_key: bytes) -> bytes:
    """The AES-256 key for raw-signal strips, derived from the device's secret (separate use, separate key)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=STRIP_INFO).derive(device_key)


def seal_strip(device_key: bytes, device: str, nonce: str, samples_mv: Any, fs: float) -> dict[str, Any]:
    """Samples (float mV) as int16 microvolt steps of 5 uV, encrypted; the command's nonce binds it to the request."""
    import numpy as np

    x = np.clip(np.round(np.asarray(samples_mv, dtype=np.float64) * 200.0), -32768, 32767).astype(">i2")
    iv = secrets.token_bytes(12)
    aad = json.dumps({"device": device, "nonce": nonce, "fs": fs}, sort_keys=True).encode()
    blob = AESGCM(strip_key(device_key)).encrypt(iv, x.tobytes(), aad)
    return {
        "device": device,
        "nonce": nonce,
        "fs": fs,
        "iv": iv.hex(),
        "ciphertext": blob.hex(),
        "samples": int(x.size),
    }


def open_strip(device_key: bytes, sealed: Mapping[str, Any]) -> Any:
    """The strip in mV; raises :class:`CommandError` if it was altered or sealed for another device or request."""
    import numpy as np
    from cryptography.exceptions import InvalidTag

    aad = json.dumps(
        {"device": sealed["device"], "nonce": sealed["nonce"], "fs": sealed["fs"]}, sort_keys=True
    ).encode()
    try:
        raw = AESGCM(strip_key(device_key)).decrypt(
            bytes.fromhex(sealed["iv"]), bytes.fromhex(sealed["ciphertext"]), aad
        )
    except (InvalidTag, ValueError, KeyError) as exc:
        raise CommandError(f"strip does not authenticate: {type(exc).__name__}") from None
    return np.frombuffer(raw, dtype=">i2").astype(np.float32) / 200.0


# --------------------------------------------------------------------------------------------- device side


Action = Callable[[Mapping[str, Any], SignedCommand], dict[str, Any]]


class CommandHandler:
    """Verifies, executes and acknowledges commands on the device; audits every step."""

    def __init__(
        self,
        device_id: str,
        key: bytes,
        audit: AuditLog,
        actions: Mapping[str, Action],
        *,
        clock: Callable[[], float] = time.time,
        window_s: float = FRESHNESS_WINDOW_S,
        on_refused: Callable[[RejectReason, str], None] | None = None,
        ledger: NonceLedger | None = None,
    ) -> None:
        self.device_id = device_id
        self._key = key
        self.verifier = Verifier(
            key, device_id, clock=clock, window_s=window_s, nonce_ttl_s=max(300.0, 2.5 * window_s), ledger=ledger
        )
        self.audit = audit
        self.actions = dict(actions)
        self.on_refused = on_refused
        self.clock = clock

    def handle(self, payload: bytes | str) -> dict[str, Any]:
        """The acknowledgement for one envelope (never raises for what arrived)."""
        nonce, name = "", "?"
        try:
            envelope = SignedCommand.from_json(payload)
            nonce, name = envelope.command.nonce, envelope.command.name
            command = self.verifier.verify(envelope)
        except Rejected as exc:
            self.audit.append("refused", name=name, nonce=nonce, reason=exc.reason.value, detail=str(exc))
            if self.on_refused is not None:
                self.on_refused(exc.reason, str(exc))
            return self._ack(nonce, name, "refused", reason=exc.reason.value)
        self.audit.append(
            "accepted", name=name, nonce=nonce, args=dict(command.args), issued_at=command.issued_at
        )
        action = self.actions.get(name)
        if action is None:
            self.audit.append("unsupported", name=name, nonce=nonce)
            return self._ack(nonce, name, "unsupported", reason=f"this device does not do {name!r}")
        try:
            result = action(command.args, envelope)
        except KasminaError as exc:
            self.audit.append("failed", name=name, nonce=nonce, detail=str(exc))
            return self._ack(nonce, name, "failed", reason=str(exc))
        self.audit.append("done", name=name, nonce=nonce, result=result)
        return self._ack(nonce, name, "ok", result=result)

    def _ack(self, nonce: str, name: str, status: str, **extra: Any) -> dict[str, Any]:
        """Signed with the device's ack key: the operator believes no ack it cannot verify."""
        body = {
            "device": self.device_id,
            "nonce": nonce,
            "name": name,
            "status": status,
            "at": round(self.clock(), 3),
            **extra,
        }
        return sign_ack(self._key, json.loads(json.dumps(body, default=str)))


# --------------------------------------------------------------------------------------------- operator side


@dataclass
class SendResult:
    device: str
    name: str
    nonce: str
    status: str  # ok, refused, failed, unsupported, timeout
    ack: dict[str, Any] | None
    seconds: float
    forged_acks: int = 0  # acks for this nonce whose MAC did not verify (ignored)


def parse_set_args(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values read as JSON when they parse (numbers, true/false), else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"argument {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def send_command(
    url: str,
    device: str,
    name: str,
    args: Mapping[str, Any],
    key: bytes,
    audit: AuditLog,
    *,
    fleet: str = "default",
    timeout_s: float = 30.0,
    tls: Any = None,
    username: str | None = None,
    password: str | None = None,
    clock: Callable[[], float] = time.time,
) -> SendResult:
    """Sign, publish on ``kasmina/<fleet>/<device>/cmd``, wait for the device's ``cmd_ack`` with the same nonce."""
    from kasmina_edge.net import topics
    from kasmina_edge.net.mqtt import MqttClient

    if name not in OPERATOR_COMMANDS:
        raise CommandError(f"unknown command {name!r}: choose {', '.join(OPERATOR_COMMANDS)}")
    signed = sign(key, device, name, dict(args), clock=clock)
    nonce = signed.command.nonce
    got: list[dict[str, Any]] = []
    forged: list[dict[str, Any]] = []
    arrived = threading.Event()

    def on_ack(topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if isinstance(body, dict) and body.get("nonce") == nonce:
            if not verify_ack(key, body):  # anyone on the broker can publish an ack: only the device can sign one
                forged.append(body)
                return
            got.append(body)
            arrived.set()

    client = MqttClient(
        url, f"kasmina-send-{secrets.token_hex(4)}", tls=tls, username=username, password=password
    )
    client.subscribe(topics.telemetry(fleet, device, "cmd_ack"), on_ack, qos=1)
    client.connect()
    t0 = time.monotonic()
    try:
        audit.append(
            "sent", device=device, name=name, nonce=nonce, args=dict(args), issued_at=signed.command.issued_at
        )
        client.publish(topics.command(fleet, device), signed.to_json(), qos=1).wait_for_publish(timeout_s)
        arrived.wait(timeout_s)
    finally:
        client.close()
    seconds = time.monotonic() - t0
    for body in forged:
        audit.append("forged_ack", device=device, name=name, nonce=nonce, status=body.get("status"))
    if not got:
        audit.append("no_ack", device=device, name=name, nonce=nonce, waited_s=round(seconds, 1))
        return SendResult(device, name, nonce, "timeout", None, seconds, len(forged))
    ack = got[0]
    audit.append(
        "acked", device=device, name=name, nonce=nonce, status=ack.get("status"), reason=ack.get("reason")
    )
    return SendResult(device, name, nonce, str(ack.get("status")), ack, seconds, len(forged))
