"""Per-op roofline: compute and memory terms, dispatch, memory tiers, the Edge TPU partition."""

from __future__ import annotations

import pytest

from kasmina_edge.core.catalog import hardware
from kasmina_edge.profiler.graph import GraphProfile, OpStats, greedy_plan, profile_tflite
from kasmina_edge.profiler.latency import (
    FIXED_OVERHEAD_SHARE,
    REFERENCE_OPS,
    cpu_for,
    dtype_rate,
    estimate_graph,
    overhead_s,
    roofline_ceiling,
)


def _graph(ops: list[OpStats], params: int | None = None) -> GraphProfile:
    return GraphProfile(
        name="g",
        format="tflite",
        ops=ops,
        param_bytes=sum(o.param_bytes for o in ops) if params is None else params,
        input_bytes=256,
        output_bytes=64,
        plan=greedy_plan([]),
        tensors=2 * len(ops) + 1,
        inputs=1,
        outputs=1,
        size_bytes=1000,
    )


def _op(i: int, macs: int = 0, params: int = 0, acts: int = 0, name: str = "CONV_2D") -> OpStats:
    return OpStats(i, name, "int8", macs, 0, params, acts, acts)


def test_each_op_is_the_max_of_compute_and_memory() -> None:
    mcu = hardware("stm32h743")
    heavy, light = _op(0, macs=10**6, params=1000, acts=100), _op(1, macs=10, params=10**6, acts=10)
    lat = estimate_graph(_graph([heavy, light]), mcu)
    a, b = lat.ops
    assert a.bound == "compute" and a.compute_s == pytest.approx(
        2 * 10**6 / (mcu.peak("int8") * mcu.efficiency)
    )
    assert b.bound == "memory" and b.memory_s == pytest.approx(
        10**6 / mcu.memory.offchip_bandwidth_Bps + 20 / mcu.memory.onchip_bandwidth_Bps
    )
    assert lat.weights_in == "flash"  # an MCU executes its weights in place
    assert lat.total_s == pytest.approx(a.compute_s + b.memory_s + lat.overhead_s)


def test_dispatch_grows_with_the_op_count_except_on_one_command_devices() -> None:
    mcu = hardware("stm32h743")
    assert overhead_s(mcu, REFERENCE_OPS) == pytest.approx(mcu.per_invoke_overhead_s)
    assert overhead_s(mcu, 0) == pytest.approx(FIXED_OVERHEAD_SHARE * mcu.per_invoke_overhead_s)
    assert overhead_s(mcu, 30) > overhead_s(mcu, 3)
    tpu = hardware("coral-usb")
    assert overhead_s(tpu, 3) == overhead_s(tpu, 30) == tpu.per_invoke_overhead_s


def test_cpu_weights_move_from_cache_to_dram_when_the_bundle_outgrows_it() -> None:
    rpi = hardware("rpi4")
    g = _graph([_op(0, macs=100, params=10_000, acts=100)])
    cached = estimate_graph(g, rpi)
    spilled = estimate_graph(g, rpi, resident_weight_bytes=rpi.memory.sram_bytes + 1)
    assert (cached.weights_in, spilled.weights_in) == ("cache", "dram")
    assert spilled.memory_s > cached.memory_s


def test_edgetpu_partition_runs_the_rest_on_the_host_and_pays_the_link(
    tflite_artifacts: dict[str, bytes],
) -> None:
    tpu = hardware("coral-usb")
    g = profile_tflite(tflite_artifacts["segment_1"], "segment_1")
    full = estimate_graph(g, tpu)
    cut = estimate_graph(
        g, tpu, mapped_ops=2, first_cpu_op={"index": 2, "op": "PAD", "rule": "test", "detail": ""}
    )
    assert full.partition == {"mapped_ops": len(g.ops), "cpu_ops": 0, "first_cpu_op": None}
    assert cut.partition is not None and cut.partition["cpu"] == "x86-64-host"
    assert [o.runs_on for o in cut.ops] == ["coral-usb"] * 2 + ["x86-64-host"] * (len(g.ops) - 2)
    assert full.link_s > tpu.host_link.latency_s  # type: ignore[union-attr]
    assert cut.overhead_s > full.overhead_s  # the CPU's interpreter dispatches its ops on top
    assert any("on the CPU" in n for n in cut.notes)
    streamed = estimate_graph(g, tpu, streamed_fraction=1.0)
    assert "streamed" in streamed.weights_in and streamed.memory_s > full.memory_s


def test_a_board_without_a_named_host_uses_a_linux_cpu_profile() -> None:
    board = hardware("coral-devboard")
    cpu = cpu_for(board)
    assert cpu.runtime == "litert" and set(cpu.targets) & set(board.targets)
    assert cpu_for(hardware("coral-usb")).name == "x86-64-host"


def test_missing_dtype_falls_back_with_a_note() -> None:
    rate, note = dtype_rate(hardware("npu-u55"), "float32")
    assert note is not None and "no fp32" in note
    assert rate == pytest.approx(hardware("npu-u55").effective_ops_per_s("int8") / 4)
    assert dtype_rate(hardware("stm32h743"), "int4")[1] is None


def test_roofline_ceiling_bends_at_the_ridge() -> None:
    mcu = hardware("stm32h743")
    low, high = roofline_ceiling(mcu, [0.01, 1e4])
    assert low == pytest.approx(0.01 * mcu.memory.offchip_bandwidth_Bps)
    assert high == pytest.approx(mcu.effective_ops_per_s("int8"))
