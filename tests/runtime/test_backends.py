"""Backends: one interface over LiteRT, TFLite Micro and ONNX Runtime, checked on real int8 artifacts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.contracts.bundle import read_bundle
from kasmina_edge.runtime.backends import (
    BackendError,
    LiteRtBackend,
    OrtBackend,
    backend_for_format,
    edgetpu_library_present,
    open_backend,
)
from kasmina_edge.runtime.image import artifact_bytes, check_reference


def _segment(bundles: Path, keys: Path, target: str, name: str = "segment_1") -> tuple[bytes, dict[str, np.ndarray]]:
    b = read_bundle(bundles / f"{target}-v1.kedge", keys)
    return artifact_bytes(b, b.manifest.artifact(name)), b.reference_vectors(name)


@pytest.mark.parametrize("mode", ["xnnpack", "builtin", "reference"])
def test_litert_runs_segment_and_matches_reference(bundles: Path, keys: Path, mode: str) -> None:
    data, ref = _segment(bundles, keys, "linux-arm")
    backend = LiteRtBackend(mode)  # type: ignore[arg-type]
    model = backend.load(data, "segment_1")
    assert model.inputs[0].dtype == "int8" and model.inputs[0].scale is not None
    out = model.run(ref["in0"][:1])
    assert out.dtype == np.int8 and out.shape == ref["out"][:1].shape
    check = check_reference(model, ref, backend.info().reference_tolerance_lsb)
    assert check.passed, check
    if mode == "builtin":  # the build traced its references with the builtin kernels: bit-exact
        assert check.max_error_lsb == 0


def test_edgetpu_backend_reports_missing_delegate() -> None:
    backend = open_backend("litert-edgetpu")
    info = backend.info()
    assert info.name == "litert-edgetpu"
    if edgetpu_library_present():
        assert info.accelerator == "edgetpu" or any("failed to load" in n for n in info.notes)
    else:
        assert info.accelerator is None
        assert any("libedgetpu.so.1" in n and "absent" in n for n in info.notes)


def test_tflite_micro_backend_matches_reference_within_one_lsb(bundles: Path, keys: Path) -> None:
    pytest.importorskip("tflite_micro")
    data, ref = _segment(bundles, keys, "cortex-m")
    backend = open_backend("tflite-micro")
    model = backend.load(data, "segment_1")
    check = check_reference(model, ref, 1)
    assert check.passed and check.max_error_lsb <= 1, check


def test_onnxruntime_runs_qdq_and_matches_reference(bundles: Path, keys: Path) -> None:
    data, ref = _segment(bundles, keys, "x86")
    backend = OrtBackend()
    model = backend.load(data, "segment_1")
    assert model.inputs[0].dtype == "float32"
    out = model.run(ref["in0"][:1].astype(np.float32))
    np.testing.assert_allclose(out, ref["out"][:1], atol=1e-6)


def test_garbage_and_wrong_format_are_one_line_errors() -> None:
    with pytest.raises(BackendError, match="'k0'.*LiteRT cannot load it"):
        LiteRtBackend("builtin").load(b"not a flatbuffer at all" * 10, "k0")
    with pytest.raises(BackendError, match="ONNX Runtime cannot load it"):
        OrtBackend().load(b"\x00\x01garbage", "k1")
    with pytest.raises(BackendError, match="onnx-qdq; the litert backend runs"):
        LiteRtBackend().check_format("onnx-qdq", "k2")
    with pytest.raises(BackendError, match="unknown runtime"):
        open_backend("tensorrt")
    assert isinstance(backend_for_format("onnx-qdq"), OrtBackend)


def test_onnx_runtime_missing_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from kasmina_edge.contracts.errors import MissingExtraError
    from kasmina_edge.runtime.backends import OrtBackend

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a device install without the extra sees
    with pytest.raises(MissingExtraError, match=r"kasmina-edge\[onnxruntime\]"):
        OrtBackend()
