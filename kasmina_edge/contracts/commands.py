"""Signed commands from the operator to a device: an HMAC-SHA256 envelope with nonce and issue time.

The signature covers the canonical JSON of (device_id, name, args, nonce, issued_at): keys sorted,
no whitespace, UTF-8, no NaN. The device's :class:`Verifier` refuses a command whose signature
does not match, that names another device, that is older or newer than the freshness window
(±60 s), or whose nonce it has already seen. The nonce ledger keeps every nonce longer than any command
stays fresh; :class:`PersistentLedger` keeps it in a file, written (fsync, atomic rename) *before* the
command acts, so a command captured on the air is refused after a reboot or a power cut just the same.

Acknowledgements go back signed (:func:`sign_ack`, :func:`verify_ack`): an HMAC under a key derived from the
device's command key for that one use, so a broker or radio attacker cannot forge "ok" for a command the
device refused or never saw.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from kasmina_edge.contracts.errors import CommandRejected, KasminaError

COMMAND_NAMES = frozenset(
    {"pause", "resume", "request-strip", "set", "ota-offer", "reboot", "terminate-seed"}
)
FRESHNESS_WINDOW_S = 60.0
NONCE_TTL_S = 300.0
MIN_KEY_BYTES = 16
NONCE_BYTES = 16
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")


class RejectReason(StrEnum):
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"
    STALE = "stale"
    FUTURE_DATED = "future_dated"
    WRONG_DEVICE = "wrong_device"
    MALFORMED = "malformed"


class Rejected(CommandRejected):
    """A refused command; ``reason`` says which check refused it."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"command rejected ({reason.value}): {detail}")
        self.reason = reason


class CommandKeyError(KasminaError):
    """The command key is unusable (too short)."""


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise CommandKeyError(f"command key must be at least {MIN_KEY_BYTES} bytes")
    return bytes(key)


@dataclass(frozen=True)
class Command:
    device_id: str
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    nonce: str = ""
    issued_at: float = 0.0

    def canonical_bytes(self) -> bytes:
        """The exact bytes the signature covers."""
        body = {
            "args": self.args,
            "device_id": self.device_id,
            "issued_at": self.issued_at,
            "name": self.name,
            "nonce": self.nonce,
        }
        return json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()


@dataclass(frozen=True)
class SignedCommand:
    command: Command
    signature: str  # hex HMAC-SHA256 of command.canonical_bytes()

    def to_dict(self) -> dict[str, Any]:
        c = self.command
        return {
            "device_id": c.device_id,
            "name": c.name,
            "args": dict(c.args),
            "nonce": c.nonce,
            "issued_at": c.issued_at,
            "signature": self.signature,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedCommand:
        """Parse the wire form; raises :class:`Rejected` (malformed) for anything but a well-formed envelope."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise Rejected(RejectReason.MALFORMED, f"not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> SignedCommand:
        if not isinstance(data, dict):
            raise Rejected(RejectReason.MALFORMED, "envelope must be a JSON object")
        expected = {"device_id", "name", "args", "nonce", "issued_at", "signature"}
        if set(data) != expected:
            raise Rejected(
                RejectReason.MALFORMED,
                f"fields missing {sorted(expected - set(data))}, unknown {sorted(set(data) - expected)}",
            )
        types: dict[str, type | tuple[type, ...]] = {
            "device_id": str,
            "name": str,
            "args": dict,
            "nonce": str,
            "issued_at": (int, float),
            "signature": str,
        }
        for key, kind in types.items():
            if isinstance(data[key], bool) or not isinstance(data[key], kind):
                raise Rejected(RejectReason.MALFORMED, f"field {key!r} has the wrong type")
        if not _HEX_MAC.fullmatch(data["signature"]):
            raise Rejected(RejectReason.MALFORMED, "signature must be 64 hex digits (HMAC-SHA256)")
        try:
            issued_at = float(data["issued_at"])
        except OverflowError:
            issued_at = math.inf
        if not math.isfinite(issued_at):
            raise Rejected(RejectReason.MALFORMED, f"issued_at {data['issued_at']!r} is not a finite time")
        command = Command(data["device_id"], data["name"], data["args"], data["nonce"], issued_at)
        _check_shape(command)
        return cls(command, data["signature"])


def _check_shape(command: Command) -> None:
    if command.name not in COMMAND_NAMES:
        raise Rejected(
            RejectReason.MALFORMED,
            f"unknown command {command.name!r} (known: {', '.join(sorted(COMMAND_NAMES))})",
        )
    if not command.device_id:
        raise Rejected(RejectReason.MALFORMED, "empty device_id")
    try:
        nonce = bytes.fromhex(command.nonce)
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_BYTES:
        raise Rejected(RejectReason.MALFORMED, f"nonce must be {NONCE_BYTES} random bytes in hex")
    if not all(isinstance(k, str) for k in command.args):
        raise Rejected(RejectReason.MALFORMED, "args keys must be strings")
    try:
        command.canonical_bytes()
    except (TypeError, ValueError) as exc:
        raise Rejected(RejectReason.MALFORMED, f"args are not plain JSON: {exc}") from None


def _mac(key: bytes, command: Command) -> str:
    return hmac.new(key, command.canonical_bytes(), hashlib.sha256).hexdigest()


def sign(
    key: bytes,
    device_id: str,
    name: str,
    args: Mapping[str, Any] | None = None,
    *,
    clock: Callable[[], float] = time.time,
    nonce: str | None = None,
) -> SignedCommand:
    """A signed command for ``device_id``, issued now (``clock``) with a fresh random nonce."""
    command = Command(
        device_id, name, dict(args or {}), nonce or secrets.token_hex(NONCE_BYTES), round(clock(), 3)
    )
    _check_shape(command)
    return SignedCommand(command, _mac(_check_key(key), command))


class NonceLedger(Protocol):
    """Where a verifier keeps the nonces it has seen (nonce -> when it may be forgotten)."""

    def __contains__(self, nonce: object) -> bool: ...

    def __len__(self) -> int: ...

    def add(self, nonce: str, until: float, now: float) -> None: ...


class MemoryLedger:
    """Nonces in memory: a reboot forgets them (tests, the operator's side)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def prune(self, now: float) -> None:
        for nonce in [n for n, until in self._seen.items() if until <= now]:
            del self._seen[nonce]

    def add(self, nonce: str, until: float, now: float) -> None:
        self.prune(now)
        self._seen[nonce] = until


class LedgerError(KasminaError):
    """A persisted nonce ledger that cannot be read (the device then refuses every command: fail closed)."""


class PersistentLedger(MemoryLedger):
    """Nonces in a file that survives reboot and power loss: each new nonce is on disk (temp file, fsync,
    atomic rename) before :meth:`add` returns, so before the command acts. A damaged file refuses to load
    (a verifier that forgot its nonces would accept replays)."""

    FORMAT = "kasmina-nonce-ledger/1"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(raw, dict) or raw.get("format") != self.FORMAT:
                    raise ValueError("not a nonce ledger")
                self._seen = {str(n): float(u) for n, u in raw["nonces"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise LedgerError(f"{self.path}: nonce ledger unreadable ({exc}); commands are refused") from None

    def add(self, nonce: str, until: float, now: float) -> None:
        super().add(nonce, until, now)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"format": self.FORMAT, "nonces": self._seen}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Verifier:
    """A device's command gate: signature, addressee, freshness, replay."""

    def __init__(
        self,
        key: bytes,
        device_id: str,
        *,
        clock: Callable[[], float] = time.time,
        window_s: float = FRESHNESS_WINDOW_S,
        nonce_ttl_s: float = NONCE_TTL_S,
        ledger: NonceLedger | None = None,
    ) -> None:
        if nonce_ttl_s < 2 * window_s:
            raise CommandKeyError(
                f"nonce TTL {nonce_ttl_s}s must cover the whole freshness window (2 x {window_s}s)"
            )
        self._key = _check_key(key)
        self.device_id = device_id
        self.clock = clock
        self.window_s = window_s
        self.nonce_ttl_s = nonce_ttl_s
        self.ledger: NonceLedger = ledger if ledger is not None else MemoryLedger()

    def __len__(self) -> int:
        """Nonces in the ledger."""
        return len(self.ledger)

    def verify(self, envelope: SignedCommand | str | bytes) -> Command:
        """The command if every check passes (and its nonce is now spent); raises :class:`Rejected`."""
        signed = envelope if isinstance(envelope, SignedCommand) else SignedCommand.from_json(envelope)
        command = signed.command
        _check_shape(command)
        # compared as bytes: compare_digest refuses non-ASCII str, and a forged signature may be anything
        if not hmac.compare_digest(_mac(self._key, command).encode(), signed.signature.lower().encode()):
            raise Rejected(
                RejectReason.BAD_SIGNATURE,
                f"{command.name} for {command.device_id}: signature does not match",
            )
        if command.device_id != self.device_id:
            raise Rejected(
                RejectReason.WRONG_DEVICE, f"addressed to {command.device_id!r}, this is {self.device_id!r}"
            )
        now = self.clock()
        age = now - command.issued_at
        if age > self.window_s:
            raise Rejected(RejectReason.STALE, f"issued {age:.0f}s ago (window ±{self.window_s:.0f}s)")
        if -age > self.window_s:
            raise Rejected(
                RejectReason.FUTURE_DATED, f"issued {-age:.0f}s in the future (window ±{self.window_s:.0f}s)"
            )
        if command.nonce in self.ledger:
            raise Rejected(RejectReason.REPLAY, f"nonce {command.nonce[:8]}… was already used")
        self.ledger.add(command.nonce, now + self.nonce_ttl_s, now)  # on disk before the command acts
        return command


# ---------------------------------------------------------------------------------------------- acks

ACK_KEY_INFO = b"kasmina-edge ack v1"


def _ack_key(key: bytes) -> bytes:
    """A key for acknowledgements only, derived from the device's command key (one key, one use)."""
    return hmac.new(_check_key(key), ACK_KEY_INFO, hashlib.sha256).digest()


def _ack_bytes(ack: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in ack.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign_ack(key: bytes, ack: Mapping[str, Any]) -> dict[str, Any]:
    """``ack`` with ``mac``: HMAC-SHA256 (ack key) over its canonical JSON."""
    return {**ack, "mac": hmac.new(_ack_key(key), _ack_bytes(ack), hashlib.sha256).hexdigest()}


def verify_ack(key: bytes, ack: Any) -> bool:
    """True when ``ack`` carries a ``mac`` that the device's key made over exactly these fields."""
    if not isinstance(ack, Mapping) or not isinstance(ack.get("mac"), str):
        return False
    try:
        want = hmac.new(_ack_key(key), _ack_bytes(ack), hashlib.sha256).hexdigest()
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(want.encode(), str(ack["mac"]).encode("utf-8", "replace"))
