"""The Edge TPU checker on models built to break each of Coral's published rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from kasmina_edge.compile.export_tflite import convert_prepared
from kasmina_edge.compile.quantize import prepare_int8
from kasmina_edge.core.edgetpu_rules import (
    EdgeTpuRules,
    check_and_compile,
    check_model,
    co_compile,
    parse_compiler_log,
)


def _int8(module: nn.Module, example: torch.Tensor, name: str) -> bytes:
    calib = [(torch.randn(16, *example.shape[1:]),) for _ in range(2)]
    prepared = prepare_int8(module.eval(), (example,), calib)
    return convert_prepared(prepared, (example,), name)


def _float(module: nn.Module, example: torch.Tensor, **kw: object) -> bytes:
    import litert_torch

    litert_torch.config.show_progress = False
    return bytes(litert_torch.convert(module.eval(), (example,), **kw).model_content())


class ConvAbsConv(nn.Module):
    """int8 conv, then ABS (an int8 TFLite op the Edge TPU lacks), then another conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(4, 8, 3, padding=1)
        self.b = nn.Conv1d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.abs(self.a(x)))


class Conv2dFiveD(nn.Module):
    """A conv whose output is viewed as a 5-D tensor with four dimensions above 1 (the build exports
    batch 1, so the batch cannot be the fourth)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c(x))
        return y.reshape(y.shape[0], 2, 2, 8, 8)


def test_the_stand_in_artifacts_map_entirely(tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    for name, data in tflite_artifacts.items():
        check = check_model(name, data)
        assert check.fully_mapped, (name, check.violations)
        assert check.mapped == len(check.ops) and check.cpu == 0
    plan = co_compile([check_model(n, d) for n, d in tflite_artifacts.items()])
    assert plan.fits and plan.cache_used == sum(m.parameter_bytes for m in plan.models) > 0


def test_a_float_op_starts_the_cpu_partition_at_op_0() -> None:
    data = _float(nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU()), torch.randn(1, 4, 32))
    check = check_model("float", data)
    assert check.first_cpu_op is not None and check.first_cpu_op.op_index == 0
    assert check.first_cpu_op.rule == "dtype" and "float32" in check.first_cpu_op.detail
    assert check.mapped == 0 and check.cpu == len(check.ops)


def test_an_unsupported_op_mid_graph_sends_the_rest_to_the_cpu() -> None:
    data = _int8(ConvAbsConv(), torch.randn(1, 4, 32), "abs")
    check = check_model("abs", data)
    first = check.first_cpu_op
    assert first is not None
    # the int8 conv before it maps; from ABS (not an Edge TPU op) on, everything is CPU
    assert 0 < check.mapped < len(check.ops)
    assert "CONV_2D" in check.mapped_ops()
    assert check.ops[check.mapped] == first.op == "ABS" and first.rule == "unsupported_op"
    assert "CONV_2D" in check.cpu_ops()  # the second conv is supported, yet runs on the CPU
    assert check.cpu_parameter_bytes > 0


def test_a_tensor_with_four_non_trivial_dimensions_is_refused() -> None:
    data = _int8(Conv2dFiveD(), torch.randn(2, 3, 8, 8), "five_d")
    check = check_model("five_d", data)
    rules = {v.rule for v in check.violations}
    assert "dims" in rules
    dims = next(v for v in check.violations if v.rule == "dims")
    assert "innermost" in dims.detail


def _with_dynamic_batch(data: bytes) -> bytes:
    """The same model with its inputs' and outputs' batch dimension marked dynamic (-1) in the flatbuffer.

    litert-torch 0.10 with jax 0.10 cannot convert a dynamic batch (its lowering of unsqueeze fails),
    so the shape signature is written directly: the checker reads exactly that field.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    graph = model.subgraphs[0]
    for i in list(graph.inputs) + list(graph.outputs):
        tensor = graph.tensors[i]
        tensor.shapeSignature = [-1, *list(tensor.shape)[1:]]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_dynamic_shape_is_refused() -> None:
    static = _float(nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU()), torch.randn(2, 4, 32))
    assert not any(v.rule == "dynamic_shape" for v in check_model("static", static).violations)
    check = check_model("dynamic", _with_dynamic_batch(static))
    dynamic = [v for v in check.violations if v.rule == "dynamic_shape"]
    assert dynamic and "-1" in dynamic[0].detail
    assert check.first_cpu_op is not None and check.first_cpu_op.op_index == 0


def test_a_model_over_the_parameter_cache_streams_the_rest(tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    checks = [check_model(n, d) for n, d in tflite_artifacts.items()]
    total = sum(c.parameter_bytes for c in checks)
    small = total - 1000
    plan = co_compile(checks, cache_bytes=small)
    assert not plan.fits
    assert plan.cache_used == small
    # the cache is given out in order: the first models are cached whole, the last one streams
    assert plan.slices[0].streamed_bytes == 0
    assert sum(s.streamed_bytes for s in plan.slices) == 1000
    assert plan.slices[-1].streamed_bytes > 0


@pytest.mark.slow
def test_a_model_larger_than_8_mb_does_not_fit() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3000, 3000))
    data = _int8(model, torch.randn(1, 1, 3000), "big")
    check = check_model("big", data)
    assert check.parameter_bytes > 8 * 1024 * 1024
    assert not co_compile([check]).fits


def test_rules_come_from_the_catalog_target() -> None:
    from kasmina_edge.core import catalog

    rules = EdgeTpuRules.from_catalog(catalog.target("edgetpu"), catalog.hardware("coral-usb"))
    assert "CONV_2D" in rules.allowed_ops and "DEQUANTIZE" not in rules.allowed_ops
    assert rules.max_nontrivial_dims == 3 and rules.cache_bytes == 8 * 1024 * 1024


SAMPLE_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Models compiled successfully in 41 ms.

Input model: src/segment_0.tflite
Input size: 3.05KiB
Output model: out/segment_0_edgetpu.tflite
Output size: 26.20KiB
On-chip memory used for caching model parameters: 1.50KiB
On-chip memory remaining for caching model parameters: 7.86MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 7
Operation log: out/segment_0_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 5
Number of operations that will run on CPU: 2

Operator                       Count      Status

CONV_2D                        1          Mapped to Edge TPU
RESHAPE                        2          Mapped to Edge TPU
DEQUANTIZE                     1          Operation is working on an unsupported data type
ABS                            1          Operation not supported

Input model: src/kernel_s1_a.tflite
Input size: 2.10KiB
Output model: out/kernel_s1_a_edgetpu.tflite
Output size: 12.00KiB
On-chip memory used for caching model parameters: 512.00B
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 7
"""


def test_compiler_log_is_parsed_per_model() -> None:
    models = parse_compiler_log(SAMPLE_LOG)
    assert [m["input"] for m in models] == ["src/segment_0.tflite", "src/kernel_s1_a.tflite"]
    first, second = models
    assert first["ops_total"] == 7 and first["ops_mapped"] == 5 and first["ops_cpu"] == 2
    assert first["cache_used_bytes"] == 1536 and first["streamed_bytes"] == 0
    assert {o["op"]: o["status"] for o in first["operators"]}["ABS"] == "Operation not supported"
    assert second["cache_used_bytes"] == 512 and second["ops_mapped"] == 7


def test_the_compiler_is_run_co_compiling_all_models_when_on_path(
    tmp_path: Path, tflite_artifacts, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A stand-in ``edgetpu_compiler`` records its arguments and writes outputs like the real one."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    argv_file = tmp_path / "argv.txt"
    fake = bindir / "edgetpu_compiler"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {argv_file}\n'
        'out=""; prev=""\n'
        'for a in "$@"; do if [ "$prev" = "-o" ]; then out="$a"; fi; prev="$a"; done\n'
        'for a in "$@"; do case "$a" in *.tflite) n=$(basename "$a" .tflite); cp "$a" "$out/${n}_edgetpu.tflite";'
        ' echo "Input model: $a"; echo "Total number of operations: 7";'
        ' echo "Number of operations that will run on CPU: 0";; esac; done\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    models = {n: d for n, d in tflite_artifacts.items() if n in ("segment_0", "kernel_s1_seedA")}
    plan, compiled = check_and_compile(models, work_dir=tmp_path / "work")
    argv = argv_file.read_text().split()
    assert argv[0] == "-s" and sum(a.endswith(".tflite") for a in argv) == 2  # one co-compilation
    assert plan.compiler == "ran" and len(plan.compiler_log) == 2
    assert set(compiled) == set(models) and compiled["segment_0"] == models["segment_0"]
