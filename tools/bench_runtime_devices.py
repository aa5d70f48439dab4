"""Sections 5-8 of tools/bench_runtime.py: whole streams through an emulated device (firmware_sim).

5. MIT-BIH record 100 through an emulated device with the Edge TPU bundle: beat Se/+P, N, S, V;
6. EMG switch midway: macro-F1 of the noisy half with the base model alone, with swapping as before issue 15
   (kernel live from BLENDING, kept on confidence) and with swapping judged on label-free evidence, at 0 dB
   and -6 dB per seed; windows until the kernel is on trial / live; what culled it;
7. false activations on clean records (MIT-BIH DS1, ``--clean-minutes`` of each as recorded);
8. real records with real noise: DS1 records with NSTDB ``ma`` mixed in as NSTDB made its records.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from firmware_sim.device import open_device
from firmware_sim.runner import RunOptions, run_stream
from firmware_sim.score import BeatScore, score_run
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.sources import RecordSource, open_source
from kasmina_edge.ecg.types import AAMI_CLASSES
from kasmina_edge.runtime.engine import RuntimeConfig
from kasmina_edge.runtime.lifecycle import LifecycleConfig

console = Console()
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
Table = Callable[[str, list[dict[str, Any]], list[tuple[str, str, str]]], None]


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


def emulator_sections(args: argparse.Namespace, bundle_path: Path, keys: Path, results: dict[str, Any],
                      _table: Table) -> list[float]:
    """Sections 5-8 into ``results`` (tables printed); returns the host's decision latencies (section 3)."""
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
    return decision_s
