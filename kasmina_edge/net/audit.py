"""Append-only, keyed hash-chained audit log with a signed head: every command and its outcome, on the device
and on the operator's side.

One JSON line per entry; each carries the previous entry's ``hash`` (``prev``) and its own ``hash``: with a
key (the normal case), HMAC-SHA256 under that key over ``prev`` and the entry's canonical body; without one
(logs written before keys existed), plain SHA-256. Beside the log, ``<log>.head`` holds the entry count and the
last hash, HMAC'd under the same key and rewritten (atomically) after every append. :func:`verify` names the
first line that breaks the chain, and with the head also catches what a chain alone cannot: lines dropped from
the end (truncation), a head or log replaced as a whole, an unkeyed log passed off as keyed. Without the key
nobody can rewrite a line and its successors so that they verify again.

Keys: the device's audit key lives in its secure storage (``secure/audit.key``), never sent anywhere; the
operator's in the operator key store (``operator-audit.key``). Lines are appended and fsynced one by one; a torn
last line (power cut) is reported, not silently dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError

GENESIS = "0" * 64
HEAD_SUFFIX = ".head"
HEAD_FORMAT = "kasmina-audit-head/1"
KEY_BYTES = 32


class AuditError(KasminaError):
    """An audit log whose chain is broken (edited, truncated, reordered) or whose head does not match it."""


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _entry_hash(prev: str, body: dict[str, Any], key: bytes | None = None) -> str:
    data = prev.encode() + _canonical(body)
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def _head_mac(key: bytes, count: int, last: str) -> str:
    return hmac.new(key, f"{HEAD_FORMAT}|{count}|{last}".encode(), hashlib.sha256).hexdigest()


def head_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + HEAD_SUFFIX)


def read_key(path: Path) -> bytes:
    """An existing audit key file (hex); one line when missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise AuditError(f"{path}: no audit key (the log cannot be checked without the key that wrote it)")
    return load_or_create_key(path)


def load_or_create_key(path: Path) -> bytes:
    """An audit key file (hex, mode 0600), made on first use."""
    path = Path(path)
    if path.exists():
        try:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError) as exc:
            raise AuditError(f"{path}: not an audit key ({exc})") from None
        if len(key) < 16:
            raise AuditError(f"{path}: audit key shorter than 16 bytes")
        return key
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.hex().encode() + b"\n")
    os.replace(tmp, path)
    return key


def _write_head(path: Path, key: bytes, count: int, last: str) -> None:
    head = {"format": HEAD_FORMAT, "count": count, "last": last, "mac": _head_mac(key, count, last)}
    target = head_path(path)
    tmp = target.with_name(target.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


class AuditLog:
    def __init__(self, path: Path, *, key: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.key = key
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last, self.count = GENESIS, 0
        if self.path.exists() and key is not None and _unkeyed(self.path):
            # written before audit keys: kept aside as it was, a keyed chain starts here
            self.path.replace(self.path.with_name(self.path.name + f".unkeyed-{int(time.time())}"))
        if self.path.exists():
            # a keyed log is checked against its head at open: a device never appends to a rewritten log
            entries = verify(self.path, key) if key is not None and head_path(self.path).exists() else None
            if entries is None:
                self._last, self.count = _tail(self.path, key)
            else:
                self._last, self.count = (entries[-1]["hash"] if entries else GENESIS), len(entries)

    def append(self, event: str, **detail: Any) -> dict[str, Any]:
        body = {"i": self.count, "at": round(self.clock(), 3), "event": event, **detail, "prev": self._last}
        if self.key is not None:
            body["keyed"] = True
        entry = {**body, "hash": _entry_hash(self._last, body, self.key)}
        line = (
            json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
        )
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._last = entry["hash"]
        self.count += 1
        if self.key is not None:
            _write_head(self.path, self.key, self.count, self._last)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]


def _unkeyed(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        return bool(first.strip()) and not json.loads(first).get("keyed")
    except (ValueError, AttributeError):
        return False


def _tail(path: Path, key: bytes | None = None) -> tuple[str, int]:
    count, last = 0, GENESIS
    for entry in _chain(path, key):
        last = entry["hash"]
        count += 1
    return last, count


def _chain(path: Path, key: bytes | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev = GENESIS
    text = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise AuditError(f"{path}:{n}: not a JSON line (torn or edited)") from None
        if not isinstance(entry, dict) or "hash" not in entry:
            raise AuditError(f"{path}:{n}: not an audit entry")
        body = {k: v for k, v in entry.items() if k != "hash"}
        if body.get("prev") != prev:
            raise AuditError(
                f"{path}:{n}: chain broken (prev does not match the entry before: removed or reordered)"
            )
        if body.get("i") != len(out):
            raise AuditError(f"{path}:{n}: entry number {body.get('i')} where {len(out)} was expected")
        keyed = bool(body.get("keyed"))
        if key is not None and not keyed:
            raise AuditError(f"{path}:{n}: entry is not keyed (written without the audit key, or forged)")
        if _entry_hash(prev, body, key if keyed else None) != entry["hash"]:
            what = "edited, or not written with this key" if keyed else "the entry was edited"
            raise AuditError(f"{path}:{n}: hash mismatch ({what})")
        prev = entry["hash"]
        out.append(entry)
    return out


@dataclass(frozen=True)
class AuditReport:
    path: Path
    entries: int
    keyed: bool
    head: bool  # the signed head was checked


def verify(path: Path, key: bytes | None = None) -> list[dict[str, Any]]:
    """Every entry, checked; raises :class:`AuditError` naming the first line that breaks the chain. With
    ``key``: every entry must be keyed with it, and the signed head must exist and match (count and last
    hash), so dropped last lines and a replaced log are caught too."""
    entries = _chain(path, key)
    if key is None:
        return entries
    hp = head_path(path)
    if not hp.exists():
        if entries:
            raise AuditError(f"{hp}: signed head missing (deleted, or the log was copied without it)")
        return entries
    try:
        head = json.loads(hp.read_text(encoding="utf-8"))
        count, last, mac = int(head["count"]), str(head["last"]), str(head["mac"])
    except (OSError, ValueError, KeyError, TypeError):
        raise AuditError(f"{hp}: not a readable audit head") from None
    if not hmac.compare_digest(_head_mac(key, count, last).encode(), mac.encode("utf-8", "replace")):
        raise AuditError(f"{hp}: head signature does not verify with this key (forged or another log's)")
    if count > len(entries):
        raise AuditError(
            f"{path}: truncated: the signed head says {count} entries, the log holds {len(entries)}"
        )
    # entries past the head are authentic (keyed): a power cut between a line and its head; the head's own
    # entry must be the one it names
    if (entries[count - 1]["hash"] if count else GENESIS) != last:
        raise AuditError(f"{path}: entry {count} is not the one the signed head names (the log was rewritten)")
    return entries


def verify_report(path: Path, key: bytes | None = None) -> AuditReport:
    entries = verify(path, key)
    return AuditReport(Path(path), len(entries), key is not None, key is not None and head_path(path).exists())
