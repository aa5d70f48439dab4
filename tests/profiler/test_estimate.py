"""Roofline estimates: artifact costs from the flatbuffer, the roofline, decision + swap per profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.contracts.bundle import read_bundle
from kasmina_edge.core.catalog import hardware, list_hardware
from kasmina_edge.profiler.estimate import (
    ArtifactCost,
    artifact_cost,
    estimate_artifact,
    estimate_chain,
    estimate_decision,
    tflite_cost,
)


@pytest.fixture(scope="module")
def costs(bundles: Path, keys: Path) -> dict[str, ArtifactCost]:
    b = read_bundle(bundles / "linux-arm-v1.kedge", keys)
    return {a.name: artifact_cost(b.artifact_bytes(a.name), a.format, a.name)
            for a in b.manifest.artifacts if a.kind in ("segment", "kernel", "whole")}


def test_macs_read_from_the_flatbuffer(costs: dict[str, ArtifactCost]) -> None:
    # segment_0 is Conv1d(1, 4, 7, stride 4) on 256 samples: 4 x 64 outputs x 7 taps
    assert costs["segment_0"].macs == 4 * 64 * 7
    # segment_1 is Conv1d(4, 8, 5, stride 2): 8 x 32 outputs x 4 x 5
    assert costs["segment_1"].macs == 8 * 32 * 4 * 5
    # the whole model does the segments' work (the same layers, no kernel)
    seg = sum(costs[f"segment_{i}"].macs for i in range(3))
    assert costs["whole"].macs == seg
    assert all(c.weight_bytes > 0 and c.io_bytes > 0 for c in costs.values())


def test_roofline_terms() -> None:
    mcu = hardware("stm32h743")
    small = ArtifactCost("a", macs=1000, elementwise_ops=0, weight_bytes=100, activation_bytes=100, io_bytes=10)
    big = ArtifactCost("b", macs=10**7, elementwise_ops=0, weight_bytes=100, activation_bytes=100, io_bytes=10)
    e_small, e_big = estimate_artifact(small, mcu), estimate_artifact(big, mcu)
    assert e_big.bound == "compute"
    assert e_big.compute_s == pytest.approx(2 * 10**7 / (mcu.peak("int8") * mcu.efficiency))
    assert e_big.total_s > e_small.total_s
    assert e_small.weights_in == "flash" and e_small.overhead_s == mcu.per_invoke_overhead_s
    tpu = estimate_artifact(small, hardware("coral-usb"))
    assert tpu.link_s > 0 and tpu.weights_in == "parameter cache"  # an accelerator pays its host link
    streamed = estimate_artifact(small, hardware("coral-usb"), resident_weight_bytes=10**9)
    assert streamed.weights_in == "host link" and streamed.memory_s > tpu.memory_s


def test_segmenting_costs_the_per_invoke_overheads(costs: dict[str, ArtifactCost]) -> None:
    chain = [costs[f"segment_{i}"] for i in range(3)]
    for name in ("coral-usb", "stm32h743", "rpi4"):
        est = estimate_chain(chain, hardware(name), whole=costs["whole"])
        d = est.to_dict()
        assert d["segmented_over_whole"] > 1.0
        extra = est.total_s - est.whole.total_s  # type: ignore[union-attr]
        p = hardware(name)
        link = p.host_link.latency_s if p.kind == "accelerator" and p.host_link else 0.0
        assert extra == pytest.approx(2 * (p.per_invoke_overhead_s + link), rel=0.5)


def test_decision_and_swap_under_50_ms_on_every_edge_profile(costs: dict[str, ArtifactCost]) -> None:
    kernel = costs["kernel_s0_emg-denoise_site0"]
    for p in list_hardware():
        if p.kind == "host":
            continue
        d = estimate_decision(p, kernel)
        assert 0 < d.total_s < 0.050, (p.name, d.to_dict())
        assert d.reference_check_s > 0
    usb = estimate_decision(hardware("coral-usb"), kernel)
    assert usb.runs_on == "x86-64-host" and usb.swap_s > estimate_decision(hardware("rpi4"), kernel).swap_s


def test_cost_of_an_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cost model"):
        artifact_cost(b"", "c-source")
    with pytest.raises(Exception):  # noqa: B017 - a broken flatbuffer
        tflite_cost(b"\x00" * 8)
