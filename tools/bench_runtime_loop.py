"""Section 1 of tools/bench_runtime.py: the device loop per backend, and where its time goes.

Per backend, one thread (CPU time of this thread: the machine may be shared), on the same record:

* the model alone (beats precomputed, the chain with no kernel);
* the device loop as the bundle boots it (its default kernel live until the controller retires it);
* the device loop with a kernel live throughout: the bundle's default kernel at boot, the controller deciding
  every window but never retiring it (``clear_windows`` out of reach); detection, windows, controller, chain,
  health, lifecycle and the event records (appended to a list: the logging) all run.

``profile_loop`` runs the kernel-live loop once under cProfile and splits its time into the loop's parts
(inclusive time of the functions that make each part; what is left is "other").
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench_runtime_chain import bundle_pieces

from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.ecg.windowing import Beat
from kasmina_edge.runtime.backends import Backend
from kasmina_edge.runtime.controller import KernelControllerConfig
from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig
from kasmina_edge.runtime.executor import SegmentedExecutor
from kasmina_edge.runtime.image import Image, load_image

KERNEL_LIVE = RuntimeConfig(controller=KernelControllerConfig(clear_windows=10**9))

def _parts() -> dict[str, tuple[Callable[..., Any], ...]]:
    """Part of the loop -> the functions whose inclusive time makes it."""
    from kasmina_edge.core.features import signal_features
    from kasmina_edge.ecg.windowing import StreamingBeatizer
    from kasmina_edge.runtime.controller import KernelController
    from kasmina_edge.runtime.evidence import BeatContextTracker
    from kasmina_edge.runtime.health import HealthMonitor
    from kasmina_edge.runtime.lifecycle import SeedManager
    from kasmina_edge.runtime.observation import signal_quality_ratio

    return {
        "detection + windows (ecg)": (StreamingBeatizer.process, StreamingBeatizer.flush),
        "signal features (core)": (signal_features,),
        "quality index (ecg)": (signal_quality_ratio,),
        "chain (model + kernel)": (SegmentedExecutor.infer,),
        "controller": (KernelController.decide, KernelController.needs_quality),
        "lifecycle + health": (SeedManager.tick, HealthMonitor.check),
        "label-free evidence": (BeatContextTracker.observe,),
        "records + logging": (DeviceRuntime._prediction, DeviceRuntime._emit),
    }


def _key(fn: Callable[..., Any]) -> tuple[str, int, str]:
    code = fn.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def _cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    c0, w0 = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - c0, time.perf_counter() - w0


def stream(image: Image, fs: float, chunks: list[Any], config: RuntimeConfig | None = None
           ) -> tuple[float, float, DeviceRuntime, list[Any]]:
    """One pass of the device loop over ``chunks``: (CPU s, wall s, the runtime, its event records)."""
    events: list[Any] = []
    rt = DeviceRuntime(image, fs=fs, config=config, sink=events.append)
    rt.boot()

    def go() -> None:
        for c in chunks:
            rt.feed(c)
        rt.finish()

    cpu, wall = _cpu(go)
    return cpu, wall, rt, events


def throughput(backends: list[tuple[str, Bundle, Backend]], beats: list[Beat], source: Any, signal_s: float,
               rounds: int = 3) -> list[dict[str, Any]]:
    rows = []
    chunks = list(source.chunks(180))
    for name, bundle, backend in backends:
        image = load_image(bundle, backend)
        ex = SegmentedExecutor(image)
        for b in beats[:20]:
            ex.infer(b.window, b.rr)
        model = [_cpu(lambda ex=ex: [ex.infer(b.window, b.rr) for b in beats]) for _ in range(rounds)]
        pieced, _ = bundle_pieces(bundle, image)  # what a bundle carrying its fused pieces boots
        loops = [stream(image, source.fs, chunks) for _ in range(rounds)]
        live, live_pieces = [], []
        for _ in range(rounds):  # interleaved: both see the same machine load
            live.append(stream(image, source.fs, chunks, KERNEL_LIVE))
            live_pieces.append(stream(pieced, source.fs, chunks, KERNEL_LIVE))
        cpu, wall = min(m[0] for m in model), min(m[1] for m in model)
        beats_live = [e for e in live[0][3] if getattr(e, "KIND", "") == "beat"]
        rows.append({
            "backend": name,
            "runtime": backend.info().runtime,
            "beats": len(beats),
            "model_us_per_beat_cpu": 1e6 * cpu / len(beats),
            "model_x_realtime_cpu": signal_s / cpu,
            "model_x_realtime_wall": signal_s / wall,
            "loop_x_realtime_cpu": signal_s / min(r[0] for r in loops),
            "loop_x_realtime_wall": signal_s / min(r[1] for r in loops),
            "live_loop_x_realtime_cpu": signal_s / min(r[0] for r in live),
            "live_loop_x_realtime_wall": signal_s / min(r[1] for r in live),
            "live_pieces_x_realtime_cpu": signal_s / min(r[0] for r in live_pieces),
            "live_pieces_same_events": _same_beats(live[0][3], live_pieces[0][3]),
            "live_share": sum(1 for b in beats_live if b.active) / max(1, len(beats_live)),
            "live_events": len(live[0][3]),
        })
    return rows


def _same_beats(a: list[Any], b: list[Any]) -> bool:
    """Whether two runs classified the same beats alike (labels, confidences, live kernels)."""
    def beats(events: list[Any]) -> list[tuple[Any, ...]]:
        return [(e.sample, e.label, e.confidence, tuple(e.active.items())) for e in events
                if getattr(e, "KIND", "") == "beat"]

    return beats(a) == beats(b)


def profile_loop(image: Image, fs: float, chunks: list[Any]) -> dict[str, Any]:
    """The kernel-live loop under cProfile: share of its time per part (profiling inflates Python calls, so
    read shares, not times)."""
    prof = cProfile.Profile()
    events: list[Any] = []
    rt = DeviceRuntime(image, fs=fs, config=KERNEL_LIVE, sink=events.append)
    rt.boot()
    prof.enable()
    for c in chunks:
        rt.feed(c)
    rt.finish()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def inclusive(*fns: Callable[..., Any]) -> float:
        return sum(stats[_key(f)][3] for f in fns if _key(f) in stats)

    total = inclusive(DeviceRuntime.feed, DeviceRuntime.finish)
    shares = {part: (inclusive(*fns) / total if total else 0.0) for part, fns in _parts().items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {"profiled_s": total, "shares": shares}
