"""Benchmark of the on-device runtime and the emulator, side by side in one run.

    .venv/bin/python tools/bench_runtime.py --workdir DEMO_WORKDIR [--onnx-bundle X86.kedge] [--json runs/bench_runtime.json]

DEMO_WORKDIR is what `kasmina-edge demo --workdir` (or its host and build steps) leaves: host/base.pt,
host/seeds, keys/, build/demo-edgetpu.kedge. What it measures (one thread, one core):

1. throughput per backend, single lead, as a multiple of real time: the model alone (beats precomputed), the
   device loop as the bundle boots it, and the device loop with a kernel live throughout (detection, windows,
   controller, chain, health, lifecycle, event records); CPU time of this thread (``time.thread_time``: the
   machine may be shared) and wall time; with ``--profile``, where the kernel-live loop's time goes
   (tools/bench_runtime_loop.py);
2. segmented vs whole: the same model exported in one piece (same grids at its inputs and logits), run through
   the same executor on the same backend, interleaved with the chain: no kernel, no kernel with the fused base,
   one kernel live (tools/bench_runtime_chain.py);
3. decision + swap latency p50/p99 on the host (every decision of the EMG-switch runs), and the roofline
   estimate per edge profile;
4. a swap (one reference assignment) vs the naive way (building the interpreter from the model file);
5-8. whole streams through emulated devices: MIT-BIH 100, the EMG switch, false activations on clean DS1
   records, DS1 records in real NSTDB muscle noise (tools/bench_runtime_devices.py);
9. ExecuTorch side by side (XNNPACK fp32 and int8, its Python runtime) with LiteRT, our chain and ONNX Runtime,
   per window and per device loop: run in ``.venv-et`` (tools/bench_executorch_venv.sh), skipped with the
   reason when that venv is missing (tools/bench_runtime_executorch.py);
10. footprint of the device install (no extras): disk per package, runtime import time, RSS while streaming
   (tools/bench_runtime_footprint.py; ``--device-venv`` reuses one, else a fresh venv is made).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from bench_runtime_chain import default_size_images, export_whole, segmented_vs_whole  # noqa: E402
from bench_runtime_devices import emulator_sections  # noqa: E402
from bench_runtime_footprint import footprint  # noqa: E402
from bench_runtime_loop import profile_loop, throughput  # noqa: E402

from kasmina_edge.contracts.bundle import Bundle, read_bundle  # noqa: E402
from kasmina_edge.core.catalog import list_hardware  # noqa: E402
from kasmina_edge.ecg.sources import open_source  # noqa: E402
from kasmina_edge.ecg.windowing import Beat, StreamingBeatizer  # noqa: E402
from kasmina_edge.profiler.estimate import artifact_cost, estimate_chain, estimate_decision  # noqa: E402
from kasmina_edge.runtime.backends import Backend, LiteRtBackend, MicroBackend, OrtBackend  # noqa: E402
from kasmina_edge.runtime.executor import SegmentedExecutor, SlotConfig  # noqa: E402
from kasmina_edge.runtime.image import load_image  # noqa: E402

console = Console()
DATA = REPO.parent / "shared" / "data"
ET_PYTHON = REPO / ".venv-et" / "bin" / "python"


# ------------------------------------------------------------------------------------------ helpers


def _signal() -> tuple[Any, str]:
    rec = DATA / "mitdb" / "100"
    if rec.with_suffix(".hea").exists():
        return open_source(f"wfdb:{rec}", seconds=300.0), "MIT-BIH 100, first 5 min"
    return open_source("synthetic:clean?minutes=5"), "synthetic clean, 5 min"


def _beats(source: Any) -> list[Beat]:
    bz = StreamingBeatizer(source.fs)
    out: list[Beat] = []
    for ch in source.chunks(180):
        out += bz.process(ch)
    return out + bz.flush()


def _backends(tflite: Bundle, onnx: Bundle | None) -> list[tuple[str, Bundle, Backend]]:
    out: list[tuple[str, Bundle, Backend]] = [
        ("litert (xnnpack)", tflite, LiteRtBackend("xnnpack")),
        ("litert (builtin)", tflite, LiteRtBackend("builtin")),
    ]
    try:
        out.append(("tflite-micro", tflite, MicroBackend()))
    except Exception as exc:  # not installed / not x86-64
        console.print(f"[yellow]tflite-micro skipped:[/] {exc}")
    if onnx is not None:
        out.append(("onnxruntime", onnx, OrtBackend()))
    return out


# ------------------------------------------------------------------------------------------ 4. swap vs naive


def swap_vs_naive(backends: list[tuple[str, Bundle, Backend]], repeats: int = 2000) -> list[dict[str, Any]]:
    rows = []
    for name, bundle, backend in backends:
        image = load_image(bundle, backend)
        if not image.kernels:
            continue
        kernel = next(iter(image.kernels.values()))
        ex = SegmentedExecutor(image)
        on, off = SlotConfig(candidate=kernel, alpha=1.0), SlotConfig()
        t0 = time.perf_counter()
        for _ in range(repeats // 2):
            ex.set_slot(kernel.site, on)
            ex.set_slot(kernel.site, off)
        swap = (time.perf_counter() - t0) / repeats
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ("kernel.onnx" if kernel.entry.format.startswith("onnx") else "kernel.tflite")
            path.write_bytes(bundle.artifact_bytes(kernel.name))
            times = []
            for _ in range(60):
                t0 = time.perf_counter()
                model = backend.load(path.read_bytes(), kernel.name)  # read the file, build, allocate
                model.run(np.zeros(model.inputs[0].shape, model.inputs[0].numpy_dtype))
                times.append(time.perf_counter() - t0)
        naive = statistics.median(times)
        rows.append({"backend": name, "kernel": kernel.name, "swap_us": 1e6 * swap, "naive_us": 1e6 * naive,
                     "speedup": naive / swap})
    return rows


# ------------------------------------------------------------------------------------------ 9./10. peers, footprint


def executorch_side_by_side(workdir: Path, onnx_path: Path | None) -> dict[str, Any]:
    """tools/bench_runtime_executorch.py in .venv-et; {"skipped": reason} when it cannot run here."""
    if not ET_PYTHON.exists():
        return {"skipped": f"no {ET_PYTHON.parent.parent.name} (bash tools/bench_executorch_venv.sh makes it: the "
                           "project venv plus executorch 1.5.1, whose wheel pins torchao 0.18 and no torch)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "et.json"
        cmd = [str(ET_PYTHON), str(REPO / "tools" / "bench_runtime_executorch.py"), "--workdir", str(workdir),
               "--json", str(out)]
        if onnx_path is not None and onnx_path.exists():
            cmd += ["--onnx-bundle", str(onnx_path)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not out.exists():
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            return {"skipped": f"ExecuTorch run failed (exit {res.returncode}): {tail[:300]}"}
        return json.loads(out.read_text())  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------ main


def _table(title: str, rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> None:
    t = Table(title=title)
    for head, _, _ in cols:
        t.add_column(head, justify="right")
    for r in rows:
        t.add_row(*[(fmt.format(r[key]) if r.get(key) is not None else "-") for _, key, fmt in cols])
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="demo workdir: host/base.pt, keys/, build/demo-edgetpu.kedge")
    ap.add_argument("--bundle", type=Path, help="Edge TPU/TFLite bundle (default: WORKDIR/build/demo-edgetpu.kedge)")
    ap.add_argument("--onnx-bundle", type=Path, help="x86 ONNX bundle (default: WORKDIR/build/demo-x86.kedge if present)")
    ap.add_argument("--keys", type=Path, help="public key folder (default: WORKDIR/keys)")
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_runtime.json")
    ap.add_argument("--quick", action="store_true", help="fewer seeds and shorter scenarios")
    ap.add_argument("--clean-minutes", type=float, default=30.0, help="minutes of each clean DS1 record (section 7)")
    ap.add_argument("--noise-records", type=int, default=8, help="DS1 records given real muscle noise (section 8)")
    ap.add_argument("--only-swapping", action="store_true", help="sections 6 and 7 only (no throughput, no export)")
    ap.add_argument("--only-performance", action="store_true", help="sections 1-4, 9, 10 (no emulator streams)")
    ap.add_argument("--profile", action="store_true", help="section 1: where the kernel-live loop's time goes")
    ap.add_argument("--device-venv", type=Path, help="section 10: an existing device venv (default: a fresh one)")
    ap.add_argument("--skip-footprint", action="store_true", help="no section 10 (it installs a venv)")
    args = ap.parse_args(argv)
    w = args.workdir
    bundle_path = args.bundle or w / "build" / "demo-edgetpu.kedge"
    onnx_path = args.onnx_bundle or (w / "build" / "demo-x86.kedge")
    keys = args.keys or w / "keys"
    tflite = read_bundle(bundle_path, keys)
    onnx = read_bundle(onnx_path, keys) if onnx_path.exists() else None
    results: dict[str, Any] = {"bundle": tflite.manifest.bundle_id, "onnx_bundle": onnx.manifest.bundle_id if onnx else None,
                               "host": os.uname().machine, "load": os.getloadavg()}
    if not args.only_swapping:
        performance(args, w, tflite, onnx, onnx_path if onnx else None, bundle_path, keys, results)
    decision_s: list[float] = []
    if not args.only_performance:
        decision_s = emulator_sections(args, bundle_path, keys, results, _table)
    if decision_s:
        decision_table(tflite, decision_s, results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float))
    os.replace(tmp, args.json)
    console.print(f"JSON: {args.json}")
    return 0


def performance(args: argparse.Namespace, w: Path, tflite: Bundle, onnx: Bundle | None, onnx_path: Path | None,
                bundle_path: Path, keys: Path, results: dict[str, Any]) -> None:
    """Sections 1, 2, 4, 9 and 10."""
    source, what = _signal()
    beats = _beats(source)
    signal_s = source.record().seconds
    console.rule(f"[bold]bench_runtime[/] on {what}: {len(beats)} beats")
    backends = _backends(tflite, onnx)
    results["throughput"] = throughput(backends, beats, source, signal_s)
    _table("1. throughput, one thread (x real time, CPU time of this thread; wall beside it)", results["throughput"], [
        ("backend", "backend", "{}"), ("model us/beat", "model_us_per_beat_cpu", "{:.0f}"),
        ("model x RT", "model_x_realtime_cpu", "{:,.0f}"), ("loop x RT", "loop_x_realtime_cpu", "{:,.0f}"),
        ("loop wall", "loop_x_realtime_wall", "{:,.0f}"), ("kernel live x RT", "live_loop_x_realtime_cpu", "{:,.0f}"),
        ("live wall", "live_loop_x_realtime_wall", "{:,.0f}"), ("live, fused pieces", "live_pieces_x_realtime_cpu",
                                                                   "{:,.0f}"),
        ("beats live", "live_share", "{:.0%}")])
    console.print("   live, fused pieces: the kernel-live loop with the chain's fused prefixes and suffixes attached "
                  "(made from the bundle's segments, as a bundle carrying them boots); same beats: "
                  + ", ".join(f"{r['backend']} {r['live_pieces_same_events']}" for r in results["throughput"]))
    if args.profile:
        chunks = list(source.chunks(180))
        prof = {name: profile_loop(load_image(b, be), source.fs, chunks) for name, b, be in backends}
        results["loop_profile"] = prof
        parts = list(next(iter(prof.values()))["shares"])
        _table("1. where the kernel-live loop's time goes (cProfile, share of the loop)", [
            {"part": p, **{n: v["shares"][p] for n, v in prof.items()}} for p in parts],
            [("part", "part", "{}"), *((n, n, "{:.0%}") for n in prof)])
    whole = export_whole(w, tflite, onnx, beats)
    with tempfile.TemporaryDirectory() as tmp:
        default_size = default_size_images(beats, [b[0] for b in backends], Path(tmp))
    results["segmented_vs_whole"] = segmented_vs_whole(backends, whole, beats, default_size)
    _table("2. chain vs the same model exported whole (x the whole model's time per window; same executor, same "
           "backend, interleaved)", results["segmented_vs_whole"], [
               ("backend", "backend", "{}"), ("model", "model", "{}"), ("whole from", "whole_source", "{}"),
               ("whole us", "whole_us", "{:.1f}"),
               ("chain", "chain_ratio", "{:.2f}"), ("fused base", "fused_ratio", "{:.2f}"),
               ("chain, stats/4", "chain_stats_ratio", "{:.2f}"), ("fused, stats/4", "fused_stats_ratio", "{:.2f}"),
               ("kernel live", "kernel_live_ratio", "{:.2f}"), ("kernel, pieces", "kernel_pieces_ratio", "{:.2f}"),
               ("labels as whole", "label_agreement", "{:.3f}")])
    console.print("   chain: the segments with no kernel; fused base: the whole base run while no slot holds a kernel "
                  "(bundles that carry base_whole); stats/4: site statistics every 4th window, as on the device; "
                  "kernel live: the chain with one kernel at site 0; kernel, pieces: the same through segment 0, the "
                  "kernel and the fused suffix (3 invokes)")
    for r in results["segmented_vs_whole"]:
        if r.get("bundle_bytes"):
            console.print(f"   {r['backend']}: fused pieces add {r['pieces_bytes'] / 1024:.1f} KiB for every site "
                          f"({r['pieces_bytes'] / r['bundle_bytes']:.0%} of the {r['bundle_bytes'] / 1024:.1f} KiB "
                          f"bundle), {r['pieces_bytes_kernel_sites'] / 1024:.1f} KiB "
                          f"({r['pieces_bytes_kernel_sites'] / r['bundle_bytes']:.0%}) for the sites its kernels sit at")
    results["swap_vs_naive"] = swap_vs_naive(backends)
    _table("4. swap (reference assignment) vs rebuilding the interpreter from the model file", results["swap_vs_naive"], [
        ("backend", "backend", "{}"), ("swap us", "swap_us", "{:.2f}"), ("naive us", "naive_us", "{:.1f}"),
        ("speedup", "speedup", "{:,.0f}x")])
    with console.status("9. ExecuTorch side by side (.venv-et)"):
        results["executorch"] = executorch_side_by_side(w, onnx_path)
    if "skipped" in results["executorch"]:
        console.print(f"[yellow]9. ExecuTorch skipped:[/] {results['executorch']['skipped']}")
    else:
        et = results["executorch"]
        _table(f"9. ExecuTorch {et['executorch']} (torch {et['torch']}) beside our runtime, same trained model, one "
               f"thread, one process ({et['beats']} beats)", et["rows"], [
                   ("runtime", "runtime", "{}"), ("us/window", "window_us", "{:.1f}"),
                   ("vs our chain", "vs_our_chain", "{:.2f}"), ("device loop x RT", "loop_x_realtime", "{:,.0f}"),
                   ("labels as torch", "torch_label_agreement", "{:.3f}")])
    if not args.skip_footprint:
        with console.status("10. footprint of the device install (a fresh venv, no extras)"):
            fp = footprint(bundle_path, keys, args.device_venv)
        results["footprint"] = fp
        top = ", ".join(f"{k} {v:g}" for k, v in list(fp["by_package_mb"].items())[:6])
        console.print(f"10. device install: {fp['disk_mb']:.0f} MB on disk ({top} MB ...; onnxruntime installed: "
                      f"{fp['onnxruntime_installed']}), runtime import {fp['import_s']:.2f} s, RSS {fp['rss_after_import_mb']:.0f} MB "
                      f"after imports, {fp['rss_peak_streaming_mb']:.0f} MB peak while streaming")


def decision_table(tflite: Bundle, decision_s: list[float], results: dict[str, Any]) -> None:
    lat = np.asarray(decision_s) * 1e3
    kernel = next(iter(k for k in tflite.manifest.kernels()), None)
    kcost = artifact_cost(tflite.artifact_bytes(kernel.name), kernel.format, kernel.name) if kernel else None
    seg_costs = [artifact_cost(tflite.artifact_bytes(n), tflite.manifest.artifact(n).format, n)
                 for n in tflite.manifest.chain.segments]  # type: ignore[union-attr]
    est = []
    for p in list_hardware():
        if p.kind == "host":
            continue
        d = estimate_decision(p, kcost)
        est.append({"profile": p.name, "runs_on": d.runs_on, "decision_ms": 1e3 * d.decision_s,
                    "reference_check_ms": 1e3 * d.reference_check_s, "swap_ms": 1e3 * d.swap_s, "total_ms": 1e3 * d.total_s,
                    "window_ms": 1e3 * estimate_chain(seg_costs, p).total_s})
    results["decision"] = {"host_ms_p50": float(np.percentile(lat, 50)), "host_ms_p99": float(np.percentile(lat, 99)),
                           "host_ms_max": float(lat.max()), "decisions": int(lat.size), "estimated": est}
    console.print(f"3. decision + swap on the host: p50 {results['decision']['host_ms_p50']:.2f} ms, "
                  f"p99 {results['decision']['host_ms_p99']:.2f} ms, max {results['decision']['host_ms_max']:.2f} ms "
                  f"over {lat.size} decisions")
    _table("3. decision + swap estimated per edge profile (activating path: features, G0 check, swap)", est, [
        ("profile", "profile", "{}"), ("runs on", "runs_on", "{}"), ("decision ms", "decision_ms", "{:.3f}"),
        ("G0 check ms", "reference_check_ms", "{:.3f}"), ("swap ms", "swap_ms", "{:.3f}"), ("total ms", "total_ms", "{:.2f}"),
        ("window ms", "window_ms", "{:.3f}")])


if __name__ == "__main__":
    raise SystemExit(main())
