"""Split a morphed model at its seed sites into base segments and per-site seed kernels.

The chain on the device is ``segment_0 → [kernel at site 0] → segment_1 → … → segment_N(h, rr)``,
where each bracket is either a seed kernel or nothing (the site is a pass-through when no seed is
live). For int8 tensors to pass between these artifacts without requantizing, everything that meets
at a site shares one int8 grid: the output of the segment before it, the input of the segment after
it, and the input and output of every kernel that may sit there. :func:`calibrate_site_grids` picks
that grid from calibration windows (covering the host path and every kernel), and
:func:`assert_cuts_match` checks the exported artifacts really carry it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kasmina_edge.compile.quantize import INT8_MAX, INT8_MIN, QuantGrid
from kasmina_edge.core.build_errors import CutMismatchError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Site:
    """A seed site: the activation between two base blocks, shape (channels, length)."""

    index: int
    name: str
    channels: int
    length: int


@dataclass
class SeedKernel:
    """One seed kernel from the library: a plain module mapping the site activation to itself."""

    seed_id: str
    site: int
    blueprint: str
    module: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@dataclass
class SegmentedModel:
    """A model cut at its seed sites. ``segments[0](x)``, ``segments[i](h)``, ``segments[-1](h, rr)``."""

    segments: list[nn.Module]
    sites: list[Site]
    kernels: list[SeedKernel]
    window: int = 256
    rr_features: int = 4
    classes: tuple[str, ...] = ("N", "S", "V", "F", "Q")
    # site -> its int8 grid: set, the float reference rounds and saturates there as the device does at
    # every cut (a patient kernel built for a base already on the device is judged on what the device runs)
    site_grids: dict[int, QuantGrid] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.segments) != len(self.sites) + 1:
            raise ValueError(
                f"{len(self.sites)} sites need {len(self.sites) + 1} segments, got {len(self.segments)}"
            )
        for k in self.kernels:
            if not 0 <= k.site < len(self.sites):
                raise ValueError(f"kernel {k.seed_id} sits at site {k.site}, the model has {len(self.sites)}")
        for m in self.segments:
            m.eval()
        for k in self.kernels:
            k.module.eval()

    def kernels_at(self, site: int) -> list[SeedKernel]:
        return [k for k in self.kernels if k.site == site]

    def kernel(self, seed_id: str) -> SeedKernel:
        for k in self.kernels:
            if k.seed_id == seed_id:
                return k
        raise KeyError(seed_id)

    def default_active(self) -> dict[int, str]:
        """The morphed model: at each site the library's first kernel there, if any."""
        active: dict[int, str] = {}
        for k in self.kernels:
            active.setdefault(k.site, k.seed_id)
        return active

    def forward(
        self, x: torch.Tensor, rr: torch.Tensor, active: Mapping[int, str] | None = None
    ) -> torch.Tensor:
        return self.trace(x, rr, active)[-1]

    def trace(
        self, x: torch.Tensor, rr: torch.Tensor, active: Mapping[int, str] | None = None
    ) -> list[torch.Tensor]:
        """``[site inputs..., site outputs..., logits]`` interleaved as the chain runs:
        ``[in_0, out_0, in_1, out_1, ..., logits]`` where in_j is the segment's output at site j and
        out_j is what the kernel there (or the pass-through) hands on."""
        import torch

        active = active or {}
        seen: list[torch.Tensor] = []
        with torch.no_grad():
            h = self.segments[0](x)
            for j in range(len(self.sites)):
                h = self._saturate(j, h)
                seen.append(h)
                if j in active:
                    h = self._saturate(j, self.kernel(active[j]).module(h))
                seen.append(h)
                h = self.segments[j + 1](h, rr) if j + 1 == len(self.sites) else self.segments[j + 1](h)
            if not self.sites:  # a model without sites: one segment taking (x, rr)
                raise ValueError("a segmented model needs at least one site")
            seen.append(h)
        return seen

    def _saturate(self, site: int, h: torch.Tensor) -> torch.Tensor:
        import torch

        g = self.site_grids.get(site)
        if g is None:
            return h
        return torch.fake_quantize_per_tensor_affine(h, g.scale, g.zero_point, INT8_MIN, INT8_MAX)


SITE_PERCENTILE = 100.0  # of the values seen at a site: the grid's ends
# Range probes in every segment's calibration (plan_artifacts). Measured on MIT-BIH fold bases
# (tools/bench_patient.py's recipe, 12 unseen DS1 records, minutes 5-30): without them a patient seed
# grown inside the site grids lost 8-15 macro-F1 points in the int8 chain (record 208: 67.2 float,
# 52.3 int8 with float kernels) because the segments after it, calibrated on the base's activations
# alone, saturated inside (the head's pooled means reached 27.6 where calibration saw 6.7); with
# gains (2, 4) the chain agrees with float on 99.9 % of the beats, and the base alone flips fewer
# decisions (0.65 % vs 0.83 % of 23,523 beats; max macro-F1 gap 1.5 vs 5.0 points).
SEGMENT_PROBE_GAINS: tuple[float, ...] = (2.0, 4.0)
SITE_HEADROOM = 1.0  # the grid spans what the calibration windows show
# What a base build reserves for patient seeds (pipeline.BuildRequest.site_headroom). Measured on MIT-BIH
# fold bases (records 208, 201, 119): seeds grown inside 1x grids kept 0-96 % of their float gain
# (119: culled, no gain), inside 2x grids 100 %, and the base's int8 parity did not move (12 unseen
# records, minutes 5-30: max macro-F1 gap 1.0 point at 2x, 1.8 at 1x, both with range probes).
PATIENT_SITE_HEADROOM = 2.0
HEADROOM_BELOW = 0.5  # the share of the head-room reserved below the range (a residual may subtract)


def widen_range(lo: float, hi: float, headroom: float, below: float = HEADROOM_BELOW) -> tuple[float, float]:
    """``[lo, hi]`` stretched to ``headroom`` times its span, ``below`` of the extra under ``lo``."""
    if not headroom >= 1.0:
        raise ValueError(f"site head-room must be >= 1 (the span it multiplies), got {headroom}")
    extra = (headroom - 1.0) * (hi - lo)
    return lo - below * extra, hi + (1.0 - below) * extra


def grid_ranges(grids: Mapping[int, QuantGrid]) -> dict[int, tuple[float, float]]:
    """Per site the real range its int8 grid holds: a kernel's output beyond it saturates on the device."""
    return {j: g.real_range() for j, g in grids.items()}


def ranges_beyond(
    grown: Mapping[str, tuple[float, float]], device: Mapping[str, tuple[float, float]]
) -> dict[str, tuple[float | None, float | None]]:
    """Sites where a seed grew with more range than the device's grids hold (a site missing from
    ``grown`` was unbounded): {site: (low, high)} as it grew, None for an unbounded end. There the
    device saturates activations the host let through, and the int8 result parts from the float one."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, (lo, hi) in device.items():
        g_lo, g_hi = grown.get(name, (-math.inf, math.inf))
        tol = 1e-4 * max(1.0, hi - lo)  # float32 rounding of the grid's ends
        if g_lo < lo - tol or g_hi > hi + tol:
            out[name] = (g_lo if math.isfinite(g_lo) else None, g_hi if math.isfinite(g_hi) else None)
    return out


def calibrate_site_grids(
    model: SegmentedModel,
    x: torch.Tensor,
    rr: torch.Tensor,
    configurations: Sequence[Mapping[int, str]] | None = None,
    *,
    percentile: float = SITE_PERCENTILE,
    headroom: float = SITE_HEADROOM,
) -> dict[int, QuantGrid]:
    """One int8 grid per site, wide enough for the host path and every kernel's output.

    Affine (zero point where the range needs it): site activations follow a ReLU and are mostly
    non-negative, and a symmetric grid would spend half its codes on values that never occur. The
    ends are the ``percentile``-th percentiles, not the extremes: a handful of outliers would
    otherwise stretch the grid for every other value (measured on the default model: the largest
    value at site 3 was 1.4× its 99.99th percentile).

    ``headroom`` > 1 reserves range for kernels that come later (a base built to take patient seeds):
    the grid spans ``headroom`` times the range seen, part of it below zero, at the cost of
    log2(headroom) bits of the base's own resolution there.
    """
    import numpy as np

    configs: list[Mapping[int, str]] = list(configurations or [])
    configs += [{}, model.default_active()] + [{k.site: k.seed_id} for k in model.kernels]
    seen_at: dict[int, list[np.ndarray]] = {j: [] for j in range(len(model.sites))}
    for active in configs:
        seen = model.trace(x, rr, active)
        for j in range(len(model.sites)):
            seen_at[j] += [seen[2 * j].numpy().ravel(), seen[2 * j + 1].numpy().ravel()]
    grids: dict[int, QuantGrid] = {}
    for j, arrays in seen_at.items():
        values = np.concatenate(arrays)
        lo = float(np.percentile(values, 100.0 - percentile)) if values.min() < 0 else 0.0
        hi = float(np.percentile(values, percentile))
        grids[j] = QuantGrid.from_range(*widen_range(lo, hi, headroom), symmetric=False)
    return grids


LOGIT_FLOOR_MARGIN = 1.0  # below the lowest winning logit seen in calibration


def calibrate_logit_grid(
    model: SegmentedModel,
    x: torch.Tensor,
    rr: torch.Tensor,
    *,
    margin: float = LOGIT_FLOOR_MARGIN,
) -> QuantGrid:
    """The int8 grid of the logits: from just below the lowest *winning* logit to the highest logit.

    Logits far below every window's winner never decide the class; covering them (down to -23 on
    the default model) would make one int8 step (0.13) wider than the top-2 margin of 2 % of the
    windows. Clipping them to the floor triples the resolution where the decision is made (clipping
    the top as well, above the highest runner-up, measured worse). The artifact outputs the logits
    clipped to this grid.
    """
    import numpy as np

    configs: list[Mapping[int, str]] = [{}, model.default_active()] + [
        {k.site: k.seed_id} for k in model.kernels
    ]
    lo, hi = np.inf, -np.inf
    for active in configs:
        logits = model.forward(x, rr, active).numpy()
        lo = min(lo, max(float(logits.min()), float(logits.max(axis=1).min()) - margin))
        hi = max(hi, float(logits.max()))
    return QuantGrid.from_range(lo, hi, symmetric=False)


ArtifactKind = Literal["segment", "kernel", "whole"]  # whole: the fused base (compile.fuse)


@dataclass
class ArtifactSpec:
    """One artifact to export: what module, which inputs, and which grids are forced at its cuts."""

    name: str
    kind: ArtifactKind
    module: nn.Module
    input_names: list[str]
    example_args: tuple[torch.Tensor, ...]
    calibration: list[tuple[torch.Tensor, ...]]
    input_grids: dict[int, QuantGrid]
    output_grid: QuantGrid | None
    site: int | None = None
    seed_id: str | None = None
    blueprint: str | None = None
    bits: int = 8
    # site -> grid on both sides of the artifact (input side site, output side site)
    in_site: int | None = None
    out_site: int | None = None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def segment_name(i: int) -> str:
    return f"segment_{i}"


def kernel_name(k: SeedKernel) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in k.seed_id)
    return f"kernel_s{k.site}_{safe}"


def plan_artifacts(
    model: SegmentedModel,
    grids: Mapping[int, QuantGrid],
    x: torch.Tensor,
    rr: torch.Tensor,
    *,
    batch: int = 128,
    kernel_bits: int = 8,
    logit_grid: QuantGrid | None = None,
    kernel_calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    probe_gains: Sequence[float] = SEGMENT_PROBE_GAINS,
) -> list[ArtifactSpec]:
    """Every base segment and every seed kernel as an :class:`ArtifactSpec`, with calibration inputs.

    A segment is calibrated on what reaches it with no kernel live and with the morphed model's
    kernels live, so its interior grids cover both, and on *range probes*: its input site's
    activations times each of ``probe_gains``, saturated on the site's grid (where the grid holds
    negative values, also negated and with random signs per value). A kernel that arrives
    later (a patient's seed) hands on activations anywhere in that grid, and the segment's interior
    grids, fixed in the base bundle, must hold what follows from them (see SEGMENT_PROBE_GAINS).
    ``kernel_calibration`` (windows, RR): the beats the kernels' interior grids are calibrated on
    instead (a patient's kernels: the patient's beats, which reach the kernel with activations the
    population's windows may never show).
    """
    import torch

    n_sites = len(model.sites)
    traces = [model.trace(x, rr, {}), model.trace(x, rr, model.default_active())]
    k_traces = traces
    if kernel_calibration is not None:
        kx, krr = kernel_calibration
        k_traces = [model.trace(kx, krr, {}), model.trace(kx, krr, model.default_active())]
    specs: list[ArtifactSpec] = []

    def batches(*tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        n = tensors[0].shape[0]
        return [tuple(t[i : i + batch] for t in tensors) for i in range(0, n, batch)]

    for i, seg in enumerate(model.segments):
        if i == 0:
            inputs: tuple[torch.Tensor, ...] = (x,)
            names = ["window"]
            in_grids: dict[int, QuantGrid] = {}
            calib = batches(x)
        else:
            lo, hi = grids[i - 1].real_range()
            base_in = traces[0][2 * (i - 1) + 1]
            probes = [(base_in * gain).clamp(lo, hi) for gain in probe_gains]
            if lo < 0:  # room below zero (site head-room): a residual may subtract, channel-wise or mixed
                gen = torch.Generator().manual_seed(i)
                flip = torch.randint(0, 2, base_in.shape, generator=gen).to(base_in.dtype) * 2 - 1
                probes += [(base_in * -gain).clamp(lo, hi) for gain in probe_gains]
                probes += [(base_in * flip * gain).clamp(lo, hi) for gain in probe_gains]
            site_in = torch.cat([t[2 * (i - 1) + 1] for t in traces] + probes)
            names = [f"site{i - 1}"]
            in_grids = {0: grids[i - 1]}
            if i == n_sites:
                rr_both = torch.cat([rr for _ in range(len(traces) + len(probes))])
                inputs = (site_in, rr_both)
                names.append("rr")
                calib = batches(site_in, rr_both)
            else:
                inputs = (site_in,)
                calib = batches(site_in)
        specs.append(
            ArtifactSpec(
                name=segment_name(i),
                kind="segment",
                module=seg,
                input_names=names,
                example_args=tuple(t[:2] for t in inputs),
                calibration=calib,
                input_grids=in_grids,
                output_grid=grids[i] if i < n_sites else logit_grid,
                in_site=i - 1 if i > 0 else None,
                out_site=i if i < n_sites else None,
            )
        )
    for k in model.kernels:
        site_in = torch.cat([t[2 * k.site] for t in k_traces])
        specs.append(
            ArtifactSpec(
                name=kernel_name(k),
                kind="kernel",
                module=k.module,
                input_names=[f"site{k.site}"],
                example_args=(site_in[:2],),
                calibration=batches(site_in),
                input_grids={0: grids[k.site]},
                output_grid=grids[k.site],
                site=k.site,
                seed_id=k.seed_id,
                blueprint=k.blueprint,
                bits=kernel_bits,
                in_site=k.site,
                out_site=k.site,
            )
        )
    return specs


@dataclass(frozen=True)
class ArtifactIO:
    """The grids an exported artifact actually carries at its first input and its output."""

    input_grid: QuantGrid | None
    output_grid: QuantGrid | None


def assert_cuts_match(specs: Sequence[ArtifactSpec], io: Mapping[str, ArtifactIO]) -> int:
    """Check that at every site all artifacts meeting there carry the same grid; return cuts checked."""
    per_site: dict[int, list[tuple[str, QuantGrid | None]]] = {}
    for spec in specs:
        got = io[spec.name]
        if spec.in_site is not None:
            per_site.setdefault(spec.in_site, []).append((f"{spec.name} input", got.input_grid))
        if spec.out_site is not None:
            per_site.setdefault(spec.out_site, []).append((f"{spec.name} output", got.output_grid))
    checked = 0
    for site, sides in sorted(per_site.items()):
        first_name, first = sides[0]
        for name, grid in sides[1:]:
            checked += 1
            if grid is None or first is None or grid != first:
                raise CutMismatchError(
                    f"site {site}: {name} carries {grid}, but {first_name} carries {first}: chaining would not be exact"
                )
    return checked
