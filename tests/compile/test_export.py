"""The export stage's choice per artifact: a base bundle's own segment as it is, 4-bit kernels by QAT
(QCDQ on ONNX), everything else by PTQ (7-bit weights on x86). The exporters themselves are tested with
the stand-in model (test_split, test_onnx_qat)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kasmina_edge.compile.stages import export
from kasmina_edge.compile.stages.request import BuildRequest


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(export, "_export_ptq", lambda spec, fmt, rr: seen.append(("ptq", fmt, rr)) or b"ptq")
    monkeypatch.setattr(export, "export_qat", lambda spec, fmt, bits, m, n: seen.append(("qat", fmt, bits, n)) or b"qat")
    return seen


def _req(**kw: Any) -> BuildRequest:
    return BuildRequest(checkpoint=Path("x.pt"), seeds=None, target="x86", qat_steps=7, **kw)


SEGMENT = SimpleNamespace(name="segment_0", kind="segment")
KERNEL = SimpleNamespace(name="kernel_s1_a", kind="kernel")


def test_a_base_bundles_segment_travels_as_it_is(calls: list[tuple[Any, ...]]) -> None:
    req = _req(base_segments={"segment_0": b"device segment"})
    b = export.export_artifact(SEGMENT, req, "edgetpu", "tflite-int8", None)  # type: ignore[arg-type]
    assert (b.data, b.quantization, b.bits, b.fmt) == (b"device segment", "base bundle", 8, "tflite-int8")
    assert calls == []
    export.export_artifact(KERNEL, req, "edgetpu", "tflite-int8", None)  # type: ignore[arg-type]
    assert calls == [("ptq", "tflite-int8", False)]  # kernels are exported, never taken from the base


@pytest.mark.parametrize(("fmt", "kernel_fmt"), [("onnx-qdq", "onnx-qcdq"), ("tflite-int8", "tflite-int8")])
def test_4_bit_kernels_go_through_qat(calls: list[tuple[Any, ...]], fmt: str, kernel_fmt: str) -> None:
    b = export.export_artifact(KERNEL, _req(bits=4), "x86", fmt, None)  # type: ignore[arg-type]
    assert (b.data, b.fmt, b.quantization, b.bits) == (b"qat", kernel_fmt, "QAT w4a8", 4)
    assert calls == [("qat", fmt, 4, 7)]
    s = export.export_artifact(SEGMENT, _req(bits=4), "x86", fmt, None)  # type: ignore[arg-type]
    assert (s.quantization, s.bits) == ("PTQ w7a8", 8)  # segments stay 8-bit PTQ


@pytest.mark.parametrize(("target", "quant", "reduce_range"), [("x86", "PTQ w7a8", True), ("linux-arm", "PTQ w8a8", False)])
def test_ptq_weights_are_7_bit_on_x86_only(calls: list[tuple[Any, ...]], target: str, quant: str, reduce_range: bool) -> None:
    b = export.export_artifact(KERNEL, _req(), target, "onnx-qdq", None)  # type: ignore[arg-type]
    assert (b.quantization, b.bits) == (quant, 8) and calls == [("ptq", "onnx-qdq", reduce_range)]
