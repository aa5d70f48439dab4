"""Stage 11, package: every file of the bundle and its manifest (``contracts.manifest.BundleManifest``
fields): the artifacts (4-bit weights packed two per byte), reference vectors per artifact, the sites and
their grids, the chain, the parity record, provenance; a kernel-only bundle keeps just the kernels."""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.compile.fuse import WHOLE_BASE
from kasmina_edge.compile.report import ArtifactReport
from kasmina_edge.compile.stages.accuracy import parity_record
from kasmina_edge.compile.stages.export import artifact_ops
from kasmina_edge.compile.stages.fused_base import whole_inputs
from kasmina_edge.compile.stages.fused_pieces import piece_inputs, piece_span
from kasmina_edge.contracts.manifest import SCHEMA
from kasmina_edge.core.formats import TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.stages.accuracy import ParityMiss
    from kasmina_edge.compile.stages.calibrate import Calibration
    from kasmina_edge.compile.stages.chains import ChainPlan
    from kasmina_edge.compile.stages.export import ArtifactSet, BuiltArtifact
    from kasmina_edge.compile.stages.lower import Lowered
    from kasmina_edge.compile.stages.request import BuildRequest
    from kasmina_edge.compile.stages.windows import EvalSet

REFERENCE_ROWS = 8  # windows of reference vectors per artifact
_EXTENSION = {"tflite-int8": "tflite", "onnx-qdq": "onnx", "onnx-qcdq": "onnx"}
_TOOLS = (
    "torch",
    "litert-torch",
    "ai-edge-litert",
    "onnx",
    "onnxruntime",
    "brevitas",
    "tflite-micro",
    "numpy",
)


@dataclass
class PackageInput:
    request: BuildRequest
    lowered: Lowered
    calibration: Calibration
    artifacts: ArtifactSet
    evaluation: EvalSet  # the first evaluation set: the reference vectors' windows
    chains: ChainPlan
    target_files: dict[str, bytes]  # what the target checks add (Edge TPU models, firmware sources)
    misses: list[ParityMiss]


@dataclass
class BundleContents:
    files: dict[str, bytes]
    manifest: dict[str, Any]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package(report: BuildReport, job: PackageInput) -> BundleContents:
    """Every file of the bundle and its manifest; the report gains one row per artifact."""
    req = job.request
    files, artifacts = _artifact_files(report, job)
    manifest = _manifest(report, job, artifacts)
    add_side_files(manifest, files, job.target_files)
    manifest["parity"] = parity_record(job.misses)
    if req.kernels_only:
        files, manifest = kernels_only(files, manifest)
    manifest.update(req.manifest_extra)
    return BundleContents(files, manifest)


def _reference_vectors(job: PackageInput) -> dict[str, dict[str, np.ndarray]]:
    """Each artifact's inputs and output on the first windows, in the base chain or with its kernel live."""
    from kasmina_edge.compile.chain import ChainLayout
    from kasmina_edge.compile.parity import reference_vectors

    ev, segments = job.evaluation, job.chains.segments
    rows = min(REFERENCE_ROWS, ev.windows.shape[0])
    trace: dict[str, list[list[np.ndarray]]] = {}
    job.artifacts.run(ChainLayout(segments, {}), ev.windows[:rows], ev.rr[:rows], trace)
    for name, b in job.artifacts.built.items():
        if b.spec.kind == "kernel" and b.spec.site is not None:
            layout = ChainLayout(segments, {b.spec.site: name})
            job.artifacts.run(layout, ev.windows[:rows], ev.rr[:rows], trace)
    vectors = reference_vectors(trace, rows)
    whole = job.artifacts.built.get(WHOLE_BASE)
    if whole is not None:  # the fused base on the base chain's inputs (it gives the chain's logits)
        ins = whole_inputs(trace, segments, rows)
        vectors[WHOLE_BASE] = {**{f"in{i}": a for i, a in enumerate(ins)}, "out": _run_whole(job, whole.data, ins)}
    for name, b in job.artifacts.built.items():  # fused pieces: their segments' inputs, the pieces' own outputs
        span = piece_span(name, len(segments)) if b.spec.kind == "whole" else None
        if span is not None:
            ins = piece_inputs(trace, segments, *span, rows)
            vectors[name] = {**{f"in{i}": a for i, a in enumerate(ins)}, "out": _run_whole(job, b.data, ins)}
    return vectors


def _run_whole(job: PackageInput, data: bytes, ins: list[np.ndarray]) -> np.ndarray:
    if job.artifacts.fmt in TFLITE_FORMATS:
        from kasmina_edge.core.tflite_graph import run_batched

        return run_batched(data, ins)[0]
    from kasmina_edge.compile.export_onnx import run_onnx

    return np.asarray(run_onnx(data, ins, fused=job.artifacts.fused))


def _artifact_files(report: BuildReport, job: PackageInput) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The artifacts' files (packed at 4 bits) and reference vectors, and their manifest entries."""
    from kasmina_edge.compile.parity import npz_bytes
    from kasmina_edge.core.pack4 import PACKED_SUFFIX, pack_artifact

    vectors = _reference_vectors(job)
    library = {e.key: e for e in job.lowered.entries}
    files: dict[str, bytes] = {}
    artifacts: list[dict[str, Any]] = []
    for name, b in job.artifacts.built.items():
        fname = f"artifacts/{name}.{_EXTENSION[b.fmt]}"
        ref_name = f"reference/{name}.npz"
        files[ref_name] = npz_bytes(vectors[name])
        entry = _artifact_entry(name, b, ref_name)
        if b.spec.seed_id in library:
            entry["seed_kernel"] = _seed_kernel_info(library[b.spec.seed_id], b.bits)
        packed_bytes = None
        packed_file = None
        if b.bits == 4:
            blob, pack = pack_artifact(b.data, "tflite" if b.fmt in TFLITE_FORMATS else "onnx")
            packed_file = fname + PACKED_SUFFIX
            files[packed_file] = blob
            entry.update(
                {"file": packed_file, "packed": True, "sha256": sha256_hex(blob), "bytes": len(blob)}
            )
            packed_bytes = pack.packed_bytes
        else:
            files[fname] = b.data
            entry.update({"file": fname, "packed": False, "sha256": sha256_hex(b.data), "bytes": len(b.data)})
        artifacts.append(entry)
        report.artifacts.append(_artifact_report(report, name, b, entry, packed_bytes, packed_file))
    return files, artifacts


def _artifact_entry(name: str, b: BuiltArtifact, ref_name: str) -> dict[str, Any]:
    """An artifact's manifest entry, before its file (packed or not) is chosen."""
    ins, outs = _tensor_specs(b)
    return {
        "name": name,
        "kind": b.spec.kind,
        "format": b.fmt,
        "bits": b.bits,
        "site": b.spec.site if b.spec.kind == "kernel" else None,
        "seed": b.spec.seed_id,
        "blueprint": b.spec.blueprint,
        "inputs": b.spec.input_names,
        "input_specs": ins,
        "output_specs": outs,
        "reference": ref_name,
        "unpacked_sha256": sha256_hex(b.data),
        "unpacked_bytes": len(b.data),
        "quantization": b.quantization,
    }


def _artifact_report(
    report: BuildReport,
    name: str,
    b: BuiltArtifact,
    entry: dict[str, Any],
    packed_bytes: int | None,
    packed_file: str | None,
) -> ArtifactReport:
    tpu = None
    if report.target_mapping.get("models"):
        tpu = next((m for m in report.target_mapping["models"] if m["name"] == name), None)
    return ArtifactReport(
        name=name,
        kind=b.spec.kind,
        file=str(entry["file"]),
        format=b.fmt,
        bytes=len(b.data),
        sha256=str(entry["sha256"]),
        quantization=b.quantization,
        ops=artifact_ops(b),
        parameters=b.spec.parameters,
        site=b.spec.site if b.spec.kind == "kernel" else b.spec.out_site,
        seed=b.spec.seed_id,
        blueprint=b.spec.blueprint,
        bits=b.bits,
        packed_bytes=packed_bytes,
        packed_file=packed_file,
        arena_bytes=report.memory.get("arenas", {}).get(name),
        edgetpu=tpu,
        micro_parity=report.memory.get("micro_parity", {}).get(name),
    )


def _manifest(report: BuildReport, job: PackageInput, artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    req, model, ckpt, cal = job.request, job.lowered.model, job.lowered.checkpoint, job.calibration
    return {
        "schema": SCHEMA,
        "kind": "full",
        "target": report.target,
        "profile": report.profile,
        "format": report.format,
        "bits": req.bits,
        "classes": list(model.classes),
        "model": {
            "config": ckpt.get("model_config"),
            "experiment_id": ckpt.get("experiment_id"),
            "checkpoint_sha256": hashlib.sha256(req.checkpoint.read_bytes()).hexdigest(),
        },
        "sites": [
            {
                "index": s.index,
                "name": s.name,
                "channels": s.channels,
                "length": s.length,
                "grid": {**cal.grids[s.index].as_dict(), "headroom": req.site_headroom}
                if not req.site_grids
                else cal.grids[s.index].as_dict(),
            }
            for s in model.sites
        ],
        "chain": {
            "segments": list(job.chains.segments),
            "default_active": {str(k): v for k, v in job.chains.morphed.items()},
        },
        "logits": {
            "grid": cal.logit_grid.as_dict(),
            "note": "logits clipped to the band where classes are decided",
        },
        "artifacts": artifacts,
        **({"fused_base": dict(report.fused_base)} if report.fused_base else {}),
        "provenance": _provenance(req),
        "pending": list(report.pending),
    }


def _provenance(req: BuildRequest) -> dict[str, Any]:
    import sys

    from kasmina_edge import __version__
    from kasmina_edge.host.experiment import git_commit

    return {
        "kasmina_edge": __version__,
        "git_commit": git_commit(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "host": platform.machine(),
        "tool_versions": _tool_versions(),
        "command_line": list(sys.argv),
        "seed_library": str(req.seeds) if req.seeds else None,
    }


def _tensor_specs(b: BuiltArtifact) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shape, dtype and quantization of an artifact's inputs and output, as the manifest records them."""
    if b.fmt in TFLITE_FORMATS:
        from kasmina_edge.core.tflite_graph import read_graph

        g = read_graph(b.data)

        def spec(name: str, t: Any) -> dict[str, Any]:
            return {
                "name": name,
                "shape": [int(d) for d in t.shape],
                "dtype": t.dtype,
                "scale": list(t.scales),
                "zero_point": list(t.zero_points),
            }

        ins = [spec(n, t) for n, t in zip(b.spec.input_names, g.input_tensors(), strict=True)]
        return ins, [spec("output", g.output_tensors()[0])]
    import onnx

    model = onnx.load_from_string(b.data)

    def fspec(v: Any) -> dict[str, Any]:
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": "float32"}  # QDQ: float at the edges, grids inside

    return [fspec(v) for v in model.graph.input], [fspec(v) for v in model.graph.output]


def _seed_kernel_info(entry: Any, bits: int) -> dict[str, Any]:
    """The host's record of a seed (library entry) in the manifest's terms."""
    steps: list[dict[str, Any]] = []
    g1: dict[str, Any] | None = None
    for ev in getattr(entry, "lifecycle", []) or []:
        if ev.get("event") != "transition":
            continue
        gate = None
        if ev.get("gate"):
            gate = {
                "gate": str(ev["gate"]),
                "passed": bool(ev.get("gate_passed")),
                "reason": str(ev.get("gate_reason", "")),
                "metrics": {
                    k: float(v)
                    for k, v in dict(ev.get("gate_metrics") or {}).items()
                    if isinstance(v, int | float)
                },
            }
            if gate["gate"] == "G1" and gate["passed"]:
                g1 = gate
        steps.append(
            {
                "src": str(ev.get("from")),
                "dst": str(ev.get("to")),
                "reason": str(ev.get("reason", "")),
                "gate": gate,
            }
        )
    return {
        "blueprint": entry.blueprint,
        "condition_tags": [entry.condition, *entry.tags],
        "param_count": int(entry.param_count),
        "bits": bits,
        "lifecycle": steps,
        "g1_verdict": g1,
        "measured_gain": float(entry.gain),
    }


def _tool_versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for pkg in _TOOLS:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def add_side_files(manifest: dict[str, Any], files: dict[str, bytes], extra: dict[str, bytes]) -> None:
    """Firmware sources (and anything else a target adds) as manifest artifacts of their own kind."""
    for path, data in sorted(extra.items()):
        files[path] = data
        is_c = path.endswith((".cc", ".h"))
        manifest["artifacts"].append(
            {
                "name": path,
                "kind": "c_array" if is_c else "whole",
                "format": "c-source" if is_c else "tflite-edgetpu",
                "file": path,
                "sha256": sha256_hex(data),
                "bytes": len(data),
            }
        )


def kernels_only(
    files: dict[str, bytes], manifest: dict[str, Any]
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Keep only the seed kernels (and their reference vectors): a ``kind = "kernels"`` bundle."""
    kept = [a for a in manifest["artifacts"] if a["kind"] == "kernel"]
    names = {a["file"] for a in kept} | {a["reference"] for a in kept if a.get("reference")}
    out = {**manifest, "kind": "kernels", "artifacts": kept, "chain": None}
    return {k: v for k, v in files.items() if k in names}, out
