"""The bundle on this host's runtime: boot its image on the profile's backend and stream a record through it.

The device runtime itself (``runtime.engine.DeviceRuntime``), fed in the sensor's chunks, as ``firmware_sim``'s
runner does, but without a flashed device, so one image serves every run of a stage: the base alone (``adapt``
off, no boot kernels), the device as deployed (the controller on), or one seed kernel forced live at its site.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.events import BeatClassified, RuntimeEvent, SeedTransition
from kasmina_edge.ecg.evaluate import Evaluation, evaluate_record
from kasmina_edge.ecg.types import Record
from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig
from kasmina_edge.runtime.executor import SlotConfig
from kasmina_edge.runtime.image import Image

CHUNK_S = 0.5  # the emulated sensor's block (firmware_sim.runner's default)


@dataclass
class StreamResult:
    name: str
    predictions: list[BeatClassified]
    transitions: list[SeedTransition] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    decision_latency_s: list[float] = field(default_factory=list)
    beat_latency_s: list[float] = field(default_factory=list)  # host inference per beat
    host_s: float = 0.0

    def evaluate(self, record: Record, exclude_first_s: float) -> Evaluation:
        """Beat by beat against ``record``'s annotations, the first ``exclude_first_s`` seconds left out."""
        samples = np.array([b.sample for b in self.predictions], dtype=np.int64)
        classes = [b.label for b in self.predictions]
        if record.seconds <= exclude_first_s:
            raise KasminaError(f"record {record.name} ({record.seconds:.0f} s) lies wholly inside the plan's "
                               f"accuracy.exclude_first_s = {exclude_first_s:g} s: nothing left to score "
                               "(a plan with a shorter exclusion: --plan FILE)")
        start = exclude_first_s
        if record.beats is None:
            raise KasminaError(f"{record.name}: no reference beat annotations")
        return evaluate_record(record.beats, samples, classes, record.fs, name=self.name, start_s=start,
                               offset_samples=0)


def load_image_for(bundle: Bundle, runtime_name: str) -> Image:
    from kasmina_edge.runtime.backends import open_backend
    from kasmina_edge.runtime.image import load_image

    return load_image(bundle, open_backend(runtime_name))


BASE_ONLY = RuntimeConfig(adapt=False, boot_kernels=False)


def stream_record(
    image: Image,
    record: Record,
    *,
    config: RuntimeConfig | None = None,
    forced: list[str] | None = None,
    name: str | None = None,
    lead: int = 0,
) -> StreamResult:
    """Stream ``record``'s ``lead`` through a fresh runtime on ``image``; ``forced`` puts those kernels live at
    their sites for the whole record (with the controller off)."""
    events: list[RuntimeEvent] = []
    cfg = config or RuntimeConfig()
    if forced:
        cfg = BASE_ONLY
    runtime = DeviceRuntime(image, fs=record.fs, config=cfg, sink=events.append)
    runtime.boot()
    for name in forced or []:
        kernel = image.kernels[name]
        runtime.executor.set_slot(kernel.site, SlotConfig(candidate=kernel, alpha=1.0))  # as boot_live leaves it
    signal = np.ascontiguousarray(record.signal[:, lead], dtype=np.float32)
    step = max(1, int(round(CHUNK_S * record.fs)))
    t0 = time.perf_counter()
    for a in range(0, signal.shape[0], step):
        runtime.feed(signal[a : a + step])
    runtime.finish()
    beats = [e for e in events if isinstance(e, BeatClassified)]
    return StreamResult(
        name=name or record.name,
        predictions=beats,
        transitions=[e for e in events if isinstance(e, SeedTransition)],
        status=runtime.status(),
        decision_latency_s=list(runtime.decision_latency_s),
        beat_latency_s=[b.latency_us * 1e-6 for b in beats],
        host_s=time.perf_counter() - t0,
    )


def kernel_groups(image: Image) -> dict[str, list[str]]:
    """What goes live together: each kernel of the base bundle alone (the controller picks one per condition);
    the kernels of one installed kernel-only bundle together (a patient's seeds were grown and judged as a set)."""
    groups: dict[str, list[str]] = {}
    for k in image.kernels.values():
        if k.pinned and k.bundle_id:
            groups.setdefault(k.bundle_id, []).append(k.name)
        else:
            groups[k.name] = [k.name]
    return groups
