"""Benchmark of the hardware profiler: its estimates beside measurements and published numbers, in one run.

    .venv/bin/python tools/bench_profiler.py [--json runs/bench_profiler.json] [--cache runs/bench_profiler_cache] [--rebuild]

1. calibration: estimated vs measured latency on the x86 profile (ONNX Runtime, one core) for every
   artifact of a default bundle (the ``default`` model with random weights, three seed kernels, built by
   the project's own pipeline for the x86 target); the median ratio must lie within 0.5x-2x;
2. validation against published numbers no one here produced: the MLPerf Tiny reference architectures
   (DS-CNN keyword spotting, ResNet-8 image classification, MobileNetV1-0.25 visual wake words, the FC
   autoencoder for anomaly detection) rebuilt in torch with random weights (latency does not depend on
   them), exported to int8 TFLite with the project's exporter, and estimated on the catalog's MCU
   profiles re-clocked to the boards of the published results (same core, the board's clock);
3. TFLite Micro arena: the estimate vs the interpreter's report for every MCU artifact (the default
   bundle built for cortex-m and the four MLPerf models), within 10 %;
4. the time `kasmina-edge profile` takes on a default bundle over every profile, without --measure, in a
   fresh interpreter pinned to one core (< 10 s);
5. each MCU submission's efficiency fitted to the published latencies, checked leave-one-model-out
   (held-out medians within 0.67-1.5x; tools/bench_profiler_fit.py), beside the catalog's values.

The bundles and models are built once (torch, ~2 min) and cached under --cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from bench_profiler_fit import mlperf_fit, show_fit  # noqa: E402

from kasmina_edge.core.catalog import hardware  # noqa: E402
from kasmina_edge.core.profiles import HardwareProfile  # noqa: E402
from kasmina_edge.profiler.graph import profile_tflite  # noqa: E402
from kasmina_edge.profiler.latency import estimate_graph  # noqa: E402
from kasmina_edge.profiler.report import load_subject, profile_subject  # noqa: E402
from kasmina_edge.profiler.tflm_arena import compare_arenas  # noqa: E402

console = Console()

# Published single-stream latencies (ms): 1000 / the "Median throughput" of each submission's
# performance/results.txt. Boards: NUCLEO-L4R5ZI = STM32L4R5 Cortex-M4F at 120 MHz; NUCLEO-H7A3ZI-Q =
# STM32H7A3 Cortex-M7 at 280 MHz (each submission's systems/*_system_description.json).
_V05 = "MLPerf Tiny v0.5, closed, reference submission (TFLite Micro v2.3.1, Mbed OS): github.com/mlcommons/tiny_results_v0.5 closed/reference/results/Nucleo-L4R5ZI/{task}/performance/results.txt"
_V10 = "MLPerf Tiny v1.0, closed, STMicroelectronics (X-CUBE-AI v7.3.0): github.com/mlcommons/tiny_results_v1.0 closed/STMicroelectronics/results/{board}/{task}/performance/results.txt"
PUBLISHED: list[dict[str, Any]] = [
    *[
        {"task": t, "board": "NUCLEO-L4R5ZI", "runtime": "TFLite Micro 2.3.1", "base": "stm32f446", "clock_hz": 120e6,
         "inf_per_s": v, "source": _V05.format(task=t)}
        for t, v in (("kws", 5.497), ("vww", 1.665), ("ic", 1.420), ("ad", 99.487))
    ],
    *[
        {"task": t, "board": "NUCLEO-L4R5ZI", "runtime": "X-CUBE-AI 7.3.0", "base": "stm32f446", "clock_hz": 120e6,
         "inf_per_s": v, "source": _V10.format(board="NUCLEO_L4R5ZI", task=t)}
        for t, v in (("kws", 13.323), ("vww", 4.339), ("ic", 4.407), ("ad", 131.950))
    ],
    *[
        {"task": t, "board": "NUCLEO-H7A3ZI-Q", "runtime": "X-CUBE-AI 7.3.0", "base": "stm32h743", "clock_hz": 280e6,
         "inf_per_s": v, "source": _V10.format(board="NUCLEO-H7A3ZI-Q", task=t)}
        for t, v in (("kws", 59.667), ("vww", 19.722), ("ic", 18.401), ("ad", 547.705))
    ],
]  # fmt: skip
TASK_MODEL = {
    "kws": "DS-CNN (KWS)",
    "vww": "MobileNetV1-0.25 (VWW)",
    "ic": "ResNet-8 (IC)",
    "ad": "FC autoencoder (AD)",
}


# ------------------------------------------------------------------------------------------ builds


def _quiet(fn: Any, *args: Any) -> Any:
    """Run a torch build step with the converters' chatter on stderr kept off the table."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def default_bundle(cache: Path, target: str, rebuild: bool) -> tuple[Path, Path]:
    """The ``default`` model with random weights and three seed kernels, built for ``target``."""
    out = cache / f"default-{target}.kedge"
    keys = cache / "keys"
    if out.exists() and not rebuild:
        return out, keys
    import torch

    from kasmina_edge.compile.pipeline import BuildRequest, build
    from kasmina_edge.contracts.bundle import PRIVATE_KEY_NAME, init_keys
    from kasmina_edge.host.blueprints import create_blueprint
    from kasmina_edge.host.experiment import save_checkpoint
    from kasmina_edge.host.model import build_model
    from kasmina_edge.host.seed_library import LibraryEntry, SeedLibrary
    from kasmina_edge.host.train import BASE_KIND

    cache.mkdir(parents=True, exist_ok=True)
    if not (keys / PRIVATE_KEY_NAME).exists():
        init_keys(keys)
    ckpt = cache / "default-random.pt"
    if not ckpt.exists() or rebuild:
        net = build_model("default", seed=0).eval()
        save_checkpoint(
            ckpt,
            {
                "kind": BASE_KIND,
                "experiment_id": "bench-profiler",
                "model_config": net.config.to_dict(),
                "state": net.state_dict(),
            },
        )
        shapes = net.config.site_shapes()
        lib = SeedLibrary(
            meta={"model": "default", "note": "random weights: latency does not depend on them"}
        )
        for cond, site, bp in (
            ("emg", 0, "bottleneck_adapter"),
            ("baseline", 1, "depthwise_separable"),
            ("lead", 2, "low_rank_residual"),
        ):
            c, length = shapes[f"site{site}"]
            module = create_blueprint(bp, c, length)
            torch.manual_seed(site)
            for p in module.parameters():  # the zero-initialised output path would export as constants
                torch.nn.init.normal_(p, std=0.05)
            lib.add(
                LibraryEntry(
                    key=f"{cond}@site{site}",
                    condition=cond,
                    tags=[cond],
                    site=f"site{site}",
                    site_index=site,
                    channels=c,
                    length=length,
                    blueprint=bp,
                    blueprint_params={},
                    grafting="residual",
                    intensity=1.0,
                    param_count=sum(p.numel() for p in module.parameters()),
                    param_fraction=0.0,
                    macs=0,
                    baseline_val=0.5,
                    seed_val=0.6,
                    gain=0.1,
                    clean_host=None,
                    clean_seed=None,
                    seed_id=f"s{site}",
                ),
                module.state_dict(),
            )
        lib.save(cache / "seeds")
    req = BuildRequest(
        checkpoint=ckpt,
        seeds=cache / "seeds",
        target=target,
        out=out,
        keys=keys,
        calibration_patients=2,
        heldout_patients=1,
        minutes=1.0,
        parity_windows=64,
        strict=False,
        qat_steps=5,
    )
    console.print(f"building the default bundle for {target} (random weights; once, cached in {cache}) ...")
    _quiet(build, req, None)
    return out, keys


def mlperf_models() -> dict[str, Any]:
    """The four MLPerf Tiny reference architectures in torch (softmax heads left out: logits are what is
    quantized here, and a softmax over <= 12 values is noise beside the convolutions)."""
    from torch import nn

    class DsCnn(nn.Module):
        """mlcommons/tiny keyword spotting: Conv 64 (10x4, stride 2) + 4 x (DW 3x3 + PW 64) + avg pool + FC 12."""

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Conv2d(1, 64, (10, 4), stride=2, padding=(5, 1)), nn.ReLU()]
            for _ in range(4):
                layers += [
                    nn.Conv2d(64, 64, 3, padding=1, groups=64),
                    nn.ReLU(),
                    nn.Conv2d(64, 64, 1),
                    nn.ReLU(),
                ]
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(64, 12)

        def forward(self, x: Any) -> Any:
            return self.fc(self.features(x).mean(dim=(2, 3)))

    class ResNet8(nn.Module):
        """mlcommons/tiny image classification ``resnet_v1_eembc`` with 16 filters (the ~96 KB v0.5-v1.x model)."""

        def __init__(self, f: int = 16) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, f, 3, padding=1)
            self.a1, self.b1 = nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1)
            self.a2, self.b2, self.s2 = (
                nn.Conv2d(f, 2 * f, 3, 2, 1),
                nn.Conv2d(2 * f, 2 * f, 3, padding=1),
                nn.Conv2d(f, 2 * f, 1, 2),
            )
            self.a3, self.b3, self.s3 = (
                nn.Conv2d(2 * f, 4 * f, 3, 2, 1),
                nn.Conv2d(4 * f, 4 * f, 3, padding=1),
                nn.Conv2d(2 * f, 4 * f, 1, 2),
            )
            self.fc = nn.Linear(4 * f, 10)

        def forward(self, x: Any) -> Any:
            relu = nn.functional.relu
            x = relu(self.stem(x))
            x = relu(x + self.b1(relu(self.a1(x))))
            x = relu(self.s2(x) + self.b2(relu(self.a2(x))))
            x = relu(self.s3(x) + self.b3(relu(self.a3(x))))
            return self.fc(x.mean(dim=(2, 3)))

    class MobileNetV1(nn.Module):
        """Visual wake words: MobileNetV1 alpha 0.25 at 96x96x3, 13 depthwise-separable blocks, FC 2."""

        def __init__(self) -> None:
            super().__init__()
            cfg = [
                (64, 1),
                (128, 2),
                (128, 1),
                (256, 2),
                (256, 1),
                (512, 2),
                *[(512, 1)] * 5,
                (1024, 2),
                (1024, 1),
            ]
            c = 8
            layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1), nn.ReLU()]
            for out, stride in cfg:
                o = out // 4
                layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c), nn.ReLU(), nn.Conv2d(c, o, 1), nn.ReLU()]
                c = o
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(c, 2)

        def forward(self, x: Any) -> Any:
            return self.fc(self.features(x).mean(dim=(2, 3)))

    class FcAutoencoder(nn.Module):
        """Anomaly detection: 640 -> 4 x 128 -> 8 -> 4 x 128 -> 640."""

        def __init__(self) -> None:
            super().__init__()
            dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
            layers: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:], strict=True):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(128, 640))
            self.net = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return self.net(x)

    return {
        "kws": (DsCnn(), (1, 49, 10)),
        "ic": (ResNet8(), (3, 32, 32)),
        "vww": (MobileNetV1(), (3, 96, 96)),
        "ad": (FcAutoencoder(), (640,)),
    }


def mlperf_tflite(cache: Path, rebuild: bool) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    todo = [t for t in TASK_MODEL if rebuild or not (cache / f"mlperf-{t}.tflite").exists()]
    if todo:
        import torch

        from kasmina_edge.compile.export_tflite import export_int8_tflite

        torch.manual_seed(0)
        models = mlperf_models()
        for t in todo:
            module, shape = models[t]
            x = torch.rand(64, *shape) * 2 - 1
            console.print(f"exporting MLPerf Tiny {TASK_MODEL[t]} to int8 TFLite ...")
            data, _ = _quiet(
                lambda m=module, x=x, t=t: export_int8_tflite(
                    m.eval(), (x[:2],), [(x,)], artifact=f"mlperf-{t}"
                )
            )
            cache.mkdir(parents=True, exist_ok=True)
            (cache / f"mlperf-{t}.tflite").write_bytes(data)
    for t in TASK_MODEL:
        out[t] = (cache / f"mlperf-{t}.tflite").read_bytes()
    return out


# ------------------------------------------------------------------------------------------ parts


def reclocked(base: HardwareProfile, clock_hz: float, board: str) -> HardwareProfile:
    """``base`` at another clock: compute, bus bandwidths and dispatch scale with it; the rest is the base's."""
    r = clock_hz / base.clock_hz
    mem = base.memory.model_copy(
        update={
            "onchip_bandwidth_Bps": base.memory.onchip_bandwidth_Bps * r,
            "offchip_bandwidth_Bps": base.memory.offchip_bandwidth_Bps * r,
        }
    )
    return base.model_copy(
        update={
            "name": f"{base.name}@{clock_hz / 1e6:.0f}MHz",
            "description": f"{base.name} re-clocked to {clock_hz / 1e6:.0f} MHz as {board}",
            "clock_hz": clock_hz,
            "peak_ops_per_s": {k: v * r for k, v in base.peak_ops_per_s.items()},
            "per_invoke_overhead_s": base.per_invoke_overhead_s / r,
            "memory": mem,
        }
    )


def calibration(bundle: Path, keys: Path) -> dict[str, Any]:
    from kasmina_edge.profiler.measure import measure
    from kasmina_edge.runtime.backends import OrtBackend

    subject = load_subject(bundle, keys)
    report = profile_subject(subject, [hardware("x86-64-host")])
    host = report.results[0]
    backend = OrtBackend()
    rows = []
    for a in subject.artifacts:
        m = measure(
            a.data, a.name, "onnxruntime", backend, reference=a.reference, warmup=200, runs=3000, budget_s=1.5
        )
        est = host.latencies[a.name].total_s
        rows.append(
            {
                "artifact": a.name,
                "kind": a.facts.kind,
                "ops": len(a.graph.ops),
                "macs": a.graph.macs,
                "estimate_s": est,
                "measured_p50_s": m.p50_s,
                "measured_p99_s": m.p99_s,
                "runs": m.runs,
                "cpu": m.cpu,
                "ratio": est / m.p50_s,
            }
        )
    ratios = [r["ratio"] for r in rows]
    med = statistics.median(ratios)
    return {
        "bundle": str(bundle),
        "profile": "x86-64-host",
        "runtime": backend.info().runtime,
        "rows": rows,
        "median_ratio": med,
        "within_0.5_2": 0.5 <= med <= 2.0,
    }


def validation(models: dict[str, bytes]) -> dict[str, Any]:
    graphs = {t: profile_tflite(d, f"mlperf-{t}") for t, d in models.items()}
    rows = []
    for pub in PUBLISHED:
        base = hardware(pub["base"])
        prof = reclocked(base, pub["clock_hz"], pub["board"])
        g = graphs[pub["task"]]
        est = estimate_graph(g, prof)
        published_s = 1.0 / pub["inf_per_s"]
        rows.append(
            {
                "task": pub["task"],
                "model": TASK_MODEL[pub["task"]],
                "macs": g.macs,
                "params": g.param_bytes,
                "board": pub["board"],
                "runtime": pub["runtime"],
                "profile": prof.name,
                "estimate_s": est.total_s,
                "published_s": published_s,
                "ratio": est.total_s / published_s,
                "unmodified_profile_s": estimate_graph(g, base).total_s,
                "source": pub["source"],
            }
        )
    worst = min(rows, key=lambda r: min(r["ratio"], 1 / r["ratio"]))
    by_runtime: dict[str, list[float]] = {}
    for r in rows:
        by_runtime.setdefault(f"{r['board']} / {r['runtime']}", []).append(r["ratio"])
    return {
        "rows": rows,
        "worst": worst,
        "median_ratio_by_submission": {k: statistics.median(v) for k, v in by_runtime.items()},
    }


def arenas(bundle: Path, keys: Path, models: dict[str, bytes]) -> dict[str, Any]:
    subject = load_subject(bundle, keys)
    arts = {a.name: a.data for a in subject.artifacts}
    arts.update({f"mlperf-{t}": d for t, d in models.items()})
    rows = [c.to_dict() for c in compare_arenas(arts, measure=True)]
    measured = [r for r in rows if r["ratio"] is not None]
    worst = max((abs(r["ratio"] - 1) for r in measured), default=None)
    return {
        "rows": rows,
        "worst_error": worst,
        "all_within_10pct": bool(measured) and worst is not None and worst <= 0.10,
    }


def timing(bundles: list[tuple[Path, Path]]) -> list[dict[str, Any]]:
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    rows = []
    for bundle, keys in bundles:
        cmd = [sys.executable, "-m", "kasmina_edge.cli.app", "profile", str(bundle), "--keys", str(keys)]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            preexec_fn=pin,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200"},
        )
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = profile_subject(load_subject(bundle, keys))
        inproc = time.perf_counter() - t1
        rows.append(
            {
                "bundle": bundle.name,
                "profiles": len(report.results),
                "cli_wall_s": wall,
                "cli_exit": proc.returncode,
                "in_process_s": inproc,
                "estimate_only_s": report.elapsed_s,
                "cpu": cpu,
                "under_10s": wall < 10.0 and proc.returncode == 0,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------ output


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def show(result: dict[str, Any]) -> None:
    cal = result["calibration"]
    t = Table(
        title=f"1. calibration: x86-64-host estimate vs ONNX Runtime here (one core), median ratio {cal['median_ratio']:.2f}"
    )
    for col in ("artifact", "kind", "ops", "MACs", "estimate", "measured p50", "p99", "est/meas"):
        t.add_column(col, justify="left" if col in ("artifact", "kind") else "right")
    for r in cal["rows"]:
        t.add_row(
            r["artifact"],
            r["kind"],
            str(r["ops"]),
            f"{r['macs']:,}",
            f"{r['estimate_s'] * 1e6:.1f} us",
            f"{r['measured_p50_s'] * 1e6:.1f} us",
            f"{r['measured_p99_s'] * 1e6:.1f} us",
            f"{r['ratio']:.2f}",
        )
    console.print(t)
    val = result["validation"]
    t = Table(title="2. MLPerf Tiny architectures (random weights): estimate vs published latency")
    for col in (
        "model",
        "MACs",
        "board / runtime",
        "profile",
        "estimate",
        "published",
        "est/pub",
        "unmodified profile",
    ):
        t.add_column(col, justify="left" if col in ("model", "board / runtime", "profile") else "right")
    for r in val["rows"]:
        t.add_row(
            r["model"],
            f"{r['macs']:,}",
            f"{r['board']} / {r['runtime']}",
            r["profile"],
            _ms(r["estimate_s"]),
            _ms(r["published_s"]),
            f"{r['ratio']:.2f}",
            _ms(r["unmodified_profile_s"]),
        )
    console.print(t)
    w = val["worst"]
    console.print(
        f"worst ratio: {w['model']} on {w['board']} / {w['runtime']}: {w['ratio']:.2f} (see the note for why)"
    )
    for k, v in val["median_ratio_by_submission"].items():
        console.print(f"  median est/pub, {k}: {v:.2f}")
    ar = result["arenas"]
    t = Table(
        title=f"3. TFLite Micro arena: estimate vs the interpreter (worst error {ar['worst_error']:.1%})"
    )
    for col in ("artifact", "estimated", "measured", "est/meas"):
        t.add_column(col, justify="left" if col == "artifact" else "right")
    for r in ar["rows"]:
        t.add_row(
            r["name"],
            f"{r['estimated_bytes']:,} B",
            f"{r['measured_bytes']:,} B" if r["measured_bytes"] else "-",
            f"{r['ratio']:.3f}" if r["ratio"] else "-",
        )
    console.print(t)
    t = Table(title="4. `kasmina-edge profile BUNDLE` over every profile, no --measure, one core")
    for col in ("bundle", "profiles", "CLI wall (fresh interpreter)", "in process", "estimates only"):
        t.add_column(col, justify="left" if col == "bundle" else "right")
    for r in result["timing"]:
        t.add_row(
            r["bundle"],
            str(r["profiles"]),
            f"{r['cli_wall_s']:.2f} s",
            f"{r['in_process_s']:.2f} s",
            f"{r['estimate_only_s']:.3f} s",
        )
    console.print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_profiler.json")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "bench_profiler_cache")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached bundles and models")
    args = ap.parse_args()
    t0 = time.perf_counter()
    x86, keys = default_bundle(args.cache, "x86", args.rebuild)
    mcu, _ = default_bundle(args.cache, "cortex-m", args.rebuild)
    models = mlperf_tflite(args.cache, args.rebuild)
    result = {
        "calibration": calibration(x86, keys),
        "validation": validation(models),
        "arenas": arenas(mcu, keys, models),
        "timing": timing([(mcu, keys), (x86, keys)]),
        "fit": mlperf_fit(models, PUBLISHED, reclocked),
    }
    result["elapsed_s"] = time.perf_counter() - t0
    show(result)
    show_fit(result["fit"], console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, args.json)
    console.print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
