"""Benchmark the chunked seed layer: per-seed loop, vectorised reference, torch.compile, fused Triton.

Run on a CUDA GPU (from the repo root):

    PYTHONPATH=. python3 tools/bench_seed_layer.py --json runs/bench_seed_layer.json

For each (B, D, S) shape, stage occupancy (mixed thirds dormant/blending/fossilized, shuffled; or
all dormant), rank r and dtype it times, side by side in one run:

* ``loop``: a per-seed Python loop (one small matmul chain per seed). It is run in full only when
  S is small (``--loop-full-max``); otherwise on ``--loop-seeds`` seeds and scaled by S/seeds —
  the table marks those figures ``~`` (extrapolated).
* ``ref``: the vectorised PyTorch reference; ``compile``: ``torch.compile`` of it (static shapes);
* ``triton``: the fused kernel with telemetry, ``notel`` without, ``eager``: the same kernel
  launched from Python each call (host launch cost included);
* ``copy``: a device-to-device copy of the same tensor (the floor for any kernel of this size).

Times are medians of CUDA-event timings after warm-up, of CUDA-graph replays (so launch gaps do
not count) over ``K`` rotating input sets when one set would fit in L2. Bandwidth counts the
bytes the layer must move: x read once, out written once, the live seeds' adapters read once,
telemetry written once; it is compared with a large device-to-device copy measured in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kasmina_edge.host.kernels.reference import (
    BLENDING_CODE,
    DORMANT_CODE,
    FOSSILIZED_CODE,
    seed_layer_reference,
)

MAIN_SHAPES = [(1024, 4096, 1024), (4096, 4096, 4096), (8192, 8192, 2048)]
OTHER_SHAPES = [(65536, 256, 64), (4096, 2048, 128)]
DEAD_EPS = 1e-6
DEVICE = "cuda"  # a CPU dry run of the script's logic patches this (and the timers)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Case:
    n: int
    d: int
    s: int
    occupancy: str  # "mixed" | "dormant"
    r: int
    dtype: str

    @property
    def c(self) -> int:
        return self.d // self.s

    @property
    def label(self) -> str:
        return f"({self.n},{self.d},{self.s}) {self.occupancy} r={self.r} {self.dtype}"


@dataclass
class Result:
    case: Case
    rotation_sets: int
    bytes_moved: int
    roofline_us: float
    times_us: dict[str, float] = field(default_factory=dict)
    loop_extrapolated: bool = False
    max_rel_err: float = float("nan")
    tel_minmax_abs_err: float = float("nan")  # min/max pick stored values: equal up to output rounding
    tel_dead_count_diff: float = float("nan")  # bf16: a value may round to zero on one side only
    tel_sum_rel_err: float = float("nan")
    tile: dict[str, Any] = field(default_factory=dict)  # the autotuned (rows, cols) per thread
    notes: list[str] = field(default_factory=list)

    def derived(self, copy_gbps: float) -> dict[str, float]:
        t = self.times_us
        out: dict[str, float] = {}
        if "triton" in t:
            out["triton_gbps"] = self.bytes_moved / t["triton"] / 1e3
            out["bw_pct_of_copy"] = 100 * out["triton_gbps"] / copy_gbps
            if "copy" in t:
                out["pct_of_same_size_copy"] = 100 * t["copy"] / t["triton"]
            if "compile" in t:
                out["speedup_vs_compile"] = t["compile"] / t["triton"]
            if "ref" in t:
                out["speedup_vs_ref"] = t["ref"] / t["triton"]
            if "loop" in t:
                out["speedup_vs_loop"] = t["loop"] / t["triton"]
            if "notel" in t:
                out["telemetry_overhead_pct"] = 100 * (t["triton"] / t["notel"] - 1)
        return out


# ---- inputs ------------------------------------------------------------------------------------


def make_inputs(case: Case, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    dt = DTYPES[case.dtype]
    s, c, r = case.s, case.c, case.r
    x = torch.randn(case.n, case.d, generator=gen, device=DEVICE).to(dt)
    if case.occupancy == "dormant":
        stage = torch.full((s,), DORMANT_CODE, dtype=torch.long)
    else:
        codes = torch.tensor([DORMANT_CODE, BLENDING_CODE, FOSSILIZED_CODE]).repeat(s // 3 + 1)[:s]
        stage = codes[torch.randperm(s, generator=torch.Generator().manual_seed(s))]
    stage = stage.to(DEVICE)
    alpha = torch.rand(s, generator=gen, device=DEVICE)
    w_down = (torch.randn(s, c, r, generator=gen, device=DEVICE) / math.sqrt(c)).to(dt)
    w_up = (torch.randn(s, r, c, generator=gen, device=DEVICE) / math.sqrt(r)).to(dt)
    return x, stage, alpha, w_down, w_up


def bytes_moved(case: Case, stage: torch.Tensor) -> int:
    eb = DTYPES[case.dtype].itemsize
    live = int((stage != DORMANT_CODE).sum())
    return (
        2 * case.n * case.d * eb  # x in, out
        + live * 2 * case.c * case.r * eb  # live adapters
        + case.s * 5 * 4  # telemetry out
        + case.s * (stage.element_size() + 4)  # stage and alpha
    )


# ---- timing ------------------------------------------------------------------------------------


def time_graph(fn: Callable[[int], object], k: int, reps: int, warmup: int = 3) -> float:
    """Median µs per call of fn(i) over i = 0..k-1, timed as CUDA-graph replays with events."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            for i in range(k):
                fn(i)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(k):
            fn(i)
    graph.replay()
    torch.cuda.synchronize()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)
    ]
    for start, end in events:
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    med_ms = statistics.median(a.elapsed_time(b) for a, b in events)
    del graph
    return 1e3 * med_ms / k


def time_eager(fn: Callable[[int], object], k: int, reps: int, warmup: int = 2) -> float:
    """Median µs per call, each call launched from Python (host launch cost included)."""
    for _ in range(warmup):
        for i in range(k):
            fn(i)
    torch.cuda.synchronize()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)
    ]
    for start, end in events:
        start.record()
        for i in range(k):
            fn(i)
        end.record()
    torch.cuda.synchronize()
    return 1e3 * statistics.median(a.elapsed_time(b) for a, b in events) / k


def copy_bandwidth_gbps(nbytes: int = 2 << 30, reps: int = 20) -> float:
    """Device-to-device copy bandwidth, counting bytes read plus bytes written."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEVICE).uniform_()
    dst = torch.empty_like(src)
    us = time_eager(lambda _i: dst.copy_(src), 1, reps, warmup=3)
    return 2 * nbytes / us / 1e3


# ---- the per-seed loop -------------------------------------------------------------------------


def seed_loop(
    x: torch.Tensor,
    stages: list[int],
    alphas: list[float],
    w_down: torch.Tensor,
    w_up: torch.Tensor,
    seeds: range,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a plain implementation does: one small matmul chain and telemetry per seed."""
    c = w_down.shape[1]
    out = torch.empty_like(x)
    tels = []
    for i in seeds:
        xs = x[:, i * c : (i + 1) * c]
        if stages[i] == DORMANT_CODE:
            y = xs
        else:
            a = 1.0 if stages[i] == FOSSILIZED_CODE else alphas[i]
            y = xs + a * (torch.relu(xs @ w_down[i]) @ w_up[i])
        out[:, i * c : (i + 1) * c] = y
        f = y.float()
        tels.append(
            torch.stack([f.sum(), (f * f).sum(), f.min(), f.max(), (f.abs() <= DEAD_EPS).sum().float()])
        )
    return out, torch.stack(tels)


# ---- one case ----------------------------------------------------------------------------------


def rotation_sets(case: Case, l2_bytes: int, cap: int = 8) -> int:
    per_call = 2 * case.n * case.d * DTYPES[case.dtype].itemsize
    return max(1, min(cap, math.ceil(3 * l2_bytes / per_call)))


def run_case(
    case: Case, args: argparse.Namespace, l2_bytes: int, compiled: Callable[..., Any] | None
) -> Result:
    from kasmina_edge.host.kernels.triton_seed_layer import seed_layer_triton

    gen = torch.Generator(device=DEVICE).manual_seed(hash((case.n, case.d, case.s, case.r)) & 0xFFFF)
    k = rotation_sets(case, l2_bytes)
    sets = [make_inputs(case, gen) for _ in range(k)]
    res = Result(case, k, bytes_moved(case, sets[0][1]), 0.0)
    reps = args.reps

    def tri(i: int, telemetry: bool = True) -> object:
        return seed_layer_triton(*sets[i], DEAD_EPS, telemetry)

    # Correctness on this case's own inputs before any timing.
    out, tel = tri(0)
    ref_out, ref_tel = seed_layer_reference(*sets[0], DEAD_EPS, True)
    assert tel is not None and ref_tel is not None
    res.max_rel_err = float((out.float() - ref_out.float()).abs().max() / ref_out.float().abs().max())
    res.tel_minmax_abs_err = float((tel[:, 2:4] - ref_tel[:, 2:4]).abs().max())
    res.tel_dead_count_diff = float((tel[:, 4] - ref_tel[:, 4]).abs().max())
    # sumsq relative to itself; sum relative to sqrt(n·sumsq), the size of its rounding noise
    sq = ref_tel[:, 1].clamp_min(1e-30)
    res.tel_sum_rel_err = float(
        torch.maximum(
            (tel[:, 1] - ref_tel[:, 1]).abs() / sq, (tel[:, 0] - ref_tel[:, 0]).abs() / (sq * case.n).sqrt()
        ).max()
    )
    del out, tel, ref_out, ref_tel

    res.times_us["triton"] = time_graph(tri, k, reps)
    res.times_us["notel"] = time_graph(lambda i: tri(i, False), k, reps)
    from kasmina_edge.host.kernels import triton_seed_layer as tsl

    x0, w0 = sets[0][0], sets[0][3]
    for tel in (True, False):
        key = (
            x0.device.index,
            1 << max(case.n - 1, 0).bit_length(),
            case.s,
            case.c,
            case.r,
            x0.dtype,
            w0.dtype,
            tel,
        )
        res.tile["telemetry" if tel else "notel"] = tsl._TILE_CHOICE.get(key)
    res.times_us["eager"] = time_eager(tri, k, reps)
    outs = [torch.empty_like(s[0]) for s in sets]
    res.times_us["copy"] = time_graph(lambda i: outs[i].copy_(sets[i][0]), k, reps)
    outs.clear()
    res.times_us["ref"] = time_graph(lambda i: seed_layer_reference(*sets[i], DEAD_EPS, True), k, reps)
    if compiled is not None:
        try:
            res.times_us["compile"] = time_graph(lambda i: compiled(*sets[i]), k, reps)
        except Exception as exc:  # noqa: BLE001 - a compile failure is a finding, not a crash
            res.notes.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if args.loop and case.r == 4 and case.dtype == "fp32":
        x, stage, alpha, wd, wu = sets[0]
        stages, alphas = stage.tolist(), alpha.tolist()
        full = case.s <= args.loop_full_max
        seeds = range(case.s) if full else range(min(args.loop_seeds, case.s))
        us = time_eager(lambda _i: seed_loop(x, stages, alphas, wd, wu, seeds), 1, 3, warmup=1)
        res.times_us["loop"] = us * case.s / len(seeds)
        res.loop_extrapolated = not full
    torch.cuda.synchronize()
    return res


def make_compiled() -> Callable[..., Any]:
    import torch._dynamo

    cfg = torch._dynamo.config
    for name in (
        "cache_size_limit",
        "recompile_limit",
        "accumulated_cache_size_limit",
        "accumulated_recompile_limit",
    ):
        if hasattr(cfg, name):
            setattr(cfg, name, 256)

    def ref_with_telemetry(
        x: torch.Tensor, stage: torch.Tensor, alpha: torch.Tensor, wd: torch.Tensor, wu: torch.Tensor
    ):  # type: ignore[no-untyped-def]
        return seed_layer_reference(x, stage, alpha, wd, wu, DEAD_EPS, True)

    return torch.compile(ref_with_telemetry, dynamic=False)


# ---- kernel configuration sweep ----------------------------------------------------------------

# name -> (seed_layer_triton keywords, telemetry). "auto" is what the dispatcher runs (tile tuned per
# shape); "no-reduce" skips the final telemetry fold (diagnostic: the cost of the tail); "notel"
# drops telemetry entirely.
SWEEP_CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    "auto": ({}, True),
    "rpt4": ({"rows_per_thread": 4}, True),
    "rpt8": ({"rows_per_thread": 8}, True),
    "rpt4 cpt2": ({"rows_per_thread": 4, "cols_per_thread": 2}, True),
    "no-reduce": ({"_reduce": False}, True),
    "notel": ({}, False),
}


def sweep_cases() -> list[Case]:
    small, mid, big = MAIN_SHAPES
    cases = [
        Case(*small, "mixed", 4, "fp32"),
        Case(*small, "dormant", 4, "fp32"),
        Case(*small, "mixed", 8, "fp32"),
    ]
    cases += [
        Case(*mid, "mixed", 4, "fp32"),
        Case(*mid, "dormant", 4, "fp32"),
        Case(*mid, "mixed", 8, "fp32"),
    ]
    cases += [Case(*mid, "dormant", 16, "fp32")]
    cases += [
        Case(*big, "mixed", 4, "fp32"),
        Case(*big, "dormant", 4, "fp32"),
        Case(*big, "mixed", 8, "fp32"),
    ]
    cases += [
        Case(*small, "mixed", 4, "bf16"),
        Case(*mid, "mixed", 8, "bf16"),
        Case(*big, "mixed", 8, "bf16"),
    ]
    return cases


def sweep(cases: list[Case], l2_bytes: int, reps: int) -> list[dict[str, Any]]:
    from kasmina_edge.host.kernels.triton_seed_layer import seed_layer_triton

    rows = []
    for case in cases:
        gen = torch.Generator(device=DEVICE).manual_seed(1)
        k = rotation_sets(case, l2_bytes)
        sets = [make_inputs(case, gen) for _ in range(k)]
        nbytes = bytes_moved(case, sets[0][1])
        timings = []
        for name, (kw, telemetry) in SWEEP_CONFIGS.items():

            def fn(
                i: int,
                kw: dict[str, Any] = kw,
                tel: bool = telemetry,
                sets: list[tuple[torch.Tensor, ...]] = sets,
            ) -> object:
                return seed_layer_triton(*sets[i], DEAD_EPS, tel, **kw)

            us = time_graph(fn, k, reps)
            timings.append(
                {"name": name, "config": kw, "telemetry": telemetry, "us": us, "gbps": nbytes / us / 1e3}
            )
        line = "  ".join(f"{t['name']}={t['us']:.1f}" for t in timings)
        print(f"sweep {case.label}: {line}", flush=True)
        rows.append({"case": asdict(case), "all": timings})
        sets.clear()
        torch.cuda.empty_cache()
    return rows


# ---- output ------------------------------------------------------------------------------------


def fmt_us(v: float | None, approx: bool = False) -> str:
    if v is None or math.isnan(v):
        return "—"
    s = f"{v / 1e3:.1f} ms" if v >= 1e4 else f"{v:.1f}"
    return ("~" if approx else "") + s


COLUMNS = [
    "case",
    "loop µs",
    "ref µs",
    "compile µs",
    "triton µs",
    "notel µs",
    "eager µs",
    "copy µs",
    "roofline µs",
    "% copy BW",
    "× compile",
    "tel +%",
    "rel err",
]


def table_rows(results: list[Result], copy_gbps: float) -> list[list[str]]:
    rows = []
    for r in results:
        t, d = r.times_us, r.derived(copy_gbps)
        rows.append(
            [
                r.case.label,
                fmt_us(t.get("loop"), r.loop_extrapolated),
                fmt_us(t.get("ref")),
                fmt_us(t.get("compile")),
                fmt_us(t.get("triton")),
                fmt_us(t.get("notel")),
                fmt_us(t.get("eager")),
                fmt_us(t.get("copy")),
                fmt_us(r.roofline_us),
                f"{d.get('bw_pct_of_copy', float('nan')):.0f}%",
                f"{d['speedup_vs_compile']:.1f}×" if "speedup_vs_compile" in d else "—",
                f"{d.get('telemetry_overhead_pct', float('nan')):+.1f}",
                f"{r.max_rel_err:.1e}",
            ]
        )
    return rows


def print_table(title: str, rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
        print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        return
    table = Table(title=title)
    for c in COLUMNS:
        table.add_column(c, justify="left" if c == "case" else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=220).print(table)


def goals(results: list[Result], copy_gbps: float) -> list[str]:
    lines = []
    bw = [r for r in results if r.case.r <= 8 and (r.case.n, r.case.d, r.case.s) in MAIN_SHAPES]
    for r in bw:
        pct = r.derived(copy_gbps).get("bw_pct_of_copy", 0.0)
        if pct < 70:
            lines.append(f"below 70% of copy BW: {r.case.label}: {pct:.0f}%")
    for r in results:
        d = r.derived(copy_gbps)
        if (
            (r.case.n, r.case.d, r.case.s) in MAIN_SHAPES
            and "speedup_vs_compile" in d
            and d["speedup_vs_compile"] < 8
        ):
            lines.append(f"below 8× torch.compile: {r.case.label}: {d['speedup_vs_compile']:.1f}×")
        if d.get("telemetry_overhead_pct", 0.0) > 10:
            lines.append(f"telemetry over 10%: {r.case.label}: {d['telemetry_overhead_pct']:+.1f}%")
    return lines


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def parse_ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=Path("runs/bench_seed_layer.json"))
    p.add_argument("--ranks", type=parse_ints, default=[4, 8, 16])
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--occupancy", default="mixed,dormant")
    p.add_argument("--main-only", action="store_true", help="only the issue's three shapes")
    p.add_argument(
        "--compile-ranks", type=parse_ints, default=[4, 8], help="ranks that get a torch.compile column"
    )
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-loop", dest="loop", action="store_false")
    p.add_argument("--loop-seeds", type=int, default=128, help="seeds timed when the loop is extrapolated")
    p.add_argument(
        "--loop-full-max", type=int, default=1024, help="run the loop over every seed up to this S"
    )
    p.add_argument("--reps", type=int, default=25)
    p.add_argument("--sweep", action="store_true", help="also time a grid of kernel launch configurations")
    p.add_argument("--sweep-only", action="store_true", help="only the sweep")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_seed_layer: needs a CUDA GPU (run it through the device machine)", file=sys.stderr)
        return 2
    import triton

    props = torch.cuda.get_device_properties(0)
    l2 = int(getattr(props, "L2_cache_size", 50 << 20))
    t0 = time.perf_counter()
    copy_gbps = copy_bandwidth_gbps()
    print(f"{props.name}: copy bandwidth {copy_gbps:.0f} GB/s (read + write), L2 {l2 >> 20} MiB", flush=True)

    shapes = MAIN_SHAPES + ([] if args.main_only else OTHER_SHAPES)
    dtypes = [d for d in args.dtypes.split(",") if d]
    occs = [o for o in args.occupancy.split(",") if o]
    payload: dict[str, Any] = {
        "device": props.name,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "copy_gbps": copy_gbps,
        "l2_bytes": l2,
        "method": "medians of CUDA-event timings of CUDA-graph replays after warm-up; rotating input sets",
    }
    if args.sweep or args.sweep_only:
        payload["sweep"] = sweep(sweep_cases(), l2, reps=max(5, args.reps // 2))
        write_json(args.json, payload)
        if args.sweep_only:
            return 0

    compiled = None if args.no_compile else make_compiled()
    results: list[Result] = []
    for shape in shapes:
        for dt in dtypes:
            for r in args.ranks:
                for occ in occs:
                    case = Case(*shape, occ, r, dt)
                    use_compile = compiled if (r in args.compile_ranks and (dt == "fp32" or r == 4)) else None
                    res = run_case(case, args, l2, use_compile)
                    torch.cuda.empty_cache()
                    res.roofline_us = res.bytes_moved / copy_gbps / 1e3
                    results.append(res)
                    print(f"{case.label}: triton {res.times_us['triton']:.1f} µs", flush=True)
        payload["results"] = [
            {**asdict(r), "derived": r.derived(copy_gbps)} for r in results
        ]  # partial results survive a timeout
        write_json(args.json, payload)
    payload["goals_missed"] = goals(results, copy_gbps)
    payload["wall_s"] = time.perf_counter() - t0
    write_json(args.json, payload)
    for shape in shapes:
        rows = table_rows([r for r in results if (r.case.n, r.case.d, r.case.s) == shape], copy_gbps)
        print_table(
            f"seed layer (B, D, S) = {shape}, c = {shape[1] // shape[2]} — copy BW {copy_gbps:.0f} GB/s", rows
        )
    print("goals missed:" if payload["goals_missed"] else "all goals met")
    for line in payload["goals_missed"]:
        print("  " + line)
    print(f"wrote {args.json} ({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
