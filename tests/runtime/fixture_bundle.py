"""Small signed bundles for the runtime and emulator tests, made with the build's own pieces.

A tiny segmented 1-D CNN (window 1×256, two seed sites, head with RR features) with random weights,
two seed kernels (an ``emg`` residual depthwise filter at site 0, a ``lead`` bottleneck adapter at
site 1), split, calibrated and exported exactly as ``kasmina_edge.compile`` does (grids forced at
every cut), with reference vectors traced by the build's chain executors. Written as bundles for:

* ``linux-arm`` (rpi4, LiteRT), ``edgetpu`` (coral-usb), ``cortex-m`` (stm32h743, TFLite Micro):
  the same int8 TFLite artifacts, plus the whole model exported in one piece (``kind = "whole"``);
* ``x86`` (x86-64-host, ONNX Runtime): QDQ ONNX artifacts, plus a kernel that passes its reference
  vectors but emits NaN once its input grows (a fault fixture, built with ``onnx.helper``).

Torch is used here (tests only); building takes ~20 s, so ``conftest`` caches the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FIXTURE_VERSION = 3  # bump to rebuild cached fixtures
WINDOW = 256
RR = 4


def _toy_windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW)
    width = rng.uniform(4, 20, n)
    x = np.exp(-0.5 * ((t[None, :] - 90 - rng.normal(0, 3, n)[:, None]) / width[:, None]) ** 2)
    x += 0.1 * rng.standard_normal(x.shape)
    x = x / np.percentile(np.abs(x - np.median(x, axis=1, keepdims=True)), 99, axis=1, keepdims=True)
    rr = np.stack([rng.uniform(0.5, 1.2, n), rng.uniform(0.5, 1.2, n), np.full(n, 0.8), rng.uniform(0.7, 1.3, n)], 1)
    return x[:, None, :].astype(np.float32), rr.astype(np.float32)


def _modules() -> tuple[list[Any], list[Any], Any]:
    import torch
    from torch import nn

    torch.manual_seed(7)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8 + RR, 5)

        def forward(self, h: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            z = torch.relu(self.conv(h)).mean(dim=2)
            return self.fc(torch.cat([z, rr], dim=1))

    class Denoise(nn.Module):  # residual depthwise low-pass: an "emg" seed
        def __init__(self, c: int) -> None:
            super().__init__()
            self.dw = nn.Conv1d(c, c, 5, padding=2, groups=c)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return h + 0.5 * self.dw(h)

    class Adapter(nn.Module):  # bottleneck adapter: a "lead" seed
        def __init__(self, c: int, r: int = 2) -> None:
            super().__init__()
            self.down = nn.Conv1d(c, r, 1)
            self.up = nn.Conv1d(r, c, 1)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return h + self.up(torch.relu(self.down(h)))

    class Whole(nn.Module):
        def __init__(self, segs: list[nn.Module]) -> None:
            super().__init__()
            self.segs = nn.ModuleList(segs)

        def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            h = self.segs[1](self.segs[0](x))
            return self.segs[2](h, rr)

    seg0 = nn.Sequential(nn.Conv1d(1, 4, 7, stride=4, padding=3), nn.ReLU())
    seg1 = nn.Sequential(nn.Conv1d(4, 8, 5, stride=2, padding=2), nn.ReLU())
    head = Head()
    segs = [seg0.eval(), seg1.eval(), head.eval()]
    kernels = [("emg-denoise@site0", 0, "depthwise_separable", ["emg", "artifact"], Denoise(4).eval()),
               ("lead-adapter@site1", 1, "bottleneck_adapter", ["lead"], Adapter(8).eval())]
    return segs, kernels, Whole(segs).eval()


def _g1() -> dict[str, Any]:
    return {"gate": "G1", "passed": True, "reason": "isolated, loss falling, gradients in bounds",
            "metrics": {"grad_norm_max": 1.0}}


def _nan_kernel(shape: tuple[int, ...], threshold: float) -> bytes:
    """site -> site: passes its input through, NaN wherever the input exceeds ``threshold``."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("site0", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))
    nodes = [
        helper.make_node("Constant", [], ["thr"], value=helper.make_tensor("t", TensorProto.FLOAT, [], [threshold])),
        helper.make_node("Constant", [], ["nan"], value=helper.make_tensor("n", TensorProto.FLOAT, [], [float("nan")])),
        helper.make_node("Greater", ["site0", "thr"], ["over"]),
        helper.make_node("Where", ["over", "nan", "site0"], ["output"]),
    ]
    graph = helper.make_graph(nodes, "nan_kernel", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _specs_tflite(data: bytes, names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from kasmina_edge.core.tflite_graph import read_graph

    g = read_graph(data)

    def spec(name: str, t: Any) -> dict[str, Any]:
        return {"name": name, "shape": [int(d) for d in t.shape], "dtype": t.dtype, "scale": list(t.scales),
                "zero_point": list(t.zero_points)}

    return [spec(n, t) for n, t in zip(names, g.input_tensors(), strict=True)], [spec("output", g.output_tensors()[0])]


def _specs_float(shapes: list[tuple[str, list[int]]], out: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return ([{"name": n, "shape": s, "dtype": "float32"} for n, s in shapes],
            [{"name": "output", "shape": out, "dtype": "float32"}])


def build(out: Path) -> dict[str, Path]:
    """Write the fixture bundles and keys into ``out``; returns name -> path."""
    import torch

    from kasmina_edge.compile.chain import ChainLayout, onnx_chain, tflite_chain
    from kasmina_edge.compile.export_onnx import export_int8_onnx, run_onnx
    from kasmina_edge.compile.export_tflite import export_int8_tflite
    from kasmina_edge.compile.parity import npz_bytes, reference_vectors
    from kasmina_edge.compile.split import (
        SeedKernel,
        SegmentedModel,
        Site,
        calibrate_site_grids,
        plan_artifacts,
    )
    from kasmina_edge.contracts.bundle import init_keys, write_bundle

    out.mkdir(parents=True, exist_ok=True)
    keys = out / "keys"
    if not (keys / "bundle-signing.key").exists():
        init_keys(keys)
    torch.set_num_threads(1)
    segs, kdefs, whole = _modules()
    sites = [Site(0, "site0", 4, 64), Site(1, "site1", 8, 32)]
    kernels = [SeedKernel(seed_id=s, site=site, blueprint=bp, module=m, meta={}) for s, site, bp, _, m in kdefs]
    sm = SegmentedModel(segs, sites, kernels, window=WINDOW, rr_features=RR)
    xc, rc = _toy_windows(256, 1)
    xt, rt = torch.from_numpy(xc), torch.from_numpy(rc)
    grids = calibrate_site_grids(sm, xt, rt)
    specs = plan_artifacts(sm, grids, xt, rt, batch=128)
    tags = {s: t for s, _, _, t, _ in kdefs}
    x_ref, rr_ref = _toy_windows(8, 2)
    paths: dict[str, Path] = {}

    for fmt in ("tflite", "onnx"):
        arts: dict[str, bytes] = {}
        for spec in specs:
            if fmt == "tflite":
                arts[spec.name], _ = export_int8_tflite(
                    spec.module, spec.example_args, spec.calibration, artifact=spec.name,
                    input_grids=spec.input_grids, output_grid=spec.output_grid)
            else:
                arts[spec.name] = export_int8_onnx(
                    spec.module, spec.example_args, spec.calibration, artifact=spec.name,
                    input_names=spec.input_names, input_grids=spec.input_grids, output_grid=spec.output_grid)
        segments = tuple(s.name for s in specs if s.kind == "segment")
        trace: dict[str, list[list[np.ndarray]]] = {}
        layouts = [ChainLayout(segments, {})] + [ChainLayout(segments, {s.site: s.name}) for s in specs if s.kind == "kernel" and s.site is not None]
        for layout in layouts:
            if fmt == "tflite":
                tflite_chain(arts, layout, x_ref, rr_ref, trace=trace)
            else:
                onnx_chain(arts, layout, x_ref, rr_ref, trace=trace)
        vectors = reference_vectors(trace, 8)
        files: dict[str, bytes] = {}
        artifacts: list[dict[str, Any]] = []
        ext = "tflite" if fmt == "tflite" else "onnx"
        for spec in specs:
            data = arts[spec.name]
            files[f"artifacts/{spec.name}.{ext}"] = data
            files[f"reference/{spec.name}.npz"] = npz_bytes(vectors[spec.name])
            if fmt == "tflite":
                ins, outs = _specs_tflite(data, spec.input_names)
            else:
                in_shapes = [(n, [1, *list(a.shape[1:])]) for n, a in zip(spec.input_names, spec.example_args, strict=True)]
                out_shape = [1, 5] if spec.name == segments[-1] else [1, *list(vectors[spec.name]["out"].shape[1:])]
                ins, outs = _specs_float(in_shapes, out_shape)
            entry: dict[str, Any] = {
                "name": spec.name, "kind": spec.kind, "format": "tflite-int8" if fmt == "tflite" else "onnx-qdq",
                "file": f"artifacts/{spec.name}.{ext}", "sha256": "0" * 64, "bytes": 0, "bits": 8,
                "site": spec.site if spec.kind == "kernel" else None, "seed": spec.seed_id, "blueprint": spec.blueprint,
                "inputs": spec.input_names, "input_specs": ins, "output_specs": outs,
                "reference": f"reference/{spec.name}.npz",
            }
            if spec.kind == "kernel" and spec.seed_id is not None:
                entry["seed_kernel"] = {"blueprint": spec.blueprint, "condition_tags": tags[spec.seed_id],
                                        "param_count": spec.parameters, "bits": 8, "g1_verdict": _g1(),
                                        "measured_gain": 0.05}
            artifacts.append(entry)
        if fmt == "tflite":
            data, _ = export_int8_tflite(whole, (xt[:2], rt[:2]), [(xt, rt)], artifact="whole",
                                         input_grids={0: _grid(arts[segments[0]], 0), 1: _grid(arts[segments[-1]], 1)})
            files["artifacts/whole.tflite"] = data
            ins, outs = _specs_tflite(data, ["window", "rr"])
            artifacts.append({"name": "whole", "kind": "whole", "format": "tflite-int8", "file": "artifacts/whole.tflite",
                              "sha256": "0" * 64, "bytes": 0, "inputs": ["window", "rr"], "input_specs": ins,
                              "output_specs": outs})
        else:
            # the NaN kernel's reference vectors: real site-0 inputs, scaled under its threshold
            site_in = vectors[segments[0]]["out"].astype(np.float32)
            threshold = float(np.percentile(site_in, 60))
            ref_in = (site_in * 0.2).astype(np.float32)
            nan_data = _nan_kernel((1, 4, 64), threshold)
            ref_out = np.concatenate([run_onnx(nan_data, [ref_in[i : i + 1]]) for i in range(ref_in.shape[0])])
            files["artifacts/kernel_s0_nan.onnx"] = nan_data
            files["reference/kernel_s0_nan.npz"] = npz_bytes({"in0": ref_in, "out": ref_out})
            ins, outs = _specs_float([("site0", [1, 4, 64])], [1, 4, 64])
            artifacts.append({
                "name": "kernel_s0_nan", "kind": "kernel", "format": "onnx-qdq", "file": "artifacts/kernel_s0_nan.onnx",
                "sha256": "0" * 64, "bytes": 0, "site": 0, "seed": "nan@site0", "blueprint": "faulty",
                "inputs": ["site0"], "input_specs": ins, "output_specs": outs, "reference": "reference/kernel_s0_nan.npz",
                "seed_kernel": {"blueprint": "faulty", "condition_tags": ["emg"], "param_count": 0, "bits": 8,
                                "g1_verdict": _g1(), "measured_gain": 0.01},
            })
        manifest_base: dict[str, Any] = {
            "schema": "kasmina-bundle/1", "kind": "full", "version": 1, "bits": 8,
            "classes": ["N", "S", "V", "F", "Q"],
            "model": {"config": {"name": "fixture", "window": WINDOW, "n_rr": RR}, "checkpoint_sha256": "1" * 64},
            "sites": [{"index": s.index, "name": s.name, "channels": s.channels, "length": s.length,
                       "grid": grids[s.index].as_dict()} for s in sites],
            "chain": {"segments": list(segments), "default_active": {}},
            "artifacts": artifacts,
            "provenance": {"kasmina_edge": "test", "built_at": "2026-01-01T00:00:00Z"},
        }
        targets = ([("linux-arm", "rpi4"), ("edgetpu", "coral-usb"), ("cortex-m", "stm32h743")] if fmt == "tflite"
                   else [("x86", "x86-64-host")])
        for target, profile in targets:
            for version in (1, 2):
                name = f"{target}-v{version}"
                m = {**manifest_base, "target": target, "profile": profile, "version": version,
                     "format": "tflite-int8" if fmt == "tflite" else "onnx-qdq"}
                write_bundle(out / f"{name}.kedge", json.loads(json.dumps(m)), files, keys=keys)
                paths[name] = out / f"{name}.kedge"
    (out / "ok").write_text(str(FIXTURE_VERSION))
    return paths


def _grid(data: bytes, pos: int) -> Any:
    """The grid of input ``pos`` of a TFLite artifact (the whole model takes the chain's input grids)."""
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.core.tflite_graph import read_graph

    t = read_graph(data).input_tensors()[pos]
    return QuantGrid(t.scales[0], t.zero_points[0] if t.zero_points else 0)


if __name__ == "__main__":
    import sys

    print(build(Path(sys.argv[1])))
