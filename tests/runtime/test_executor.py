"""The segmented executor: the chain the build traced, seed slots, atomic swaps, shadow path, NaN fallback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.compile.chain import ChainLayout, onnx_chain, tflite_chain
from kasmina_edge.contracts.bundle import read_bundle
from kasmina_edge.core.tensors import TensorInfo, blend
from kasmina_edge.runtime.backends import LiteRtBackend, LoadedModel, OrtBackend
from kasmina_edge.runtime.executor import SegmentedExecutor, SlotConfig, _dequantize
from kasmina_edge.runtime.image import ImageError, load_image

KERNEL0 = "kernel_s0_emg-denoise_site0"
KERNEL1 = "kernel_s1_lead-adapter_site1"


def _windows(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(256)
    x = np.exp(-0.5 * ((t[None, :] - 90) / rng.uniform(4, 20, n)[:, None]) ** 2) + 0.2 * rng.standard_normal((n, 256))
    rr = rng.uniform(0.5, 1.2, (n, 4))
    return x[:, None, :].astype(np.float32), rr.astype(np.float32)


@pytest.fixture(scope="module")
def tflite(bundles: Path, keys: Path):  # type: ignore[no-untyped-def]
    b = read_bundle(bundles / "linux-arm-v1.kedge", keys)
    return b, load_image(b, LiteRtBackend("builtin"))


def _arts(b) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {a.name: b.artifact_bytes(a.name) for a in b.manifest.artifacts if a.kind in ("segment", "kernel")}


def test_chain_is_bit_exact_with_the_builds_chain(tflite) -> None:  # type: ignore[no-untyped-def]
    b, image = tflite
    ex = SegmentedExecutor(image, stats_every=1)
    x, rr = _windows(40)
    segs = tuple(b.manifest.chain.segments)
    for active in ({}, {0: KERNEL0}, {1: KERNEL1}, {0: KERNEL0, 1: KERNEL1}):
        for site, name in active.items():
            ex.set_slot(site, SlotConfig(candidate=image.kernels[name], alpha=1.0))
        want = tflite_chain(_arts(b), ChainLayout(segs, active), x, rr, return_int8=True)
        got = np.stack([ex.output_int8(x[i], rr[i]) for i in range(x.shape[0])])
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        for site in active:
            ex.set_slot(site, SlotConfig())


def test_partial_alpha_blends_on_the_site_grid(tflite) -> None:  # type: ignore[no-untyped-def]
    b, image = tflite
    ex = SegmentedExecutor(image)
    k = image.kernels[KERNEL0]
    ex.set_slot(0, SlotConfig(candidate=k, alpha=0.3))
    x, rr = _windows(10)
    for i in range(x.shape[0]):
        xq, rq = ex.quantize_inputs(x[i], rr[i])
        h = image.segments[0].run(xq)
        mixed = blend(h, image.site_tensors[0], k.model.run(h), k.model.outputs[0], 0.3, image.site_tensors[0])
        out = image.segments[2].run(image.segments[1].run(mixed), rq)
        assert np.array_equal(ex.output_int8(x[i], rr[i]).reshape(out.shape), out)
    # and alpha 0.3 really differs from both ends on some window
    outs = {a: [] for a in (0.0, 0.3, 1.0)}
    for a in outs:
        ex.set_alpha(0, a)
        outs[a] = [ex.infer(x[i], rr[i]).logits for i in range(x.shape[0])]
    assert not np.allclose(outs[0.3], outs[0.0]) and not np.allclose(outs[0.3], outs[1.0])


def test_swap_is_one_reference_change_between_windows(tflite) -> None:  # type: ignore[no-untyped-def]
    _, image = tflite
    ex = SegmentedExecutor(image)
    before = ex.config
    new = ex.set_slot(0, SlotConfig(candidate=image.kernels[KERNEL0], alpha=1.0))
    assert ex.config is new and new is not before and new.version == before.version + 1
    assert before.slots[0].candidate is None  # the old configuration is untouched (immutable)
    x, rr = _windows(1)
    assert ex.infer(x[0], rr[0]).config_version == new.version


def test_shadow_path_is_the_chain_without_the_candidate(tflite) -> None:  # type: ignore[no-untyped-def]
    b, image = tflite
    ex = SegmentedExecutor(image)
    ex.set_slot(1, SlotConfig(candidate=image.kernels[KERNEL1], alpha=1.0, shadow=True))
    plain = SegmentedExecutor(image)
    x, rr = _windows(20)
    for i in range(x.shape[0]):
        r = ex.infer(x[i], rr[i])
        base = plain.infer(x[i], rr[i])
        assert r.shadow_label == base.label
        np.testing.assert_allclose(r.shadow_probs, base.probs, atol=1e-6)


def test_nan_kernel_is_dropped_within_the_window(bundles: Path, keys: Path) -> None:
    b = read_bundle(bundles / "x86-v1.kedge", keys)
    image = load_image(b, OrtBackend())
    ex = SegmentedExecutor(image)
    plain = SegmentedExecutor(image)
    ex.set_slot(0, SlotConfig(candidate=image.kernels["kernel_s0_nan"], alpha=1.0))
    x, rr = _windows(20)
    faults = 0
    for i in range(x.shape[0]):
        r = ex.infer(x[i], rr[i])
        assert r.finite and np.all(np.isfinite(r.probs))  # classification never stops
        if r.faults:
            faults += 1
            assert r.faults == [(0, "kernel_s0_nan", "nan")]
            np.testing.assert_allclose(r.logits, plain.infer(x[i], rr[i]).logits, atol=1e-6)
    assert faults > 0


def test_onnx_chain_matches_the_builds_onnx_chain(bundles: Path, keys: Path) -> None:
    b = read_bundle(bundles / "x86-v1.kedge", keys)
    image = load_image(b, OrtBackend())
    ex = SegmentedExecutor(image)
    ex.set_slot(0, SlotConfig(candidate=image.kernels[KERNEL0], alpha=1.0))
    x, rr = _windows(16)
    want = onnx_chain(_arts(b), ChainLayout(tuple(b.manifest.chain.segments), {0: KERNEL0}), x, rr, fused=False)
    got = np.stack([ex.infer(x[i], rr[i]).logits for i in range(x.shape[0])])
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(got, want, atol=0.05)


def test_interface_mismatch_refuses_to_load(bundles: Path, keys: Path) -> None:
    b = read_bundle(bundles / "linux-arm-v1.kedge", keys)
    entry = b.manifest.artifact("segment_1")
    entry.input_specs[0].shape = [1, 4, 32]  # what a wrong manifest would say
    try:
        with pytest.raises(ImageError, match="segment_1.*does not match its manifest"):
            load_image(b, LiteRtBackend())
    finally:
        entry.input_specs[0].shape = [1, 4, 64]


class _ChainAsOne(LoadedModel):
    """Stands in for a fused base: the image's own segments run as one model (same grids), invokes counted."""

    def __init__(self, image) -> None:  # type: ignore[no-untyped-def]
        self.name, self._segs, self.calls = "base_whole", image.segments, 0
        self.inputs = (image.segments[0].inputs[0], *image.segments[-1].inputs[1:])
        self.outputs = image.segments[-1].outputs

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        self.calls += 1
        h = self._segs[0].run(inputs[0])
        for seg in self._segs[1:-1]:
            h = seg.run(h)
        return self._segs[-1].run(h, *inputs[1:])


def test_fused_base_runs_only_while_every_slot_is_empty(tflite) -> None:  # type: ignore[no-untyped-def]
    _, image = tflite
    whole = _ChainAsOne(image)
    fused = SegmentedExecutor(replace(image, whole=whole), stats_every=4)
    chain = SegmentedExecutor(image, stats_every=4)
    x, rr = _windows(16)
    for i in range(x.shape[0]):
        a, b = fused.infer(x[i], rr[i]), chain.infer(x[i], rr[i])
        np.testing.assert_array_equal(a.logits, b.logits)
        assert (a.sites[0].mean is None) == (b.sites[0].mean is None)  # statistics windows still run the chain
    assert whole.calls == 12  # 16 windows, every 4th one for the site statistics
    fused.set_slot(0, SlotConfig(candidate=image.kernels[KERNEL0], alpha=1.0))
    fused.infer(x[0], rr[0])
    assert whole.calls == 12  # a kernel in a slot: the chain


def test_table_dequantize_matches_the_grid_arithmetic() -> None:
    info = TensorInfo("site", (1, 4, 64), "int8", 0.0371, -7)
    q = np.arange(-128, 128, dtype=np.int8).reshape(1, 4, 64)
    np.testing.assert_array_equal(_dequantize(info, q), info.dequantize(q))


def test_site_statistics_on_int8_are_the_float_sums(tflite) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.runtime.executor import SiteObservation

    _, image = tflite
    ex = SegmentedExecutor(image)
    rng = np.random.default_rng(4)
    # the bundle's sites (channels first) and the same grids channels last, as an NHWC cut hands them on
    nhwc = [replace(t, shape=(1, 1, t.shape[2], t.shape[1])) for t in image.site_tensors]
    ex._site = [*image.site_tensors, *nhwc]
    ex._axes = [*ex._axes, *[3] * len(nhwc)]
    for site, t in enumerate(ex._site):
        h = rng.integers(-128, 128, t.shape).astype(np.int8)
        obs = SiteObservation()
        ex._stats(site, h, obs)
        a = np.moveaxis(h, ex._axes[site], 1).reshape(t.shape[ex._axes[site]], -1).astype(np.float32)
        n = a.shape[1]
        s1, s2 = a.sum(axis=1) / n, np.einsum("ij,ij->i", a, a) / n
        zp, sc = float(t.zero_point), float(t.scale)
        np.testing.assert_array_equal(obs.mean, (s1 - zp) * sc)
        np.testing.assert_array_equal(obs.meansq, (s2 - 2.0 * zp * s1 + zp * zp) * sc * sc)


class _Counted(LoadedModel):
    """A loaded model whose invokes are counted (same interface, same numbers)."""

    def __init__(self, model: LoadedModel) -> None:
        self.name, self.inputs, self.outputs, self._model, self.calls = model.name, model.inputs, model.outputs, model, 0

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self._model.run(*inputs)


def _with_pieces(b, image):  # type: ignore[no-untyped-def]
    """The image with the bundle's segments fused into prefixes and suffixes (kasmina_edge.compile.fuse)."""
    from kasmina_edge.compile.fuse import fuse_pieces

    pieces = fuse_pieces([b.artifact_bytes(n) for n in b.manifest.chain.segments])
    loaded = {name: _Counted(image.backend.load(data, name)) for name, data in pieces.items()}
    prefixes = {int(n.rsplit("site", 1)[1]): m for n, m in loaded.items() if n.startswith("base_to_site")}
    suffixes = {int(n.rsplit("site", 1)[1]): m for n, m in loaded.items() if n.startswith("base_from_site")}
    return replace(image, prefixes=prefixes, suffixes=suffixes), loaded


def test_fused_pieces_give_the_chains_output_in_fewer_invokes(tflite) -> None:  # type: ignore[no-untyped-def]
    b, image = tflite
    pieced, loaded = _with_pieces(b, image)
    assert set(loaded) == {"base_from_site0", "base_to_site1"}  # 3 segments: a single segment is its own piece
    segs = [_Counted(s) for s in image.segments]
    counted = replace(pieced, segments=segs)
    x, rr = _windows(24)
    for active in ({0: KERNEL0}, {1: KERNEL1}, {0: KERNEL0, 1: KERNEL1}):
        fused, chain = SegmentedExecutor(counted, stats_every=4), SegmentedExecutor(image, stats_every=4)
        for site, name in active.items():
            for ex in (fused, chain):
                ex.set_slot(site, SlotConfig(candidate=image.kernels[name], alpha=1.0))
        before = sum(s.calls for s in segs)
        for i in range(x.shape[0]):
            a, c = fused.infer(x[i], rr[i]), chain.infer(x[i], rr[i])
            np.testing.assert_array_equal(a.logits, c.logits)
            assert a.sites[next(iter(active))].relative_change == c.sites[next(iter(active))].relative_change
            assert (a.sites[0].mean is None) == (c.sites[0].mean is None)
        seg_calls = sum(s.calls for s in segs) - before
        stats_windows = x.shape[0] // 4  # those run every segment (site statistics)
        if len(active) == 1:  # prefix (or segment 0), kernel, suffix (or the last segment): one segment invoke
            assert seg_calls == stats_windows * 3 + (x.shape[0] - stats_windows) * 1
        else:  # two sites live: no empty site to fuse over
            assert seg_calls == x.shape[0] * 3


def test_shadow_path_runs_through_the_fused_suffix(tflite) -> None:  # type: ignore[no-untyped-def]
    b, image = tflite
    pieced, loaded = _with_pieces(b, image)
    fused, chain = SegmentedExecutor(pieced, stats_every=0), SegmentedExecutor(image, stats_every=0)
    for ex in (fused, chain):
        ex.set_slot(0, SlotConfig(candidate=image.kernels[KERNEL0], alpha=0.5, trial=True))
    x, rr = _windows(8)
    for i in range(x.shape[0]):
        a, c = fused.infer(x[i], rr[i]), chain.infer(x[i], rr[i])
        np.testing.assert_array_equal(a.logits, c.logits)
        assert a.shadow_probs is not None and c.shadow_probs is not None
        np.testing.assert_array_equal(a.shadow_probs, c.shadow_probs)
    assert loaded["base_from_site0"].calls == 2 * x.shape[0]  # the answer's path and the shadow's
