"""Stage 10, check per target: Edge TPU rules and co-compilation; TFLite Micro arenas against the
profile's SRAM and flash and parity with LiteRT's reference kernels, C arrays for firmware; otherwise
the artifacts against the profile's storage. Returns the extra files the bundle carries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.compile.fuse import WHOLE_BASE
from kasmina_edge.compile.stages.fused_base import whole_inputs
from kasmina_edge.compile.stages.fused_pieces import piece_inputs, piece_span
from kasmina_edge.core.build_errors import ParityError, ProfileLimitError

if TYPE_CHECKING:
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.stages.export import ArtifactSet
    from kasmina_edge.compile.stages.windows import EvalSet

MICRO_PARITY_WINDOWS = 200  # windows each artifact runs in TFLite Micro against LiteRT's reference kernels


def check_target(
    report: BuildReport, target: Any, profile: Any, arts: ArtifactSet, ev: EvalSet, segments: tuple[str, ...]
) -> dict[str, bytes]:
    """Edge TPU rules / TFLite Micro memory and parity / flash; returns extra bundle files."""
    files: dict[str, bytes] = {}
    sizes = {n: len(d) for n, d in arts.data().items()}
    flash = int(profile.memory.flash_bytes)
    if target.name == "edgetpu":
        files.update(_edgetpu(report, target, profile, arts.data()))
    if target.runtime == "tflite-micro":
        files.update(_tflite_micro(report, profile, arts, ev, segments, sizes, flash))
    elif flash and sum(sizes.values()) > flash:
        biggest = max(sizes, key=lambda k: sizes[k])
        raise ProfileLimitError(
            f"model too big for {profile.name}: artifacts need {sum(sizes.values()):,} B, its storage is {flash:,} B "
            f"(largest artifact: {biggest}, {sizes[biggest]:,} B)"
        )
    else:
        report.memory.update({"artifact_bytes": sum(sizes.values()), "storage_limit": flash})
    return files


def _edgetpu(report: BuildReport, target: Any, profile: Any, arts: dict[str, bytes]) -> dict[str, bytes]:
    """The Edge TPU's rules, its parameter cache, and the compiler's co-compiled models when it is here."""
    import tempfile

    from kasmina_edge.core.edgetpu_rules import EdgeTpuRules, check_and_compile

    with tempfile.TemporaryDirectory(prefix="kasmina-edgetpu-") as tmp:
        plan_tpu, compiled = check_and_compile(arts, EdgeTpuRules.from_catalog(target, profile), Path(tmp))
    report.target_mapping = plan_tpu.to_dict()
    files = {f"edgetpu/{name}_edgetpu.tflite": data for name, data in compiled.items()}
    if plan_tpu.compiler == "pending":
        note = "edgetpu_compiler not on PATH: Edge TPU compilation pending; the bundle runs the int8 TFLite on the emulator/CPU"
        if note not in report.pending:
            report.pending = [p for p in report.pending if not p.startswith("edgetpu_compiler")] + [note]
    if not plan_tpu.fits:
        report.notes.append(
            f"parameters exceed the {plan_tpu.cache_bytes:,} B Edge TPU cache by "
            f"{sum(s.streamed_bytes for s in plan_tpu.slices):,} B: they stream from the host each invoke"
        )
    return files


def _micro_inputs(arts: ArtifactSet, ev: EvalSet, segments: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
    """The int8 inputs each artifact sees in the chain (the base, then each kernel live alone)."""
    from kasmina_edge.compile.chain import ChainLayout, tflite_chain

    data = arts.data()
    trace: dict[str, list[list[np.ndarray]]] = {}
    n = min(MICRO_PARITY_WINDOWS, ev.windows.shape[0])
    kernel_names = [n_ for n_, b in arts.built.items() if b.spec.kind == "kernel"]
    tflite_chain(data, ChainLayout(segments, {}), ev.windows[:n], ev.rr[:n], reference=True, trace=trace)
    for kname in kernel_names:
        site = arts.built[kname].spec.site
        assert site is not None
        layout = ChainLayout(segments, {site: kname})
        tflite_chain(data, layout, ev.windows[:n], ev.rr[:n], reference=True, trace=trace)
    inputs = {
        name: [np.concatenate([c[i] for c in calls[:n]]) for i in range(len(calls[0]) - 1)]
        for name, calls in trace.items()
    }
    if WHOLE_BASE in arts.built:  # the fused base takes the base chain's own inputs
        inputs[WHOLE_BASE] = whole_inputs(trace, segments, n)
    for name in arts.built:  # a fused piece: the inputs of the segments it replaces
        span = piece_span(name, len(segments))
        if span is not None:
            inputs[name] = piece_inputs(trace, segments, *span, n)
    return inputs


def _tflite_micro(
    report: BuildReport,
    profile: Any,
    arts: ArtifactSet,
    ev: EvalSet,
    segments: tuple[str, ...],
    sizes: dict[str, int],
    flash: int,
) -> dict[str, bytes]:
    """Arenas measured in TFLite Micro, its outputs against LiteRT's reference kernels, SRAM and flash
    against the profile; the firmware's C arrays."""
    from kasmina_edge.compile.c_array import render
    from kasmina_edge.core.tflm import check_memory, compare_with_reference, measure_arenas, run_micro

    data = arts.data()
    inputs = _micro_inputs(arts, ev, segments)
    reported, outs = run_micro(data, inputs)
    arenas = measure_arenas(data, reported)
    for name, b in arts.built.items():
        logits = name in (segments[-1], WHOLE_BASE) or name.startswith("base_from_site")
        par = compare_with_reference(name, b.data, inputs[name], outs[name], logits=logits)
        report.memory.setdefault("micro_parity", {})[name] = {**par.__dict__, "ok": par.ok}
        if not par.ok:
            raise ParityError(
                f"{name}: TFLite Micro differs from LiteRT reference kernels by {par.max_lsb} LSB "
                f"(allowed {1 if par.documented_ops else 0}); argmax agreement where decisive {par.decisive_argmax_agreement}"
            )
    kernel_sites = {
        n_: b.spec.site for n_, b in arts.built.items() if b.spec.kind == "kernel" and b.spec.site is not None
    }
    arena_bytes = {n_: a.arena_bytes for n_, a in arenas.items()}
    mem = check_memory(
        sizes, arena_bytes, kernel_sites, flash_limit=flash, sram_limit=int(profile.memory.sram_bytes),
        profile=profile.name,
    )  # fmt: skip
    report.memory.update(
        {
            "flash_bytes": mem.flash_bytes,
            "flash_limit": mem.flash_limit,
            "sram_bytes": mem.sram_bytes,
            "sram_limit": mem.sram_limit,
        }
    )
    report.memory["arenas"] = dict(arena_bytes)
    header, source = render(data, report.memory["arenas"])
    return {"firmware/model_data.h": header.encode(), "firmware/model_data.cc": source.encode()}
