"""The segmented executor: base segments in a chain, one seed slot at every site.

``segment_0 → [slot 0] → segment_1 → … → [slot N-1] → segment_N(h, rr) → logits``

Every artifact was loaded and allocated once at boot (:mod:`image`). What runs in each slot is one
immutable :class:`ChainConfig`; :meth:`SegmentedExecutor.swap` replaces it with a single reference
assignment, and :meth:`infer` reads the reference once per window, so a swap takes effect between two
windows and never in the middle of one.

A slot holds a *base* (the previous kernel, or nothing: the identity) and optionally a *candidate*
blended in with ``alpha``: ``(1 - alpha) * base(h) + alpha * candidate(h)``, computed on real values
and requantized onto the site's grid (:func:`tensors.blend`). With ``shadow`` set, the path without
the candidate also runs through the rest of the chain, so its prediction can be compared with the
live one; the shadow path never changes the output.

A candidate whose output is not finite is dropped for the window in which that happens (the base's
output goes on instead) and the fault is reported: classification never stops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from kasmina_edge.core.tensors import TensorInfo, blend
from kasmina_edge.runtime.image import Image, Kernel

_perf = time.perf_counter


@dataclass(frozen=True)
class SlotConfig:
    base: Kernel | None = None  # the path without the candidate: the previous kernel, or None (identity)
    candidate: Kernel | None = None
    alpha: float = 0.0
    shadow: bool = False
    # on trial: the candidate (at alpha) runs only in the shadow path; the output is the path without it,
    # so a kernel is judged before a single answer depends on it
    trial: bool = False

    @property
    def live(self) -> Kernel | None:
        """The kernel whose output dominates the slot now."""
        if self.candidate is not None and self.alpha > 0.0 and not self.trial:
            return self.candidate
        return self.base


@dataclass(frozen=True)
class ChainConfig:
    slots: tuple[SlotConfig, ...]
    version: int = 0

    def with_slot(self, site: int, slot: SlotConfig) -> ChainConfig:
        slots = list(self.slots)
        slots[site] = slot
        return ChainConfig(tuple(slots), self.version + 1)


@dataclass
class SiteObservation:
    """What one window showed at one site (real values of the tensor handed on)."""

    mean: np.ndarray | None = None  # per channel
    meansq: np.ndarray | None = None
    kernel_s: float = 0.0  # the candidate's invoke time
    base_s: float = 0.0  # the base kernel's invoke time
    relative_change: float | None = None  # |candidate(h) - h| / |h|
    fault: str | None = None  # "nan": the candidate's output was not finite (dropped for this window)


# int8 values per channel whose sum of squares (<= 128**2 each) stays below 2**24, exact in float32
_EXACT_INT8_ROWS = 2**24 // 128**2

_IDENTITY = SiteObservation()  # shared by every empty slot of every window: never written to


@dataclass
class WindowResult:
    logits: np.ndarray  # float32 (n_classes,)
    probs: np.ndarray
    label: int
    latency_s: float
    sites: list[SiteObservation]
    config_version: int
    finite: bool = True
    shadow_label: int | None = None
    shadow_probs: np.ndarray | None = None
    faults: list[tuple[int, str, str]] = field(default_factory=list)  # (site, kernel, code)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - np.max(z)
    e = np.exp(z)
    out: np.ndarray = (e / e.sum()).astype(np.float32)
    return out


def _softmax_list(values: list[float]) -> list[float]:
    """Softmax of a handful of logits in plain Python: cheaper than numpy's call overhead at this size."""
    m = max(values)
    e = [math.exp(v - m) for v in values]
    total = sum(e)
    return [v / total for v in e]


_LUTS: dict[tuple[float, int], np.ndarray] = {}


def _dequantize(info: TensorInfo, q: np.ndarray) -> np.ndarray:
    """``info.dequantize(q)``, for int8 tensors by a 256-entry table of the very values that arithmetic gives
    (``(q - zp) * float32(scale)`` rounded to float32): one gather instead of three array passes."""
    if info.scale is None or info.dtype != "int8" or not math.isfinite(info.scale):
        return info.dequantize(q)
    key = (info.scale, info.zero_point)
    lut = _LUTS.get(key)
    if lut is None:
        codes = np.arange(256, dtype=np.uint8).view(np.int8)  # table index = the int8 value's bit pattern
        lut = _LUTS.setdefault(key, info.dequantize(codes))
    return lut[np.asarray(q).view(np.uint8)]  # type: ignore[no-any-return]


def _channel_axis(t: TensorInfo, channels: int | None) -> int:
    """Which axis of a site tensor holds the channels (torch layout 1×C×L unless the manifest says else)."""
    if channels is not None:
        for axis in (1, len(t.shape) - 1):
            if 0 <= axis < len(t.shape) and t.shape[axis] == channels:
                return axis
    return 1 if len(t.shape) > 2 else len(t.shape) - 1


class SegmentedExecutor:
    """Runs one window at a time through the image's chain under the current :class:`ChainConfig`."""

    def __init__(self, image: Image, *, stats_every: int = 4) -> None:
        self.image = image
        self.stats_every = stats_every  # site statistics every n-th window (0: never); drift is an average anyway
        self._count = 0
        self.segments = image.segments
        self.n_sites = len(image.segments) - 1
        self._in = image.input
        self._rr = image.rr_input
        self._out = image.output
        self._site = image.site_tensors
        channels = {s.index: s.channels for s in image.manifest.sites}
        self._axes = [_channel_axis(t, channels.get(i)) for i, t in enumerate(self._site)]
        self._in_buf = np.zeros(self._in.shape, np.float32)
        self._in_inv = np.float32(1.0 / self._in.scale) if self._in.scale else None
        self._rr_inv = 1.0 / self._rr.scale if self._rr is not None and self._rr.scale else None
        self.config = ChainConfig(tuple(SlotConfig() for _ in range(self.n_sites)))
        self.whole = image.whole  # the fused base, run while every slot is empty (None: the chain always)
        # fused pieces of the base (runtime.image): segments 0..i as one model (input -> site i) and segments
        # i+1..N as one (site i -> logits); with one site live, 3 invokes instead of one per segment plus the slot
        self._prefix = dict(image.prefixes)
        self._suffix = dict(image.suffixes)
        self._span_for: ChainConfig | None = None
        self._grid_match: dict[tuple[str, int], bool] = {}
        self._span = (-1, -1)

    # ------------------------------------------------------------------ configuration

    def swap(self, config: ChainConfig) -> ChainConfig:
        """Make ``config`` the one the next window runs under (one reference assignment); returns the old."""
        old = self.config
        self.config = config
        return old

    def set_slot(self, site: int, slot: SlotConfig) -> ChainConfig:
        new = self.config.with_slot(site, slot)
        self.swap(new)
        return new

    def set_alpha(self, site: int, alpha: float) -> None:
        slot = self.config.slots[site]
        self.set_slot(site, replace(slot, alpha=float(min(max(alpha, 0.0), 1.0))))

    # ------------------------------------------------------------------ inputs

    def quantize_inputs(self, window: np.ndarray, rr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self._in_inv is not None and self._in.dtype == "int8":
            buf = self._in_buf  # in place: this runs once per beat
            np.multiply(np.asarray(window, dtype=np.float32).reshape(self._in.shape), self._in_inv, out=buf)
            np.rint(buf, out=buf)
            buf += self._in.zero_point
            np.minimum(buf, 127, out=buf)  # saturate (np.clip costs twice as much at this size)
            np.maximum(buf, -128, out=buf)
            x = buf.astype(np.int8)
        else:
            x = self._in.quantize(np.asarray(window, dtype=np.float32).reshape(self._in.shape))
        r = None
        if self._rr is not None:
            t = self._rr
            if self._rr_inv is not None and t.dtype == "int8":  # four values: plain Python is cheaper than numpy
                inv, zp = self._rr_inv, t.zero_point
                vals = [min(127, max(-128, round(v * inv) + zp)) for v in np.asarray(rr).reshape(-1).tolist()]
                r = np.array(vals, dtype=np.int8).reshape(t.shape)
            else:
                r = t.quantize(np.asarray(rr, dtype=np.float32).reshape(t.shape))
        return x, r

    # ------------------------------------------------------------------ running

    def _stats(self, site: int, h: np.ndarray, obs: SiteObservation) -> None:
        """Per-channel mean and mean square of the real values, from sums on the raw grid values."""
        t = self._site[site]
        axis = self._axes[site]
        a = np.asarray(h).reshape(t.shape)
        if t.dtype == "int8" and axis == len(t.shape) - 1 and a.size // t.shape[axis] < _EXACT_INT8_ROWS:
            # channels last (TFLite's NHWC): sums over rows in int32, no transposed copy. Integer sums below
            # 2**24 are exact in float32 too, so these are the very values the float path below gives.
            q = a.reshape(-1, t.shape[axis]).astype(np.int32)
            n = q.shape[0]
            s1 = q.sum(axis=0).astype(np.float32) / n
            s2 = np.einsum("ij,ij->j", q, q).astype(np.float32) / n
        else:
            if axis != 1:
                a = np.moveaxis(a, axis, 1)
            a = a.reshape(t.shape[axis], -1).astype(np.float32)
            n = a.shape[1]
            s1 = a.sum(axis=1) / n
            s2 = np.einsum("ij,ij->i", a, a) / n
        if t.scale is None:
            obs.mean, obs.meansq = s1, s2
            return
        zp, sc = float(t.zero_point), float(t.scale)
        obs.mean = (s1 - zp) * sc
        obs.meansq = (s2 - 2.0 * zp * s1 + zp * zp) * sc * sc

    def _slot(self, site: int, slot: SlotConfig, h: np.ndarray, obs: SiteObservation) -> tuple[np.ndarray, np.ndarray]:
        """(what the slot hands on, what the path without the candidate would hand on)."""
        site_t = self._site[site]
        hb = h
        if slot.base is not None:
            t0 = _perf()
            hb = slot.base.model.run(h)
            obs.base_s = _perf() - t0
        out = hb
        cand = slot.candidate
        if cand is not None and (slot.alpha > 0.0 or slot.shadow):
            t0 = _perf()
            hk = cand.model.run(h)
            obs.kernel_s = _perf() - t0
            k_info = cand.model.outputs[0]
            on_grid = self._on_site_grid(cand, site)
            if on_grid:  # int8 on the site's own grid: finite by construction, the change from the raw values
                obs.relative_change = self._change_on_grid(site_t, h, hk)
            else:
                real_k = _dequantize(k_info, hk)
                if (k_info.scale is None or k_info.dtype != "int8") and not np.all(np.isfinite(real_k)):
                    obs.fault = "nan"
                    return hb, hb
                real_h = _dequantize(site_t, h).reshape(-1)
                diff = real_k.reshape(-1) - real_h
                # np.linalg.norm of a float32 vector, without its dispatch: sqrt(x . x) in float32
                norm = float(np.sqrt(real_h.dot(real_h)))
                obs.relative_change = float(np.sqrt(diff.dot(diff))) / max(norm, 1e-6)
            if slot.alpha >= 1.0 and on_grid:
                out = hk  # what blend() gives at alpha 1 on the same grid, without its checks
            elif slot.alpha > 0.0:
                b_info = slot.base.model.outputs[0] if slot.base is not None else site_t
                out = blend(hb, b_info, hk, k_info, slot.alpha, site_t)
            if slot.trial:
                return hb, out  # the output goes on without the candidate; the shadow path carries it
        return out, hb

    def _on_site_grid(self, kernel: Kernel, site: int) -> bool:
        """Whether the kernel gives int8 on its site's own grid (the build forces it so); once per kernel."""
        key = (kernel.name, site)
        known = self._grid_match.get(key)
        if known is None:
            k_info, site_t = kernel.model.outputs[0], self._site[site]
            known = self._grid_match[key] = (
                k_info.dtype == "int8" and k_info.scale is not None and math.isfinite(k_info.scale)
                and k_info.shape == site_t.shape and k_info.same_grid(site_t)
            )  # fmt: skip
        return known

    @staticmethod
    def _change_on_grid(t: TensorInfo, h: np.ndarray, hk: np.ndarray) -> float:
        """|k(h) - h| / |h| in real values, both int8 on grid ``t``: from the raw values in float64 (integer sums
        of squares below 2**53: exact), rather than two dequantized float32 copies."""
        hi = h.astype(np.float64).reshape(-1)
        d = hk.astype(np.float64).reshape(-1)
        d -= hi
        hi -= t.zero_point
        scale = float(np.float32(t.scale))
        norm = scale * math.sqrt(hi.dot(hi))
        return scale * math.sqrt(d.dot(d)) / max(norm, 1e-6)

    def _tail(self, site: int, h: np.ndarray, config: ChainConfig, rr_q: np.ndarray | None) -> np.ndarray:
        """From the tensor handed on at ``site`` to the logits (later slots as configured, no stats)."""
        suffix = self._suffix.get(site)
        if suffix is not None and self._live_span(config)[1] <= site:  # nothing live after it: one invoke
            return suffix.run(h, rr_q) if rr_q is not None else suffix.run(h)
        for i in range(site + 1, self.n_sites + 1):
            seg = self.segments[i]
            if i == self.n_sites:
                return seg.run(h, rr_q) if rr_q is not None else seg.run(h)
            h = seg.run(h)
            h, _ = self._slot(i, replace(config.slots[i], shadow=False), h, SiteObservation())
        raise AssertionError("a chain ends with its last segment")

    def _first(self, x_q: np.ndarray, rr_q: np.ndarray | None) -> np.ndarray:
        """The first segment; in a chain without sites (a model exported whole) it also takes the RR input."""
        if self.n_sites == 0 and rr_q is not None:
            return self.segments[0].run(x_q, rr_q)
        return self.segments[0].run(x_q)

    def output_int8(self, window: np.ndarray, rr: np.ndarray) -> np.ndarray:
        """The chain's raw output for one window under the current configuration (parity checks)."""
        config = self.config
        x_q, rr_q = self.quantize_inputs(window, rr)
        h = self._first(x_q, rr_q)
        for i, slot in enumerate(config.slots):
            h, _ = self._slot(i, replace(slot, shadow=False), h, SiteObservation())  # a trial slot hands on its base
            seg = self.segments[i + 1]
            h = seg.run(h, rr_q) if i + 1 == self.n_sites and rr_q is not None else seg.run(h)
        return h

    def infer(self, window: np.ndarray, rr: np.ndarray) -> WindowResult:
        """One beat window (float, the model's input shape) and its RR features → class probabilities."""
        t_start = _perf()
        config = self.config  # read once: a swap lands between windows, never inside one
        self._count += 1
        stats = self.stats_every > 0 and self._count % self.stats_every == 0
        x_q, rr_q = self.quantize_inputs(window, rr)
        observations: list[SiteObservation] = []
        faults: list[tuple[int, str, str]] = []
        shadow_from: tuple[int, np.ndarray] | None = None
        first, final = self._live_span(config)
        if first < 0 and self.whole is not None and not stats:
            # nothing at any site and no statistics due: the fused base gives the chain's output in one invoke
            h = self.whole.run(x_q, rr_q) if rr_q is not None else self.whole.run(x_q)
            return self._result(h, [_IDENTITY] * self.n_sites, config, faults, None, rr_q, t_start)
        start = 0
        prefix = self._prefix.get(first) if not stats else None
        if prefix is not None:  # the empty sites before the first live one: one invoke up to its tensor
            h = prefix.run(x_q)
            observations.extend([_IDENTITY] * first)
            start = first
        else:
            h = self._first(x_q, rr_q)
        last = self.n_sites - 1
        segments = self.segments
        slots = config.slots
        for i in range(start, self.n_sites):
            slot = slots[i]
            if slot.base is None and slot.candidate is None and not stats:
                observations.append(_IDENTITY)  # an empty slot: nothing to run, nothing to observe
            else:
                obs = SiteObservation()
                h, h_without = self._slot(i, slot, h, obs)
                if obs.fault is not None and slot.candidate is not None:
                    faults.append((i, slot.candidate.name, obs.fault))
                elif (slot.shadow or slot.trial) and shadow_from is None:
                    shadow_from = (i, h_without)
                if stats:
                    self._stats(i, h, obs)
                observations.append(obs)
            suffix = self._suffix.get(i) if i == final and not stats else None
            if suffix is not None:  # the empty sites after the last live one: one invoke to the logits
                h = suffix.run(h, rr_q) if rr_q is not None else suffix.run(h)
                observations.extend([_IDENTITY] * (last - i))
                break
            h = segments[i + 1].run(h, rr_q) if i == last and rr_q is not None else segments[i + 1].run(h)
        return self._result(h, observations, config, faults, shadow_from, rr_q, t_start)

    def _live_span(self, config: ChainConfig) -> tuple[int, int]:
        """(first, last) site whose slot holds a kernel, (-1, -1) when none does; once per configuration."""
        if self._span_for is not config:
            held = [i for i, s in enumerate(config.slots) if s.base is not None or s.candidate is not None]
            self._span = (held[0], held[-1]) if held else (-1, -1)
            self._span_for = config
        return self._span

    def _result(
        self,
        h: np.ndarray,
        observations: list[SiteObservation],
        config: ChainConfig,
        faults: list[tuple[int, str, str]],
        shadow_from: tuple[int, np.ndarray] | None,
        rr_q: np.ndarray | None,
        t_start: float,
    ) -> WindowResult:
        """The logits' probabilities and label, and the shadow path's when a slot asked for one."""
        out = self._out
        raw = h.reshape(-1).tolist()
        if out.scale is not None:
            values = [(q - out.zero_point) * out.scale for q in raw]
        else:
            values = [float(v) for v in raw]
        finite = all(math.isfinite(v) for v in values)
        logits = np.array(values, dtype=np.float32)
        if finite:
            p = _softmax_list(values)
            probs = np.array(p, dtype=np.float32)
            label = max(range(len(values)), key=values.__getitem__)
        else:
            probs, label = np.full(logits.shape, np.nan, np.float32), -1
        result = WindowResult(
            logits=logits,
            probs=probs,
            label=label,
            latency_s=0.0,
            sites=observations,
            config_version=config.version,
            finite=finite,
            faults=faults,
        )
        if shadow_from is not None:
            site, h_without = shadow_from
            shadow_q = self._tail(site, h_without, config, rr_q)
            shadow_logits = self._out.dequantize(shadow_q).reshape(-1)
            if np.all(np.isfinite(shadow_logits)):
                result.shadow_probs = softmax(shadow_logits)
                result.shadow_label = int(np.argmax(shadow_logits))
        result.latency_s = _perf() - t_start
        return result
