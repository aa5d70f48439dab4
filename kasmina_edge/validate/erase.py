"""Retention and erasure of patients' data in the monitor's store: nothing kept past the retention period
(GDPR Art. 5(1)(e)), and one patient's data erased on request (Art. 17), proved by scanning it again.

Behind :class:`PatientStore`, so the same proof runs on another store: :class:`JsonlMonitorStore` is the
monitor's JSON-lines store (``net.monitor.JsonlStore``: one record per line, each naming its ``device``). A
patient maps to the devices that recorded them (the certify config's ``[patients]``; by default a device of
the same name).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.validate.check_result import CheckResult, check


class PatientStore(Protocol):
    def count(self, devices: set[str]) -> int: ...

    def erase(self, devices: set[str]) -> int: ...


def _device_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    dev = obj.get("device")
    if dev is None and isinstance(obj.get("record"), dict):
        dev = obj["record"].get("device")
    return str(dev) if dev is not None else None


@dataclass
class JsonlMonitorStore:
    path: Path

    def _lines(self) -> list[str]:
        if not self.path.exists():
            raise KasminaError(f"{self.path}: no such monitor store")
        return self.path.read_text(encoding="utf-8").splitlines(keepends=True)

    def _matches(self, line: str, devices: set[str]) -> bool:
        try:
            return _device_of(json.loads(line)) in devices
        except ValueError:
            return any(f'"{d}"' in line for d in devices)  # a torn line still naming the patient's device

    def count(self, devices: set[str]) -> int:
        return sum(1 for line in self._lines() if self._matches(line, devices))

    def erase(self, devices: set[str]) -> int:
        lines = self._lines()
        keep = [line for line in lines if not self._matches(line, devices)]
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)
        return len(lines) - len(keep)


def erasure_check(store: PatientStore | None, patient: str | None, devices: set[str]) -> CheckResult:
    if patient is None:
        return check("erasure", "skipped", "no erasure requested (certify --erase PATIENT)")
    if store is None:
        return check("erasure", "fail", f"--erase {patient}: no monitor store configured ([store] monitor = FILE)")
    before = store.count(devices)
    removed = store.erase(devices)
    after = store.count(devices)  # the proof: the store scanned again
    if after:
        return check("erasure", "fail", f"patient {patient}: {after} record(s) still in the store after erasing")
    return check("erasure", "pass", f"patient {patient} (device(s) {', '.join(sorted(devices))}): {removed} record(s) "
                 f"erased of {before}; a re-scan finds 0")


def retention_check(store: Path | None, retention_days: float, now: float | None = None) -> CheckResult:
    """No record in the store older than ``retention_days`` (by each record's own Unix timestamp)."""
    import time

    if not retention_days:
        return check("retention", "skipped", "no retention period configured ([store] retention_days)")
    if store is None or not store.exists():
        return check("retention", "fail", f"retention of {retention_days:g} days set but no monitor store to check "
                     f"({store or '[store] monitor'})")
    limit = (time.time() if now is None else now) - retention_days * 86400.0
    old, dated, oldest = 0, 0, None
    for line in store.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        rec = obj.get("record") if isinstance(obj, dict) else None
        ts = rec.get("timestamp") if isinstance(rec, dict) else None
        if not isinstance(ts, int | float) or ts < 1e9:  # not a Unix time: cannot be judged
            continue
        dated += 1
        if ts < limit:
            old += 1
            oldest = ts if oldest is None else min(oldest, ts)
    if old:
        when = time.strftime("%Y-%m-%d", time.gmtime(oldest or 0))
        return check("retention", "fail", f"{old} of {dated} record(s) in {store.name} older than {retention_days:g} "
                     f"days (oldest {when})")
    return check("retention", "pass", f"{dated} dated record(s) in {store.name}, none older than {retention_days:g} days")
