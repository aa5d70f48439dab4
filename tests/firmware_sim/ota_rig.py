"""An emulated device receiving over-the-air updates on the loopback network, and the operator's server.

Time is simulated (``run_until`` steps it): a LoRaWAN transfer of hours takes a fraction of a second here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.device import DeviceAddress, EmulatedDevice
from firmware_sim.ota import OtaReceiver
from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.core import catalog
from kasmina_edge.net.audit import AuditLog
from kasmina_edge.net.link import Channel, FaultInjector
from kasmina_edge.net.loopback import LoopbackNetwork
from kasmina_edge.net.ota import OtaServer, offer_args
from kasmina_edge.net.session import DeviceLink

KEY = bytes(range(32))
DEVICE = "ota-dev"


@dataclass
class Rig:
    device: EmulatedDevice
    link: DeviceLink
    net: LoopbackNetwork
    tel: RuntimeTelemetry
    ota: OtaReceiver
    audit: Path
    servers: list[OtaServer] = field(default_factory=list)


def make_rig(
    tmp_path: Path,
    base: Path,
    keys: Path,
    profile: str,
    *,
    faults: FaultInjector | None = None,
    auto_boot: bool = True,
    probation: Callable[[Any], bool] | None = None,
) -> Rig:
    """The device ``emu://ota-dev`` under ``tmp_path/devices`` (flashed with ``base`` and confirmed the first
    time), listening for updates on ``profile``."""
    device = EmulatedDevice(DeviceAddress.parse(f"emu://{DEVICE}", tmp_path / "devices"))
    if not device.exists:
        device.flash(base, keys)
        device.boot()
        device.confirm()
    prof = catalog.network(profile)
    net = LoopbackNetwork()
    link = DeviceLink(DEVICE, prof, net, channel=Channel(prof, faults=faults, seed=4), fair_use=False)
    net.attach(link)
    tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0)
    audit = tmp_path / "device-audit.jsonl"
    tel.enable_commands(KEY, AuditLog(audit))
    ota = OtaReceiver(device, link, auto_boot=auto_boot, probation=probation)
    tel.enable_ota(ota)
    return Rig(device, link, net, tel, ota, audit)


def serve(
    rig: Rig,
    bundle: Path,
    session: int,
    keys: Path,
    *,
    tamper_first: set[int] | None = None,
    key: bytes = KEY,
) -> tuple[OtaServer, dict[str, Any], list[int]]:
    """The operator's OTA server on the loopback network: offers, chunks on request, fragments once accepted."""
    args, data, _ = offer_args(bundle, rig.link.profile, session, keys)
    served: list[int] = []
    tampered = set(tamper_first or ())

    def tamper(index: int, msg: bytes) -> bytes:
        served.append(index)
        if index in tampered:
            tampered.discard(index)
            return msg[:-1] + bytes([msg[-1] ^ 0x55])
        return msg

    server = OtaServer(
        key,
        DEVICE,
        args,
        data,
        lambda msg: rig.link.queue_downlink("ota", msg),
        retry_s=30.0,
        tamper=tamper,
    )
    rig.net.report_handlers["ota_req"] = lambda device, body, at: server.on_request(body)
    rig.net.report_handlers["ota_report"] = lambda device, body, at: server.on_report(body)
    rig.servers.append(server)
    return server, args, served


def run_until(rig: Rig, end: float, step: float = 1.0, until: Callable[[], bool] | None = None) -> float:
    t = rig.link.now
    while t < end:
        for server in rig.servers:
            server.tick(t)
        rig.tel.tick(t)
        rig.net.advance(t)
        if until is not None and until():
            break
        t += step
    return t
