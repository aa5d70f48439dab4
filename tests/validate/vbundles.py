"""Small bundles for the validation tests, made from the runtime tests' x86 fixture bundle (ONNX, signed with
its keys) in well under a second: its two base segments, a rule head that makes the chain a real (if simple)
classifier, and seed kernels that keep it (good) or ruin it (harmful), each with reference vectors computed by
ONNX Runtime, so the bundle passes stage 0 and only the stage meant to catch a fault can.

The head: N unless the mean activation at site 1 exceeds a threshold set well above what the base segments
produce on ECG beats; then V. A kernel that multiplies site 1 by 10 pushes every beat over it: every N beat
becomes V (the "kernel that hurts accuracy").
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

HEAD = "segment_2"
SITE1_KERNEL = "kernel_s1_lead-adapter_site1"
NAN_KERNEL = "kernel_s0_nan"


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], name: str) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _const(name: str, values: np.ndarray) -> Any:
    from onnx import TensorProto, helper

    arr = np.asarray(values, dtype=np.float32)
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name + "_t", TensorProto.FLOAT, list(arr.shape), arr.reshape(-1).tolist()))


def head_onnx(threshold: float, steep: float = 50.0) -> bytes:
    """(site1 [1,8,32], rr [1,4]) -> logits [1,5]: N below ``threshold`` of site 1's mean, V above it."""
    from onnx import TensorProto, helper

    s1 = helper.make_tensor_value_info("site1", TensorProto.FLOAT, [1, 8, 32])
    rr = helper.make_tensor_value_info("rr", TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 5])
    nodes = [
        helper.make_node("ReduceMean", ["site1"], ["m3"], axes=[1, 2], keepdims=1),
        helper.make_node("Flatten", ["m3"], ["m"], axis=1),  # [1, 1]
        helper.make_node("ReduceMean", ["rr"], ["rs"], axes=[1], keepdims=1),  # rr read (x 0): every input used
        _const("zero", np.zeros((1, 1))),
        helper.make_node("Mul", ["rs", "zero"], ["r0"]),
        _const("thr", np.full((1, 1), threshold)),
        helper.make_node("Sub", ["m", "thr"], ["z0"]),
        helper.make_node("Add", ["z0", "r0"], ["z"]),
        _const("w", np.array([[0.0, 0.0, steep, 0.0, 0.0]])),
        _const("b", np.array([[1.0, 0.0, 0.0, -1.0, -2.0]])),
        helper.make_node("Mul", ["z", "w"], ["zw"]),
        helper.make_node("Add", ["zw", "b"], ["output"]),
    ]
    return _model(nodes, [s1, rr], [out], "rule_head")


def scale_kernel(site_name: str, shape: list[int], factor: float) -> bytes:
    """site -> site * ``factor`` (1.0: a kernel that changes nothing; 10: one that ruins the head's input)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info(site_name, TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)
    return _model([_const("f", np.full([1] * len(shape), factor)), helper.make_node("Mul", [site_name, "f"], ["output"])],
                  [x], [y], f"scale_{factor:g}")


def run_rows(model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    rows = [sess.run(None, {n: a[r : r + 1].astype(np.float32) for n, a in zip(names, inputs, strict=True)})[0]
            for r in range(inputs[0].shape[0])]
    return np.concatenate(rows, axis=0)


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _files(src: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    import zipfile

    with zipfile.ZipFile(src) as z:
        manifest = json.loads(z.read("manifest.json"))
        files = {n: z.read(n) for n in z.namelist() if n not in ("manifest.json", "signature.json")}
    return manifest, files


def classifier_bundle(
    fixtures: Path, out: Path, *, site1_factor: float = 1.0, threshold: float | None = None,
    keep_nan_kernel: bool = False, version: int = 1, report: dict[str, Any] | None = None,
) -> Path:
    """The x86 fixture with the rule head and a scaling kernel at site 1 (``site1_factor``), re-signed."""
    from kasmina_edge.contracts.bundle import write_bundle

    manifest, files = _files(fixtures / "x86-v1.kedge")
    head_ref = np.load(io.BytesIO(files[f"reference/{HEAD}.npz"]))
    site1_in = head_ref["in0"].astype(np.float32)
    thr = threshold if threshold is not None else 0.2  # ECG beats: site-1 means ~0.05 (x10: ~0.5)
    head = head_onnx(thr)
    files[f"artifacts/{HEAD}.onnx"] = head
    files[f"reference/{HEAD}.npz"] = npz({"in0": site1_in, "in1": head_ref["in1"],
                                          "out": run_rows(head, [site1_in, head_ref["in1"].astype(np.float32)])})
    kern = scale_kernel("site1", [1, 8, 32], site1_factor)
    files[f"artifacts/{SITE1_KERNEL}.onnx"] = kern
    files[f"reference/{SITE1_KERNEL}.npz"] = npz({"in0": site1_in, "out": run_rows(kern, [site1_in])})
    if not keep_nan_kernel:
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["name"] != NAN_KERNEL]
        for name in (f"artifacts/{NAN_KERNEL}.onnx", f"reference/{NAN_KERNEL}.npz"):
            files.pop(name, None)
    if report is not None:
        files["report.json"] = json.dumps(report).encode()
    manifest.update(version=version)
    for key in ("files", "bundle_id"):
        manifest.pop(key, None)
    write_bundle(out, manifest, files, keys=fixtures / "keys")
    return out


def resign(src: Path, out: Path, keys: Path, *, report: dict[str, Any] | None = None) -> Path:
    """``src`` re-signed, with ``report.json`` replaced (e.g. the TFLite Micro arenas the device allocates)."""
    from kasmina_edge.contracts.bundle import write_bundle

    manifest, files = _files(src)
    if report is not None:
        files["report.json"] = json.dumps(report).encode()
    for key in ("files", "bundle_id"):
        manifest.pop(key, None)
    write_bundle(out, manifest, files, keys=keys)
    return out


def tamper(src: Path, out: Path, member: str) -> Path:
    """A copy of ``src`` with one byte of ``member`` flipped (the signature left as it was)."""
    import zipfile

    with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w") as w:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == member:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            w.writestr(info, data)
    return out
