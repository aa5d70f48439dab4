"""The event injector of stage 4: each fault planted in a real run of the emulator or the runtime, and the
property it must not break, judged from what the run recorded.

* link faults (packet-loss burst, latency spike, gateway restart: ``net.link.FaultInjector``'s spec) on the
  telemetry link while the device streams, and ``broker@START+SECONDS`` (the MQTT broker down: messages passing
  it are lost, ``net.loopback``), then a drain: every record the device produced must reach the monitor;
* a power cut while flashing (``FlashStorage(cut_after_bytes=...)``): no half-written slot boots, a second
  flash boots;
* a NaN kernel: a live kernel's output turns NaN mid-stream; the breaker must take it out of the answers
  within ``rollback_windows`` windows, and no beat goes without a class;
* a corrupted OTA chunk: a real OTA session (operator's server to the device's receiver, simulated time) in
  which one chunk arrives altered: the device refuses the piece, asks again, installs the exact bundle and boots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import Record
from kasmina_edge.validate.context import ValidationContext

DRAIN_STEP_S = 5.0
BROKER_FAULT = re.compile(r"broker@(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?)")


@dataclass
class FaultOutcome:
    fault: str
    passed: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (seconds, what happened) for the plot

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.fault, "passed": self.passed, "reason": self.reason, "detail": self.detail,
                "timeline": [list(t) for t in self.timeline]}


def _fresh_device(ctx: ValidationContext, name: str) -> Any:
    from firmware_sim.device import open_device

    dev = open_device(f"emu://{name}", ctx.devices_dir / "stage4")
    dev.flash(ctx.bundle_path, ctx.keys, profile=ctx.hardware().name)
    return dev


def link_faults(ctx: ValidationContext, record: Record, link_spec: str) -> FaultOutcome:
    """Stream ``record`` with telemetry over ``link_spec`` (NAME:FAULTS) to an in-process monitor, then drain."""
    from firmware_sim.runner import RunOptions, run_stream
    from firmware_sim.telemetry import open_device_telemetry
    from kasmina_edge.ecg.sources import RecordSource

    dev = _fresh_device(ctx, "validate-link")
    radio_spec, broker_down = split_broker_faults(link_spec)
    tel, transport = open_device_telemetry(dev.address.name, dev.storage, radio_spec, None, emulated=dev)
    transport.net.broker_down = broker_down  # the MQTT broker restarting: what passes it then is lost
    tel.keep_produced = True
    s = run_stream(dev, RecordSource(record), options=RunOptions(keep_predictions=False), telemetry=tel)
    end = float(s.signal_s)
    during = [(fseq, t) for fseq, t, _ in tel.produced if t <= end + 1e-6]  # the drain adds heartbeats: not judged
    for t in np.arange(end, end + ctx.plan.faults.drain_s + DRAIN_STEP_S, DRAIN_STEP_S):
        tel.tick(float(t))
        transport.drain()
    transport.close()
    summary = tel.summary()
    view = transport.net.monitor.devices.get(dev.address.name)
    lost = [fseq for fseq, _ in during if view is None or not _delivered(view, fseq)]
    detail = {"link": link_spec, "produced": len(during), "lost": len(lost), "lost_fseq": lost[:20],
              "lost_at_broker": transport.net.lost_at_broker,
              **{k: summary[k] for k in ("dropped", "resent", "uplinks", "delivered", "acked")}}
    lost_set = set(lost)
    timeline = [(float(t), "lost" if fseq in lost_set else "delivered") for fseq, t in during[:500]]
    detail["events"] = _fault_events(link_spec)
    if lost:
        why = (f"{len(lost)} of {len(during)} telemetry records never reached the monitor within "
               f"{ctx.plan.faults.drain_s:g} s after the stream ({summary['dropped']} dropped from the device queue) "
               f"over {link_spec}")
        return FaultOutcome("link", False, why, detail, timeline)
    return FaultOutcome("link", True, f"all {len(during)} records reached the monitor over {link_spec} "
                        f"({summary['resent']} resent)", detail, timeline)


def split_broker_faults(link_spec: str) -> tuple[str, list[tuple[float, float]]]:
    """``broker@START+SECONDS`` items (the MQTT broker down, on the loopback network) taken out of a link spec;
    the rest is the link's own (``net.link.FaultInjector.parse``)."""
    name, _, faults = link_spec.partition(":")
    radio, down = [], []
    for item in (f.strip() for f in faults.split(",") if f.strip()):
        m = BROKER_FAULT.fullmatch(item)
        if m:
            down.append((float(m.group(1)), float(m.group(1)) + float(m.group(2))))
        else:
            radio.append(item)
    return (f"{name}:{','.join(radio)}" if radio else name), down


def _fault_events(link_spec: str) -> list[dict[str, Any]]:
    """The scripted link faults as (kind, start, duration) spans, for the timeline."""
    from kasmina_edge.net.link import FaultInjector

    radio_spec, down = split_broker_faults(link_spec)
    _, _, faults = radio_spec.partition(":")
    out: list[dict[str, Any]] = [{"kind": "BrokerDown", "start_s": a, "duration_s": b - a} for a, b in down]
    for e in FaultInjector.parse(faults).events if faults else []:
        start = float(getattr(e, "start_s", getattr(e, "at_s", 0.0)))
        length = float(getattr(e, "duration_s", getattr(e, "downtime_s", 0.0)))
        out.append({"kind": type(e).__name__, "start_s": start, "duration_s": length})
    return out


def _delivered(view: Any, fseq: int) -> bool:
    """The monitor stored record ``fseq`` (below its contiguous mark, or seen above it; not given up as dropped)."""
    if fseq in view.dropped:
        return False
    return (view.cum is not None and fseq < view.cum) or fseq in view.have


def power_cut_during_flash(ctx: ValidationContext) -> FaultOutcome:
    from firmware_sim.device import DeviceAddress, EmulatedDevice
    from firmware_sim.storage import FlashStorage, PowerCut

    addr = DeviceAddress.parse("emu://validate-powercut", ctx.devices_dir / "stage4")
    size = ctx.bundle_path.stat().st_size
    cut = EmulatedDevice(addr, FlashStorage(addr.path, cut_after_bytes=size // 2))
    interrupted = False
    try:
        cut.flash(ctx.bundle_path, ctx.keys, profile=ctx.hardware().name)
    except PowerCut:
        interrupted = True
    after = EmulatedDevice(addr)
    booted_half = False
    try:
        boot = after.boot()
        booted_half = boot.bundle is not None
    except KasminaError:
        booted_half = False  # nothing valid to boot: the half slot was not taken for an image
    try:
        after.flash(ctx.bundle_path, ctx.keys, profile=ctx.hardware().name)
        reboot = EmulatedDevice(addr).boot()
        recovered = reboot.bundle is not None
    except KasminaError as exc:
        return FaultOutcome("power_cut", False, f"after a power cut during flash the device does not take the "
                            f"bundle again: {exc}", {"interrupted": interrupted})
    detail = {"interrupted": interrupted, "cut_after_bytes": size // 2, "half_slot_booted": booted_half,
              "recovered": recovered}
    if not interrupted:
        return FaultOutcome("power_cut", False, "the planted power cut never interrupted the flash", detail)
    if booted_half:
        return FaultOutcome("power_cut", False, "a slot cut off mid-write booted", detail)
    return FaultOutcome("power_cut", recovered, "power cut half-way through the flash: nothing half-written "
                        "booted, the next flash booted" if recovered else "the device did not boot after re-flash",
                        detail)


def nan_kernel(ctx: ValidationContext, record: Record, after_beats: int = 20) -> FaultOutcome:
    """A live kernel's output turns NaN after ``after_beats`` beats: windows until it leaves the answers."""
    from kasmina_edge.contracts.events import BeatClassified, FaultRollback, RuntimeEvent
    from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig

    image = ctx.image
    assert image is not None
    if not image.kernels:
        return FaultOutcome("nan_kernel", True, "not applicable: the bundle has no seed kernel", {"applicable": False})
    floats = [k for k in image.kernels.values() if k.model.outputs[0].dtype != "int8"]
    if not floats:
        return FaultOutcome("nan_kernel", True, "not applicable: every kernel's output is int8 on a finite grid "
                            "(it cannot be NaN)", {"applicable": False})
    events: list[RuntimeEvent] = []
    runtime = DeviceRuntime(image, fs=record.fs, config=RuntimeConfig(adapt=False, boot_kernels=False),
                            sink=events.append)
    runtime.boot()
    live = next((k for k in floats if runtime.manager.boot_live(k.name, reason="validate: NaN injection")), None)
    if live is None:
        return FaultOutcome("nan_kernel", False, "no float kernel passes its gates to go live for the NaN injection",
                            {"kernels": [k.name for k in floats]})
    real_run = live.model.run
    state: dict[str, int] = {"beats": 0}

    def poisoned(*args: Any) -> Any:
        out = real_run(*args)
        if state["beats"] >= after_beats:
            state.setdefault("first", runtime.manager.window)
            return np.full_like(np.asarray(out, dtype=np.float32), np.nan)
        return out

    live.model.run = poisoned  # type: ignore[method-assign]
    try:
        sig = np.ascontiguousarray(record.signal[:, 0], dtype=np.float32)
        step = int(round(0.5 * record.fs))
        for a in range(0, sig.shape[0], step):
            runtime.feed(sig[a : a + step])
            state["beats"] = runtime.counters.beats
        runtime.finish()
    finally:
        live.model.run = real_run  # type: ignore[method-assign]
    beats = [e for e in events if isinstance(e, BeatClassified)]
    rollbacks = [e for e in events if isinstance(e, FaultRollback)]
    first = state.get("first")
    still_live = sum(1 for b in beats[after_beats:] if live.name in b.active.values())
    unclassed = sum(1 for b in beats if b.label == "?")
    detail = {"kernel": live.name, "nan_from_window": first, "rollbacks": len(rollbacks),
              "windows_live_after_nan": still_live, "beats_without_class": unclassed}
    timeline = [(float(b.t), "nan") for b in beats[after_beats : after_beats + 1]]
    timeline += [(float(getattr(e, "t", 0.0)), "rollback") for e in rollbacks[:1]]
    limit = ctx.plan.faults.rollback_windows
    if first is None:
        return FaultOutcome("nan_kernel", False, f"the stream ended before {after_beats} beats: no NaN injected", detail)
    if not rollbacks or still_live > limit or unclassed:
        why = (f"NaN kernel {live.name}: still in the answers {still_live} window(s) after its first NaN "
               f"(limit {limit}), {unclassed} beat(s) without a class")
        return FaultOutcome("nan_kernel", False, why, detail, timeline)
    return FaultOutcome("nan_kernel", True, f"NaN kernel {live.name} rolled back within {max(still_live, 1)} window(s)",
                        detail, timeline)


def corrupted_ota_chunk(ctx: ValidationContext, link_name: str, horizon_s: float = 3600.0) -> FaultOutcome:
    """A real OTA session (``net.ota.OtaServer`` to ``firmware_sim.ota.OtaReceiver`` on the loopback network,
    simulated time) in which one chunk arrives corrupted: the device must refuse that piece, ask for it again,
    and finish with the exact bundle installed and booted."""
    import hashlib
    import secrets

    from firmware_sim.device import DeviceAddress, EmulatedDevice
    from firmware_sim.ota import OtaReceiver
    from firmware_sim.telemetry import RuntimeTelemetry
    from kasmina_edge.contracts.bundle import load_public_key
    from kasmina_edge.core import catalog
    from kasmina_edge.net.audit import AuditLog
    from kasmina_edge.net.link import Channel
    from kasmina_edge.net.loopback import LoopbackNetwork
    from kasmina_edge.net.ota import OtaServer, offer_args
    from kasmina_edge.net.session import DeviceLink

    name = "validate-ota"
    root = ctx.devices_dir / "stage4"
    device = EmulatedDevice(DeviceAddress.parse(f"emu://{name}", root))
    device.security().provision(load_public_key(ctx.keys), "validate: trusted key for the OTA check")
    prof = catalog.network(link_name)
    net = LoopbackNetwork()
    link = DeviceLink(name, prof, net, channel=Channel(prof, seed=4), fair_use=False)
    net.attach(link)
    tel = RuntimeTelemetry(link, epoch_unix=1_800_000_000.0)
    key = secrets.token_bytes(32)
    tel.enable_commands(key, AuditLog(root / f"{name}-audit.jsonl"))
    ota = OtaReceiver(device, link, auto_boot=True)
    tel.enable_ota(ota)
    args, data, _ = offer_args(ctx.bundle_path, prof, 1, ctx.keys)
    bad_piece = min(2, int(args["pieces"]) - 1)
    served: list[int] = []
    corrupted: list[int] = []

    def tamper(index: int, msg: bytes) -> bytes:
        served.append(index)
        if index == bad_piece and not corrupted:
            corrupted.append(index)
            return msg[:-1] + bytes([msg[-1] ^ 0x55])
        return msg

    server = OtaServer(key, name, args, data, lambda msg: link.queue_downlink("ota", msg), retry_s=30.0, tamper=tamper)
    net.report_handlers["ota_req"] = lambda device_, body, at: server.on_request(body)
    net.report_handlers["ota_report"] = lambda device_, body, at: server.on_report(body)
    t = 0.0
    while t < horizon_s and ota.finished is None:
        server.tick(t)
        tel.tick(t)
        net.advance(t)
        t += 1.0
    final = ota.finished or {"status": "unfinished"}
    slot = final.get("slot")
    info = device.slot_info(slot) if isinstance(slot, str) else None
    exact = info is not None and info.get("sha256") == hashlib.sha256(data).hexdigest()
    detail = {"link": link_name, "mode": args["mode"], "pieces": args["pieces"], "corrupted_piece": bad_piece,
              "refused_pieces": ota.refused_pieces, "served": len(served), "status": final.get("status"),
              "simulated_s": t, "installed_exact": exact}
    timeline = [(t, f"ota {final.get('status')}")]
    if not corrupted:
        return FaultOutcome("corrupted_ota", False, "the OTA session never sent the piece to corrupt", detail, timeline)
    if ota.refused_pieces < 1:
        return FaultOutcome("corrupted_ota", False, f"a corrupted OTA chunk (piece {bad_piece}) was taken without "
                            "complaint", detail, timeline)
    if final.get("status") != "probation_passed" or not exact:
        return FaultOutcome("corrupted_ota", False, f"OTA with a corrupted chunk ended {final.get('status')} "
                            f"({final.get('reason', 'no reason given')})", detail, timeline)
    return FaultOutcome("corrupted_ota", True, f"corrupted OTA chunk {bad_piece} refused and sent again; the update "
                        f"installed byte for byte and booted ({t:,.0f} s over {link_name})", detail, timeline)
