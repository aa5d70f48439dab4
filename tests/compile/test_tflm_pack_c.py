"""TFLite Micro arenas and parity, 4-bit packing, C arrays."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kasmina_edge.compile.c_array import parse_c_array, render
from kasmina_edge.compile.chain import ChainLayout, tflite_chain
from kasmina_edge.core.build_errors import ProfileLimitError
from kasmina_edge.core.pack4 import (
    PackError,
    pack_file,
    pack_nibbles,
    tflite_int4_ranges,
    unpack_file,
    unpack_nibbles,
)
from kasmina_edge.core.tflm import (
    _loads_with,
    check_memory,
    compare_with_reference,
    measure_arenas,
    run_micro,
)

SEGMENTS = tuple(f"segment_{i}" for i in range(5))


@pytest.fixture(scope="module")
def micro(trained, tflite_artifacts):  # type: ignore[no-untyped-def]
    trace: dict[str, list[list[np.ndarray]]] = {}
    x, rr = trained.x_test[:60], trained.rr_test[:60]
    tflite_chain(
        tflite_artifacts,
        ChainLayout(SEGMENTS, {1: "kernel_s1_seedA", 3: "kernel_s3_seedB"}),
        x,
        rr,
        reference=True,
        trace=trace,
    )
    inputs = {
        n: [np.concatenate([c[i] for c in calls]) for i in range(len(calls[0]) - 1)]
        for n, calls in trace.items()
    }
    reported, outs = run_micro(tflite_artifacts, inputs)
    return inputs, reported, outs


def test_arena_is_measured_and_confirmed(micro, tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    _, reported, _ = micro
    arenas = measure_arenas(tflite_artifacts, reported)
    for name, a in arenas.items():
        assert a.verified and a.arena_bytes >= a.reported_bytes > 1000, name
    # far too small: the child fails (or crashes); the parent just gets False
    assert not _loads_with("segment_0", tflite_artifacts["segment_0"], 512)


def test_tflite_micro_matches_litert_reference_kernels(micro, tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    inputs, _, outs = micro
    for name, data in tflite_artifacts.items():
        par = compare_with_reference(name, data, inputs[name], outs[name], logits=name == "segment_4")
        assert par.ok, par
        if "FULLY_CONNECTED" not in par.documented_ops:
            assert par.identical_fraction == 1.0 and par.max_lsb == 0, par


def test_memory_limits_name_the_artifact_and_the_limit() -> None:
    sizes = {"segment_0": 4000, "kernel_s1_a": 3000, "kernel_s1_b": 5000}
    arenas = {"segment_0": 6000, "kernel_s1_a": 2000, "kernel_s1_b": 3000}
    sites = {"kernel_s1_a": 1, "kernel_s1_b": 1}
    ok = check_memory(sizes, arenas, sites, flash_limit=100_000, sram_limit=100_000, profile="p")
    assert ok.sram_bytes == 6000 + 3000  # one slot per site, sized for its largest kernel
    with pytest.raises(ProfileLimitError, match=r"12,000 B of flash.*10,000 B.*kernel_s1_b"):
        check_memory(sizes, arenas, sites, flash_limit=10_000, sram_limit=100_000, profile="p")
    with pytest.raises(ProfileLimitError, match=r"9,000 B of SRAM.*8,000 B.*segment_0"):
        check_memory(sizes, arenas, sites, flash_limit=100_000, sram_limit=8_000, profile="p")


@given(st.lists(st.integers(-8, 7), max_size=300))
@settings(max_examples=60, deadline=None)
def test_nibbles_round_trip(values: list[int]) -> None:
    arr = np.array(values, dtype=np.int8)
    packed = pack_nibbles(arr)
    assert len(packed) == (len(values) + 1) // 2
    assert np.array_equal(unpack_nibbles(packed, len(values)), arr)


def test_nibble_order_is_low_first() -> None:
    assert pack_nibbles(np.array([1, -1], np.int8)) == bytes([0xF1])
    with pytest.raises(PackError):
        pack_nibbles(np.array([8], np.int8))


def test_packed_file_unpacks_byte_exact_and_checks_its_digest() -> None:
    rng = np.random.default_rng(0)
    head, w, tail = rng.bytes(37), rng.integers(-7, 8, 101).astype(np.int8).tobytes(), rng.bytes(20)
    data = head + w + tail
    blob = pack_file(data, [(37, 101)])
    assert len(blob) == len(data) - 101 + 51 + 14 + 8  # 101 weights in 51 bytes, 22 bytes of header
    digest = hashlib.sha256(data).hexdigest()
    assert unpack_file(blob, sha256=digest) == data
    broken = bytearray(blob)
    broken[-1] ^= 0x11
    with pytest.raises(PackError, match="CRC"):
        unpack_file(bytes(broken))
    with pytest.raises(PackError, match="SHA-256"):
        unpack_file(blob, sha256="0" * 64)
    with pytest.raises(PackError):
        unpack_file(blob[:-3])


def test_int8_weights_are_not_taken_for_4_bit(tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    # PTQ int8 kernels use the whole int8 range: nothing qualifies as 4-bit
    assert tflite_int4_ranges(tflite_artifacts["kernel_s1_seedA"]) == []


def test_c_arrays_round_trip_and_are_aligned(tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    models = {"segment_0": tflite_artifacts["segment_0"], "kernel s1/a": tflite_artifacts["kernel_s1_seedA"]}
    header, source = render(models, {"segment_0": 4096})
    assert "alignas(16) const unsigned char g_segment_0[]" in source
    assert "g_kernel_s1_a" in header and "constexpr unsigned int g_segment_0_arena = 4096;" in header
    assert parse_c_array(source, "segment_0") == models["segment_0"]
    assert parse_c_array(source, "kernel s1/a") == models["kernel s1/a"]
    assert f"kKasminaModelCount = {len(models)}" in header
