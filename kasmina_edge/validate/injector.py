"""The event injector of stage 4: each fault planted in a real run of the emulator or the runtime, and the
property it must not break, judged from what the run recorded.

* link faults (packet-loss burst, latency spike, broker restart: ``net.link.FaultInjector``'s spec) on the
  telemetry link while the device streams, then a drain: every record the device produced must reach the
  monitor, none dropped from the device's queue;
* a power cut while flashing (``FlashStorage(cut_after_bytes=...)``): no half-written slot boots, a second
  flash boots;
* a NaN kernel: a live kernel's output turns NaN mid-stream; the breaker must take it out of the answers
  within ``rollback_windows`` windows, and no beat goes without a class;
* a corrupted OTA chunk: the assembled update with one chunk flipped is refused on install, and the device
  still boots what it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import Record
from kasmina_edge.validate.context import ValidationContext

OTA_CHUNK_BYTES = 256  # the corrupted piece: one fragment of a typical OTA session
DRAIN_STEP_S = 5.0


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
    tel, transport = open_device_telemetry(dev.address.name, dev.storage, link_spec, None, emulated=dev)
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
              **{k: summary[k] for k in ("dropped", "resent", "uplinks", "delivered", "acked")}}
    timeline = [(float(t), "record") for _, t in during[:200]]
    if lost:
        why = (f"{len(lost)} of {len(during)} telemetry records never reached the monitor within "
               f"{ctx.plan.faults.drain_s:g} s after the stream ({summary['dropped']} dropped from the device queue) "
               f"over {link_spec}")
        return FaultOutcome("link", False, why, detail, timeline)
    return FaultOutcome("link", True, f"all {len(during)} records reached the monitor over {link_spec} "
                        f"({summary['resent']} resent)", detail, timeline)


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


def corrupted_ota_chunk(ctx: ValidationContext) -> FaultOutcome:
    """The update assembled with one OTA-sized chunk flipped, installed the way OTA installs: refused, and the
    device boots what it ran."""
    from firmware_sim.device import open_device

    dev = _fresh_device(ctx, "validate-ota")
    dev.boot()
    data = bytearray(ctx.bundle_path.read_bytes())
    mid = (len(data) // 2) // OTA_CHUNK_BYTES * OTA_CHUNK_BYTES
    for i in range(mid, min(mid + OTA_CHUNK_BYTES, len(data))):
        data[i] ^= 0x5A
    bad = ctx.workdir / "corrupted-ota.kedge"
    bad.write_bytes(bytes(data))
    try:
        dev.flash(bad, ctx.keys, via="ota")
        refused, why = False, "installed"
    except KasminaError as exc:
        refused, why = True, str(exc)
    finally:
        bad.unlink(missing_ok=True)
    try:
        boot = open_device(str(dev.address), ctx.devices_dir / "stage4").boot()
        still = boot.bundle.manifest.bundle_id
    except KasminaError as exc:
        still = None
        why += f"; then no boot: {exc}"
    detail = {"chunk_at": mid, "chunk_bytes": OTA_CHUNK_BYTES, "refused": refused, "refusal": why, "boots": still}
    if refused and still is not None:
        return FaultOutcome("corrupted_ota", True, "an update with one corrupted chunk was refused on install; the "
                            "device boots its bundle", detail)
    return FaultOutcome("corrupted_ota", False, "an update with one corrupted chunk was " +
                        ("installed" if not refused else f"refused but the device no longer boots ({why})"), detail)
