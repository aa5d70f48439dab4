"""``kasmina-edge fleet rollout``: a staged over-the-air update with a canary, a halt rule and per-device results.

The devices are ordered by name; the first ``canary`` of them (``5%`` of the fleet, at least one, or a count)
get the update first, all at once (``parallel`` transfers at a time), each through the operator's signed OTA
path (:func:`kasmina_edge.net.ota.run_ota`: a signed ``ota-offer``, chunks or FEC fragments as the device's link
allows, the device's signed final report). The device boots the new image as a trial and either confirms it
(``probation_passed``) or rolls back to the slot it ran before (``rolled_back``). After each wave the halt rule
(``probation-failures>1``, ``failures>0``, ``timeouts>=2``) is checked over every device offered so far; when it
trips, the remaining devices are never offered the update (``held``) and the rollout says why. Otherwise the
rest follow in waves of ``wave`` devices.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kasmina_edge.contracts.errors import KasminaError

SUCCESS = ("probation_passed", "installed", "flashed")
METRICS = {
    "probation-failures": lambda o: o.status == "rolled_back",
    "failures": lambda o: o.status not in SUCCESS,
    "timeouts": lambda o: o.status == "timeout",
    "refusals": lambda o: o.status == "refused",
}
_OPS: dict[str, Callable[[int, int], bool]] = {">": operator.gt, ">=": operator.ge, "==": operator.eq}
_RULE = re.compile(r"\s*([a-z-]+)\s*(>=|>|==)\s*(\d+)\s*")


class RolloutError(KasminaError):
    """A rollout that cannot start (bad --canary or --halt-on, no devices)."""


@dataclass(frozen=True)
class HaltRule:
    metric: str
    op: str
    threshold: int

    @classmethod
    def parse(cls, text: str) -> HaltRule:
        m = _RULE.fullmatch(text)
        if m is None or m.group(1) not in METRICS:
            raise RolloutError(
                f"--halt-on {text!r}: expected METRIC>N, METRIC>=N or METRIC==N with METRIC one of "
                f"{', '.join(METRICS)}"
            )
        return cls(m.group(1), m.group(2), int(m.group(3)))

    def count(self, outcomes: list[DeviceOutcome]) -> int:
        return sum(1 for o in outcomes if METRICS[self.metric](o))

    def tripped(self, outcomes: list[DeviceOutcome]) -> bool:
        return _OPS[self.op](self.count(outcomes), self.threshold)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold}"


def canary_size(text: str, devices: int) -> int:
    """``5%`` of the fleet (rounded up, at least one) or a plain count, never more than the fleet."""
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return min(devices, max(1, math.ceil(devices * pct / 100)))
        n = int(text)
        if n < 1:
            raise ValueError
        return min(devices, n)
    except ValueError:
        raise RolloutError(f"--canary {text!r}: a percentage in (0, 100] such as 5% or a count >= 1") from None


@dataclass
class DeviceOutcome:
    device: str
    wave: int  # 0: the canary
    status: str  # the device's final report status, "timeout", "held" (never offered), "error"
    reason: str | None = None
    seconds: float = 0.0
    report: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "wave": "canary" if self.wave == 0 else self.wave, "status": self.status,
                "reason": self.reason, "seconds": round(self.seconds, 1)}  # fmt: skip


@dataclass
class RolloutReport:
    bundle: str
    canary: list[str]
    rule: str
    outcomes: list[DeviceOutcome] = field(default_factory=list)
    halted: bool = False
    halt_reason: str | None = None

    @property
    def ok(self) -> bool:
        return not self.halted and all(o.status in SUCCESS for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "canary": self.canary, "halt_on": self.rule, "halted": self.halted,
                "halt_reason": self.halt_reason, "ok": self.ok, "counts": self.counts(),
                "devices": [o.to_dict() for o in self.outcomes]}  # fmt: skip


class LockedAudit:
    """One audit log shared by parallel transfers: its appends (a hash chain, a rewritten head) one at a time."""

    def __init__(self, audit: Any) -> None:
        self.audit = audit
        self.lock = threading.Lock()

    def append(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.audit.append(*args, **kwargs)


UpdateOne = Callable[[str], DeviceOutcome]  # device -> its outcome (wave filled in by the rollout)


def rollout(
    devices: list[str],
    update_one: UpdateOne,
    *,
    bundle: str,
    canary: str = "5%",
    halt_on: str = "probation-failures>1",
    wave: int = 0,
    parallel: int = 8,
    on_outcome: Callable[[DeviceOutcome], None] | None = None,
) -> RolloutReport:
    if not devices:
        raise RolloutError("no devices to update (none in the store, or --devices named none)")
    rule = HaltRule.parse(halt_on)
    order = sorted(set(devices))
    k = canary_size(canary, len(order))
    waves = [order[:k]]
    rest = order[k:]
    size = wave if wave > 0 else len(rest)
    waves += [rest[i : i + size] for i in range(0, len(rest), size)] if rest else []
    report = RolloutReport(bundle, waves[0], str(rule))
    for index, names in enumerate(waves):
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(names)))) as pool:
            for outcome in pool.map(update_one, names):
                outcome.wave = index
                report.outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
        if rule.tripped(report.outcomes):
            report.halted = True
            report.halt_reason = (
                f"{rule.metric} = {rule.count(report.outcomes)} after the "
                f"{'canary' if index == 0 else f'wave {index}'} ({rule} halts)"
            )
            for later, names_left in enumerate(waves[index + 1 :], start=index + 1):
                report.outcomes += [DeviceOutcome(n, later, "held", "rollout halted before this wave")
                                    for n in names_left]  # fmt: skip
            break
    return report


def ota_updater(
    mqtt: str,
    bundle_path: Any,
    links: dict[str, str],
    *,
    fleet: str = "default",
    keys: Any = None,
    timeout_s: float = 120.0,
    audit: Any = None,
    auth: Any = None,
) -> UpdateOne:
    """The real update of one device: the signed OTA over MQTT (:func:`kasmina_edge.net.ota.run_ota`)."""
    from kasmina_edge.core import catalog
    from kasmina_edge.net.commands import operator_key
    from kasmina_edge.net.ota import run_ota

    shared_audit = LockedAudit(audit) if audit is not None else None

    def update(device: str) -> DeviceOutcome:
        try:
            result = run_ota(
                mqtt, device, bundle_path, operator_key(device), catalog.network(links.get(device) or "wifi"),
                fleet=fleet, timeout_s=timeout_s, keys=keys, audit=shared_audit, retry_s=5.0,
                tls=getattr(auth, "tls", None), username=getattr(auth, "username", None),
                password=getattr(auth, "password", None),
            )  # fmt: skip
        except KasminaError as exc:
            return DeviceOutcome(device, 0, "error", str(exc))
        rep = result.report or {}
        return DeviceOutcome(device, 0, result.status, rep.get("reason"), result.seconds, rep)

    return update
