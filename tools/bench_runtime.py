"""Benchmark of the on-device runtime and the emulator, side by side in one run.

    .venv/bin/python tools/bench_runtime.py --workdir DEMO_WORKDIR [--onnx-bundle X86.kedge] [--json runs/bench_runtime.json]

DEMO_WORKDIR is what `kasmina-edge demo --workdir` (or its host and build steps) leaves: host/base.pt,
host/seeds, keys/, build/demo-edgetpu.kedge. What it measures (one thread, one core):

1. throughput per backend, single lead, as a multiple of real time: the model alone (beats
   precomputed) and the whole device loop (beatizer, model, controller, lifecycle), CPU time of this
   thread (``time.thread_time``: the machine may be shared) and wall time;
2. segmented vs whole: the same model exported in one piece (same grids at its inputs), run through the
   same executor on the same backend, interleaved with the segmented chain; ratio per window;
3. decision + swap latency p50/p99 on the host (every decision of the EMG-switch runs), and the
   roofline estimate per edge profile;
4. a swap (one reference assignment) vs the naive way (building the interpreter from the model file);
5. MIT-BIH record 100 through an emulated device with the Edge TPU bundle: beat Se/+P, N, S, V;
6. EMG switch midway: macro-F1 of the noisy half with the base model alone, with swapping as before
   issue 15 (kernel live from BLENDING, kept on confidence) and with swapping judged on label-free
   evidence (kernel on trial beside the answers, live only while its evidence is positive), at 0 dB and
   -6 dB per seed; windows until the kernel is on trial / live; what culled it;
7. false activations on clean records (MIT-BIH DS1, ``--clean-minutes`` of each as recorded): windows
   with a kernel in the answers, and trials (kernel run beside the answers only), both ways of swapping;
8. real records with real noise: DS1 records with NSTDB ``ma`` mixed in as NSTDB made its records, at
   6, 0 and -6 dB: macro-F1 of the noisy stretches, the base alone and both ways of swapping.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

from firmware_sim.device import open_device  # noqa: E402
from firmware_sim.runner import RunOptions, run_stream  # noqa: E402
from firmware_sim.score import BeatScore, score_run  # noqa: E402
from kasmina_edge.contracts.bundle import Bundle, read_bundle  # noqa: E402
from kasmina_edge.contracts.events import BeatClassified  # noqa: E402
from kasmina_edge.core.catalog import list_hardware  # noqa: E402
from kasmina_edge.ecg.scenarios import make_scenario  # noqa: E402
from kasmina_edge.ecg.sources import RecordSource, open_source  # noqa: E402
from kasmina_edge.ecg.types import AAMI_CLASSES  # noqa: E402
from kasmina_edge.ecg.windowing import Beat, StreamingBeatizer  # noqa: E402
from kasmina_edge.profiler.estimate import artifact_cost, estimate_chain, estimate_decision  # noqa: E402
from kasmina_edge.runtime.backends import Backend, LiteRtBackend, MicroBackend, OrtBackend  # noqa: E402
from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig  # noqa: E402
from kasmina_edge.runtime.executor import SegmentedExecutor, SlotConfig  # noqa: E402
from kasmina_edge.runtime.image import Image, load_image  # noqa: E402
from kasmina_edge.runtime.lifecycle import LifecycleConfig  # noqa: E402

console = Console()
DATA = REPO.parent / "shared" / "data"


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


def _cpu(fn: Any) -> tuple[float, float]:
    c0, w0 = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - c0, time.perf_counter() - w0


# ------------------------------------------------------------------------------------------ 1. throughput


def throughput(backends: list[tuple[str, Bundle, Backend]], beats: list[Beat], source: Any, signal_s: float) -> list[dict[str, Any]]:
    rows = []
    for name, bundle, backend in backends:
        image = load_image(bundle, backend)
        ex = SegmentedExecutor(image)
        for b in beats[:20]:
            ex.infer(b.window, b.rr)
        cpu, wall = _cpu(lambda ex=ex: [ex.infer(b.window, b.rr) for b in beats])
        rt = DeviceRuntime(image, fs=source.fs)
        rt.boot()
        chunks = list(source.chunks(180))
        cpu_loop, wall_loop = _cpu(lambda rt=rt, chunks=chunks: ([rt.feed(c) for c in chunks], rt.finish()))
        rows.append({
            "backend": name,
            "runtime": backend.info().runtime,
            "beats": len(beats),
            "model_us_per_beat_cpu": 1e6 * cpu / len(beats),
            "model_us_per_beat_wall": 1e6 * wall / len(beats),
            "model_x_realtime_cpu": signal_s / cpu,
            "model_x_realtime_wall": signal_s / wall,
            "loop_x_realtime_cpu": signal_s / cpu_loop,
            "loop_x_realtime_wall": signal_s / wall_loop,
        })
    return rows


# ------------------------------------------------------------------------------------------ 2. segmented vs whole


def export_whole(workdir: Path, tflite: Bundle, onnx: Bundle | None, beats: list[Beat]) -> dict[str, bytes]:
    """The checkpoint's model in one piece, same input grids as the chain (torch: a host tool)."""
    import torch

    from kasmina_edge.compile.export_tflite import export_int8_tflite
    from kasmina_edge.compile.pipeline import load_segmented
    from kasmina_edge.compile.quantize import QuantGrid

    model, _, _ = load_segmented(workdir / "host" / "base.pt", None)

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.segs = torch.nn.ModuleList(model.segments)

        def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            h = x
            for s in self.segs[:-1]:
                h = s(h)
            return self.segs[-1](h, rr)

    whole = Whole().eval()
    x = torch.from_numpy(np.stack([b.window for b in beats[:512]]).astype(np.float32))
    rr = torch.from_numpy(np.stack([b.rr for b in beats[:512]]).astype(np.float32))

    def grid(bundle: Bundle, artifact: str, pos: int) -> QuantGrid:
        spec = bundle.manifest.artifact(artifact).input_specs[pos]
        assert spec.scale is not None and spec.zero_point is not None
        return QuantGrid(spec.scale[0], spec.zero_point[0])

    segs = tflite.manifest.chain.segments  # type: ignore[union-attr]
    out: dict[str, bytes] = {}
    out["tflite"], _ = export_int8_tflite(
        whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole",
        input_grids={0: grid(tflite, segs[0], 0), 1: grid(tflite, segs[-1], 1)})
    if onnx is not None:
        from kasmina_edge.compile.export_onnx import export_int8_onnx

        out["onnx"] = export_int8_onnx(whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole",
                                       input_names=["window", "rr"], input_grids={}, output_grid=None,
                                       reduce_range=onnx.manifest.target == "x86")
    return out


def default_size_images(beats: list[Beat], backend_names: list[str], tmp: Path) -> dict[str, tuple[Image, Image]]:
    """The host's ``default`` model (random weights: latency does not depend on their values) split at its
    sites and exported whole with the build's own exporters; (segmented, whole) images per backend."""
    import torch

    from kasmina_edge.compile.export_onnx import export_int8_onnx
    from kasmina_edge.compile.export_tflite import export_int8_tflite
    from kasmina_edge.compile.pipeline import load_segmented
    from kasmina_edge.compile.split import calibrate_site_grids, plan_artifacts
    from kasmina_edge.contracts.manifest import BundleManifest
    from kasmina_edge.host.experiment import save_checkpoint
    from kasmina_edge.host.model import build_model
    from kasmina_edge.host.train import BASE_KIND

    net = build_model("default", seed=0).eval()
    ckpt = tmp / "default-random.pt"
    save_checkpoint(ckpt, {"kind": BASE_KIND, "experiment_id": "bench-random", "model_config": net.config.to_dict(),
                           "state": net.state_dict()})
    model, _, _ = load_segmented(ckpt, None)
    x = torch.from_numpy(np.stack([b.window for b in beats[:256]]).astype(np.float32))
    rr = torch.from_numpy(np.stack([b.rr for b in beats[:256]]).astype(np.float32))
    grids = calibrate_site_grids(model, x, rr)
    specs = plan_artifacts(model, grids, x, rr)
    params = sum(p.numel() for m in model.segments for p in m.parameters())
    console.print(f"default-size model: {params:,} parameters, {len(model.sites)} sites")

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.segs = torch.nn.ModuleList(model.segments)

        def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            h = x
            for seg in self.segs[:-1]:
                h = seg(h)
            return self.segs[-1](h, rr)

    whole = Whole().eval()
    manifest = BundleManifest.model_validate({
        "target": "x86", "profile": "x86-64-host", "format": "tflite-int8", "model": {"checkpoint_sha256": "0" * 64},
        "sites": [{"index": s.index, "name": s.name, "channels": s.channels, "length": s.length} for s in model.sites],
        "artifacts": [], "provenance": {"kasmina_edge": "bench", "built_at": "now"}})
    out: dict[str, tuple[Image, Image]] = {}
    seg_specs = [s for s in specs if s.kind == "segment"]
    for name in backend_names:
        onnx = name == "onnxruntime"
        backend: Backend = OrtBackend() if onnx else (MicroBackend() if name == "tflite-micro" else
                                                      LiteRtBackend("builtin" if "builtin" in name else "xnnpack"))
        seg_bytes = []
        for spec in seg_specs:
            if onnx:
                seg_bytes.append(export_int8_onnx(spec.module, spec.example_args, spec.calibration, artifact=spec.name,
                                                  input_names=spec.input_names, input_grids=spec.input_grids,
                                                  output_grid=spec.output_grid, reduce_range=True))
            else:
                seg_bytes.append(_tflite_cache(spec, export_int8_tflite))
        if onnx:
            whole_bytes = export_int8_onnx(whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole",
                                           input_names=["window", "rr"], input_grids={}, output_grid=None, reduce_range=True)
        else:
            whole_bytes = _WHOLE.get("tflite") or export_int8_tflite(whole, (x[:2], rr[:2]), [(x, rr)], artifact="whole")[0]
            _WHOLE["tflite"] = whole_bytes
        segs = [backend.load(b, s.name) for b, s in zip(seg_bytes, seg_specs, strict=True)]
        seg_img = Image(manifest, backend, segs, [], {}, [m.outputs[0] for m in segs[:-1]])
        out[name] = (seg_img, Image(manifest, backend, [backend.load(whole_bytes, "whole")], [], {}, []))
    return out


_WHOLE: dict[str, bytes] = {}
_SEG: dict[str, bytes] = {}


def _tflite_cache(spec: Any, export: Any) -> bytes:
    if spec.name not in _SEG:
        _SEG[spec.name] = export(spec.module, spec.example_args, spec.calibration, artifact=spec.name,
                                 input_grids=spec.input_grids, output_grid=spec.output_grid)[0]
    return _SEG[spec.name]


def _compare(name: str, model: str, seg_img: Image, whole_img: Image, beats: list[Beat], rounds: int = 7) -> dict[str, Any]:
    sample = beats[:300]
    seg_ex, whole_ex = SegmentedExecutor(seg_img, stats_every=0), SegmentedExecutor(whole_img, stats_every=0)
    agree = np.mean([seg_ex.infer(b.window, b.rr).label == whole_ex.infer(b.window, b.rr).label for b in sample])
    seg_t: list[float] = []
    whole_t: list[float] = []
    for _ in range(rounds):  # interleaved: both see the same machine load
        for ex, acc in ((seg_ex, seg_t), (whole_ex, whole_t)):
            acc.append(_cpu(lambda ex=ex: [ex.infer(b.window, b.rr) for b in sample])[0] / len(sample))
    s, w = statistics.median(seg_t), statistics.median(whole_t)
    return {"backend": name, "model": model, "segments": len(seg_img.segments), "segmented_us": 1e6 * s,
            "whole_us": 1e6 * w, "ratio": s / w, "label_agreement": float(agree)}


def _whole_image(image: Image, model_bytes: bytes) -> Image:
    whole = image.backend.load(model_bytes, "whole")
    return Image(image.manifest, image.backend, [whole], [image.segment_entries[0]], {}, [])


def segmented_vs_whole(backends: list[tuple[str, Bundle, Backend]], whole: dict[str, bytes], beats: list[Beat],
                       default_size: dict[str, tuple[Image, Image]]) -> list[dict[str, Any]]:
    rows = []
    for name, bundle, backend in backends:
        key = "onnx" if bundle.manifest.format.startswith("onnx") else "tflite"
        if key in whole:
            seg_img = load_image(bundle, backend)
            rows.append(_compare(name, "demo tiny (trained)", seg_img, _whole_image(seg_img, whole[key]), beats))
        if name in default_size:
            rows.append(_compare(name, "default (random weights)", *default_size[name], beats))
    return rows


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


# ------------------------------------------------------------------------------------------ 5./6. emulator runs


def _device(root: Path, name: str, bundle: Path, keys: Path) -> Any:
    os.environ["KASMINA_DEVICES_DIR"] = str(root)
    dev = open_device(f"emu://{name}")
    if not dev.exists:
        dev.flash(bundle, keys)
    return dev


def mitbih(root: Path, bundle: Path, keys: Path) -> dict[str, Any] | None:
    rec = DATA / "mitdb" / "100"
    if not rec.with_suffix(".hea").exists():
        return None
    dev = _device(root, "mitbih-100", bundle, keys)
    src = open_source(f"wfdb:{rec}")
    s = run_stream(dev, src, options=RunOptions(keep_predictions=True))
    record = src.record()
    assert record is not None
    sc = score_run(s.predictions, record)
    return {"signal_s": s.signal_s, "wall_s": s.wall_s, "x_realtime_wall": s.realtime_factor,
            "beat_se": sc.sensitivity, "beat_ppv": sc.ppv, "n_accuracy": sc.se("N"), "s_se": sc.se("S"),
            "s_ppv": sc.ppv_of("S"), "v_se": sc.se("V"), "support": {c: sc.support(c) for c in AAMI_CLASSES},
            "macro_f1": sc.macro_f1(), "swaps": s.status["swaps"], "faults": s.status["faults"],
            "decision_ms_p50": s.status["decision_ms_p50"], "decision_ms_p99": s.status["decision_ms_p99"]}


# the three ways the EMG switch is run, side by side on the same record: the base model alone, swapping as
# before issue 15 (kernel live from BLENDING on, kept on confidence), swapping judged on label-free evidence
MODES: dict[str, RuntimeConfig] = {
    "base": RuntimeConfig(adapt=False, boot_kernels=False),
    "confidence": RuntimeConfig(boot_kernels=False, lifecycle=LifecycleConfig(judge="confidence")),
    "evidence": RuntimeConfig(boot_kernels=False),
}


def _episodes(flags: list[bool]) -> int:
    """Stretches of consecutive True (a kernel brought in once, however long it stayed)."""
    return sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1]))


def _kernel_use(beats: list[BeatClassified], onset: int) -> dict[str, Any]:
    """Windows a kernel was in the answers (live) or only beside them (trial), before and after ``onset``."""
    noisy = [b for b in beats if b.sample + 166 >= onset]
    live = [i for i, b in enumerate(noisy) if any(b.active.values())]
    trial = [i for i, b in enumerate(noisy) if b.trial]
    return {
        "live_before_onset": sum(1 for b in beats if b.sample + 166 < onset and any(b.active.values())),
        "trial_before_onset": sum(1 for b in beats if b.sample + 166 < onset and b.trial),
        "windows_to_live": live[0] if live else None, "live_windows": len(live),
        "windows_to_trial": trial[0] if trial else None, "noisy_windows": len(noisy),
    }


def emg_switch(root: Path, bundle: Path, keys: Path, snrs: list[float], seeds: list[int], minutes: float
               ) -> tuple[list[dict[str, Any]], list[float]]:
    rows, decision_s = [], []
    dev = _device(root, "emg-switch", bundle, keys)
    for snr in snrs:
        for seed in seeds:
            record = make_scenario("emg-switch", minutes, seed=seed, snr_db=snr)
            half = record.seconds / 2
            onset = record.n_samples // 2
            row: dict[str, Any] = {"snr_db": snr, "seed": seed}
            # swapping starts with no kernel live (boot_kernels=False): the controller must bring one in
            for mode, cfg in MODES.items():
                s = run_stream(dev, RecordSource(record), options=RunOptions(runtime=cfg, keep_predictions=True))
                noisy_score = score_run(s.predictions, record, start_s=half)
                row[f"{mode}_noisy_f1"] = noisy_score.macro_f1()
                row[f"{mode}_clean_f1"] = score_run(s.predictions, record, end_s=half).macro_f1()
                if mode == "base":
                    # the noisy half's detection and its class support: a few S/V beats move macro-F1 a lot
                    row["noisy_beat_se"], row["noisy_beat_ppv"] = noisy_score.sensitivity, noisy_score.ppv
                    row["noisy_support"] = {c: noisy_score.support(c) for c in noisy_score.classes}
                    continue
                use = _kernel_use(s.predictions, onset)
                row[mode] = {**use, "swaps": s.status["swaps"], "faults": s.status["faults"]}
                if mode == "evidence":
                    decision_s.extend(s.decision_latency_s)
            for mode in ("confidence", "evidence"):
                row[f"{mode}_gain"] = row[f"{mode}_noisy_f1"] - row["base_noisy_f1"]
            row["evidence_windows_to_trial"] = row["evidence"]["windows_to_trial"]
            row["evidence_live_windows"] = row["evidence"]["live_windows"]
            row["evidence_trial_clean"] = row["evidence"]["trial_before_onset"] + row["evidence"]["live_before_onset"]
            row["confidence_live_clean"] = row["confidence"]["live_before_onset"]
            row["clean_half"] = f"{row['confidence_live_clean']} / {row['evidence_trial_clean']}"
            rows.append(row)
    return rows, decision_s


def _noisy_spans_score(predictions: list[BeatClassified], record: Any, spans: list[tuple[int, int]]) -> BeatScore:
    """One score over all noisy stretches (their confusions summed)."""
    parts = [score_run(predictions, record, start_s=a / record.fs, end_s=b / record.fs) for a, b in spans]
    conf = sum((p.confusion for p in parts[1:]), parts[0].confusion.copy())
    return BeatScore(sum(p.reference_beats for p in parts), sum(p.detected_beats for p in parts),
                     sum(p.matched for p in parts), conf)


def real_noise_records(root: Path, bundle: Path, keys: Path, records: list[str], snrs: list[float],
                       minutes: float) -> list[dict[str, Any]]:
    """Real records with real NSTDB muscle noise (``ma``) mixed in as NSTDB did (5 clean minutes, then 2 min
    noisy / 2 min clean): macro-F1 over the noisy stretches, the three modes side by side."""
    from kasmina_edge.ecg.noise import noisy_stretches, nstdb_mix

    rows = []
    dev = _device(root, "real-noise", bundle, keys)
    for name in records:
        clean = open_source(f"wfdb:{DATA / 'mitdb' / name}", seconds=60.0 * minutes).record()
        spans = noisy_stretches(clean.n_samples, clean.fs)
        for snr in snrs:
            record = nstdb_mix(clean, "emg", snr, np.random.default_rng(0))
            row: dict[str, Any] = {"record": name, "snr_db": snr}
            for mode, cfg in MODES.items():
                s = run_stream(dev, RecordSource(record), options=RunOptions(runtime=cfg, keep_predictions=True))
                row[f"{mode}_noisy_f1"] = _noisy_spans_score(s.predictions, record, spans).macro_f1()
                if mode != "base":
                    row[f"{mode}_live_windows"] = sum(1 for b in s.predictions if any(b.active.values()))
            for mode in ("confidence", "evidence"):
                row[f"{mode}_gain"] = row[f"{mode}_noisy_f1"] - row["base_noisy_f1"]
            rows.append(row)
    return rows


def _ds1_records() -> list[str]:
    folder = DATA / "mitdb"
    return sorted(p.stem for p in folder.glob("*.hea")) if folder.is_dir() else []


def clean_records(root: Path, bundle: Path, keys: Path, records: list[str], minutes: float) -> list[dict[str, Any]]:
    """False activations: each clean record streamed as it is; a kernel in the answers (live) or on trial."""
    rows = []
    dev = _device(root, "clean-records", bundle, keys)
    for name in records:
        row: dict[str, Any] = {"record": name, "minutes": minutes}
        for mode in ("confidence", "evidence"):
            src = open_source(f"wfdb:{DATA / 'mitdb' / name}", seconds=60.0 * minutes)
            s = run_stream(dev, src, options=RunOptions(runtime=MODES[mode], keep_predictions=True))
            beats = s.predictions
            row["beats"] = len(beats)
            row[f"{mode}_live_windows"] = sum(1 for b in beats if any(b.active.values()))
            row[f"{mode}_activations"] = _episodes([bool(b.trial) or any(b.active.values()) for b in beats])
            row[f"{mode}_went_live"] = _episodes([any(b.active.values()) for b in beats])
            row[f"{mode}_trial_windows"] = sum(1 for b in beats if b.trial)
        rows.append(row)
    return rows


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
        source, what = _signal()
        beats = _beats(source)
        signal_s = source.record().seconds
        console.rule(f"[bold]bench_runtime[/] on {what}: {len(beats)} beats")
        backends = _backends(tflite, onnx)

        results["throughput"] = throughput(backends, beats, source, signal_s)
        _table("1. throughput, one thread (x real time; CPU time of this thread, wall in brackets)", results["throughput"], [
            ("backend", "backend", "{}"), ("model us/beat", "model_us_per_beat_cpu", "{:.0f}"),
            ("model x RT", "model_x_realtime_cpu", "{:,.0f}"), ("model x RT wall", "model_x_realtime_wall", "{:,.0f}"),
            ("device loop x RT", "loop_x_realtime_cpu", "{:,.0f}"), ("loop x RT wall", "loop_x_realtime_wall", "{:,.0f}")])

        whole = export_whole(w, tflite, onnx, beats)
        with tempfile.TemporaryDirectory() as tmp:
            default_size = default_size_images(beats, [b[0] for b in backends], Path(tmp))
        results["segmented_vs_whole"] = segmented_vs_whole(backends, whole, beats, default_size)
        _table("2. segmented chain vs the same model exported whole (same executor, same backend, interleaved)",
               results["segmented_vs_whole"], [
                   ("backend", "backend", "{}"), ("model", "model", "{}"), ("segments", "segments", "{}"),
                   ("segmented us", "segmented_us", "{:.1f}"),
                   ("whole us", "whole_us", "{:.1f}"), ("ratio", "ratio", "{:.2f}"), ("label agreement", "label_agreement", "{:.3f}")])

        results["swap_vs_naive"] = swap_vs_naive(backends)
        _table("4. swap (reference assignment) vs rebuilding the interpreter from the model file", results["swap_vs_naive"], [
            ("backend", "backend", "{}"), ("swap us", "swap_us", "{:.2f}"), ("naive us", "naive_us", "{:.1f}"),
            ("speedup", "speedup", "{:,.0f}x")])

    with tempfile.TemporaryDirectory(prefix="bench-runtime-devices-") as tmp:
        root = Path(tmp)
        results["mitbih_100"] = None if args.only_swapping else mitbih(root, bundle_path, keys)
        if results["mitbih_100"]:
            _table("5. MIT-BIH record 100 through the emulator (Edge TPU bundle)", [results["mitbih_100"]], [
                ("beat Se", "beat_se", "{:.4f}"), ("beat +P", "beat_ppv", "{:.4f}"), ("N accuracy", "n_accuracy", "{:.4f}"),
                ("S Se", "s_se", "{:.3f}"), ("S +P", "s_ppv", "{:.3f}"), ("V Se", "v_se", "{:.3f}"),
                ("x RT wall", "x_realtime_wall", "{:,.0f}")])
        seeds = [0] if args.quick else [0, 1, 2]
        rows, decision_s = emg_switch(root, bundle_path, keys, [0.0, -6.0], seeds, 2.0 if args.quick else 4.0)
        results["emg_switch"] = rows
        _table("6. EMG noise from half time: macro-F1 of the noisy half, base alone vs swapping before (confidence) "
               "and after (label-free evidence)", rows, [
                   ("SNR", "snr_db", "{:g}"), ("seed", "seed", "{}"), ("F1 base", "base_noisy_f1", "{:.3f}"),
                   ("F1 before", "confidence_noisy_f1", "{:.3f}"), ("d", "confidence_gain", "{:+.2f}"),
                   ("F1 evidence", "evidence_noisy_f1", "{:.3f}"), ("d", "evidence_gain", "{:+.2f}"),
                   ("to trial", "evidence_windows_to_trial", "{}"), ("live", "evidence_live_windows", "{}"),
                   ("clean half", "clean_half", "{}")])
        console.print("   F1: macro-F1 of the noisy half; d: minus the base's; to trial / live: noisy windows until the kernel "
                      "ran beside the answers / windows it was in them (evidence); clean half: windows with a kernel "
                      "live before / live or on trial with evidence")
        n = len(rows)
        summary = {}
        for mode in ("confidence", "evidence"):
            gains = [r[f"{mode}_gain"] for r in rows]
            summary[mode] = {"cases": n, "at_least_base": sum(g >= -1e-9 for g in gains),
                             "above_base_plus_2pts": sum(g > 0.02 for g in gains), "mean_gain": float(np.mean(gains))}
        results["emg_switch_summary"] = summary
        for mode, v in summary.items():
            console.print(f"6. swapping ({mode}): >= base in {v['at_least_base']}/{n}, > base + 2 points in "
                          f"{v['above_base_plus_2pts']}/{n}, mean gain {v['mean_gain']:+.3f}")
        recs = _ds1_records()
        if recs:
            recs = recs[:3] if args.quick else recs
            minutes = 5.0 if args.quick else args.clean_minutes
            with console.status(f"7. clean records: {len(recs)} x {minutes:g} min"):
                clean = clean_records(root, bundle_path, keys, recs, minutes)
            results["clean_records"] = clean
            _table(f"7. false activations on clean MIT-BIH records ({minutes:g} min each): windows with a kernel in the "
                   "answers; kernel activations (trials) and how many went live", clean, [
                       ("record", "record", "{}"), ("beats", "beats", "{}"),
                       ("live before", "confidence_live_windows", "{}"),
                       ("brought in before", "confidence_activations", "{}"),
                       ("live evidence", "evidence_live_windows", "{}"),
                       ("trials evidence", "evidence_activations", "{}"), ("went live", "evidence_went_live", "{}"),
                       ("trial windows", "evidence_trial_windows", "{}")])
            tot = {k: sum(r[k] for r in clean) for k in ("beats", "confidence_live_windows", "confidence_activations",
                                                         "evidence_live_windows", "evidence_activations", "evidence_went_live")}
            results["clean_records_total"] = tot
            noisy_recs = recs[:2] if args.quick else recs[: args.noise_records]
            if (DATA / "nstdb").is_dir():
                with console.status(f"8. real records with real muscle noise: {len(noisy_recs)} records"):
                    real = real_noise_records(root, bundle_path, keys, noisy_recs, [6.0, 0.0, -6.0], 13.0)
                results["real_noise"] = real
                _table("8. DS1 records + NSTDB muscle noise (ma), 2-min stretches after 5 clean minutes: macro-F1 of the "
                       "noisy stretches", real, [
                           ("record", "record", "{}"), ("SNR", "snr_db", "{:g}"), ("F1 base", "base_noisy_f1", "{:.3f}"),
                           ("F1 before", "confidence_noisy_f1", "{:.3f}"), ("d", "confidence_gain", "{:+.2f}"),
                           ("F1 evidence", "evidence_noisy_f1", "{:.3f}"), ("d", "evidence_gain", "{:+.2f}"),
                           ("live before", "confidence_live_windows", "{}"), ("live evid.", "evidence_live_windows", "{}")])
                for mode in ("confidence", "evidence"):
                    gains = [r[f"{mode}_gain"] for r in real]
                    console.print(f"8. swapping ({mode}): >= base in {sum(g >= -1e-9 for g in gains)}/{len(gains)}, "
                                  f"> base + 2 points in {sum(g > 0.02 for g in gains)}/{len(gains)}, "
                                  f"mean gain {float(np.mean(gains)):+.3f}")
            console.print(f"7. over {len(clean)} records: live windows {tot['confidence_live_windows']} before, "
                          f"{tot['evidence_live_windows']} with evidence ({tot['evidence_went_live']} went live) "
                          f"of {tot['beats']} beats; trials {tot['evidence_activations']}")
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
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float))
    os.replace(tmp, args.json)
    console.print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
