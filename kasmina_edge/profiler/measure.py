"""Measured latency of an artifact on the runtimes available here, pinned to one core.

Each artifact is loaded once per backend (``runtime.backends``: LiteRT with XNNPACK and with its builtin
kernels, TFLite Micro, ONNX Runtime), warmed up, then invoked one window at a time with
``time.perf_counter_ns`` around each call. The process is pinned to one CPU (``os.sched_setaffinity``)
for the duration and put back afterwards. A run stops at ``runs`` invokes or ``budget_s`` seconds,
whichever comes first (never fewer than ``MIN_RUNS``). Inputs are the bundle's reference vectors when
there are some, else zeros of the model's input dtype.

TFLite Micro's Python wheel uses reference kernels on x86: its timings say nothing of an MCU's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.core.formats import ONNX_FORMATS, TFLITE_FORMATS
from kasmina_edge.runtime.backends import (
    Backend,
    BackendError,
    LiteRtBackend,
    MicroBackend,
    OrtBackend,
)

MIN_RUNS = 20
HISTOGRAM_SAMPLES = 2000  # samples kept for the report's histogram


@dataclass
class Measurement:
    artifact: str
    backend: str
    runtime: str
    runs: int
    warmup: int
    cpu: int | None
    p50_s: float
    p90_s: float
    p99_s: float
    mean_s: float
    min_s: float
    max_s: float
    samples_s: list[float] = field(default_factory=list, repr=False)

    @property
    def spread(self) -> float:
        """p99 / p50: how far the slow tail reaches (1.0: perfectly steady)."""
        return self.p99_s / self.p50_s if self.p50_s > 0 else float("nan")

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "samples_s"}
        out["spread_p99_over_p50"] = self.spread
        if samples:
            out["samples_s"] = list(self.samples_s)
        return out


@contextlib.contextmanager
def pinned(cpu: int | None = None) -> Iterator[int | None]:
    """Pin this process to one CPU (default: the last one it may run on); restore the mask afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    target = cpu if cpu is not None else max(before)
    try:
        os.sched_setaffinity(0, {target})
    except OSError:
        yield None
        return
    try:
        yield target
    finally:
        os.sched_setaffinity(0, before)


def backends_for(fmt: str) -> list[tuple[str, Backend]]:
    """Every runtime here that runs ``fmt``, labelled; those that cannot start are left out."""
    out: list[tuple[str, Backend]] = []
    if fmt in TFLITE_FORMATS or fmt.startswith("tflite"):
        for label, make in (
            ("litert (xnnpack)", lambda: LiteRtBackend("xnnpack")),
            ("litert (builtin)", lambda: LiteRtBackend("builtin")),
            ("tflite-micro", MicroBackend),
        ):
            try:
                out.append((label, make()))
            except Exception:  # noqa: BLE001 - a runtime missing on this machine is simply not measured
                continue
    elif fmt in ONNX_FORMATS or fmt.startswith("onnx"):
        with contextlib.suppress(Exception):  # no onnxruntime here: nothing to measure it on
            out.append(("onnxruntime", OrtBackend()))
    return out


def _inputs(model: Any, reference: Mapping[str, np.ndarray] | None) -> list[np.ndarray]:
    arrays: list[np.ndarray] = []
    for i, spec in enumerate(model.inputs):
        ref = (reference or {}).get(f"in{i}")
        if ref is not None and ref.shape[1:] == tuple(spec.shape[1:]):
            arrays.append(np.ascontiguousarray(ref[:1], dtype=spec.dtype))
        else:
            arrays.append(np.zeros(spec.shape, dtype=spec.dtype))
    return arrays


def measure(
    data: bytes,
    name: str,
    label: str,
    backend: Backend,
    *,
    reference: Mapping[str, np.ndarray] | None = None,
    warmup: int = 50,
    runs: int = 1000,
    budget_s: float = 2.0,
    cpu: int | None = None,
) -> Measurement:
    """Invoke one artifact on one backend until ``runs`` or ``budget_s``; percentiles of the per-call times."""
    model = backend.load(data, name)
    x = _inputs(model, reference)
    with pinned(cpu) as core:
        for _ in range(warmup):
            model.run(*x)
        times: list[int] = []
        deadline = time.perf_counter() + budget_s
        clock = time.perf_counter_ns
        while len(times) < runs and (len(times) < MIN_RUNS or time.perf_counter() < deadline):
            t0 = clock()
            model.run(*x)
            times.append(clock() - t0)
    s = np.asarray(times, dtype=np.float64) * 1e-9
    p50, p90, p99 = (float(v) for v in np.percentile(s, [50, 90, 99]))
    keep = s if s.size <= HISTOGRAM_SAMPLES else s[np.linspace(0, s.size - 1, HISTOGRAM_SAMPLES).astype(int)]
    return Measurement(
        artifact=name,
        backend=label,
        runtime=backend.info().runtime,
        runs=int(s.size),
        warmup=warmup,
        cpu=core,
        p50_s=p50,
        p90_s=p90,
        p99_s=p99,
        mean_s=float(s.mean()),
        min_s=float(s.min()),
        max_s=float(s.max()),
        samples_s=[float(v) for v in keep],
    )


def measure_all(
    artifacts: Mapping[str, tuple[bytes, str, Mapping[str, np.ndarray] | None]],
    *,
    warmup: int = 50,
    runs: int = 1000,
    budget_s: float = 2.0,
    only: frozenset[str] | None = None,
) -> tuple[list[Measurement], list[str]]:
    """Every artifact (name -> (bytes, format, reference vectors)) on every backend that runs its format;
    ``only`` restricts the backends by label. Returns the measurements and what could not be measured."""
    out: list[Measurement] = []
    skipped: list[str] = []
    cache: dict[str, list[tuple[str, Backend]]] = {}
    for name, (data, fmt, ref) in artifacts.items():
        key = "tflite" if fmt.startswith("tflite") else fmt
        if key not in cache:
            cache[key] = backends_for(fmt)
        backends = [(lbl, b) for lbl, b in cache[key] if only is None or lbl in only]
        if not backends:
            skipped.append(f"{name}: no runtime here runs {fmt}")
        for label, backend in backends:
            try:
                out.append(
                    measure(
                        data, name, label, backend, reference=ref, warmup=warmup, runs=runs, budget_s=budget_s
                    )
                )
            except BackendError as exc:
                skipped.append(f"{name} on {label}: {exc}")
    return out, skipped
