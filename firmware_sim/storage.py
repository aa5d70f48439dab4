"""Emulated flash: files written in erase-block-sized chunks, atomically, with power cuts on demand.

A file is written to a ``.partial`` sibling in chunks, synced, then renamed over its final name: a
power cut at any point leaves either the old file or the new one, plus a partial that the next boot
deletes. :class:`PowerCut` is raised by the write itself when the storage was told to fail after a
given number of bytes (the emulated cut), so a test can cut power in the middle of any flash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"
BLOCK_BYTES = 4096  # one erase block of a typical NOR flash


class PowerCut(Exception):
    """The emulated device lost power in the middle of a write (not a user error: the device recovers)."""


class FlashStorage:
    """Files under ``root``; ``cut_after_bytes`` makes the next writes fail once that many bytes went out."""

    def __init__(self, root: Path, *, cut_after_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.cut_after_bytes = cut_after_bytes
        self.written = 0

    def _charge(self, n: int) -> None:
        self.written += n
        if self.cut_after_bytes is not None and self.written > self.cut_after_bytes:
            raise PowerCut(f"power cut after {self.cut_after_bytes} bytes written")

    def write_atomic(self, relative: str | Path, data: bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        with open(partial, "wb") as f:
            for i in range(0, len(data), BLOCK_BYTES):
                block = data[i : i + BLOCK_BYTES]
                f.write(block[: max(0, len(block) - max(0, self._overrun(len(block))))])
                self._charge(len(block))
            f.flush()
            os.fsync(f.fileno())
        self._charge(0)
        os.replace(partial, path)
        return path

    def _overrun(self, n: int) -> int:
        """Bytes of the next block that would land after the cut (they never reach the file)."""
        if self.cut_after_bytes is None:
            return 0
        return self.written + n - self.cut_after_bytes

    def write_json(self, relative: str | Path, obj: Any) -> Path:
        return self.write_atomic(relative, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def read_json(self, relative: str | Path) -> Any | None:
        path = self.root / relative
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None

    def cleanup_partials(self) -> list[Path]:
        """Delete what a power cut left behind; returns what was removed."""
        removed = []
        if self.root.exists():
            for p in self.root.rglob(f"*{PARTIAL_SUFFIX}"):
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed
