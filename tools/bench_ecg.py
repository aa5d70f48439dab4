"""Benchmark the ECG data layer on one core: synthetic generation and QRS detection, as multiples of real time.

Side by side in one run:
- generation: our closed-form ECGSYN (``synthesize``) vs. integrating McSharry's ODE with
  scipy's ``solve_ivp`` (RK45, step <= 1/fs, the way ECGSYN itself integrates);
- QRS detection: our Pan-Tompkins detector (batch, and streaming in 0.1 s chunks, and the
  full streaming beatizer that also filters and cuts windows) vs. wfdb's ``xqrs_detect`` and
  ``gqrs_detect`` on the same MIT-BIH records (throughput, and Se/+P with the 150 ms window);
- QRS detection in real noise (issue 15 item 4): the DS1 records with NSTDB ``bw``/``ma`` noise
  mixed in the way NSTDB's own records were made (:mod:`kasmina_edge.ecg.noise`), ours (with the
  signal-quality flag, :mod:`kasmina_edge.ecg.quality`) beside wfdb's ``xqrs`` and NeuroKit2's
  ``ecg_clean`` + ``ecg_peaks`` (when importable) in the same run. Scored from minute 5 on
  (NSTDB's learning period): clean rows over all of it, noisy rows over the noisy stretches.
  Beats in unreadable windows are reported as Q; the table gives Se/+P over all beats (Q beats
  count as detections where they are), the share of reference beats flagged, and Se/+P over
  the readable windows only. The readability threshold is calibrated leave-one-record-out on
  the other records' clean minutes (never on the scored record, never on noise).

    .venv/bin/python tools/bench_ecg.py [--records 100,101,106,119,208] [--json runs/bench_ecg.json]
    .venv/bin/python tools/bench_ecg.py --only-noise --noise-minutes 13   # the issue 15 table, all 22 DS1
    .venv/bin/python tools/bench_ecg.py --tune --json runs/bench_ecg_tune.json  # how QrsParams was chosen
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
from kasmina_edge.ecg.beat_match import match_beats, sensitivity_ppv
from kasmina_edge.ecg.data import mitdb_path
from kasmina_edge.ecg.qrs import QrsDetector, detect_qrs
from kasmina_edge.ecg.quality import READABLE_MIN_RATIO, QualityTrack, calibrate_threshold, quality_track
from kasmina_edge.ecg.synth import PatientParams, random_patient, synthesize
from kasmina_edge.ecg.windowing import StreamingBeatizer

console = Console(width=max(Console().width, 120))  # the tables are wide; a pipe gets 120 columns


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
        impls += [(f"baseline: {label}", fn) for label, fn in _baseline_detectors() if label.startswith("neurokit2")]
    for label, x, ref, fs in sources:
        for impl, fn in impls:
            reps = repeat if impl.startswith("ours") else 1
            wall, det = _best_of(lambda fn=fn, x=x, fs=fs: fn(x, fs), reps)
            tp, fp, fn_ = match_beats(ref, det, fs).counts
            se, ppv = sensitivity_ppv(tp, fp, fn_)
            rows.append({"task": f"QRS detection, {label}", "impl": impl, "signal_s": x.shape[0] / fs,
                         "wall_s": wall, "x_realtime": x.shape[0] / fs / wall, "tp": tp, "fp": fp, "fn": fn_,
                         "se": se, "ppv": ppv})
    return rows, where


DS1 = ("101,106,108,109,112,114,115,116,118,119,122,124,201,203,205,207,208,209,215,220,223,230")
NOISE_TARGETS = {6.0: (0.99, 0.95), 0.0: (0.95, 0.88)}  # SNR dB: (Se, +P) floors of issue 15 item 4
SPEED_TARGET = 5000.0


def _baseline_detectors() -> list[tuple[str, Callable[[np.ndarray, float], np.ndarray]]]:
    out: list[tuple[str, Callable[[np.ndarray, float], np.ndarray]]] = []
    try:
        from wfdb import processing

        out.append(("wfdb xqrs", lambda x, fs: np.asarray(processing.xqrs_detect(x, fs, verbose=False))))
    except ImportError:
        console.print("[yellow]wfdb not installed: no xqrs baseline[/]")
    try:
        import neurokit2 as nk

        def _nk(x: np.ndarray, fs: float) -> np.ndarray:
            clean = nk.ecg_clean(x, sampling_rate=int(fs))
            return np.asarray(nk.ecg_peaks(clean, sampling_rate=int(fs))[1]["ECG_R_Peaks"], dtype=np.int64)

        out.append((f"neurokit2 {nk.__version__}", _nk))
    except ImportError:
        console.print("[yellow]neurokit2 not importable: no NeuroKit2 baseline (pip install neurokit2)[/]")
    return out


def _scored(samples: np.ndarray, region: np.ndarray) -> np.ndarray:
    s = np.asarray(samples, dtype=np.int64)
    s = s[(s >= 0) & (s < region.shape[0])]
    return s[region[s]]


def _count(ref: np.ndarray, det: np.ndarray, fs: float) -> dict[str, int]:
    tp, fp, fn = match_beats(ref, det, fs).counts
    return {"tp": tp, "fp": fp, "fn": fn}


def bench_noise(records: list[str], minutes: float, conditions: list[tuple[str, float | None]],
                baselines: bool, seed: int) -> dict[str, Any]:
    """Per record x condition x detector: beat counts on the scored region, wall time, quality ratios."""
    from dataclasses import replace

    from kasmina_edge.ecg.noise import FIRST_CLEAN_S, nstdb_mix
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    others = _baseline_detectors() if baselines else []
    raw: list[dict[str, Any]] = []
    tracks: dict[tuple[str, str], tuple[QualityTrack, np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in records:
        base = mitdb_path(name)
        if not base.with_name(name + ".hea").exists():
            console.print(f"[yellow]record {name} not found under {base.parent}: skipped[/]")
            continue
        rec = read_wfdb(base, seconds=minutes * 60.0)
        fs = rec.fs
        for kind, snr in conditions:
            x = rec if kind == "clean" else nstdb_mix(rec, kind, float(snr or 0.0), np.random.default_rng(seed + int(name)))
            sig = x.lead(0)
            region = np.zeros(x.n_samples, dtype=bool)
            if kind == "clean":
                region[int(FIRST_CLEAN_S * fs):] = True
            else:
                for c in x.conditions:
                    region[c.start: c.end] = True
            assert x.beats is not None
            ref = _scored(x.beats.samples, region)
            cond = "clean" if kind == "clean" else f"{kind} {snr:g} dB"
            t0 = time.perf_counter()
            det = detect_qrs(sig, fs)
            t_det = time.perf_counter() - t0
            track = quality_track(sig, fs, det)
            t_all = time.perf_counter() - t0
            tracks[(name, cond)] = (track, ref, _scored(det, region), region)
            raw.append({"record": name, "condition": cond, "impl": "ours", "seconds": x.seconds,
                        "wall_s": t_det, "wall_with_quality_s": t_all, **_count(ref, _scored(det, region), fs)})
            for label, fn in others:
                t0 = time.perf_counter()
                d = fn(sig.astype(np.float64), fs)
                wall = time.perf_counter() - t0
                raw.append({"record": name, "condition": cond, "impl": label, "seconds": x.seconds, "wall_s": wall,
                            **_count(ref, _scored(d, region), fs)})
            console.print(f"  {name} {cond}: done", style="dim")
    # readability threshold per record, calibrated on the OTHER records' clean scored windows
    names = sorted({r for r, _ in tracks})
    clean_w: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for r in names:
        if (r, "clean") not in tracks:
            continue
        track, ref, _, region = tracks[(r, "clean")]
        win = np.arange(track.ratio.size)
        in_region = region[np.minimum(win * track.window, region.shape[0] - 1)]
        beats = np.bincount(ref // track.window, minlength=track.ratio.size)
        clean_w[r] = (track.ratio[in_region], beats[in_region])
    thresholds: dict[str, float] = {}
    for r in names:
        pool = [v for k, v in clean_w.items() if k != r]
        # one record alone has no others to calibrate on: the shipped default (calibrated on DS1) then
        thresholds[r] = (calibrate_threshold(np.concatenate([p[0] for p in pool]), np.concatenate([p[1] for p in pool]))
                         if pool else READABLE_MIN_RATIO)
    for row in raw:
        if row["impl"] != "ours" or row["record"] not in thresholds:
            continue
        track, ref, det, _ = tracks[(row["record"], row["condition"])]
        track = replace(track, threshold=thresholds[row["record"]])
        ok_ref, ok_det = track.readable_at(ref), track.readable_at(det)
        fs_ = track.fs
        row.update({"threshold": track.threshold, "flagged_ref": int((~ok_ref).sum()), "n_ref": int(ref.size),
                    "flagged_det": int((~ok_det).sum()),
                    **{f"readable_{k}": v for k, v in _count(ref[ok_ref], det[ok_det], fs_).items()}})
    all_thr = calibrate_threshold(np.concatenate([v[0] for v in clean_w.values()]),
                                  np.concatenate([v[1] for v in clean_w.values()])) if clean_w else None
    return {"rows": raw, "loro_thresholds": thresholds, "threshold_all_records": all_thr,
            "minutes": minutes, "seed": seed}


def summarise_noise(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Totals per condition x implementation (beats pooled over the records)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in res["rows"]:
        key = (row["condition"], row["impl"])
        t = out.setdefault(key, {"condition": key[0], "impl": key[1], "records": 0, "tp": 0, "fp": 0, "fn": 0,
                                 "seconds": 0.0, "wall_s": 0.0})
        t["records"] += 1
        for k in ("tp", "fp", "fn", "seconds", "wall_s"):
            t[k] += row[k]
        for k in ("wall_with_quality_s", "flagged_ref", "n_ref", "readable_tp", "readable_fp", "readable_fn"):
            if k in row:
                t[k] = t.get(k, 0) + row[k]
    rows = []
    for t in out.values():
        t["se"], t["ppv"] = sensitivity_ppv(t["tp"], t["fp"], t["fn"])
        t["x_realtime"] = t["seconds"] / t["wall_s"] if t["wall_s"] else float("nan")
        if "readable_tp" in t:
            t["readable_se"], t["readable_ppv"] = sensitivity_ppv(t["readable_tp"], t["readable_fp"], t["readable_fn"])
            t["flagged_fraction"] = t["flagged_ref"] / t["n_ref"] if t["n_ref"] else float("nan")
            t["x_realtime_with_quality"] = t["seconds"] / t["wall_with_quality_s"]
        rows.append(t)
    return rows


def noise_table(rows: list[dict[str, Any]], res: dict[str, Any]) -> Table:
    n_rec = max((r["records"] for r in rows), default=0)
    table = Table(title=f"QRS detection in real NSTDB noise: {n_rec} DS1 records x {res['minutes']:g} min, MLII, "
                        "scored from minute 5 (noisy rows: noisy stretches only). Q %: reference beats in "
                        "unreadable windows (reported as Q); rd: readable windows only")
    for col in ("condition", "detector", "Se %", "+P %", "Q %", "rd Se %", "rd +P %", "x RT", "x RT +flag", "floor"):
        table.add_column(col, justify="left" if col in ("condition", "detector", "floor") else "right")

    def pct(v: float | None) -> str:
        return "" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"

    ours_speed = {r["condition"]: r["x_realtime"] for r in rows if r["impl"] == "ours"}
    for row in rows:
        snr = None if row["condition"] == "clean" else float(row["condition"].split()[1])
        goal = NOISE_TARGETS.get(snr) if snr is not None and row["impl"] == "ours" else None
        speed = f"{row['x_realtime']:,.0f}"
        if row["impl"] != "ours" and row["condition"] in ours_speed:
            speed += f" (ours {ours_speed[row['condition']] / row['x_realtime']:.1f}x)"
        verdict = ""
        if goal is not None:
            met = row["se"] >= goal[0] and row["ppv"] >= goal[1]
            verdict = f"{100 * goal[0]:g}/{100 * goal[1]:g} {'met' if met else 'MISSED'}"
        table.add_row(row["condition"], row["impl"], pct(row["se"]), pct(row["ppv"]), pct(row.get("flagged_fraction")),
                      pct(row.get("readable_se")), pct(row.get("readable_ppv")), speed,
                      f"{row['x_realtime_with_quality']:,.0f}" if "x_realtime_with_quality" in row else "", verdict)
    return table


TUNE_GRID = [(0.0, 0.25, 0.0)] + [(rr, frac, noise) for rr, frac in ((0.6, 0.7), (0.7, 0.55), (0.8, 0.55))
                                   for noise in (0.1, 0.2, 0.3)]
CLEAN_TOLERANCE = 0.0  # share of the clean beats a setting may cost on the training records' whole clean recordings


def tune_premature(records: list[str], minutes: float, seed: int) -> dict[str, Any]:
    """Leave-one-record-out choice of QrsParams: per held-out record, the setting with the fewest errors in
    noise on the other records among those that keep their clean errors (whole 30 min records) within
    CLEAN_TOLERANCE of the rule turned off; held-out counts pooled."""
    from collections import Counter

    from kasmina_edge.ecg.noise import nstdb_mix
    from kasmina_edge.ecg.qrs import QrsParams
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    conds: list[tuple[str, float | None]] = [("clean", None), ("ma", 6.0), ("ma", 0.0), ("ma", -6.0), ("bw", 0.0)]
    counts: dict[tuple[tuple[float, float, float], str, str], tuple[int, int, int]] = {}
    names = [r for r in records if mitdb_path(r).with_name(r + ".hea").exists()]
    for name in names:
        rec = read_wfdb(mitdb_path(name), seconds=minutes * 60.0)
        whole = read_wfdb(mitdb_path(name))
        for kind, snr in conds:
            x = whole if kind == "clean" else nstdb_mix(rec, kind, float(snr or 0.0), np.random.default_rng(seed + int(name)))
            region = np.zeros(x.n_samples, dtype=bool)
            if kind == "clean":
                region[:] = True  # all of it: a clean record's own noisy minutes count
            for c in x.conditions:
                region[c.start: c.end] = True
            assert x.beats is not None
            ref = _scored(x.beats.samples, region)
            cond = "clean" if kind == "clean" else f"{kind} {snr:g} dB"
            for g in TUNE_GRID:
                det = detect_qrs(x.lead(0), x.fs, QrsParams(*g))
                counts[(g, name, cond)] = match_beats(ref, _scored(det, region), x.fs).counts
        console.print(f"  tuned on {name}", style="dim")
    cnames = [("clean" if k == "clean" else f"{k} {s:g} dB") for k, s in conds]
    noisy = [c for c in cnames if c != "clean"]

    def errs(g: tuple[float, float, float], rs: list[str], cs: list[str]) -> int:
        return sum(counts[(g, r, c)][1] + counts[(g, r, c)][2] for r in rs for c in cs)

    off = TUNE_GRID[0]
    held = {c: [0, 0, 0] for c in cnames}
    chosen: list[tuple[float, float, float]] = []
    for r in names:
        train = [x for x in names if x != r]
        n_clean = sum(counts[(off, x, "clean")][0] + counts[(off, x, "clean")][2] for x in train)
        ok = [g for g in TUNE_GRID if errs(g, train, ["clean"]) <= errs(off, train, ["clean"]) + CLEAN_TOLERANCE * n_clean]
        best = min(ok, key=lambda g: errs(g, train, noisy))
        chosen.append(best)
        for c in cnames:
            for i in range(3):
                held[c][i] += counts[(best, r, c)][i]
    per_setting = {str(g): {c: list(np.sum([counts[(g, r, c)] for r in names], axis=0).tolist()) for c in cnames}
                   for g in TUNE_GRID}
    table = Table(title=f"QrsParams leave-one-record-out, {len(names)} DS1 records (clean: whole records; noise: "
                        f"{minutes:g} min, noisy stretches): held-out Se/+P")
    for col in ("condition", "held-out Se %", "held-out +P %", "rule off Se %", "rule off +P %"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for c in cnames:
        se, ppv = sensitivity_ppv(*held[c])
        se0, ppv0 = sensitivity_ppv(*np.sum([counts[(off, r, c)] for r in names], axis=0).tolist())
        table.add_row(c, f"{100 * se:.2f}", f"{100 * ppv:.2f}", f"{100 * se0:.2f}", f"{100 * ppv0:.2f}")
    console.print(table)
    console.print(f"chosen per fold: {dict(Counter(str(g) for g in chosen))}")
    return {"grid": [list(g) for g in TUNE_GRID], "chosen": [list(g) for g in chosen], "records": names,
            "held_out": held, "per_setting": per_setting, "clean_tolerance": CLEAN_TOLERANCE}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="100,101,106,119,208", help="MIT-BIH records (comma separated)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated record")
    ap.add_argument("--ode-seconds", type=float, default=10.0, help="length integrated by the ODE baseline")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for our timings")
    ap.add_argument("--no-baselines", action="store_true", help="skip wfdb's detectors (slow)")
    ap.add_argument("--json", type=Path, default=Path("runs/bench_ecg.json"), help="where to write the results")
    ap.add_argument("--noise-records", default=DS1, help="records for the noise benchmark (default: the 22 DS1)")
    ap.add_argument("--noise-minutes", type=float, default=13.0,
                    help="minutes of each record (5 clean, then 2 noisy / 2 clean; 13: two noisy stretches)")
    ap.add_argument("--kinds", default="bw,ma", help="NSTDB noise records to mix in")
    ap.add_argument("--snrs", default="6,0,-6", help="SNRs in dB")
    ap.add_argument("--seed", type=int, default=0, help="noise excerpt seed (+ record number)")
    ap.add_argument("--no-noise", action="store_true", help="skip the noise benchmark")
    ap.add_argument("--only-noise", action="store_true", help="only the noise benchmark")
    ap.add_argument("--tune", action="store_true",
                    help="only re-run the leave-one-record-out choice of QrsParams (the premature rule) and exit")
    args = ap.parse_args(argv)
    pinned = _pin_one_core()
    payload: dict[str, Any] = {"bench": "ecg", "python": sys.version.split()[0], "numpy": np.__version__,
                               "machine": platform.machine(), "cpu": pinned}
    if args.tune:
        payload["tune"] = tune_premature([r.strip() for r in args.noise_records.split(",") if r.strip()],
                                         args.noise_minutes, args.seed)
        _write(args.json, payload)
        return 0
    if not args.no_noise:
        conds: list[tuple[str, float | None]] = [("clean", None)]
        conds += [(k.strip(), float(v)) for k in args.kinds.split(",") if k.strip() for v in args.snrs.split(",")]
        res = bench_noise([r.strip() for r in args.noise_records.split(",") if r.strip()], args.noise_minutes, conds,
                          not args.no_baselines, args.seed)
        summary = summarise_noise(res)
        console.print(noise_table(summary, res))
        ours = [r for r in summary if r["impl"] == "ours"]
        speed_ok = all(r["x_realtime"] >= SPEED_TARGET for r in ours)
        console.print(f"speed target >= {SPEED_TARGET:,.0f}x real time (detection): {'met' if speed_ok else 'MISSED'}; "
                      f"readability threshold (all records' clean minutes): {res['threshold_all_records']}")
        payload["noise"] = {"summary": summary, **res, "targets": {str(k): v for k, v in NOISE_TARGETS.items()},
                            "speed_target": SPEED_TARGET, "speed_met": speed_ok}
    if args.only_noise:
        _write(args.json, payload)
        return 0
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
    payload.update({"target_x_realtime": target, "generation": gen, "detection": det,
                    "generation_met": ok_gen, "detection_met": ok_det})
    _write(args.json, payload)
    return 0


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    os.replace(tmp, path)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
