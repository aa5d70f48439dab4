"""Benchmark the ECG data layer on one core: synthetic generation and QRS detection, as multiples of real time.

Side by side in one run:
- generation: our closed-form ECGSYN (``synthesize``) vs. integrating McSharry's ODE with
  scipy's ``solve_ivp`` (RK45, step <= 1/fs, the way ECGSYN itself integrates);
- QRS detection: our Pan-Tompkins detector (batch, and streaming in 0.1 s chunks, and the
  full streaming beatizer that also filters and cuts windows) vs. wfdb's ``xqrs_detect`` and
  ``gqrs_detect`` on the same MIT-BIH records (throughput, and Se/+P with the 150 ms window).

    .venv/bin/python tools/bench_ecg.py [--records 100,101,106,119,208] [--json runs/bench_ecg.json]
"""

# ruff: noqa: E402  (thread limits must be set before numpy is imported)
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, before numpy loads

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.integrate import solve_ivp

from kasmina_edge.ecg.anomalies import PAC, PVC
from kasmina_edge.ecg.data import mitdb_path
from kasmina_edge.ecg.qrs import QrsDetector, detect_qrs, match_beats, sensitivity_ppv
from kasmina_edge.ecg.synth import PatientParams, random_patient, synthesize
from kasmina_edge.ecg.windowing import StreamingBeatizer

console = Console()


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned"


def _best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def mcsharry_ode(seconds: float, fs: float, patient: PatientParams) -> np.ndarray:
    """The naive way: McSharry's three ODEs at a constant rate, integrated by solve_ivp."""
    omega = 2 * np.pi * patient.hr_mean / 60.0
    theta_i, b = patient.angles, patient.widths
    a = patient.amplitudes[0] * omega / b**2  # McSharry's a_i for our peak amplitudes

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x1, x2, z = y
        alpha = 1.0 - np.hypot(x1, x2)
        dtheta = np.mod(np.arctan2(x2, x1) - theta_i + np.pi, 2 * np.pi) - np.pi
        z0 = 0.03 * np.sin(2 * np.pi * patient.hf_hz * t)
        dz = -np.sum(a * dtheta * np.exp(-(dtheta**2) / (2 * b**2))) - (z - z0)
        return np.array([alpha * x1 - omega * x2, alpha * x2 + omega * x1, dz])

    t = np.arange(int(seconds * fs)) / fs
    sol = solve_ivp(rhs, (0.0, t[-1]), [-1.0, 0.0, 0.0], t_eval=t, max_step=1.0 / fs)
    return sol.y[2]


def bench_generation(fs: float, minutes: float, ode_seconds: float, repeat: int) -> list[dict[str, Any]]:
    seconds = minutes * 60.0
    rng = np.random.default_rng(0)
    patient = random_patient(rng)
    events = [PVC(0, seconds, per_minute=4), PAC(0, seconds, per_minute=2)]
    ours, rec = _best_of(lambda: synthesize(patient, seconds, fs, np.random.default_rng(1), events), repeat)
    base, _ = _best_of(lambda: mcsharry_ode(ode_seconds, fs, patient), 1)
    return [
        {"task": f"generate {minutes:g} min, 2 leads, labelled ({len(rec.beats)} beats)", "impl": "ours: synthesize",
         "signal_s": seconds, "wall_s": ours, "x_realtime": seconds / ours},
        {"task": f"generate {ode_seconds:g} s, 1 lead", "impl": "baseline: McSharry ODE, solve_ivp RK45",
         "signal_s": ode_seconds, "wall_s": base, "x_realtime": ode_seconds / base},
    ]


def _stream_detect(x: np.ndarray, fs: float, chunk: int) -> np.ndarray:
    det = QrsDetector(fs)
    out: list[int] = []
    for i in range(0, x.shape[0], chunk):
        out += det.process(x[i: i + chunk])
    return np.asarray(out + det.flush())


def _stream_windows(x: np.ndarray, fs: float, chunk: int) -> np.ndarray:
    sb = StreamingBeatizer(fs)
    beats = []
    for i in range(0, x.shape[0], chunk):
        beats += sb.process(x[i: i + chunk])
    beats += sb.flush()
    return np.asarray([b.r_peak for b in beats])


def bench_detection(records: list[str], repeat: int, baselines: bool) -> tuple[list[dict[str, Any]], str]:
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rows: list[dict[str, Any]] = []
    sources: list[tuple[str, np.ndarray, np.ndarray, float]] = []
    for name in records:
        base = mitdb_path(name)
        if base.with_name(name + ".hea").exists():
            rec = read_wfdb(base, leads=["MLII"])
            sources.append((f"mitdb {name}", rec.lead(0), rec.beats.samples, rec.fs))
    if not sources:
        rng = np.random.default_rng(0)
        rec = synthesize(random_patient(rng), 1800.0, rng=rng)
        sources.append(("synthetic 30 min (MIT-BIH data absent)", rec.lead(0), rec.beats.samples, rec.fs))
        where = "synthetic"
    else:
        where = "MIT-BIH MLII, whole records"
    impls: list[tuple[str, Callable[[np.ndarray, float], np.ndarray]]] = [
        ("ours: detect_qrs (batch)", lambda x, fs: detect_qrs(x, fs)),
        ("ours: QrsDetector, 0.1 s chunks", lambda x, fs: _stream_detect(x, fs, int(fs // 10))),
        ("ours: StreamingBeatizer (filter+detect+windows), 0.1 s chunks",
         lambda x, fs: _stream_windows(x, fs, int(fs // 10))),
    ]
    if baselines:
        try:
            from wfdb import processing

            impls.append(("baseline: wfdb xqrs_detect", lambda x, fs: np.asarray(
                processing.xqrs_detect(x, fs, verbose=False))))
            impls.append(("baseline: wfdb gqrs_detect", lambda x, fs: np.asarray(
                processing.gqrs_detect(x, fs))))
        except ImportError:
            console.print("[yellow]wfdb not installed: no baseline detectors[/]")
    for label, x, ref, fs in sources:
        for impl, fn in impls:
            reps = repeat if impl.startswith("ours") else 1
            wall, det = _best_of(lambda fn=fn, x=x, fs=fs: fn(x, fs), reps)
            tp, fp, fn_ = match_beats(ref, det, fs)
            se, ppv = sensitivity_ppv(tp, fp, fn_)
            rows.append({"task": f"QRS detection, {label}", "impl": impl, "signal_s": x.shape[0] / fs,
                         "wall_s": wall, "x_realtime": x.shape[0] / fs / wall, "tp": tp, "fp": fp, "fn": fn_,
                         "se": se, "ppv": ppv})
    return rows, where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="100,101,106,119,208", help="MIT-BIH records (comma separated)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated record")
    ap.add_argument("--ode-seconds", type=float, default=10.0, help="length integrated by the ODE baseline")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for our timings")
    ap.add_argument("--no-baselines", action="store_true", help="skip wfdb's detectors (slow)")
    ap.add_argument("--json", type=Path, default=Path("runs/bench_ecg.json"), help="where to write the results")
    args = ap.parse_args(argv)
    pinned = _pin_one_core()
    gen = bench_generation(360.0, args.minutes, args.ode_seconds, args.repeat)
    det, where = bench_detection([r.strip() for r in args.records.split(",") if r.strip()], args.repeat,
                                 not args.no_baselines)

    table = Table(title=f"ECG data layer, one core ({pinned}); x real time = signal seconds / wall seconds")
    for col in ("task", "implementation", "signal s", "wall s", "x real time", "vs ours", "Se %", "+P %"):
        table.add_column(col, justify="left" if col in ("task", "implementation") else "right")
    ours_gen = gen[0]["x_realtime"]
    for row in gen:
        ratio = ours_gen / row["x_realtime"]
        table.add_row(row["task"], row["impl"], f"{row['signal_s']:.0f}", f"{row['wall_s']:.3f}",
                      f"{row['x_realtime']:,.0f}", "1" if row is gen[0] else f"ours {ratio:,.0f}x faster", "", "")
    ours_det: dict[str, float] = {}
    for row in det:
        if row["impl"] == "ours: detect_qrs (batch)":
            ours_det[row["task"]] = row["x_realtime"]
        ratio = ours_det.get(row["task"], row["x_realtime"]) / row["x_realtime"]
        table.add_row(row["task"], row["impl"], f"{row['signal_s']:.0f}", f"{row['wall_s']:.3f}",
                      f"{row['x_realtime']:,.0f}", f"{ratio:.2f}", f"{100 * row['se']:.2f}",
                      f"{100 * row['ppv']:.2f}")
    console.print(table)
    target = 200.0
    ok_gen = ours_gen >= target
    ok_det = all(r["x_realtime"] >= target for r in det if r["impl"].startswith("ours"))
    console.print(f"target >= {target:.0f}x real time: generation {'met' if ok_gen else 'MISSED'}, "
                  f"detection {'met' if ok_det else 'MISSED'} (detection data: {where})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "bench": "ecg", "python": sys.version.split()[0], "numpy": np.__version__, "machine": platform.machine(),
        "cpu": pinned, "target_x_realtime": target, "generation": gen, "detection": det,
        "generation_met": ok_gen, "detection_met": ok_det,
    }
    tmp = args.json.with_name(args.json.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.json)
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
