"""Append-only, hash-chained audit log: every command and its outcome, on the device and on the operator's side.

One JSON line per entry; each carries the SHA-256 of the previous entry's line (``prev``) and its own ``hash``
over ``prev`` and its canonical body. Changing, removing or reordering any earlier line breaks every hash after
it, which :func:`verify` finds and names by line number. Lines are appended and fsynced one by one; a torn last
line (power cut) is reported, not silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError

GENESIS = "0" * 64


class AuditError(KasminaError):
    """An audit log whose chain is broken (edited, truncated in the middle, reordered)."""


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _entry_hash(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


class AuditLog:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last, self.count = GENESIS, 0
        if self.path.exists():
            self._last, self.count = _tail(self.path)

    def append(self, event: str, **detail: Any) -> dict[str, Any]:
        body = {"i": self.count, "at": round(self.clock(), 3), "event": event, **detail, "prev": self._last}
        entry = {**body, "hash": _entry_hash(self._last, body)}
        line = (
            json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
        )
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._last = entry["hash"]
        self.count += 1
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]


def _tail(path: Path) -> tuple[str, int]:
    count, last = 0, GENESIS
    for entry in verify(path):
        last = entry["hash"]
        count += 1
    return last, count


def verify(path: Path) -> list[dict[str, Any]]:
    """Every entry, checked; raises :class:`AuditError` naming the first line that breaks the chain."""
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
        if _entry_hash(prev, body) != entry["hash"]:
            raise AuditError(f"{path}:{n}: hash mismatch (the entry was edited)")
        prev = entry["hash"]
        out.append(entry)
    return out
