"""Boot an emulated device from its flash and stream ECG through the on-device runtime.

``boot_runtime`` boots the device (A/B fallback included), loads the image on the profile's backend
and checks every base segment against its reference vectors; an image that fails is rejected and
the device boots again from its last good slot. ``run_stream`` feeds a sensor (any ``EcgSource``)
chunk by chunk, writes every prediction and event (the runtime's typed records, ``contracts.events``)
as a JSON line (appended and flushed per record, so a crash or Ctrl-C loses nothing written before it),
adds the emulated device time and battery, confirms a trial slot once its probation passed, and stops
cleanly on SIGINT.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

import numpy as np

from firmware_sim.battery import BatteryModel
from firmware_sim.device import BootResult, Device, DirDevice, EmulatedDevice
from firmware_sim.sensor import sensor_chunks
from firmware_sim.timing import EmulatedTiming
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.events import BeatClassified, EventSink, RuntimeEvent
from kasmina_edge.ecg.sources import EcgSource
from kasmina_edge.runtime.backends import BackendError, LiteRtMode, open_backend
from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig
from kasmina_edge.runtime.image import Image, ImageError, add_kernel_bundle, load_image

MAX_BOOT_ATTEMPTS = 3


class JsonlLog:
    """Append-only JSON lines, flushed per record (nothing half-written survives as a record)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._f: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self.count += 1
        if self._f is not None:
            self._f.write(json.dumps(record, separators=(",", ":"), default=_json_default) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


@dataclass
class RunOptions:
    realtime: bool = False
    chunk_s: float = 0.5
    probation_beats: int = 30  # a trial slot is confirmed once this many beats ran without a boot-level fault
    backend_mode: LiteRtMode = "xnnpack"
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    radio_every_s: float = 60.0  # one status frame a minute of signal
    radio_airtime_s: float = 0.1  # ~51 B at LoRaWAN EU868 DR5
    keep_predictions: bool = False


@dataclass
class Booted:
    boot: BootResult
    image: Image
    runtime: DeviceRuntime
    timing: EmulatedTiming | None
    attempts: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    device: str
    bundle_id: str | None
    slot: str | None
    backend: dict[str, Any]
    profile: str
    signal_s: float
    wall_s: float
    host_infer_s: float
    device_infer_s: float
    status: dict[str, Any]
    battery: dict[str, Any]
    confirmed: bool
    interrupted: bool
    records: int
    predictions: list[BeatClassified] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    decision_latency_s: list[float] = field(default_factory=list)
    telemetry: dict[str, Any] | None = None  # what went over the link (``--link``), when a hook was given

    @property
    def realtime_factor(self) -> float:
        return self.signal_s / self.wall_s if self.wall_s > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("predictions", "decision_latency_s")} | {
            "realtime_factor": self.realtime_factor}


def boot_runtime(
    device: Device,
    *,
    keys: Path | None = None,
    options: RunOptions | None = None,
    sink: EventSink | None = None,
    fs: float = 360.0,
) -> Booted:
    """Boot ``device`` and bring its runtime up; a failing image is rejected and the device boots again."""
    options = options or RunOptions()
    attempts: list[str] = []
    for _ in range(MAX_BOOT_ATTEMPTS):
        boot = device.boot(keys) if isinstance(device, DirDevice) else device.boot()
        attempts.extend(boot.fallbacks)
        try:
            backend = open_backend(boot.profile.runtime, mode=options.backend_mode)
            image = load_image(boot.bundle, backend)
            attempts.extend(_install_kernels(device, boot, image))
            runtime = DeviceRuntime(image, fs=fs, config=options.runtime, sink=sink)
            runtime.boot()
        except (ImageError, BackendError) as exc:
            attempts.append(f"slot {boot.slot}: {exc}")
            device.reject(str(exc))
            continue
        timing = EmulatedTiming.for_image(image, boot.bundle, boot.profile)
        return Booted(boot, image, runtime, timing, attempts)
    raise KasminaError(f"{device.address}: no slot boots ({'; '.join(attempts)})")


def _install_kernels(device: Device, boot: BootResult, image: Image) -> list[str]:
    """The device's stored kernel-only bundles for the booted base, loaded into the image (pinned); a
    bundle that does not fit is skipped with its reason (the base still boots)."""
    if not isinstance(device, EmulatedDevice):
        return []
    bundles, notes = device.kernel_bundles(boot.bundle)
    notes = [f"kernel store: {n}" for n in notes]
    for kb in bundles:
        try:
            add_kernel_bundle(image, kb)
        except (ImageError, BackendError) as exc:
            notes.append(f"kernel bundle {kb.manifest.bundle_id} skipped: {exc}")
    return notes


class _Interrupt:
    """SIGINT sets a flag the stream loop checks between chunks (the device state stays consistent)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def run_stream(
    device: Device,
    source: EcgSource,
    *,
    out: Path | None = None,
    keys: Path | None = None,
    options: RunOptions | None = None,
    on_update: Callable[[DeviceRuntime, dict[str, Any]], None] | None = None,
    stop: Callable[[], bool] | None = None,
    telemetry: Any | None = None,
) -> RunSummary:
    """Stream ``source`` through ``device``; ``on_update`` is called after each chunk with the runtime and the
    emulator's figures (for a live panel). ``telemetry`` (``firmware_sim.telemetry.RuntimeTelemetry``) gets every
    event and a tick with the signal time after each chunk."""
    options = options or RunOptions()
    log = JsonlLog(out)
    predictions: list[BeatClassified] = []
    battery_box: dict[str, BatteryModel] = {}
    timing_box: dict[str, EmulatedTiming | None] = {}
    device_s = [0.0]

    def sink(event: RuntimeEvent) -> None:
        if isinstance(event, BeatClassified):
            tm = timing_box.get("t")
            rt = booted_box.get("rt")
            if tm is not None and rt is not None:
                est = tm.window_s(rt.executor.config)
                event = replace(event, device_us=round(est * 1e6, 1))
                device_s[0] += est
                bat = battery_box.get("b")
                if bat is not None:
                    bat.inference(est)
            if options.keep_predictions:
                predictions.append(event)
        if telemetry is not None:
            telemetry.on_event(event)
        log.write(event.to_json())

    booted_box: dict[str, DeviceRuntime] = {}
    try:
        booted = boot_runtime(device, keys=keys, options=options, sink=sink, fs=source.fs)
    except BaseException:
        log.close()
        raise
    runtime = booted.runtime
    booted_box["rt"] = runtime
    if telemetry is not None:
        telemetry.attach(runtime)
    timing_box["t"] = booted.timing
    battery = BatteryModel(booted.boot.profile)
    battery_box["b"] = battery
    log.write({"event": "run", "device": str(device.address), "source": source.name, "slot": booted.boot.slot,
               "trial": booted.boot.trial, "profile": booted.boot.profile.name,
               "backend": booted.image.backend.info().__dict__, "fallbacks": booted.attempts})
    confirmed = not booted.boot.trial
    interrupted = False
    t0 = time.perf_counter()
    next_frame = options.radio_every_s
    last_t = 0.0
    with _Interrupt() as intr:
        for chunk in sensor_chunks(source, options.chunk_s, options.realtime):
            runtime.feed(chunk)
            now = runtime.signal_time()
            battery.idle(now - last_t)
            last_t = now
            while now >= next_frame:
                battery.radio_frame(options.radio_airtime_s)
                next_frame += options.radio_every_s
            runtime.platform.battery = battery.charge
            if telemetry is not None:
                telemetry.tick(now)
            if not confirmed and runtime.counters.beats >= options.probation_beats:
                device.confirm()
                confirmed = True
                log.write({"event": "slot_confirmed", "slot": booted.boot.slot, "t": round(now, 3)})
            if on_update is not None:
                on_update(runtime, {"battery": battery.charge, "device_s": device_s[0],
                                    "wall_s": time.perf_counter() - t0})
            if telemetry is not None and getattr(telemetry, "reboot_requested", False):
                log.write({"event": "reboot", "reason": "signed reboot command", "t": round(now, 3)})
                interrupted = True  # the emulated device restarts: this run ends, the next boots from flash
                break
            if intr.requested or (stop is not None and stop()):
                interrupted = True
                break
        if not interrupted:
            runtime.finish()
    if telemetry is not None:
        telemetry.close(runtime.signal_time())
    wall = time.perf_counter() - t0
    status = runtime.status()
    log.write({"event": "stop", "interrupted": interrupted, "beats": status["beats"], "t": round(runtime.signal_time(), 3)})
    log.close()
    return RunSummary(
        device=str(device.address),
        bundle_id=booted.image.manifest.bundle_id,
        slot=booted.boot.slot,
        backend=booted.image.backend.info().__dict__,
        profile=booted.boot.profile.name,
        signal_s=runtime.signal_time(),
        wall_s=wall,
        host_infer_s=status["infer_s"],
        device_infer_s=device_s[0],
        status=status,
        battery=battery.to_dict(),
        confirmed=confirmed,
        interrupted=interrupted,
        records=log.count,
        predictions=predictions,
        fallbacks=booted.attempts,
        decision_latency_s=list(runtime.decision_latency_s),
        telemetry=telemetry.summary() if telemetry is not None else None,
    )
