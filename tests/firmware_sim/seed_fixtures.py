"""Kernel-only (seed) bundles for the kernel-store and OTA tests, made in milliseconds from the runtime fixtures.

The runtime fixtures' base has random weights: it calls every beat V, and no seed at a site moves its argmax.
``designed_base`` keeps that base's two ONNX segments (x86 target, ONNX Runtime) and swaps its head for a small
float head whose decision is readable: a beat is S when its RR ratio is below 0.85, nudged by the mean of
site 1's channel 0 (``S`` logit = K (0.85 - ratio) + G (ch0 - 0.323), N logit 0). ``seed_bundle`` writes a
kernel-only bundle for that base: one kernel at site 1 that adds ``shift`` to channel 0, so with the seed live the
threshold moves to 0.95 and the borderline beats (about one in five of ``synthetic:clean?seed=1``) turn S.
``grid_kernel_bundle`` takes a real int8 TFLite kernel of the fixtures, with its grid optionally made wrong.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from kasmina_edge.contracts.bundle import read_bundle, write_bundle

RATIO = 3  # index of the RR ratio among the 4 RR features
THRESHOLD = 0.85
CH0 = 0.323  # site 1's channel-0 mean on synthetic:clean beats (measured through this base)
K = 200.0  # sharp: the seed moves a threshold, it does not spread confidence
SHIFT = 0.2
G = K * 0.1 / SHIFT  # a shift of SHIFT moves the threshold by 0.1
SEED_ECG = "synthetic:clean?minutes=3&seed=1"
SEED_KERNEL = "patient_s1"


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _run(model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    rows = [
        sess.run(None, {n: x[i : i + 1].astype(np.float32) for n, x in zip(names, inputs, strict=True)})[0]
        for i in range(inputs[0].shape[0])
    ]
    return np.concatenate(rows).astype(np.float32)


def _onnx(nodes: list[Any], inputs: list[Any], output: Any) -> bytes:
    from onnx import helper

    model = helper.make_model(
        helper.make_graph(nodes, "fixture", inputs, [output]), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _head() -> bytes:
    """site1 (1, 8, 32), rr (1, 4) -> logits (1, 5): the readable RR-threshold head."""
    from onnx import TensorProto, helper

    w = np.zeros((12, 5), np.float32)
    b = np.full(5, -20.0, np.float32)
    b[0] = 0.0  # N
    w[0, 1], w[8 + RATIO, 1], b[1] = G, -K, K * THRESHOLD - G * CH0  # S
    t = helper.make_tensor_value_info
    nodes = [
        helper.make_node("ReduceMean", ["site1"], ["feat"], axes=[2], keepdims=0),
        helper.make_node("Concat", ["feat", "rr"], ["x"], axis=1),
        helper.make_node(
            "Constant", [], ["w"], value=helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())
        ),
        helper.make_node("Constant", [], ["b"], value=helper.make_tensor("b", TensorProto.FLOAT, b.shape, b)),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["output"]),
    ]
    return _onnx(
        nodes,
        [t("site1", TensorProto.FLOAT, [1, 8, 32]), t("rr", TensorProto.FLOAT, [1, 4])],
        t("output", TensorProto.FLOAT, [1, 5]),
    )


def _shift_kernel(shift: float) -> bytes:
    """site1 -> site1: ``shift`` added to channel 0."""
    from onnx import TensorProto, helper

    delta = np.zeros((1, 8, 1), np.float32)
    delta[0, 0, 0] = shift
    t = helper.make_tensor_value_info
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["d"],
            value=helper.make_tensor("d", TensorProto.FLOAT, delta.shape, delta.ravel()),
        ),
        helper.make_node("Add", ["site1", "d"], ["output"]),
    ]
    return _onnx(
        nodes, [t("site1", TensorProto.FLOAT, [1, 8, 32])], t("output", TensorProto.FLOAT, [1, 8, 32])
    )


def _manifest(bundle: Any) -> dict[str, Any]:
    return json.loads(json.dumps(bundle.manifest.model_dump(mode="json", by_alias=True)))


def designed_base(fixtures: Path, out: Path, *, version: int = 1) -> Path:
    """The x86 fixture base with the readable head and no kernels of its own (the seed is the only one)."""
    keys = fixtures / "keys"
    src = read_bundle(fixtures / "x86-v1.kedge", keys)
    m = _manifest(src)
    segs = [a for a in m["artifacts"] if a["kind"] == "segment"]
    files = {a["file"]: src.files[a["file"]] for a in segs} | {
        a["reference"]: src.files[a["reference"]] for a in segs
    }
    head = _head()
    ref = src.reference_vectors("segment_2")
    ins = [ref["in0"].astype(np.float32), ref["in1"].astype(np.float32)]
    files["artifacts/segment_2.onnx"] = head
    files["reference/segment_2.npz"] = _npz({"in0": ins[0], "in1": ins[1], "out": _run(head, ins)})
    m.update(artifacts=segs, version=version, files={}, bundle_id=None)
    write_bundle(out, m, files, keys)
    return out


def seed_bundle(
    base: Path,
    keys: Path,
    out: Path,
    *,
    shift: float = SHIFT,
    stage: str = "FOSSILIZED",
    version: int = 1,
    name: str = SEED_KERNEL,
    site: int = 1,
    checkpoint: str | None = None,
    target: str | None = None,
) -> Path:
    """A kernel-only bundle for ``base``: one kernel at site 1 that adds ``shift`` to channel 0; its host
    lifecycle ends at ``stage`` (CULLED: the runtime must refuse it)."""
    b = read_bundle(base, keys)
    m = _manifest(b)
    kernel = _shift_kernel(shift)
    ref_in = b.reference_vectors("segment_1")["out"][:2].astype(np.float32)
    spec = {"name": "site1", "shape": [1, 8, 32], "dtype": "float32"}
    last = {"src": "PROBATIONARY", "dst": stage, "reason": "kept" if stage == "FOSSILIZED" else "g4_failed"}
    art = {
        "name": name,
        "kind": "kernel",
        "format": "onnx-qdq",
        "file": f"artifacts/{name}.onnx",
        "sha256": "0" * 64,
        "bytes": 0,
        "bits": 8,
        "site": site,
        "seed": f"{name}@site{site}",
        "blueprint": "bias_adapter",
        "inputs": ["site1"],
        "input_specs": [spec],
        "output_specs": [{**spec, "name": "output"}],
        "reference": f"reference/{name}.npz",
        "seed_kernel": {
            "blueprint": "bias_adapter",
            "condition_tags": [],
            "param_count": 1,
            "bits": 8,
            "g1_verdict": {"gate": "G1", "passed": True, "reason": "host", "metrics": {}},
            "lifecycle": [last],
            "measured_gain": 0.05,
        },
    }
    files = {art["file"]: kernel, art["reference"]: _npz({"in0": ref_in, "out": _run(kernel, [ref_in])})}
    if checkpoint is not None:
        m["model"]["checkpoint_sha256"] = checkpoint
    m.update(
        kind="kernels",
        version=version,
        chain=None,
        artifacts=[art],
        files={},
        bundle_id=None,
        target=target or m["target"],
        patient={"record": "synthetic-1", "outcome": stage.lower()},
    )
    write_bundle(out, m, files, keys)
    return out


def grid_kernel_bundle(fixtures: Path, out: Path, *, grid_factor: float = 1.0) -> Path:
    """A kernel-only bundle for the ``linux-arm-v1`` fixture: its int8 site-0 kernel under a new name; with
    ``grid_factor`` != 1 its declared input grid no longer matches the base's site grid."""
    keys = fixtures / "keys"
    b = read_bundle(fixtures / "linux-arm-v1.kedge", keys)
    m = _manifest(b)
    src = next(a for a in m["artifacts"] if a["kind"] == "kernel" and a["site"] == 0)
    art = {
        **src,
        "name": "patient_s0",
        "seed": "patient@site0",
        "file": "artifacts/patient_s0.tflite",
        "reference": "reference/patient_s0.npz",
    }
    art["input_specs"] = [dict(s) for s in src["input_specs"]]
    art["input_specs"][0]["scale"] = [v * grid_factor for v in art["input_specs"][0]["scale"]]
    files = {art["file"]: b.files[src["file"]], art["reference"]: b.files[src["reference"]]}
    m.update(kind="kernels", chain=None, artifacts=[art], files={}, bundle_id=None)
    write_bundle(out, m, files, keys)
    return out
