"""Section 2 of tools/bench_runtime.py: the segmented chain against the same model exported whole.

Per backend, interleaved in one run (both see the same machine load), on the demo's trained tiny model and on
the host's ``default`` model with random weights (latency does not depend on their values), each with:

* no kernel live: the chain of segments vs the whole model (the same executor, statistics off);
* no kernel live, fused base: the image carries the whole base (``runtime.image.WHOLE_BASE``) and the executor
  runs it while every slot is empty (statistics off);
* as the device runs, site statistics every 4th window (those windows need the site tensors: the chain runs
  them even with the fused base): the chain and the fused base;
* one kernel live at site 0 (alpha 1): the chain with the kernel vs the whole model without it.

Exports use the build's own exporters with the chain's input grids (torch: a host tool). A bundle that already
carries its fused base (``kasmina-edge build`` stitches the segments into ``base_whole``) is measured with that
artifact instead of an export of the bench's own; each row says which (``whole_source``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.contracts.manifest import ArtifactEntry, BundleManifest
from kasmina_edge.ecg.windowing import Beat
from kasmina_edge.runtime.backends import Backend, LiteRtBackend, LoadedModel, MicroBackend, OrtBackend
from kasmina_edge.runtime.executor import SegmentedExecutor, SlotConfig
from kasmina_edge.runtime.image import WHOLE_BASE, Image, Kernel, artifact_bytes, load_image

FROM_BUNDLE = f"the bundle's {WHOLE_BASE}"
EXPORTED = "exported by the bench"


def _whole_module(segments: list[Any]) -> Any:
    import torch

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.segs = torch.nn.ModuleList(segments)

        def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            h = x
            for s in self.segs[:-1]:
                h = s(h)
            return self.segs[-1](h, rr)

    return Whole().eval()


def _tensors(beats: list[Beat], n: int) -> tuple[Any, Any]:
    import torch

    x = torch.from_numpy(np.stack([b.window for b in beats[:n]]).astype(np.float32))
    rr = torch.from_numpy(np.stack([b.rr for b in beats[:n]]).astype(np.float32))
    return x, rr


def carried_whole(bundle: Bundle) -> bytes | None:
    """The fused base the bundle carries (artifact ``base_whole``), or None."""
    entry = next((a for a in bundle.manifest.artifacts if a.name == WHOLE_BASE and a.kind == "whole"), None)
    return artifact_bytes(bundle, entry) if entry is not None else None


def export_whole(workdir: Path, tflite: Bundle, onnx: Bundle | None, beats: list[Beat]) -> dict[str, bytes]:
    """The demo checkpoint's model in one piece, same input grids as its chain: the bundle's own ``base_whole``
    where it carries one, else exported here."""
    carried = {"tflite": carried_whole(tflite), **({"onnx": carried_whole(onnx)} if onnx is not None else {})}
    if all(v is not None for v in carried.values()):
        return {k: v for k, v in carried.items() if v is not None}
    from kasmina_edge.compile.export_tflite import export_int8_tflite
    from kasmina_edge.compile.pipeline import load_segmented
    from kasmina_edge.compile.quantize import QuantGrid

    model, _, _ = load_segmented(workdir / "host" / "base.pt", None)
    whole = _whole_module(model.segments)
    x, rr = _tensors(beats, 512)

    def grid(bundle: Bundle, artifact: str, pos: int) -> QuantGrid:
        spec = bundle.manifest.artifact(artifact).input_specs[pos]
        assert spec.scale is not None and spec.zero_point is not None
        return QuantGrid(spec.scale[0], spec.zero_point[0])

    segs = tflite.manifest.chain.segments  # type: ignore[union-attr]
    logits = tflite.manifest.artifact(segs[-1]).output_specs[0]
    assert logits.scale is not None and logits.zero_point is not None
    out: dict[str, bytes] = {k: v for k, v in carried.items() if v is not None}
    if "tflite" not in out:
        out["tflite"], _ = export_int8_tflite(
            whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole",
            input_grids={0: grid(tflite, segs[0], 0), 1: grid(tflite, segs[-1], 1)},
            output_grid=QuantGrid(logits.scale[0], logits.zero_point[0]))
    if onnx is not None and "onnx" not in out:
        from kasmina_edge.compile.export_onnx import export_int8_onnx

        out["onnx"] = export_int8_onnx(whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole",
                                       input_names=["window", "rr"], input_grids={}, output_grid=None,
                                       reduce_range=onnx.manifest.target == "x86")
    return out


def _backend(name: str) -> Backend:
    if name == "onnxruntime":
        return OrtBackend()
    if name == "tflite-micro":
        return MicroBackend()
    return LiteRtBackend("builtin" if "builtin" in name else "xnnpack")


def _adapter(channels: int) -> Any:
    """A bottleneck adapter with random weights (a seed kernel's usual shape) for the default-size model."""
    import torch

    class Adapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = torch.nn.Conv1d(channels, 4, 1)
            self.up = torch.nn.Conv1d(4, channels, 1)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return h + self.up(torch.relu(self.down(h)))

    torch.manual_seed(0)
    return Adapter().eval()


def _kernel(model: LoadedModel, site: int) -> Kernel:
    entry = ArtifactEntry.model_construct(name=model.name, kind="kernel", site=site)  # the bench's own kernel
    return Kernel(model.name, entry, model, site, ("bench",), "bottleneck_adapter", None, None)


def default_size_images(beats: list[Beat], backend_names: list[str], tmp: Path
                        ) -> dict[str, tuple[Image, Image, Image, dict[str, int]]]:
    """The host's ``default`` model (random weights) split at its sites, with a random adapter kernel at site 0,
    and exported whole with the build's own exporters; (segmented image with its kernel, whole image, the
    segmented image with its fused pieces, their sizes) per backend."""
    from kasmina_edge.compile.export_onnx import export_int8_onnx
    from kasmina_edge.compile.export_tflite import export_int8_tflite
    from kasmina_edge.compile.pipeline import load_segmented
    from kasmina_edge.compile.split import SeedKernel, SegmentedModel, calibrate_site_grids, plan_artifacts
    from kasmina_edge.host.experiment import save_checkpoint
    from kasmina_edge.host.model import build_model
    from kasmina_edge.host.train import BASE_KIND

    net = build_model("default", seed=0).eval()
    ckpt = tmp / "default-random.pt"
    save_checkpoint(ckpt, {"kind": BASE_KIND, "experiment_id": "bench-random", "model_config": net.config.to_dict(),
                           "state": net.state_dict()})
    base, _, _ = load_segmented(ckpt, None)
    model = SegmentedModel(base.segments, base.sites,
                           [SeedKernel("bench-adapter", 0, "bottleneck_adapter", _adapter(base.sites[0].channels))])
    x, rr = _tensors(beats, 256)
    grids = calibrate_site_grids(model, x, rr)
    specs = plan_artifacts(model, grids, x, rr)
    whole = _whole_module(model.segments)
    manifest = BundleManifest.model_validate({
        "target": "x86", "profile": "x86-64-host", "format": "tflite-int8", "model": {"checkpoint_sha256": "0" * 64},
        "sites": [{"index": s.index, "name": s.name, "channels": s.channels, "length": s.length} for s in model.sites],
        "artifacts": [], "provenance": {"kasmina_edge": "bench", "built_at": "now"}})
    out: dict[str, tuple[Image, Image, Image, dict[str, int]]] = {}
    tflite_cache: dict[str, bytes] = {}
    for name in backend_names:
        onnx = name == "onnxruntime"
        backend = _backend(name)
        blobs: dict[str, bytes] = {}
        for spec in specs:
            if onnx:
                blobs[spec.name] = export_int8_onnx(
                    spec.module, spec.example_args, spec.calibration, artifact=spec.name, input_names=spec.input_names,
                    input_grids=spec.input_grids, output_grid=spec.output_grid, reduce_range=True)
            elif spec.name not in tflite_cache:
                tflite_cache[spec.name] = export_int8_tflite(
                    spec.module, spec.example_args, spec.calibration, artifact=spec.name,
                    input_grids=spec.input_grids, output_grid=spec.output_grid)[0]
            blobs.setdefault(spec.name, tflite_cache.get(spec.name, b""))
        segs = [backend.load(blobs[s.name], s.name) for s in specs if s.kind == "segment"]
        key = "whole-onnx" if onnx else "whole-tflite"
        if key not in tflite_cache:
            tflite_cache[key] = (
                export_int8_onnx(whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole", input_names=["window", "rr"],
                                 input_grids={}, output_grid=None, reduce_range=True) if onnx else
                export_int8_tflite(whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole", **chain_grids(segs))[0])
        kernels = {s.name: _kernel(backend.load(blobs[s.name], s.name), 0) for s in specs if s.kind == "kernel"}
        seg_img = Image(manifest, backend, segs, [], kernels, [m.outputs[0] for m in segs[:-1]])
        seg_specs = [s for s in specs if s.kind == "segment"]
        pieces_img, sizes = with_pieces(seg_img, [blobs[s.name] for s in seg_specs],
                                        [list(s.input_names) for s in seg_specs] if onnx else None)
        out[name] = (seg_img, Image(manifest, backend, [backend.load(tflite_cache[key], "whole")], [], {}, []),
                     pieces_img, sizes)
    return out


def chain_grids(segments: list[LoadedModel]) -> dict[str, Any]:
    """The grids the chain takes its inputs on and gives its logits on, for a whole export that matches them
    (the fused base must be interchangeable with the chain)."""
    from kasmina_edge.compile.quantize import QuantGrid

    def grid(t: Any) -> QuantGrid:
        return QuantGrid(float(np.float32(t.scale)), int(t.zero_point))

    first, last = segments[0], segments[-1]
    return {"input_grids": {0: grid(first.inputs[0]), 1: grid(last.inputs[1])}, "output_grid": grid(last.outputs[0])}


def _median_us(executors: dict[str, SegmentedExecutor], sample: list[Beat], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in executors}
    for _ in range(rounds):  # interleaved: every variant sees the same machine load
        for k, ex in executors.items():
            c0 = time.thread_time()
            for b in sample:
                ex.infer(b.window, b.rr)
            times[k].append((time.thread_time() - c0) / len(sample))
    return {k: 1e6 * statistics.median(v) for k, v in times.items()}


def compare(name: str, model: str, seg_img: Image, whole_img: Image, beats: list[Beat], rounds: int = 7,
            pieces_img: Image | None = None) -> dict[str, Any]:
    """Every way of running the model against the whole model, timed interleaved: one row per backend and model.
    ``pieces_img``: the chain with its fused prefixes and suffixes (kernel live through 3 invokes)."""
    sample = beats[:300]
    fused_img = replace(seg_img, whole=whole_img.segments[0])
    seg_img = replace(seg_img, whole=None)  # the chain variants run the chain (a bundle may carry its fused base)
    kernel = next(iter(seg_img.kernels.values()), None)
    executors = {
        "whole": SegmentedExecutor(whole_img, stats_every=0),
        "chain": SegmentedExecutor(seg_img, stats_every=0),
        "fused": SegmentedExecutor(fused_img, stats_every=0),
        # as the device runs: site statistics every 4th window (those windows need the chain's site tensors)
        "chain_stats": SegmentedExecutor(seg_img),
        "fused_stats": SegmentedExecutor(fused_img),
    }
    if kernel is not None:
        live = SegmentedExecutor(seg_img, stats_every=0)
        live.set_slot(kernel.site, SlotConfig(candidate=kernel, alpha=1.0))
        executors["kernel_live"] = live
        if pieces_img is not None:
            pieced = SegmentedExecutor(replace(pieces_img, whole=None), stats_every=0)
            pieced.set_slot(kernel.site, SlotConfig(candidate=kernel, alpha=1.0))
            executors["kernel_pieces"] = pieced
    labels = {k: [ex.infer(b.window, b.rr).label for b in sample] for k, ex in executors.items()}
    us = _median_us(executors, sample, rounds)
    row: dict[str, Any] = {"backend": name, "model": model, "segments": len(seg_img.segments), "whole_us": us["whole"]}
    for k in executors:
        if k != "whole":
            row[f"{k}_us"] = us[k]
            row[f"{k}_ratio"] = us[k] / us["whole"]
    row["segmented_us"], row["ratio"] = us["chain"], us["chain"] / us["whole"]  # the names earlier runs used
    row["label_agreement"] = float(np.mean(np.equal(labels["chain"], labels["whole"])))
    row["fused_label_agreement"] = float(np.mean(np.equal(labels["fused"], labels["whole"])))
    if "kernel_pieces" in labels:  # the fused pieces give the chain's answers with the kernel live
        row["pieces_label_agreement"] = float(np.mean(np.equal(labels["kernel_pieces"], labels["kernel_live"])))
    return row


def with_pieces(image: Image, segments: list[bytes], input_names: list[list[str]] | None) -> tuple[Image, dict[str, int]]:
    """``image`` with the fused prefixes and suffixes of its chain (compile.fuse.fuse_pieces: what a bundle
    carries once the build adds them), loaded on its backend; and each piece's size in bytes."""
    from kasmina_edge.compile.fuse import PREFIX_NAME, SUFFIX_NAME, fuse_pieces

    pieces = fuse_pieces(segments, input_names)
    n_sites = len(segments) - 1
    prefixes = {i: image.backend.load(pieces[PREFIX_NAME.format(i)], PREFIX_NAME.format(i))
                for i in range(n_sites) if PREFIX_NAME.format(i) in pieces}
    suffixes = {i: image.backend.load(pieces[SUFFIX_NAME.format(i)], SUFFIX_NAME.format(i))
                for i in range(n_sites) if SUFFIX_NAME.format(i) in pieces}
    return replace(image, prefixes=prefixes, suffixes=suffixes), {k: len(v) for k, v in pieces.items()}


def bundle_pieces(bundle: Bundle, image: Image) -> tuple[Image, dict[str, int]]:
    """The bundle's image with fused pieces made from its own segments (ONNX: their graph input names)."""
    names = list(bundle.manifest.chain.segments)  # type: ignore[union-attr]
    inputs = ([[s.name for s in bundle.manifest.artifact(n).input_specs] for n in names]
              if bundle.manifest.format.startswith("onnx") else None)
    return with_pieces(image, [bundle.artifact_bytes(n) for n in names], inputs)


def _whole_image(image: Image, model_bytes: bytes) -> Image:
    whole = image.backend.load(model_bytes, "whole")
    return Image(image.manifest, image.backend, [whole], [image.segment_entries[0]], {}, [])


def segmented_vs_whole(backends: list[tuple[str, Bundle, Backend]], whole: dict[str, bytes], beats: list[Beat],
                       default_size: dict[str, tuple[Image, Image]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, bundle, backend in backends:
        key = "onnx" if bundle.manifest.format.startswith("onnx") else "tflite"
        seg_img = load_image(bundle, backend)
        if seg_img.whole is not None:  # the bundle's own fused base, as the device boots it
            whole_img = Image(seg_img.manifest, backend, [seg_img.whole], [seg_img.segment_entries[0]], {}, [])
            source = FROM_BUNDLE
        elif key in whole:
            whole_img, source = _whole_image(seg_img, whole[key]), EXPORTED
        else:
            continue
        pieces_img, sizes = bundle_pieces(bundle, seg_img)
        row = compare(name, f"demo tiny (trained), whole: {source}", seg_img, whole_img, beats, pieces_img=pieces_img)
        rows.append({**row, "whole_source": source, **_piece_bytes(bundle, sizes)})
        if name in default_size:
            seg_d, whole_d, pieces_d, sizes_d = default_size[name]
            rows.append({**compare(name, "default (random weights)", seg_d, whole_d, beats, pieces_img=pieces_d),
                         "whole_source": EXPORTED, "pieces_bytes": sum(sizes_d.values()),
                         "pieces_bytes_site0": sizes_d.get("base_from_site0", 0)})
    return rows


def _piece_bytes(bundle: Bundle, sizes: dict[str, int]) -> dict[str, Any]:
    """Flash the fused pieces would add: all of them, and only those of the sites the bundle has kernels for."""
    kernel_sites = {a.site for a in bundle.manifest.kernels() if a.site is not None}
    used = {k: v for k, v in sizes.items() if int(k.rsplit("site", 1)[1]) in kernel_sites}
    total = bundle.path.stat().st_size if bundle.path is not None else None
    return {"pieces_bytes": sum(sizes.values()), "pieces_bytes_kernel_sites": sum(used.values()),
            "bundle_bytes": total}
