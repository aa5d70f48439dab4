"""A verified bundle loaded onto a backend: every segment and every seed kernel built once, at boot.

``load_image`` reads the chain from the manifest (``chain.segments``; kernels are ``kind ==
"kernel"`` artifacts with a ``site``), unpacks 4-bit artifacts, loads each artifact on the backend,
and checks its interface against the manifest (shapes, dtypes, int8 grids). ``check_reference``
runs an artifact on the reference vectors the build stored beside it: the device's proof that the
artifact it loaded computes what the build computed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.manifest import ArtifactEntry, BundleManifest, GateVerdict
from kasmina_edge.core.kernel_fit import kernel_bundle_misfit
from kasmina_edge.core.tensors import TensorInfo
from kasmina_edge.runtime.backends import Backend, LoadedModel

WHOLE_BASE = "base_whole"  # the artifact name of the base exported in one piece (kind "whole")
# fused pieces of the base (kind "whole", kasmina_edge.compile.fuse): segments 0..i (the input to site i's
# tensor) and segments i+1..N (site i's tensor, and the RR input, to the logits)
PREFIX_NAME = "base_to_site{}"
SUFFIX_NAME = "base_from_site{}"


class ImageError(KasminaError):
    """A bundle the runtime cannot boot: chain missing, interface mismatch, reference mismatch."""


@dataclass(frozen=True)
class ReferenceCheck:
    """An artifact run on its reference vectors: how far it is from what the build recorded."""

    artifact: str
    rows: int
    max_error_lsb: float  # in steps of the output grid (absolute error for float outputs without a grid)
    tolerance_lsb: float
    identical_fraction: float
    argmax_agreement: float | None = None  # for the logits segment
    finite: bool = True

    @property
    def passed(self) -> bool:
        agree = self.argmax_agreement is None or self.argmax_agreement >= 0.99
        return self.finite and self.rows > 0 and self.max_error_lsb <= self.tolerance_lsb and agree

    def metrics(self) -> dict[str, float]:
        out = {
            "rows": float(self.rows),
            "max_error_lsb": float(self.max_error_lsb),
            "tolerance_lsb": float(self.tolerance_lsb),
            "identical_fraction": float(self.identical_fraction),
        }
        if self.argmax_agreement is not None:
            out["argmax_agreement"] = float(self.argmax_agreement)
        return out


@dataclass
class Kernel:
    """A seed kernel: its artifact, where it sits, what the host knows of it."""

    name: str
    entry: ArtifactEntry
    model: LoadedModel
    site: int
    tags: tuple[str, ...]
    blueprint: str
    g1: GateVerdict | None
    measured_gain: float | None
    load_s: float = 0.0
    reference_check: ReferenceCheck | None = None
    # A kernel installed on its own (a kernel-only bundle for this base, e.g. a patient's seed): the
    # runtime brings it live itself; the controller neither activates nor retires it.
    pinned: bool = False
    bundle_id: str | None = None
    host_stage: str | None = None  # where its lifecycle ended on the host (FOSSILIZED, CULLED, ...)
    host_reason: str = ""
    rr_scale: tuple[float, ...] | None = None  # per-patient RR normalisation, applied while it is live
    source: Bundle | None = None  # the bundle its artifact came from, when not the image's own

    @property
    def seed_id(self) -> str:
        return self.entry.seed or self.name


@dataclass
class Image:
    """What the device holds in memory after boot."""

    manifest: BundleManifest
    backend: Backend
    segments: list[LoadedModel]
    segment_entries: list[ArtifactEntry]
    kernels: dict[str, Kernel]
    site_tensors: list[TensorInfo]  # the tensor at each site (output of the segment before it)
    references: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)  # the build report carried in the bundle
    policy: dict[str, Any] | None = None
    load_s: float = 0.0
    # the base exported in one piece beside its segments (artifact ``base_whole``, kind "whole"): the executor
    # runs it instead of the chain while no slot holds a kernel (one invoke instead of one per segment)
    whole: LoadedModel | None = None
    # fused pieces by site (PREFIX_NAME, SUFFIX_NAME): with one site live the executor runs prefix, slot, suffix
    prefixes: dict[int, LoadedModel] = field(default_factory=dict)
    suffixes: dict[int, LoadedModel] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def input(self) -> TensorInfo:
        return self.segments[0].inputs[0]

    @property
    def rr_input(self) -> TensorInfo | None:
        last = self.segments[-1]
        return last.inputs[1] if len(last.inputs) > 1 else None

    @property
    def output(self) -> TensorInfo:
        return self.segments[-1].outputs[0]

    def kernels_at(self, site: int) -> list[Kernel]:
        return [k for k in self.kernels.values() if k.site == site]

    def arena_bytes(self, artifact: str) -> int | None:
        arenas = (self.report.get("memory") or {}).get("arenas") or {}
        value = arenas.get(artifact)
        return int(value) if value else None


def artifact_bytes(bundle: Bundle, entry: ArtifactEntry) -> bytes:
    """The artifact as the backend loads it (4-bit packed artifacts unpacked and hash-checked)."""
    from kasmina_edge.core.pack4 import PackError, artifact_payload  # numpy only: the device unpacks with it

    try:
        return artifact_payload(bundle, entry)
    except PackError as exc:
        raise ImageError(f"artifact {entry.name!r}: {exc}") from None


def _expected(entry: ArtifactEntry) -> tuple[list[TensorInfo], list[TensorInfo]]:
    return [TensorInfo.from_spec(s) for s in entry.input_specs], [TensorInfo.from_spec(s) for s in entry.output_specs]


def check_interface(entry: ArtifactEntry, model: LoadedModel) -> list[str]:
    """Differences between the manifest's tensor specs and what the loaded model reports."""
    problems: list[str] = []
    ins, outs = _expected(entry)
    for side, want, got in (("input", ins, model.inputs), ("output", outs, model.outputs[:1])):
        if not want:
            continue
        if len(want) != len(got):
            problems.append(f"{len(got)} {side}s, the manifest lists {len(want)}")
            continue
        for w, g in zip(want, got, strict=True):
            if tuple(w.shape) != tuple(g.shape) or w.dtype != g.dtype:
                problems.append(f"{side} {w.name}: {g.dtype}{list(g.shape)}, manifest {w.dtype}{list(w.shape)}")
            elif w.scale is not None and g.scale is not None and not w.same_grid(g):
                problems.append(
                    f"{side} {w.name}: grid scale={g.scale} zp={g.zero_point}, manifest scale={w.scale} zp={w.zero_point}"
                )
    return problems


def load_artifact(bundle: Bundle, backend: Backend, entry: ArtifactEntry, arena: int | None = None) -> LoadedModel:
    """One artifact of ``bundle`` loaded on ``backend`` and checked against its manifest entry."""
    backend.check_format(entry.format, entry.name)
    data = artifact_bytes(bundle, entry)
    # with the Edge TPU delegate loaded, the edgetpu_compiler's output for this artifact runs instead
    # (the build co-compiles every artifact into edgetpu/NAME_edgetpu.tflite when the compiler is there)
    accelerated = bool(getattr(backend, "accelerated", False))
    compiled = bundle.files.get(f"edgetpu/{entry.name}_edgetpu.tflite") if accelerated else None
    # twice the measured arena: the build measured it on one TFLite Micro version, the device may run another
    model = backend.load(compiled or data, entry.name, arena_bytes=int(arena * 2) if arena else None)
    problems = check_interface(entry, model)
    if problems:
        raise ImageError(f"artifact {entry.name!r} does not match its manifest: {problems[0]}")
    return model


def _site_of(entry: ArtifactEntry, n_sites: int) -> int:
    if entry.site is None or not 0 <= entry.site < n_sites:
        raise ImageError(f"kernel {entry.name!r}: site {entry.site} is not one of the {n_sites} sites")
    return entry.site


def _check_at_site(name: str, model: LoadedModel, site: int, site_t: TensorInfo, grid: TensorInfo | None) -> None:
    """The loaded kernel maps the site's tensor onto itself, on the site's int8 grid (``grid``: when known)."""
    for side, t in (("input", model.inputs[0]), ("output", model.outputs[0])):
        if t.shape != site_t.shape:
            raise ImageError(f"kernel {name!r}: {side} {list(t.shape)}, site {site} carries {list(site_t.shape)}")
        if t.quantized and grid is not None and not t.same_grid(grid):
            raise ImageError(
                f"kernel {name!r}: {side} grid scale={t.scale} zp={t.zero_point}, site {site} has "
                f"scale={grid.scale} zp={grid.zero_point} (built against another build of the base)"
            )


def load_image(
    bundle: Bundle,
    backend: Backend,
    *,
    arenas: Mapping[str, int] | None = None,
) -> Image:
    """Load every segment and kernel of ``bundle`` on ``backend`` (each once)."""
    t0 = time.perf_counter()
    m = bundle.manifest
    if m.chain is None or not m.chain.segments:
        raise ImageError(f"{bundle.path}: the manifest has no chain (chain.segments): nothing to run")
    report: dict[str, Any] = {}
    if "report.json" in bundle.files:
        try:
            report = json.loads(bundle.files["report.json"])
        except ValueError:
            report = {}
    arena_table = dict((report.get("memory") or {}).get("arenas") or {})
    arena_table.update(arenas or {})

    def load(entry: ArtifactEntry) -> LoadedModel:
        return load_artifact(bundle, backend, entry, arena_table.get(entry.name))

    seg_entries = [m.artifact(name) for name in m.chain.segments]
    segments = [load(e) for e in seg_entries]
    n_sites = len(segments) - 1
    if m.sites and len(m.sites) != n_sites:
        raise ImageError(f"{bundle.path}: {len(m.sites)} sites in the manifest but {len(segments)} segments")
    site_tensors = [seg.outputs[0] for seg in segments[:-1]]
    for i, t in enumerate(site_tensors):
        nxt = segments[i + 1].inputs[0]
        if not t.same_grid(nxt) or t.shape != nxt.shape:
            raise ImageError(
                f"site {i}: {seg_entries[i].name} hands {t.dtype}{list(t.shape)} scale={t.scale}, "
                f"{seg_entries[i + 1].name} takes {nxt.dtype}{list(nxt.shape)} scale={nxt.scale}"
            )
    kernels: dict[str, Kernel] = {}
    for entry in m.kernels():
        site = _site_of(entry, n_sites)
        tk = time.perf_counter()
        model = load(entry)
        _check_at_site(entry.name, model, site, site_tensors[site], None)
        info = entry.seed_kernel
        tags = tuple(t for t in (info.condition_tags if info else []) if t)
        kernels[entry.name] = Kernel(
            name=entry.name,
            entry=entry,
            model=model,
            site=site,
            tags=tags,
            blueprint=entry.blueprint or (info.blueprint if info else "unknown"),
            g1=info.g1_verdict if info else None,
            measured_gain=info.measured_gain if info else None,
            load_s=time.perf_counter() - tk,
        )
    whole = _load_whole(m, segments, load, backend)
    prefixes, suffixes = _load_pieces(m, segments, load, backend)
    references: dict[str, dict[str, np.ndarray]] = {}
    whole_entries = [a for a in m.artifacts if a.name == WHOLE_BASE and whole is not None]
    for entry in [*seg_entries, *m.kernels(), *whole_entries]:
        if entry.reference is not None:
            references[entry.name] = bundle.reference_vectors(entry.name)
    policy = None
    for entry in m.artifacts:
        if entry.kind == "policy" and entry.format == "json":
            try:
                policy = json.loads(bundle.read(entry.file))
            except ValueError as exc:
                raise ImageError(f"policy {entry.name!r}: not JSON ({exc})") from None
    return Image(
        manifest=m,
        backend=backend,
        segments=segments,
        segment_entries=seg_entries,
        kernels=kernels,
        site_tensors=site_tensors,
        references=references,
        report=report,
        policy=policy,
        load_s=time.perf_counter() - t0,
        whole=whole,
        prefixes=prefixes,
        suffixes=suffixes,
    )


def _load_pieces(
    m: BundleManifest, segments: list[LoadedModel], load: Callable[[ArtifactEntry], LoadedModel], backend: Backend
) -> tuple[dict[int, LoadedModel], dict[int, LoadedModel]]:
    """The fused prefixes and suffixes the bundle carries in a format this backend runs, by site; each must take
    and give exactly what the segments it stands for take and give (same shapes, same grids)."""
    by_name = {a.name: a for a in m.artifacts if a.kind == "whole"}
    prefixes: dict[int, LoadedModel] = {}
    suffixes: dict[int, LoadedModel] = {}
    for site in range(len(segments) - 1):
        for name, lo, hi, into in ((PREFIX_NAME.format(site), 0, site, prefixes),
                                   (SUFFIX_NAME.format(site), site + 1, len(segments) - 1, suffixes)):
            entry = by_name.get(name)
            if entry is None or entry.format not in backend.formats or entry.format == "tflite-edgetpu":
                continue
            model = load(entry)
            want_in = [segments[lo].inputs[0], *(segments[hi].inputs[1:] if hi == len(segments) - 1 else ())]
            pairs = [*zip(model.inputs, want_in, strict=False), (model.outputs[0], segments[hi].outputs[0])]
            if len(model.inputs) != len(want_in) or any(a.shape != b.shape or not a.same_grid(b) for a, b in pairs):
                raise ImageError(f"artifact {name!r}: its inputs/output differ from segments {lo}..{hi} (shape or grid)")
            into[site] = model
    return prefixes, suffixes


def piece_vectors(image: Image, site: int, suffix: bool) -> dict[str, np.ndarray] | None:
    """Reference vectors for a fused piece, from the segments' own (checked first at boot): the first
    segment's inputs (and the last one's RR), and what the segments it replaces give on them, run one by one."""
    n = len(image.segments) - 1
    lo, hi = (site + 1, n) if suffix else (0, site)
    first = image.references.get(image.segment_entries[lo].name)
    last = image.references.get(image.segment_entries[hi].name)
    if not first or "in0" not in first or (hi == n and (not last or "in1" not in last)):
        return None
    x = np.asarray(first["in0"])
    rr = np.asarray(last["in1"]) if hi == n and last else None
    rows = []
    for r in range(x.shape[0]):
        h = np.ascontiguousarray(x[r : r + 1], dtype=image.segments[lo].inputs[0].numpy_dtype)
        for i in range(lo, hi + 1):
            seg = image.segments[i]
            if i == n and rr is not None:
                h = seg.run(h, np.ascontiguousarray(rr[r : r + 1], dtype=seg.inputs[1].numpy_dtype))
            else:
                h = seg.run(h)
        rows.append(np.array(h))
    out = {"in0": x, "out": np.concatenate(rows, axis=0)} if rows else None
    if out is not None and rr is not None:
        out["in1"] = rr
    return out


def _load_whole(
    m: BundleManifest, segments: list[LoadedModel], load: Callable[[ArtifactEntry], LoadedModel], backend: Backend
) -> LoadedModel | None:
    """The fused base (``WHOLE_BASE``) when the bundle carries one in a format this backend runs; it must take
    and give exactly what the chain takes and gives (same shapes, same grids), or the image is refused."""
    entry = next((a for a in m.artifacts if a.kind == "whole" and a.name == WHOLE_BASE), None)
    if entry is None or entry.format not in backend.formats or entry.format == "tflite-edgetpu":
        return None
    model = load(entry)
    want_in = [segments[0].inputs[0], *segments[-1].inputs[1:]]
    pairs = [*zip(model.inputs, want_in, strict=False), (model.outputs[0], segments[-1].outputs[0])]
    if len(model.inputs) != len(want_in) or any(a.shape != b.shape or not a.same_grid(b) for a, b in pairs):
        raise ImageError(f"artifact {WHOLE_BASE!r}: its inputs/output differ from the segment chain's (shape or grid)")
    return model


def _host_outcome(entry: ArtifactEntry) -> tuple[str | None, str]:
    info = entry.seed_kernel
    if info is None or not info.lifecycle:
        return None, ""
    last = info.lifecycle[-1]
    culled = next((step for step in info.lifecycle if step.dst == "CULLED"), None)
    return last.dst, culled.reason if culled is not None else last.reason


def add_kernel_bundle(image: Image, bundle: Bundle) -> list[str]:
    """Load the kernels of a kernel-only bundle (``kind = "kernels"``) into ``image``, pinned.

    Refused (ImageError, one line) when the bundle does not fit the image's base
    (:mod:`kasmina_edge.core.kernel_fit`: checkpoint hash, target, sites, site grids) or a loaded kernel
    does not map its site's tensor onto the site's grid. Returns the names of the kernels added.
    """
    m = bundle.manifest
    name = m.bundle_id or str(bundle.path)
    problem = kernel_bundle_misfit(m, image.manifest)
    if problem is not None:
        raise ImageError(f"bundle {name}: {problem}")
    extra = m.model_extra or {}
    patient = extra.get("patient") if isinstance(extra.get("patient"), dict) else {}
    rr = patient.get("rr_scale") if patient else None
    rr_scale = tuple(float(v) for v in rr) if isinstance(rr, list) and len(rr) == 4 else None
    added: list[str] = []
    n_sites = len(image.site_tensors)
    for entry in m.kernels():
        site = _site_of(entry, n_sites)
        if entry.name in image.kernels:
            raise ImageError(f"bundle {name}: a kernel named {entry.name!r} is already on the device")
        tk = time.perf_counter()
        model = load_artifact(bundle, image.backend, entry)
        _check_at_site(entry.name, model, site, image.site_tensors[site], site_grid(image, site))
        info = entry.seed_kernel
        stage, reason = _host_outcome(entry)
        image.kernels[entry.name] = Kernel(
            name=entry.name, entry=entry, model=model, site=site,
            tags=tuple(t for t in (info.condition_tags if info else []) if t),
            blueprint=entry.blueprint or (info.blueprint if info else "unknown"),
            g1=info.g1_verdict if info else None, measured_gain=info.measured_gain if info else None,
            load_s=time.perf_counter() - tk, pinned=True, bundle_id=m.bundle_id, host_stage=stage,
            host_reason=reason, rr_scale=rr_scale, source=bundle,
        )  # fmt: skip
        if entry.reference is not None:
            image.references[entry.name] = bundle.reference_vectors(entry.name)
        added.append(entry.name)
    return added


def site_grid(image: Image, site: int) -> TensorInfo | None:
    """The int8 grid of a site: the loaded tensor's own (TFLite), else the manifest's (ONNX QDQ is float at
    its edges; the grid it quantizes onto inside is recorded in ``sites[i].grid``)."""
    t = image.site_tensors[site]
    if t.quantized:
        return t
    for s in image.manifest.sites:
        if s.index == site and s.grid.get("scale"):
            return TensorInfo(f"site{site}", t.shape, "int8", float(s.grid["scale"]), int(s.grid.get("zero_point", 0)))
    return None


def check_reference(
    model: LoadedModel,
    vectors: Mapping[str, np.ndarray] | None,
    tolerance_lsb: float,
    *,
    logits: bool = False,
    grid: TensorInfo | None = None,
) -> ReferenceCheck:
    """Run ``model`` row by row on ``in0`` (``in1``) and compare with ``out``.

    Errors are counted in steps of the output grid: the model's own (int8 TFLite) or ``grid`` (an ONNX
    QDQ artifact whose float output sits on a site grid); without either, in 1 % of the output's range.
    """
    if not vectors or "out" not in vectors:
        return ReferenceCheck(model.name, 0, float("inf"), tolerance_lsb, 0.0)
    n_in = len(model.inputs)
    ins = [np.asarray(vectors[f"in{i}"]) for i in range(n_in)]
    want = np.asarray(vectors["out"])
    rows = int(want.shape[0])
    got_rows = []
    for r in range(rows):
        args = [np.ascontiguousarray(a[r : r + 1], dtype=info.numpy_dtype) for a, info in zip(ins, model.inputs, strict=True)]
        got_rows.append(np.asarray(model.run(*args)).reshape(want[r : r + 1].shape))
    got = np.concatenate(got_rows, axis=0) if got_rows else np.zeros_like(want)
    out_info = model.outputs[0]
    finite = bool(np.all(np.isfinite(got.astype(np.float64))))
    if out_info.quantized:
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64)).astype(np.float64)
    else:
        # a float output without a grid (ONNX logits): steps of 1 % of the reference's range
        step = grid.scale if grid is not None and grid.scale else max(1e-6, 0.01 * float(np.abs(want).max()))
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64)) / step
    diff = np.where(np.isfinite(diff), diff, np.inf)
    per_row = diff.reshape(rows, -1).max(axis=1) if rows else np.zeros(0)
    agreement = None
    if logits and rows:
        agreement = float(np.mean(got.reshape(rows, -1).argmax(1) == want.reshape(rows, -1).argmax(1)))
    return ReferenceCheck(
        artifact=model.name,
        rows=rows,
        max_error_lsb=float(per_row.max()) if rows else float("inf"),
        tolerance_lsb=tolerance_lsb,
        identical_fraction=float(np.mean(per_row == 0)) if rows else 0.0,
        argmax_agreement=agreement,
        finite=finite,
    )
