"""Scenario driving for tools/bench_net.py: one device on one link fed runtime events in simulated time, and the
event streams it is fed (a day of beats with VT runs and seed episodes; a noisy-walk hour from the synthetic
patient's ground truth).
"""

from __future__ import annotations

import math
import random
from typing import Any

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts.events import BeatClassified, RuntimeEvent, SeedTransition
from kasmina_edge.contracts.lifecycle import Stage, TransitionEvent
from kasmina_edge.contracts.telemetry import Record
from kasmina_edge.core import catalog
from kasmina_edge.net.link import Channel
from kasmina_edge.net.loopback import LoopbackNetwork
from kasmina_edge.net.monitor import Monitor, StoredRecord
from kasmina_edge.net.packet import HEADER_BYTES
from kasmina_edge.net.priority import Priority, priority_of
from kasmina_edge.net.session import DeviceLink
from kasmina_edge.net.uplink import RecordQueue

EPOCH = 1_800_000_000.0
SEED_PATH = [Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY]
FS = 360.0  # the beats' sample numbers count at this rate


class Driver:
    """One device on one link, driven by a list of runtime events in simulated time."""

    def __init__(
        self,
        profile_name: str,
        *,
        seed: int = 0,
        keep_log: bool = False,
        monitor: Monitor | None = None,
        net: LoopbackNetwork | None = None,
        device: str = "d1",
    ) -> None:
        self.profile = catalog.network(profile_name)
        self.arrivals: dict[int, StoredRecord] = {}
        self.net = net or LoopbackNetwork(monitor or Monitor(on_record=self._arrived))
        self.link = DeviceLink(
            device,
            self.profile,
            self.net,
            queue=RecordQueue(256),
            channel=Channel(self.profile, seed=seed),
            keep_log=keep_log,
        )
        self.net.attach(self.link)
        self.tel = RuntimeTelemetry(self.link, epoch_unix=EPOCH)
        self.created: dict[int, float] = {}
        self.priority: dict[int, Priority] = {}
        self.critical_opportunity: dict[int, float] = {}
        self.submissions: list[tuple[int, Priority]] = []  # every record made, merged ones included
        original = self.tel.submit

        def submit(record: Record, t: float | None = None) -> int:
            at = self.tel.now if t is None else t
            fseq = original(record, t)
            self.created.setdefault(fseq, at)
            prio = priority_of(record)
            self.submissions.append((fseq, prio))
            self.priority[fseq] = max(self.priority.get(fseq, prio), prio)
            if prio == Priority.CRITICAL and fseq not in self.critical_opportunity:
                try:
                    self.critical_opportunity[fseq] = self.link.budget.earliest_tx(at, HEADER_BYTES + 19)
                except Exception:  # noqa: BLE001 - a data rate that cannot carry it at all
                    self.critical_opportunity[fseq] = math.inf
            return fseq

        self.tel.submit = submit  # type: ignore[method-assign]

    def _arrived(self, rec: StoredRecord) -> None:
        self.arrivals.setdefault(rec.fseq, rec)

    def run(self, events: list[RuntimeEvent], seconds: float, step: float, drain_s: float = 0.0) -> float:
        i, t = 0, 0.0
        while t <= seconds:
            while i < len(events) and events[i].t <= t:
                self.tel.now = max(self.tel.now, events[i].t)
                self.tel.on_event(events[i])
                i += 1
            self.tel.tick(t)
            self.net.advance(t)
            t += step
        self.in_hour = {f for f, r in self.arrivals.items() if r.arrival_at <= seconds}
        end = t + drain_s
        while t < end and len(self.link.queue):
            self.link.tick(t)
            self.net.advance(t)
            t += max(step, 10.0)
        self.net.advance(math.inf)
        self.net.monitor.flush()
        return t


def beat(t: float, label: str, p: float) -> BeatClassified:
    return BeatClassified(round(t * FS), t, label, p, anomaly=label in ("S", "V", "F"))


def move(kernel: str, src: Stage, dst: Stage, reason: str, t: float) -> SeedTransition:
    return SeedTransition(TransitionEvent(kernel, src, dst, reason, t), site=1, kernel=kernel, window=0, t=t)


def day_events(hours: float, seed: int = 0) -> list[RuntimeEvent]:
    """Beats at ~75 bpm with 1 % PVCs, VT runs at 1/4, 1/2 and 3/4 of the span, four seed episodes."""
    rng = random.Random(seed)
    span = hours * 3600
    events: list[RuntimeEvent] = []
    vt_at = [span * k / 4 for k in (1, 2, 3)]
    t = 0.5
    while t < span:
        if vt_at and t >= vt_at[0]:
            vt_at.pop(0)
            for _ in range(5):
                events.append(beat(t, "V", 0.95))
                t += 0.4
            continue
        events.append(beat(t, "V" if rng.random() < 0.01 else "N", 0.9))
        t += 0.8 * (1 + 0.05 * rng.uniform(-1, 1))
    for k in range(4):
        start, end = span * (k + 0.2) / 4, span * (k + 0.6) / 4
        events += seed_episode(f"cond{k}", start, end)
    return sorted(events, key=lambda e: e.t)


def seed_episode(kernel: str, start: float, end: float) -> list[RuntimeEvent]:
    out: list[RuntimeEvent] = []
    src = Stage.DORMANT
    for j, dst in enumerate(SEED_PATH):
        out.append(move(kernel, src, dst, "condition_detected", start + 5 * j))
        src = dst
    out.append(move(kernel, src, Stage.CULLED, "condition_cleared", end))
    out.append(move(kernel, Stage.CULLED, Stage.EMBARGOED, "condition_cleared", end + 1))
    return out


def noisy_walk_events(minutes: float = 60.0, seed: int = 0) -> tuple[list[RuntimeEvent], dict[str, Any]]:
    from kasmina_edge.contracts.telemetry import AAMI_CLASSES
    from kasmina_edge.ecg.scenarios import make_scenario

    rec = make_scenario("noisy-walk", minutes, seed=seed)
    assert rec.beats is not None
    fs = rec.fs
    span = minutes * 60
    vt_at = [span * k / 4 for k in (1, 2, 3)]
    events: list[RuntimeEvent] = []
    skip_until = -1.0
    for sample, cls in zip(rec.beats.samples.tolist(), rec.beats.classes.tolist(), strict=True):
        t = sample / fs
        if vt_at and t >= vt_at[0]:
            v0 = vt_at.pop(0)
            for k in range(5):  # a 150 bpm run of five ventricular beats replaces the beats there
                events.append(beat(v0 + 0.4 * k, "V", 0.95))
            skip_until = v0 + 2.0
        if t < skip_until:
            continue
        events.append(beat(t, AAMI_CLASSES[cls], 0.9))
    for c in rec.conditions:
        events += seed_episode(c.label, c.start / fs, c.end / fs)
    info = {
        "beats": len(rec.beats),
        "classes": rec.beats.counts(),
        "conditions": [(c.label, round(c.start / fs), round(c.end / fs)) for c in rec.conditions],
    }
    return sorted(events, key=lambda e: e.t), info
