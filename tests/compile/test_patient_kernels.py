"""Kernels that arrive after the base (a patient's seeds): the device runs them on the base bundle's
int8 grids, so the build must leave room for them and judge them as the device will run them.

Fast tests check each mechanism on the stand-in model; the slow one exports a planted seed whose
output leaves the base's own site range and checks the int8 chain against the float seeded model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from standin import Bottleneck

from kasmina_edge.compile.quantize import QuantGrid
from kasmina_edge.compile.split import (
    SEGMENT_PROBE_GAINS,
    SeedKernel,
    SegmentedModel,
    calibrate_site_grids,
    grid_ranges,
    plan_artifacts,
    ranges_beyond,
    widen_range,
)


def _base(trained) -> SegmentedModel:  # type: ignore[no-untyped-def]
    """The stand-in's segments without kernels: a base as it is built before any patient is seen."""
    sm = trained.segmented
    return SegmentedModel(sm.segments, sm.sites, [])


def _planted(channels: int, gain: float, seed: int = 3) -> Bottleneck:
    """A residual adapter with random weights: its output leaves the base's range on both sides."""
    g = torch.Generator().manual_seed(seed)
    k = Bottleneck(channels)
    with torch.no_grad():
        k.down.weight.copy_(torch.randn(k.down.weight.shape, generator=g))
        k.up.weight.copy_(gain * torch.randn(k.up.weight.shape, generator=g))
        k.down.bias.zero_()
        k.up.bias.zero_()
    return k.eval()


def test_real_range_is_what_the_grid_dequantizes_its_ends_to() -> None:
    g = QuantGrid.from_range(-0.7, 3.1, symmetric=False)
    lo, hi = g.real_range()
    assert (lo, hi) == tuple(float(v) for v in g.dequantize(np.array([-128, 127])))
    assert lo <= -0.7 + g.scale and hi >= 3.1 - g.scale
    q = g.quantize(np.array([lo - 5.0, hi + 5.0]))
    assert list(q) == [-128, 127]  # beyond the range: saturated


def test_widen_range_spans_headroom_times_with_the_share_below() -> None:
    assert widen_range(0.0, 2.0, 1.0) == (0.0, 2.0)
    lo, hi = widen_range(0.0, 2.0, 3.0, below=0.25)
    assert hi - lo == pytest.approx(6.0) and lo == pytest.approx(-1.0) and hi == pytest.approx(5.0)
    with pytest.raises(ValueError, match=">= 1"):
        widen_range(0.0, 2.0, 0.5)


def test_site_headroom_reserves_range_on_both_sides(trained) -> None:  # type: ignore[no-untyped-def]
    base = _base(trained)
    plain = grid_ranges(calibrate_site_grids(base, trained.x_cal, trained.rr_cal))
    roomy = grid_ranges(calibrate_site_grids(base, trained.x_cal, trained.rr_cal, headroom=2.0))
    for j, (lo, hi) in plain.items():
        r_lo, r_hi = roomy[j]
        assert lo == pytest.approx(0.0, abs=1e-6)  # after a ReLU the plain grid starts at zero
        assert r_lo < -0.4 * hi and r_hi > 1.4 * hi  # room below zero and above the top
        assert (r_hi - r_lo) == pytest.approx(2.0 * (hi - lo), rel=0.02)


def test_trace_rounds_and_saturates_at_site_grids_as_the_device_does(trained) -> None:  # type: ignore[no-untyped-def]
    sm = trained.segmented
    grids = trained.grids
    kernel = SeedKernel("planted", 2, "bottleneck_adapter", _planted(16, 0.5))
    free = SegmentedModel(sm.segments, sm.sites, [kernel])
    held = SegmentedModel(sm.segments, sm.sites, [kernel], site_grids=dict(grids))
    x, rr = trained.x_cal[:64], trained.rr_cal[:64]
    seen_free = free.trace(x, rr, {2: "planted"})
    seen = held.trace(x, rr, {2: "planted"})
    lo, hi = grids[2].real_range()
    assert float(seen_free[5].max()) > hi and float(seen_free[5].min()) < lo  # the kernel leaves the grid
    for j, g in grids.items():
        for t in (seen[2 * j], seen[2 * j + 1]):
            codes = t.numpy() / g.scale + g.zero_point  # on the grid: whole codes within int8
            assert (
                np.allclose(codes, np.rint(codes), atol=1e-3) and codes.min() > -128.5 and codes.max() < 127.5
            )
    # the kernel's output is what the device hands on: its float value put on the site's grid
    with torch.no_grad():
        out = free.kernel("planted").module(seen[4]).numpy()
    want = torch.from_numpy(grids[2].dequantize(grids[2].quantize(out)))
    assert torch.allclose(seen[5], want, atol=1e-6)
    assert not torch.allclose(seen[-1], seen_free[-1])  # what follows sees the saturated values


def test_segments_are_calibrated_on_range_probes_of_their_site(trained) -> None:  # type: ignore[no-untyped-def]
    base = _base(trained)
    x, rr = trained.x_cal[:128], trained.rr_cal[:128]
    grids = trained.grids
    probed = plan_artifacts(base, grids, x, rr)
    plain = plan_artifacts(base, grids, x, rr, probe_gains=())
    for a, b in zip(probed, plain, strict=True):
        assert a.name == b.name
        seen_a = torch.cat([batch[0] for batch in a.calibration])
        seen_b = torch.cat([batch[0] for batch in b.calibration])
        if a.in_site is None:  # the window: nothing to probe
            assert torch.equal(seen_a, seen_b)
            continue
        lo, hi = grids[a.in_site].real_range()
        per_gain = 3 if lo < 0 else 1  # scaled; where the grid holds negatives also negated and sign-mixed
        assert seen_a.shape[0] == seen_b.shape[0] * (2 + per_gain * len(SEGMENT_PROBE_GAINS)) // 2
        assert torch.equal(seen_a[: seen_b.shape[0]], seen_b)  # the base's own activations come first
        probes = seen_a[seen_b.shape[0] :]
        assert float(probes.max()) <= hi + 1e-6 and float(probes.min()) >= lo - 1e-6  # saturated on the grid
        # the probes reach the top of the grid, where the base's own activations rarely go
        top = float((seen_a >= hi - grids[a.in_site].scale).float().mean())
        assert top > 5 * float((seen_b >= hi - grids[a.in_site].scale).float().mean())
        if len(a.calibration[0]) == 2:  # the head keeps one RR row per activation row
            assert sum(len(batch[1]) for batch in a.calibration) == seen_a.shape[0]


def test_probes_reach_below_zero_where_the_grid_has_room(trained) -> None:  # type: ignore[no-untyped-def]
    base = _base(trained)
    x, rr = trained.x_cal[:64], trained.rr_cal[:64]
    grids = calibrate_site_grids(base, trained.x_cal, trained.rr_cal, headroom=2.0)
    for spec in plan_artifacts(base, grids, x, rr):
        if spec.kind != "segment" or spec.in_site is None:
            continue
        seen = torch.cat([batch[0] for batch in spec.calibration])
        own = base.trace(x, rr)[2 * spec.in_site + 1]
        lo, hi = grids[spec.in_site].real_range()
        assert float(own.min()) >= 0.0  # the base's own activations never go below zero, the probes
        assert float(seen.min()) <= lo + 1e-6 and float(seen.max()) >= hi - 1e-6  # span the grid


def test_kernels_are_calibrated_on_the_beats_given_for_them(trained) -> None:  # type: ignore[no-untyped-def]
    sm = trained.segmented
    x, rr = trained.x_cal[:128], trained.rr_cal[:128]
    patient_x, patient_rr = 2.5 * trained.x_cal[128:192], trained.rr_cal[128:192]  # taller beats
    own = plan_artifacts(sm, trained.grids, x, rr, kernel_calibration=(patient_x, patient_rr))
    pop = plan_artifacts(sm, trained.grids, x, rr)
    for a, b in zip(own, pop, strict=True):
        if a.kind == "segment":  # segments stay the base's: calibrated on the population's windows
            assert torch.equal(a.calibration[0][0], b.calibration[0][0])
            continue
        assert a.site is not None
        want = torch.cat([t[2 * a.site] for t in (sm.trace(patient_x, patient_rr, {}),
                                                   sm.trace(patient_x, patient_rr, sm.default_active()))])  # fmt: skip
        assert torch.equal(torch.cat([batch[0] for batch in a.calibration]), want)


def test_residual_span_grid_is_cut_only_where_it_is_wider_than_the_site() -> None:
    from kasmina_edge.compile.quantize import _residual_span_grid

    assert _residual_span_grid(QuantGrid.from_range(-1.0, 1.0, symmetric=False), 3.0) is None
    cut = _residual_span_grid(QuantGrid.from_range(-16.0, 12.0, symmetric=False), 3.0)
    assert cut is not None
    lo, hi = cut.real_range()
    assert -3.0 - cut.scale <= lo <= -3.0 + cut.scale and 3.0 - cut.scale <= hi <= 3.0 + cut.scale


def test_a_residual_kernel_keeps_its_correction_on_the_site_span() -> None:
    """x + f(x) with f(x) far wider than the site: every |f(x)| beyond the site's span saturates the
    output anyway, so f(x)'s grid is cut to the span, and the int8 kernel is as exact as its site grid
    allows (before: f(x)'s int8 step was many site steps wide)."""
    from kasmina_edge.compile.export_tflite import export_int8_tflite
    from kasmina_edge.core.tflite_graph import run_batched

    torch.manual_seed(0)
    kernel = _planted(16, 3.0, seed=5)
    x = 2.0 * torch.rand(96, 16, 32)
    grid = QuantGrid.from_range(-0.5, 2.5, symmetric=False)
    with torch.no_grad():
        want = grid.quantize(kernel(torch.from_numpy(grid.dequantize(grid.quantize(x.numpy())))).numpy())
    errors = {}
    for cut in (False, True):
        data, _ = export_int8_tflite(kernel, (x[:2],), [(x,)], artifact="k", input_grids={0: grid},
                                     output_grid=grid, residual_on_grid=cut)  # fmt: skip
        got = run_batched(data, [grid.quantize(x.numpy())])[0]
        errors[cut] = float(np.abs(got.astype(np.int32) - want.astype(np.int32)).mean())
    assert errors[True] <= 0.6 and errors[False] > 2 * errors[True], errors


def test_ranges_beyond_names_the_sites_a_seed_grew_past() -> None:
    device = {"site0": (0.0, 2.0), "site1": (-1.0, 4.0)}
    assert ranges_beyond({"site0": (0.0, 2.0), "site1": (-1.0, 4.0)}, device) == {}
    assert ranges_beyond({"site0": (0.0, 1.5), "site1": (-0.5, 4.0 + 1e-7)}, device) == {}  # inside: fine
    assert ranges_beyond({"site0": (0.0, 2.5), "site1": (-1.0, 4.0)}, device) == {"site0": (0.0, 2.5)}
    unbounded = ranges_beyond({"site0": (-math.inf, math.inf)}, device)  # a seed grown with no clip at all
    assert unbounded == {"site0": (None, None), "site1": (None, None)}


# --------------------------------------------------------------------------- slow: the planted seed


@pytest.mark.slow
def test_a_planted_seed_beyond_the_base_range_runs_in_int8_as_in_float(trained) -> None:  # type: ignore[no-untyped-def]
    """A seed whose output leaves the base's own range (below zero and above the top) at site 2: on a
    base built to take patient kernels (site head-room, range probes) the int8 chain — the base's
    segments, the kernel exported on the base's forced grids — agrees with the float seeded model.
    A base built the old way (no head-room, no probes) saturates it (measured: it does not)."""
    from kasmina_edge.compile.chain import ChainLayout, tflite_chain, torch_chain
    from kasmina_edge.compile.export_tflite import export_int8_tflite

    base = _base(trained)
    x, rr = trained.x_cal, trained.rr_cal
    plain_hi = grid_ranges(calibrate_site_grids(base, x, rr))[2][1]
    h_in = base.trace(x, rr)[5]
    # the strongest planted residual that stays inside a 2x head-room grid ([-0.5, 1.5] x the base's range)
    for gain in np.linspace(0.5, 0.02, 25):
        planted = _planted(16, float(gain))
        with torch.no_grad():
            out = planted(h_in)
        if float(out.max()) < 1.45 * plain_hi and float(out.min()) > -0.45 * plain_hi:
            break
    kernel = SeedKernel("planted", 2, "bottleneck_adapter", planted)
    seeded = SegmentedModel(base.segments, base.sites, [kernel])
    h = seeded.trace(torch.from_numpy(trained.x_test), torch.from_numpy(trained.rr_test), {2: "planted"})[5]
    assert float(h.max()) > 1.1 * plain_hi or float(h.min()) < -0.1 * plain_hi  # beyond the base's range
    ref = torch_chain(seeded, trained.x_test, trained.rr_test, {2: "planted"})

    def int8_chain(headroom: float, probes: tuple[float, ...]) -> np.ndarray:
        grids = calibrate_site_grids(base, x, rr, headroom=headroom)
        specs = plan_artifacts(base, grids, x, rr, probe_gains=probes)  # the base bundle: no kernel known
        specs += [s for s in plan_artifacts(seeded, grids, x, rr) if s.kind == "kernel"]  # the patient's
        arts = {
            s.name: export_int8_tflite(s.module, s.example_args, s.calibration, artifact=s.name,
                                       input_grids=s.input_grids, output_grid=s.output_grid)[0]
            for s in specs
        }  # fmt: skip
        segments = tuple(s.name for s in specs if s.kind == "segment")
        return tflite_chain(arts, ChainLayout(segments, {2: specs[-1].name}), trained.x_test, trained.rr_test)

    def errors(got: np.ndarray) -> tuple[float, float]:
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        return agree, float(np.percentile(np.abs(got - ref), 99)) / float(ref.max() - ref.min())

    ready = errors(int8_chain(2.0, SEGMENT_PROBE_GAINS))
    old = errors(int8_chain(1.0, ()))
    assert ready[0] >= 0.98 and ready[1] <= 0.06, ready
    assert old[1] > 2 * ready[1], (old, ready)
