"""``kasmina-edge fleet up``: many emulated devices on a real broker, in a few processes.

The devices are split over ``processes`` worker processes (spawned: each imports the stack once and replays one
ECG record for its share of devices); every device has its own MQTT connection, link simulator and uplink
queue (:class:`~kasmina_edge.dashboard.emulated.FleetDevice`). A worker advances simulated time at ``speed``
simulated seconds per wall second, in steps of ``step_s`` wall seconds, until ``seconds`` have passed or the
stop file appears, then closes its devices (each publishes its retained ``offline`` status) and writes what
each device handed to MQTT (the sequence numbers, for the "nothing lost" check) to a JSON file.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError


class FleetError(KasminaError):
    """A fleet that cannot start (bad device count, link, broker)."""


@dataclass(frozen=True)
class FleetSpec:
    devices: int
    link: str
    mqtt: str
    seconds: float
    fleet: str = "default"
    home: Path = Path("runs/fleet")
    speed: float = 60.0
    processes: int = 0  # 0: about 50 devices a process, at most the CPU count
    step_s: float = 0.2
    prefix: str = "dev"
    epoch_unix: float = field(default_factory=time.time)
    base_bundle: Path | None = None  # devices take OTA updates: flashed with this bundle first
    keys: Path | None = None  # the bundle signer's public key (the devices' trust anchor)
    fail_probation: tuple[str, ...] = ()  # emulated units that fail probation of any update
    ecg: str | None = None  # a recorded ECG (wfdb:PATH, csv:PATH) instead of the synthetic arrhythmia mix

    def names(self) -> list[str]:
        width = max(3, len(str(self.devices - 1)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(self.devices)]

    def groups(self) -> list[list[str]]:
        n = self.processes or min(os.cpu_count() or 1, max(1, -(-self.devices // 50)))
        names = self.names()
        return [names[i::n] for i in range(n) if names[i::n]]


def check_spec(spec: FleetSpec) -> None:
    from kasmina_edge.core import catalog
    from kasmina_edge.net.mqtt import BrokerUrl

    if not 1 <= spec.devices <= 100_000:
        raise FleetError(f"--devices {spec.devices}: must be in 1..100000")
    if spec.seconds <= 0 or spec.speed <= 0:
        raise FleetError("--minutes and --speed must be > 0")
    catalog.network(spec.link)  # names the known links when it is not one
    if spec.ecg is not None:
        ecg_record(spec.ecg, 0)  # a source that does not open, or has no beat labels, fails here, not in a worker
    if spec.base_bundle is not None and not spec.base_bundle.is_file():
        raise FleetError(f"--base {spec.base_bundle}: no such bundle")
    BrokerUrl.parse(spec.mqtt)


def ecg_record(spec: str, index: int) -> Any:
    """The record a worker replays: ``spec`` opened (its beat labels drive the devices), or the synthetic mix."""
    from kasmina_edge.ecg.sources import open_source

    record = open_source(spec).record()
    if record is None or record.beats is None or not len(record.beats):
        raise FleetError(f"--ecg {spec}: the record has no beat annotations to replay")
    return record


def _run_group(spec: FleetSpec, names: list[str], index: int, out: str) -> None:
    """One worker process: its devices, stepped together in simulated time."""
    from kasmina_edge.dashboard.emulated import FleetDevice, fleet_record
    from kasmina_edge.net.mqtt import MqttDeviceTransport

    record = ecg_record(spec.ecg, index) if spec.ecg else fleet_record(seed=index)
    devices: list[FleetDevice] = []
    stop_file = spec.home / "STOP"
    try:
        for name in names:
            transport = MqttDeviceTransport(spec.mqtt, spec.fleet, name)
            transport.connect()
            seed = int(name[len(spec.prefix):]) if name[len(spec.prefix):].isdigit() else index
            device = FleetDevice(name, spec.link, transport, record, spec.home / "devices", seed=seed,
                                 epoch_unix=spec.epoch_unix)  # fmt: skip
            if spec.base_bundle is not None:
                device.enable_ota(spec.base_bundle, spec.keys, spec.home / "flash",
                                  fail_probation=name in spec.fail_probation)  # fmt: skip
            devices.append(device)
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < spec.seconds and not stop_file.exists():
            sim = elapsed * spec.speed
            for d in devices:
                d.step(sim)
            time.sleep(max(0.0, spec.step_s - (time.monotonic() - t0 - elapsed)))
    finally:
        for d in devices:  # the retained "offline" goes after every uplink (QoS 1, in order): close waits for it
            d.transport.close()
        result = {d.name: {**d.summary(), "fseqs": sorted(set(d.link.delivered_fseqs))} for d in devices}
        tmp = Path(out).with_suffix(".partial")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, out)


@dataclass
class FleetRun:
    spec: FleetSpec
    devices: dict[str, dict[str, Any]]
    wall_s: float

    def delivered(self) -> dict[str, list[int]]:
        return {name: d["fseqs"] for name, d in self.devices.items()}

    def totals(self) -> dict[str, Any]:
        ds = self.devices.values()
        return {
            "devices": len(self.devices),
            "records": sum(d["records"] for d in ds),
            "delivered_records": sum(len(d["fseqs"]) for d in ds),
            "uplinks": sum(d["uplinks"] for d in ds),
            "airtime_s": round(sum(d["airtime_s"] for d in ds), 2),
            "queued_at_end": sum(d["queued"] for d in ds),
            "dropped_by_devices": sum(d["dropped"] for d in ds),
            "wall_s": round(self.wall_s, 1),
            "simulated_s": round(self.spec.seconds * self.spec.speed),
        }


def fleet_up(spec: FleetSpec, *, on_tick: Callable[[float], None] | None = None) -> FleetRun:
    """Run the fleet to the end (or until ``home/STOP`` appears / Ctrl-C) and collect each device's figures."""
    check_spec(spec)
    spec.home.mkdir(parents=True, exist_ok=True)
    (spec.home / "STOP").unlink(missing_ok=True)
    ctx = mp.get_context("spawn")
    outs = [spec.home / f"group-{i}.json" for i in range(len(spec.groups()))]
    for o in outs:
        o.unlink(missing_ok=True)
    procs = [ctx.Process(target=_run_group, args=(spec, names, i, str(outs[i])), daemon=True)
             for i, names in enumerate(spec.groups())]  # fmt: skip
    t0 = time.monotonic()
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.25)
            if on_tick is not None:
                on_tick(time.monotonic() - t0)
    except KeyboardInterrupt:
        (spec.home / "STOP").touch()  # the workers close their devices cleanly
    finally:
        for p in procs:
            p.join(spec.seconds + 60)
            if p.is_alive():
                p.kill()
                p.join(5)
        (spec.home / "STOP").unlink(missing_ok=True)
    devices: dict[str, dict[str, Any]] = {}
    for o in outs:
        if not o.exists():
            raise FleetError(f"a fleet worker ended without its report ({o.name}): see its error above")
        devices.update(json.loads(o.read_text()))
    return FleetRun(spec, devices, time.monotonic() - t0)
