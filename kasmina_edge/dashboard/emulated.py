"""An emulated fleet device: recorded or synthetic ECG beats and a seed's lifecycle, over the link simulator, to MQTT.

A fleet of hundreds cannot each run the full on-device runtime on a laptop, so a fleet device replays what the
runtime would emit: the beats of an ECG record (their labelled classes, looped), the moves of a seed kernel
through the lifecycle table with its gate verdicts (:class:`~kasmina_edge.contracts.lifecycle.SeedLifecycle`
checks every move), the per-site activation drift it measures, and its battery. Everything after that is the
device's own code path: :class:`firmware_sim.telemetry.RuntimeTelemetry` turns the events into records (rhythm
alarms included), the uplink queue and scheduler spend the link's budget, the simulated medium carries them
and :class:`~kasmina_edge.net.mqtt.MqttDeviceTransport` publishes them; signed commands come back the same way
(``request-strip`` answers with a sealed strip of the record's signal).

Time is simulated: ``speed`` simulated seconds pass per wall second, so a short run shows a long day of a
LoRaWAN device (whose fair-use budget allows a few uplinks an hour).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware_sim.storage import FlashStorage
from firmware_sim.telemetry import AUDIT_FILE, AUDIT_KEY_FILE, NONCE_LEDGER_FILE, RuntimeTelemetry
from kasmina_edge.contracts.commands import PersistentLedger
from kasmina_edge.contracts.events import BeatClassified, GateVerdict, SeedTransition
from kasmina_edge.contracts.lifecycle import Gate, GateResult, SeedLifecycle, Stage, TransitionEvent
from kasmina_edge.contracts.telemetry import AAMI_CLASSES, DeviceStatus, ErrorFlags, SignalQuality, Slot
from kasmina_edge.core import catalog
from kasmina_edge.ecg.types import Record
from kasmina_edge.net.audit import AuditLog, load_or_create_key
from kasmina_edge.net.commands import provision_device_key
from kasmina_edge.net.link import Channel
from kasmina_edge.net.session import DeviceLink
from kasmina_edge.net.uplink import RecordQueue

# The path a seed takes to FOSSILIZED, each move with the gate that must pass (contracts' table).
PROMOTION: tuple[tuple[Stage, Gate | None], ...] = (
    (Stage.GERMINATED, Gate.G0),
    (Stage.TRAINING, None),
    (Stage.BLENDING, Gate.G1),
    (Stage.SHADOWING, Gate.G2),
    (Stage.PROBATIONARY, Gate.G3),
    (Stage.FOSSILIZED, Gate.G4),
)
DRIFT_EVERY_S = 600.0
DRIFT_WIRE_BYTES = 12  # three sites' drift as float16 + a timestamp
N_SITES = 3


def fleet_record(seed: int = 0, minutes: float = 2.0) -> Record:
    """The ECG a fleet process replays: the arrhythmia mix (VT runs raise the critical alarm)."""
    from kasmina_edge.ecg.scenarios import make_scenario

    return make_scenario("arrhythmia-mix", minutes, seed=seed)


class CountingLink(DeviceLink):
    """A device link that remembers the sequence numbers it handed to MQTT (the fleet's "nothing lost" check)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivered_fseqs: list[int] = []

    def _carry(self, sent: Any) -> None:
        before = self.ledger.delivered
        super()._carry(sent)
        if self.ledger.delivered > before:
            self.delivered_fseqs.extend(r.fseq for r in sent.packet.records)


@dataclass
class _Raw:
    """The runtime's raw-signal ring as the strip command reads it: the last 4 s."""

    device: FleetDevice

    def view(self) -> tuple[np.ndarray, int]:
        return self.device.last_seconds(4.0), 0


@dataclass
class _Platform:
    battery: float = 1.0
    security_alert: bool = False


@dataclass
class _Runtime:
    """What the device's command handlers reach for (strip, pause/resume) without a model behind it."""

    device: FleetDevice
    fs: float
    platform: _Platform = field(default_factory=_Platform)
    raw: _Raw = field(init=False)

    def __post_init__(self) -> None:
        self.raw = _Raw(self.device)


@dataclass
class SeedPlan:
    site: int
    kernel: str
    start_s: float
    step_s: float
    fail_gate: Gate | None = None  # the gate this seed fails (it is culled there)


class FleetDevice:
    def __init__(
        self,
        name: str,
        link: str,
        transport: Any,
        record: Record,
        home: Path,
        *,
        seed: int = 0,
        epoch_unix: float = 0.0,
        seed_plan: SeedPlan | None = None,
        battery_drain_per_h: float = 0.004,
        firmware_version: int = 1,
    ) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.profile = catalog.network(link)
        self.transport = transport
        self.record = record
        self.fs = float(record.fs)
        self.offset_s = self.rng.uniform(0, len(record.signal) / self.fs)  # devices do not beat in step
        self.link = CountingLink(name, self.profile, transport, queue=RecordQueue(512),
                                 channel=Channel(self.profile, seed=seed))  # fmt: skip
        self.tel = RuntimeTelemetry(self.link, epoch_unix=epoch_unix, downlinks=getattr(transport, "drain", None))
        self.runtime = _Runtime(self, self.fs)
        self.tel.attach(self.runtime)
        storage = FlashStorage(home / name)
        self.tel.enable_commands(
            provision_device_key(storage.root, name),
            AuditLog(storage.root / AUDIT_FILE, key=load_or_create_key(storage.root / AUDIT_KEY_FILE)),
            ledger=PersistentLedger(storage.root / NONCE_LEDGER_FILE),
        )
        self.battery_drain_per_h = battery_drain_per_h
        self.now = 0.0
        self.beat_cursor = 0
        self.loops = 0
        self.plan = seed_plan or SeedPlan(seed % N_SITES, f"k{seed % N_SITES}", 60.0 + self.rng.uniform(0, 120),
                                          90.0)  # fmt: skip
        self.seed = SeedLifecycle(self.plan.kernel, clock=lambda: self.now)
        self.next_move = self.plan.start_s
        self.next_drift = DRIFT_EVERY_S * self.rng.uniform(0.2, 1.0)
        self.drift = [0.05 * self.rng.random() for _ in range(N_SITES)]
        # a device announces itself at boot with a heartbeat (the cloud learns its link and battery at once)
        self.tel.submit(DeviceStatus(0, int(epoch_unix), 100, 0, Slot.A, firmware_version % 256, ErrorFlags.NONE))

    # ------------------------------------------------------------------ signal

    def _signal_at(self, t: float) -> float:
        return (self.offset_s + t) % (len(self.record.signal) / self.fs)

    def last_seconds(self, seconds: float) -> np.ndarray:
        n = int(seconds * self.fs)
        end = int(self._signal_at(self.now) * self.fs)
        idx = (np.arange(end - n, end)) % len(self.record.signal)
        return np.asarray(self.record.signal[idx, 0], dtype=np.float32)

    def _beats_until(self, now: float) -> None:
        """Every labelled beat of the record whose time passed, as the runtime would classify it."""
        beats = self.record.beats
        if beats is None or not len(beats):
            return
        period = len(self.record.signal) / self.fs
        while True:
            i = self.beat_cursor % len(beats)
            loop = self.beat_cursor // len(beats)
            t = loop * period + float(beats.samples[i]) / self.fs - self.offset_s
            if t > now:
                return
            self.beat_cursor += 1
            if t < 0:
                continue
            label = AAMI_CLASSES[int(beats.classes[i])]
            self.tel.on_event(BeatClassified(int(t * self.fs), t, label, 0.9, anomaly=label in ("S", "V", "F")))

    # ------------------------------------------------------------------ lifecycle

    def move_seed(self) -> TransitionEvent | None:
        """The seed's next move (with its gate verdict), or its cull where the plan fails a gate."""
        stage = self.seed.stage
        if stage in (Stage.FOSSILIZED, Stage.CULLED, Stage.TERMINATED):
            return None
        dst, gate = next(((d, g) for d, g in PROMOTION if self.seed.can_move(d)), (None, None))
        if dst is None:
            return None
        result = None
        if gate is not None:
            passed = gate != self.plan.fail_gate
            result = GateResult(gate, passed, "gate_passed" if passed else "gate_failed",
                                {"score": round(0.6 + 0.4 * self.rng.random(), 3)})  # fmt: skip
            self.tel.on_event(GateVerdict(self.plan.kernel, self.plan.site, result, 0, self.now))
            if not passed:
                dst, result = Stage.CULLED, None
        ev = self.seed.move(dst, reason="gate_passed" if dst != Stage.CULLED else "gate_failed", gate=result)
        self.tel.on_event(SeedTransition(ev, self.plan.site, self.plan.kernel, 0, self.now))
        return ev

    # ------------------------------------------------------------------ time

    def _drift_report(self) -> None:
        self.drift = [min(3.0, max(0.0, d + self.rng.gauss(0.0, 0.03))) for d in self.drift]
        if self.seed.stage in (Stage.PROBATIONARY, Stage.FOSSILIZED):  # a live kernel pulls its site back
            self.drift[self.plan.site] *= 0.7
        self.tel.submit(SignalQuality(0, int(self.tel.epoch_unix + self.now), round(self.rng.uniform(-30, -15), 1),
                                      round(self.rng.uniform(0.0, 0.3), 2), round(self.rng.uniform(0.0, 0.05), 3),
                                      False, round(self.rng.uniform(0.8, 0.99), 3)))  # fmt: skip
        body = {"t": round(self.tel.epoch_unix + self.now, 1), "sites": [round(d, 3) for d in self.drift]}
        self.link.send_control("drift", body, DRIFT_WIRE_BYTES)

    def step(self, now: float) -> None:
        """Advance to simulated time ``now``: beats, seed moves, drift, then the link."""
        self.now = max(self.now, now)
        self._beats_until(self.now)
        while self.now >= self.next_move:
            self.move_seed()
            self.next_move += self.plan.step_s
            if self.seed.stage in (Stage.FOSSILIZED, Stage.CULLED):
                self.next_move = math.inf
        if self.now >= self.next_drift:
            self._drift_report()
            self.next_drift += DRIFT_EVERY_S
        self.runtime.platform.battery = max(0.0, 1.0 - self.battery_drain_per_h * self.now / 3600.0)
        self.tel.tick(self.now)

    def enable_ota(self, base: Path, keys: Path | None, home: Path, *, fail_probation: bool = False) -> None:
        """Updates: an emulated A/B flash (``base`` flashed and confirmed the first time) and the device's OTA
        receiver, which boots a new image as a trial and confirms it or rolls back on its probation verdict
        (``fail_probation``: this unit fails probation of any update, to exercise a halted rollout)."""
        from firmware_sim.device import DeviceAddress, EmulatedDevice
        from firmware_sim.ota import OtaReceiver

        emu = EmulatedDevice(DeviceAddress.parse(f"emu://{self.name}", home))
        if not emu.exists:
            emu.flash(base, keys)
            emu.boot()
            emu.confirm()
        self.emulated = emu
        self.ota = OtaReceiver(emu, self.link, auto_boot=True, probation=lambda boot: not fail_probation)
        self.tel.enable_ota(self.ota)

    def summary(self) -> dict[str, Any]:
        return {"device": self.name, "stage": self.seed.stage.name, **self.tel.summary(),
                "delivered_fseqs": len(set(self.link.delivered_fseqs))}  # fmt: skip
