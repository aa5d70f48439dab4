"""Shared pieces of the net tests: a scripted device day and the loopback harness around it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.core import catalog
from kasmina_edge.net.faults import FaultInjector
from kasmina_edge.net.link import Channel
from kasmina_edge.net.loopback import LoopbackNetwork
from kasmina_edge.net.monitor import Monitor
from kasmina_edge.net.session import DeviceLink
from kasmina_edge.net.uplink import RecordQueue

EPOCH = 1_800_000_000.0


@dataclass
class Harness:
    net: LoopbackNetwork
    link: DeviceLink
    tel: RuntimeTelemetry
    vt_times: list[float] = field(default_factory=list)


def make_harness(
    profile_name: str,
    *,
    faults: FaultInjector | None = None,
    seed: int = 1,
    monitor: Monitor | None = None,
    capacity: int = 256,
    keep_log: bool = True,
    device: str = "d1",
) -> Harness:
    profile = catalog.network(profile_name)
    net = LoopbackNetwork(monitor or Monitor())
    link = DeviceLink(
        device,
        profile,
        net,
        queue=RecordQueue(capacity),
        channel=Channel(profile, faults=faults, seed=seed),
        keep_log=keep_log,
    )
    net.attach(link)
    tel = RuntimeTelemetry(link, epoch_unix=EPOCH)
    tel.keep_produced = True
    return Harness(net, link, tel)


def run_day(
    h: Harness,
    seconds: float,
    *,
    step: float = 1.0,
    vt_every_s: float | None = None,
    pvc_rate: float = 0.01,
    seed: int = 0,
    drain_s: float = 0.0,
) -> None:
    """Beats at 75 bpm (a few PVCs), a four-beat VT run every ``vt_every_s``; then ``drain_s`` of the link alone."""
    rng = random.Random(seed)
    t, next_beat, next_vt = 0.0, 0.0, vt_every_s if vt_every_s else float("inf")
    while t < seconds:
        while next_beat <= t:
            if next_beat >= next_vt:
                for _ in range(4):
                    h.tel.on_event(BeatClassified(round(next_beat * 360), next_beat, "V", 0.95))
                    next_beat += 0.4
                h.vt_times.append(next_beat - 0.4 * 2)  # the third V beat: when it is detected
                next_vt += vt_every_s or float("inf")
                continue
            label = "V" if rng.random() < pvc_rate else "N"
            h.tel.on_event(BeatClassified(round(next_beat * 360), next_beat, label, 0.9))
            next_beat += 0.8
        h.tel.tick(t)
        h.net.advance(t)
        t += step
    end = t + drain_s
    while t < end:  # the link alone: nothing new is produced while the backlog drains
        h.link.tick(t)
        h.net.advance(t)
        t += step
    h.net.advance(float("inf"))
