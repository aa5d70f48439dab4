"""Limits a profile breaks (listed, never raised) and the energy / battery model."""

from __future__ import annotations

import pytest

from kasmina_edge.core.airtime import time_on_air_s
from kasmina_edge.core.catalog import hardware, network
from kasmina_edge.profiler.compat import ArtifactFacts, check, memory_use
from kasmina_edge.profiler.energy import (
    REFERENCE_CELL,
    TelemetryFrame,
    battery_of,
    default_plan,
    estimate_energy,
    frame_energy,
)


def _facts(
    name: str = "a",
    fmt: str = "tflite-int8",
    bits: int = 8,
    size: int = 1000,
    arena: int | None = 1000,
    kind: str = "segment",
    site: int | None = None,
    ops: tuple[str, ...] = ("CONV_2D",),
    dtype: str = "int8",
) -> ArtifactFacts:
    return ArtifactFacts(name, kind, fmt, bits, size, dtype, ops, site, arena)


def test_a_4bit_onnx_bundle_on_the_edge_tpu_names_both_limits() -> None:
    limits, _ = check([_facts(fmt="onnx-qcdq", bits=4, arena=None)], hardware("coral-usb"))
    kinds = {x.limit: x.detail for x in limits}
    assert set(kinds) == {"runtime", "bits"}
    assert "litert-edgetpu" in kinds["runtime"] and "8-bit" in kinds["bits"]


def test_4bit_tflite_is_fine_where_a_target_allows_it() -> None:
    assert check([_facts(bits=4, dtype="int4")], hardware("stm32h743"))[0] == []  # cortex-m allows 4
    limits, _ = check([_facts(bits=4, dtype="int4")], hardware("rpi4"))  # linux-arm: 8 only
    assert [x.limit for x in limits] == ["bits"]


def test_sram_and_flash_limits_carry_the_numbers() -> None:
    nrf = hardware("nrf52840")
    big = [
        _facts("seg", arena=200_000),
        _facts("k0", kind="kernel", site=0, arena=70_000),
        _facts("k1", kind="kernel", site=0, arena=90_000),
    ]
    use = memory_use(big, nrf)
    assert use.sram_bytes == 200_000 + 90_000  # one slot per site, sized for its largest kernel
    limits, _ = check(big, nrf)
    assert (
        [x.limit for x in limits] == ["sram"]
        and "290,000 B" in limits[0].detail
        and "262,144 B" in limits[0].detail
    )
    limits, _ = check([_facts(size=3_000_000)], nrf)
    assert [x.limit for x in limits] == ["flash"]


def test_ops_outside_the_tflite_micro_resolver_and_dtypes_without_units() -> None:
    limits, _ = check([_facts(ops=("CONV_2D", "TOPK_V2"))], hardware("stm32h743"))
    assert [x.limit for x in limits] == ["op"] and "TOPK_V2" in limits[0].detail
    limits, _ = check([_facts(dtype="float32")], hardware("npu-u55"))
    assert [x.limit for x in limits] == ["dtype"]
    limits, notes = check([_facts(dtype="float32")], hardware("coral-usb"))  # the Edge TPU partitions instead
    assert limits == [] and any("CPU partition" in n for n in notes)


def test_time_on_air_and_radio_energy_per_frame() -> None:
    fast, slow = network("lorawan-eu868-dr5"), network("lorawan-eu868-dr0")
    assert time_on_air_s(slow, 20) > 10 * time_on_air_s(fast, 20)  # SF12 vs SF7
    f = frame_energy(fast, "beat_counts", 20)
    assert f.airtime_s == time_on_air_s(fast, 20)  # the link simulator's airtime, not a copy of the formula
    assert f.tx_j == pytest.approx(f.airtime_s * fast.radio.tx_power_w)
    assert f.rx_j > 0  # two receive windows after a Class A uplink
    nb = frame_energy(network("nb-iot"), "beat_counts", 20)
    assert nb.rx_j == pytest.approx(network("nb-iot").radio.tail_s * network("nb-iot").radio.idle_power_w)


def test_battery_life_falls_with_heart_rate_and_telemetry() -> None:
    nrf = hardware("nrf52840")
    calm = estimate_energy(nrf, 0.002, 0.001, heart_rate_bpm=60)
    fast = estimate_energy(nrf, 0.002, 0.001, heart_rate_bpm=150)
    assert calm.battery_life_days is not None and fast.battery_life_days is not None
    assert fast.battery_life_days < calm.battery_life_days
    chatty = estimate_energy(
        nrf, 0.002, 0.001, heart_rate_bpm=60, plan=[TelemetryFrame("beat_counts", 20, 600.0)]
    )
    assert (
        chatty.radio_j_per_hour > calm.radio_j_per_hour and chatty.battery_life_days < calm.battery_life_days
    )  # type: ignore[operator]
    assert calm.battery_j == pytest.approx(nrf.battery.energy_j)  # type: ignore[union-attr]
    # per beat: active power over the work, idle power for the rest of the period
    assert calm.compute_avg_w == pytest.approx(nrf.power.active_w * 0.003 + nrf.power.idle_w * (1 - 0.003))
    assert battery_of(hardware("stm32h743"))[0] == pytest.approx(REFERENCE_CELL.energy_j)
    assert battery_of(hardware("rpi4")) == (None, "mains")
    assert {f.kind for f in default_plan()} >= {"beat_counts", "device_status"}
