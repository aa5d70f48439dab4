"""Patient-specific seeds on real patients (issue 14): base alone, base + patient seed, full fine-tuning.

Leave-records-out on the DS1 records of ../shared/data/mitdb (MLII): folds by record, the base of a
fold never saw its test records.

* **Base** (item 2): every record classified whole by the base of the fold that held it out; gross
  Se/+P per AAMI class and macro-F1 over N/S/V/F (kasmina_edge.ecg.evaluate), per fold and over all.
* **Seeds** (item 3): each record adapted on its first ``--minutes`` of annotated beats and tested on
  the rest (minutes 5-30): base / base + seed (as the gates left it) / full fine-tuning, gross per
  class, the recovery of fine-tuning's gain, the seed's parameters.
* **Gates** (item 4): per record, G4's decision against what the seed (kept or not) did on the test
  minutes: kept and helped, kept and hurt, culled where it would have helped or hurt; "never worse".
* **Device** (item 5): per record, the kernel-only bundle's int8 chain (the artifacts the emulator
  runs, on the fold's Edge TPU base bundle) beside the float seeded model on the same beats.
* **End to end** (``--e2e-records``): morph --patient → flash → run on the emulator, timed; seed bytes
  and transfer time per link.

    .venv/bin/python tools/bench_patient.py [--folds 4] [--json runs/bench_patient.json]

One thread; about an hour on two shared cores (``--records`` and ``--device-records`` cut it down).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "mitdb"
CLASSES = ("N", "S", "V", "F")
BASE_TARGETS = {"N_se": 0.97, "N_ppv": 0.97, "V_se": 0.85, "V_ppv": 0.80, "macro_f1": 0.55}
SEED_TARGETS = {"macro_f1": 0.80, "V_se": 0.93, "V_ppv": 0.90, "S_se": 0.75, "S_ppv": 0.80}
con = Console()


def pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


# ------------------------------------------------------------------------------------------- data


def load_records(names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each record on its MLII lead (MIT-BIH 114 has V5 first), with its annotated beats."""
    from kasmina_edge.ecg.dataset import beats_from_record
    from kasmina_edge.ecg.wfdb_io import read_wfdb
    from kasmina_edge.host.data import SPEC

    records, beats = {}, {}
    for r in names:
        records[r] = read_wfdb(DATA / r, leads=["MLII"])
        beats[r] = beats_from_record(records[r], SPEC)
    return records, beats


def train_fold_base(k: int, train: list[str], beats: dict[str, Any], args: argparse.Namespace) -> Path:
    """The fold's base (what `kasmina-edge train --data wfdb:` does) with its common beats."""
    import dataclasses

    from kasmina_edge.ecg.dataset import concat
    from kasmina_edge.host.experiment import load_checkpoint, save_checkpoint
    from kasmina_edge.host.patient import COMMON_KEY, common_beats, common_beats_to_checkpoint
    from kasmina_edge.host.records import RecordSummary, choose_validation
    from kasmina_edge.host.train import TRAIN_PRESETS, for_real_records, train_base

    out = args.work / f"fold{k}" / "base.pt"
    if out.exists() and args.reuse:
        return out
    summaries = [RecordSummary(r, 360.0, "MLII", tuple(int(c) for c in np.bincount(beats[r].labels, minlength=5)))
                 for r in train]  # fmt: skip
    fit_recs, val_recs = choose_validation(summaries, seed=k)
    cfg = for_real_records(dataclasses.replace(TRAIN_PRESETS["default"], epochs=args.epochs, seed=k))
    train_base(cfg, concat([beats[r] for r in fit_recs]), concat([beats[r] for r in val_recs]), out=out)
    ckpt = load_checkpoint(out)
    ckpt[COMMON_KEY] = common_beats_to_checkpoint(
        common_beats(concat([beats[r] for r in train]), 200, seed=k)
    )
    ckpt["train_records"], ckpt["val_records"] = list(fit_recs), list(val_recs)
    save_checkpoint(out, ckpt)
    return out


# ------------------------------------------------------------------------------------------- one record


def evaluate_model(model: Any, test: Any, name: str, fs: float, start_s: float) -> Any:
    from kasmina_edge.ecg.evaluate import evaluate_beats
    from kasmina_edge.host.patient import classes_of

    return evaluate_beats(test.r_peaks, test.labels, test.r_peaks, classes_of(model, test), fs, name=name,
                          start_s=start_s)  # fmt: skip


def adapt_record(
    r: str, base: Any, ckpt: dict[str, Any], record: Any, beats: Any, cfg: Any, ranges: dict[str, Any] | None
) -> dict[str, Any]:
    """Seed (through its gates), the seed as it would be without G4, and full fine-tuning, on minutes 5-30."""
    from kasmina_edge.host.patient import common_beats_of, fine_tune_patient, patient_window, seeded_model
    from kasmina_edge.host.patient_grow import grow_patient_seed

    start_s = cfg.minutes * 60.0
    test = beats.subset(np.flatnonzero(beats.r_peaks >= int(start_s * record.fs)))
    window = patient_window(record, base, cfg)
    common = common_beats_of(ckpt, cfg.common_per_class, cfg.seed)
    t0 = time.perf_counter()
    seed = grow_patient_seed(base, window, common, cfg, target="edgetpu", ranges=ranges)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ft = fine_tune_patient(base, window, common, cfg)
    ft_s = time.perf_counter() - t0
    models = {"base": base, "seed": seeded_model(base, seed), "ungated": seeded_model(base, seed, include_culled=True),
              "finetune": ft}  # fmt: skip
    evs = {k: evaluate_model(m, test, r, record.fs, start_s) for k, m in models.items()}
    return {"record": r, "seed": seed, "models": models, "evals": evs, "seed_s": seed_s, "finetune_s": ft_s,
            "test": test, "window": window, "common": common}  # fmt: skip


def gate_outcome(res: dict[str, Any]) -> str:
    """What G4 decided against what the seed did on the test minutes (1 point either way is 'no change')."""
    base, ungated = res["evals"]["base"], res["evals"]["ungated"]
    d_f1 = ungated.macro_f1() - base.macro_f1()
    d_n = ungated.accuracy("N") - base.accuracy("N")
    effect = "hurt" if (d_f1 < -0.01 or d_n < -0.01) else ("helped" if d_f1 > 0.01 else "no change")
    if not any(g.state is not None for g in res["seed"].seeds):
        return "no seed"
    return f"{'kept' if res['seed'].fossilized else 'culled'}, {effect}"


def never_worse(res: dict[str, Any]) -> bool:
    base, seed = res["evals"]["base"], res["evals"]["seed"]
    return bool(seed.macro_f1() >= base.macro_f1() - 0.01 and seed.accuracy("N") >= base.accuracy("N") - 0.01)


# ------------------------------------------------------------------------------------------- device


def fold_base_bundle(fold_dir: Path, ckpt_path: Path, keys: Path) -> Path:
    from kasmina_edge.compile.pipeline import BuildRequest, build

    out = fold_dir / "base-edgetpu.kedge"
    if not out.exists() or out.stat().st_mtime < ckpt_path.stat().st_mtime:  # a retrained base: a new bundle
        build(
            BuildRequest(checkpoint=ckpt_path, seeds=None, target="edgetpu", out=out, keys=keys, strict=False)
        )
    return out


def device_parity(res: dict[str, Any], fold_dir: Path, ckpt_path: Path, base_bundle: Path, keys: Path,
                  record: Any, start_s: float) -> dict[str, Any]:  # fmt: skip
    """The int8 chain the emulator runs (base bundle + this patient's kernel-only bundle) beside the float
    seeded model, on the same test beats."""
    from kasmina_edge.compile.patient_bundle import patient_bundle
    from kasmina_edge.host.patient import adaptation_set

    seed = res["seed"]
    kernel_bundle = None
    kernel_bytes = 0
    if seed.fossilized:
        kernel_bundle = fold_dir / f"seed-{res['record']}.kedge"
        quiet = Console(file=open("/dev/null", "w"), width=120)  # noqa: SIM115 - the bench prints its own table
        built = patient_bundle(seed, checkpoint=ckpt_path, out=kernel_bundle, target="edgetpu", keys=keys,
                               base_bundle=base_bundle, con=quiet,
                               beats=adaptation_set(res["window"], res["common"]))  # fmt: skip
        kernel_bytes = sum(len(v) for k, v in built.files.items() if k.startswith("artifacts/"))
    from kasmina_edge.host.patient import classes_of

    int8, int8_pred = int8_chain_eval(base_bundle, kernel_bundle, keys, res["test"], record, start_s,
                                      seed.rr_scale if seed.fossilized else None)  # fmt: skip
    float_ = res["evals"]["seed"]
    float_pred = classes_of(res["models"]["seed"], res["test"])
    # Beats the int8 chain classifies as the float model does: macro-F1 over a class of 1-3 test
    # beats moves by points on one beat, agreement says how many beats moved.
    agreement = float(np.mean([a == b for a, b in zip(int8_pred, float_pred, strict=True)])) if int8_pred else 1.0
    return {"record": res["record"], "seeded": seed.fossilized, "float_macro_f1": float_.macro_f1(),
            "int8_macro_f1": int8.macro_f1(), "delta": int8.macro_f1() - float_.macro_f1(),
            "beat_agreement": agreement, "beats_changed": int(round((1 - agreement) * len(float_pred))),
            "kernel_bytes": kernel_bytes, "transfer": transfer_estimates(kernel_bytes) if kernel_bytes else None,
            "int8": int8.to_dict()}  # fmt: skip


def int8_chain_eval(base_bundle: Path, kernel_bundle: Path | None, keys: Path, test: Any, record: Any, start_s: float,
                    rr_scale: np.ndarray | None) -> tuple[Any, list[str]]:  # fmt: skip
    """The int8 artifacts the device runs, chained on the test beats (the kernels live at their sites):
    the evaluation and the class of every beat."""
    from kasmina_edge.compile.chain import ChainLayout, tflite_chain
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.ecg.evaluate import evaluate_beats
    from kasmina_edge.ecg.types import AAMI_CLASSES
    from kasmina_edge.runtime.image import artifact_bytes

    b = read_bundle(base_bundle, keys)
    assert b.manifest.chain is not None
    arts = {e.name: artifact_bytes(b, e) for e in b.manifest.artifacts if e.kind == "segment"}
    active: dict[int, str] = {}
    if kernel_bundle is not None:
        kb = read_bundle(kernel_bundle, keys)
        stages = (kb.manifest.model_extra or {}).get("patient", {}).get("seeds", {})
        for e in kb.manifest.kernels():
            if e.site is not None and stages.get(e.seed or "", "FOSSILIZED") == "FOSSILIZED":
                arts[e.name] = artifact_bytes(kb, e)
                active[e.site] = e.name
    rr = test.rr * (rr_scale if active and rr_scale is not None else 1.0)
    logits = tflite_chain(arts, ChainLayout(tuple(b.manifest.chain.segments), active), test.windows,
                          rr.astype(np.float32))  # fmt: skip
    pred = [AAMI_CLASSES[int(k)] for k in np.asarray(logits).argmax(1)]
    return evaluate_beats(
        test.r_peaks, test.labels, test.r_peaks, pred, record.fs, name=record.name, start_s=start_s
    ), pred


def transfer_estimates(kernel_bytes: int) -> dict[str, Any]:
    """Seconds (or days) to get ``kernel_bytes`` to the device: LoRaWAN downlinks under fair use vs IP links."""
    from kasmina_edge.core import catalog
    from kasmina_edge.core.airtime import max_payload_bytes, time_on_air_s

    out: dict[str, Any] = {"kernel_bytes": kernel_bytes, "source": "kasmina_edge.core.airtime"}
    for name in ("lorawan-eu868-dr0", "lorawan-eu868-dr5"):
        p = catalog.network(name)
        payload = max_payload_bytes(p)
        frames = math.ceil(kernel_bytes / payload)
        air = frames * time_on_air_s(p, payload)
        per_day = p.fair_use.downlinks_per_day  # type: ignore[attr-defined]
        out[name] = {"frames": frames, "payload_bytes": payload, "airtime_s": round(air, 2),
                     "days_fair_use": round(frames / per_day, 1), "downlinks_per_day": per_day}  # fmt: skip
    for name in ("nb-iot", "5g-embb"):
        p = catalog.network(name)
        packets = math.ceil(kernel_bytes / p.max_payload_bytes)  # type: ignore[attr-defined]
        secs = kernel_bytes * 8.0 / p.downlink_bps + p.latency.median_s  # type: ignore[attr-defined]
        out[name] = {"packets": packets, "seconds": round(secs, 3)}
    return out


def device_path(r: str, fold_dir: Path, ckpt_path: Path, record: Any, res: dict[str, Any], keys: Path,
                work: Path, cfg: Any) -> dict[str, Any]:  # fmt: skip
    """Base bundle → emulator; morph --patient → kernel-only bundle → flash → run from minute 5; timed."""
    from kasmina_edge.cli.device import run_device, run_flash
    from kasmina_edge.compile.patient_bundle import device_site_ranges, patient_bundle
    from kasmina_edge.compile.pipeline import BuildRequest, build
    from kasmina_edge.ecg.dataset import beats_from_record
    from kasmina_edge.ecg.evaluate import evaluate_record, read_predictions
    from kasmina_edge.host.data import SPEC
    from kasmina_edge.host.patient import classes_of
    from kasmina_edge.host.patient_run import PatientRequest, morph_patient

    quiet = Console(file=open("/dev/null", "w"), width=120)  # noqa: SIM115 - the bench prints its own table
    base_bundle = fold_dir / "base-edgetpu.kedge"
    t0 = time.perf_counter()
    if not base_bundle.exists():
        build(
            BuildRequest(
                checkpoint=ckpt_path, seeds=None, target="edgetpu", out=base_bundle, keys=keys, strict=False
            )
        )
    base_build_s = time.perf_counter() - t0
    devices = work / "devices"
    dev = f"emu://patch-{r}"
    run_flash(quiet, base_bundle, dev, keys=keys, devices_root=devices)
    start_s = cfg.minutes * 60.0
    # the end-to-end path: morph --patient (seed + kernel-only bundle), flash, run until the seed is live
    t_e2e = time.perf_counter()
    seed_bundle = fold_dir / f"seed-{r}.kedge"
    request = PatientRequest(patient=f"wfdb:{DATA / r}", checkpoint=ckpt_path, out=seed_bundle, minutes=cfg.minutes,
                             target="edgetpu", base_bundle=base_bundle, keys=keys)  # fmt: skip
    seed, built = morph_patient(request, device_ranges=device_site_ranges, bundle=patient_bundle)
    morph_s = time.perf_counter() - t_e2e
    if built is None:  # morph --patient's own run of the gates culled it: nothing reaches the device
        return {"record": r, "outcome": seed.outcome, "morph_patient_s": morph_s, "bundle": None}
    import torch

    torch.set_num_threads(1)  # morph_patient takes the cores it finds; the bench stays on one
    from kasmina_edge.host.patient import seeded_model
    from kasmina_edge.host.train import load_base

    base, _ = load_base(ckpt_path)
    float_seed_model = seeded_model(base, seed)  # the seed the device got (grown again by morph_patient)
    float_seed = evaluate_model(float_seed_model, res["test"], r, record.fs, start_s)
    t1 = time.perf_counter()
    run_flash(quiet, seed_bundle, dev, keys=keys, devices_root=devices)
    flash_s = time.perf_counter() - t1
    log = fold_dir / f"run-{r}.jsonl"
    log.unlink(missing_ok=True)
    t2 = time.perf_counter()
    summary = run_device(
        quiet, dev, f"wfdb:{DATA / r}", start=start_s, out=log, devices_root=devices, live=False
    )
    run_wall = time.perf_counter() - t2
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    trace = [
        e for e in events if e.get("event") in ("transition", "fault", "kernel_refused", "kernel_installed")
    ]
    fossil_t = next(
        (float(e["t"]) for e in trace if e.get("event") == "transition" and e.get("to") == "FOSSILIZED"), None
    )
    live_wall = (
        run_wall * (fossil_t / summary.signal_s) if fossil_t is not None and summary.signal_s else None
    )
    preds = read_predictions(log)
    device_seed = evaluate_record(record.beats, preds.samples, preds.classes, record.fs, name=r,
                                  offset_samples=int(start_s * record.fs), start_s=start_s)  # fmt: skip
    # the float model on the beats the device detected (same R peaks), to set beside the device's result
    detected = beats_from_record(record, SPEC, use_annotations=False)
    detected = detected.subset(np.flatnonzero(detected.r_peaks >= int(start_s * record.fs)))
    from kasmina_edge.ecg.evaluate import evaluate_beats

    assert record.beats is not None
    float_detected = evaluate_beats(record.beats.samples, record.beats.classes, detected.r_peaks,
                                    classes_of(float_seed_model, detected), record.fs, name=r, start_s=start_s)  # fmt: skip
    int8_seed, _ = int8_chain_eval(base_bundle, seed_bundle, keys, res["test"], record, start_s, seed.rr_scale)
    int8_base, _ = int8_chain_eval(base_bundle, None, keys, res["test"], record, start_s, None)
    kernel_bytes = sum(len(v) for k, v in built.files.items() if k.startswith("artifacts/"))
    return {
        "record": r, "outcome": seed.outcome, "base_build_s": base_build_s, "morph_patient_s": morph_s,
        "flash_s": flash_s, "run_wall_s": run_wall, "signal_s": summary.signal_s, "fossilized_at_signal_s": fossil_t,
        "live_after_wall_s": (morph_s + flash_s + live_wall) if live_wall is not None else None,
        "bundle_bytes": seed_bundle.stat().st_size, "kernel_bytes": kernel_bytes,
        "transfer": transfer_estimates(kernel_bytes),
        "device_trace": [{k: e.get(k) for k in ("event", "t", "seed_id", "kernel", "from", "to", "gate", "gate_passed",
                                                 "reason", "code", "detail")} for e in trace],
        "device_run": device_seed.to_dict(), "float_on_detected_beats": float_detected.to_dict(),
        "int8_chain_seed": int8_seed.to_dict(), "int8_chain_base": int8_base.to_dict(),
        "float_seed": float_seed.to_dict(), "float_base": res["evals"]["base"].to_dict(),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------- report


def class_row(ev: Any) -> list[str]:
    return [*(f"{pct(ev.se(c))}/{pct(ev.ppv(c))}/{pct(ev.f1(c))}" for c in CLASSES), pct(ev.macro_f1())]


def table(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title)
    for col in ("model", *(f"{c} Se/+P/F1" for c in CLASSES), "macro-F1"):
        t.add_column(col, justify="right")
    for name, ev in rows.items():
        t.add_row(name, *class_row(ev))
    return t


def floors(title: str, measured: dict[str, float], targets: dict[str, float]) -> Table:
    t = Table(title=title)
    for col in ("figure", "measured %", "floor %", "met"):
        t.add_column(col, justify="right")
    for key, floor in targets.items():
        v = measured[key]
        t.add_row(key, pct(v), pct(floor), "yes" if v >= floor else "[red]no")
    return t


def gate_table(results: list[dict[str, Any]]) -> Table:
    t = Table(
        title="G4 against the test minutes (per record; 'hurt' = macro-F1 or N accuracy down > 1 point)"
    )
    for col in (
        "record",
        "base test F1",
        "seed (ungated)",
        "decision",
        "OOF gain / lower bound",
        "never worse",
    ):
        t.add_column(col, justify="right")
    for x in results:
        ev = x["seed"].evidence or {}
        gain = f"{100 * ev['gain']:+.1f} / {100 * ev['gain_low']:+.1f}" if ev else "-"
        t.add_row(x["record"], pct(x["evals"]["base"].macro_f1()), pct(x["evals"]["ungated"].macro_f1()),
                  gate_outcome(x), gain, "yes" if never_worse(x) else "[red]no")  # fmt: skip
    return t


def parity_table(parity: list[dict[str, Any]]) -> Table:
    t = Table(title="device: int8 chain (base bundle + kernel-only bundle) beside float, same test beats")
    cols = ("record", "seeded", "float F1", "int8 F1", "int8 − float", "≤ 1 pt", "beats moved", "kernel B",
            "LoRa DR5/DR0 d", "NB-IoT s")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for d in parity:
        ok = abs(d["delta"]) <= 0.01
        tr = d.get("transfer") or {}
        lora = f"{tr['lorawan-eu868-dr5']['days_fair_use']}/{tr['lorawan-eu868-dr0']['days_fair_use']}" if tr else "-"
        t.add_row(d["record"], "yes" if d["seeded"] else "base", pct(d["float_macro_f1"]), pct(d["int8_macro_f1"]),
                  f"{100 * d['delta']:+.1f}", "yes" if ok else "[red]no",
                  str(d['beats_changed']), str(d["kernel_bytes"] or "-"), lora,
                  f"{tr['nb-iot']['seconds']:.1f}" if tr else "-")  # fmt: skip
    return t


def summarize(results: list[dict[str, Any]], base_whole: dict[str, Any]) -> dict[str, Any]:
    from kasmina_edge.ecg.evaluate import gross

    g = {m: gross([x["evals"][m] for x in results], name=m) for m in ("base", "seed", "ungated", "finetune")}
    b, s, f = (g[m].macro_f1() for m in ("base", "seed", "finetune"))
    whole = gross(list(base_whole.values()), name="base whole records")
    seeded = [x["seed"] for x in results if x["seed"].fossilized]
    outcomes: dict[str, int] = {}
    for x in results:
        outcomes[gate_outcome(x)] = outcomes.get(gate_outcome(x), 0) + 1
    return {
        "gross": g, "base_whole": whole,
        "recovery": (s - b) / (f - b) if f > b else float("nan"),
        "base_checks": {"N_se": whole.se("N"), "N_ppv": whole.ppv("N"), "V_se": whole.se("V"), "V_ppv": whole.ppv("V"),
                        "macro_f1": whole.macro_f1()},
        "seed_checks": {"macro_f1": s, "V_se": g["seed"].se("V"), "V_ppv": g["seed"].ppv("V"), "S_se": g["seed"].se("S"),
                        "S_ppv": g["seed"].ppv("S")},
        "worse": [x["record"] for x in results if not never_worse(x)],
        "outcomes": outcomes,
        "max_param_fraction": max((x.param_fraction for x in seeded), default=0.0),
        "params": sorted({x.param_count for x in seeded}),
    }  # fmt: skip


def main() -> None:
    from kasmina_edge.host.records import DS1

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--records", default=",".join(DS1), help="DS1 records to use (comma list)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=12, help="base training epochs")
    ap.add_argument("--device-records", type=int, default=None, help="int8 parity on this many records (all)")
    ap.add_argument(
        "--e2e-records", type=int, default=1, help="records taken through the emulator end to end"
    )
    ap.add_argument("--reuse", action="store_true", help="reuse fold bases already in --work")
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_patient.json")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_patient")
    args = ap.parse_args()
    if not (DATA / "101.hea").exists():
        con.print(f"[red]MIT-BIH DS1 records not found under {DATA}[/]")
        raise SystemExit(2)
    import torch

    torch.set_num_threads(1)
    from kasmina_edge.compile.patient_bundle import device_site_ranges
    from kasmina_edge.contracts.bundle import PRIVATE_KEY_NAME, init_keys
    from kasmina_edge.ecg.dataset import BeatDataset
    from kasmina_edge.host.patient import PatientConfig
    from kasmina_edge.host.train import load_base

    t_all = time.perf_counter()
    names = [r for r in args.records.split(",") if r]
    records, beats = load_records(names)
    args.work.mkdir(parents=True, exist_ok=True)
    keys = args.work / "keys"
    if not (keys / PRIVATE_KEY_NAME).exists():
        init_keys(keys)
    cfg = PatientConfig(minutes=args.minutes)
    folds = [names[i :: args.folds] for i in range(args.folds)]
    results: list[dict[str, Any]] = []
    base_whole: dict[str, Any] = {}
    parity: list[dict[str, Any]] = []
    e2e: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    n_device = len(names) if args.device_records is None else args.device_records
    for k, test in enumerate(folds):
        train = [r for r in names if r not in test]
        t0 = time.perf_counter()
        ckpt_path = train_fold_base(k, train, beats, args)
        timings[f"fold{k}_base_s"] = time.perf_counter() - t0
        base, ckpt = load_base(ckpt_path)
        for site in base.sites.values():
            site.telemetry_enabled = False
        fold_dir = args.work / f"fold{k}"
        base_bundle = fold_base_bundle(fold_dir, ckpt_path, keys) if n_device or args.e2e_records else None
        ranges = (device_site_ranges(ckpt_path, "edgetpu", base_bundle, keys, base.config.site_names)
                  if base_bundle is not None else None)  # fmt: skip
        con.print(
            f"fold {k}: base on {len(train)} records ({timings[f'fold{k}_base_s']:.0f} s); testing {', '.join(test)}"
        )
        for r in test:
            whole: BeatDataset = beats[r]
            base_whole[r] = evaluate_model(base, whole, r, records[r].fs, 0.0)
            res = adapt_record(r, base, ckpt, records[r], beats[r], cfg, ranges)
            results.append(res)
            ev = res["evals"]
            con.print(f"  {r}: base {pct(ev['base'].macro_f1())} seed {pct(ev['seed'].macro_f1())} (ungated "
                      f"{pct(ev['ungated'].macro_f1())}) fine-tune {pct(ev['finetune'].macro_f1())}; "
                      f"{res['seed'].outcome[:70]} ({res['seed_s']:.0f} + {res['finetune_s']:.0f} s)")  # fmt: skip
            if base_bundle is not None and len(parity) < n_device:
                parity.append(
                    device_parity(res, fold_dir, ckpt_path, base_bundle, keys, records[r], cfg.minutes * 60)
                )
            if (
                base_bundle is not None
                and len(e2e) < args.e2e_records
                and res["seed"].fossilized
                and r != "114"
            ):
                t0 = time.perf_counter()  # (114's first lead is V5: the emulator streams lead 0)
                e2e.append(device_path(r, fold_dir, ckpt_path, records[r], res, keys, args.work, cfg))
                timings[f"e2e_{r}_s"] = time.perf_counter() - t0
    summary = summarize(results, base_whole)
    report(summary, results, parity, e2e, args)
    timings["total_s"] = time.perf_counter() - t_all
    con.print(f"bench: {timings['total_s']:.0f} s in all")
    g = summary["gross"]
    body = {
        "config": {**{k: str(v) for k, v in vars(args).items()}, "patient": cfg.to_dict()},
        "base_whole_records": summary["base_whole"].to_dict(), "base_checks": summary["base_checks"],
        "base_per_record": {r: ev.to_dict() for r, ev in base_whole.items()},
        "gross_minutes_5_30": {m: ev.to_dict() for m, ev in g.items()},
        "recovery_of_finetune_gain": summary["recovery"], "seed_checks": summary["seed_checks"],
        "targets": {"base": BASE_TARGETS, "seed": SEED_TARGETS}, "records_worse": summary["worse"],
        "gate_outcomes": summary["outcomes"], "seed_param_fraction_max": summary["max_param_fraction"],
        "per_record": [{"record": x["record"], "gate_outcome": gate_outcome(x), "never_worse": never_worse(x),
                        "patient_seed": x["seed"].summary(), "seed_s": x["seed_s"], "finetune_s": x["finetune_s"],
                        **{m: x["evals"][m].to_dict() for m in x["evals"]}} for x in results],
        "device_parity": parity, "end_to_end": e2e, "timings_s": timings,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(body, indent=1, default=str))
    con.print(f"JSON: {args.json}")


def report(summary: dict[str, Any], results: list[dict[str, Any]], parity: list[dict[str, Any]],
           e2e: list[dict[str, Any]], args: argparse.Namespace) -> None:  # fmt: skip
    g = summary["gross"]
    con.print(table(f"base, leave-records-out, {len(results)} whole DS1 records: gross %",
                    {"base": summary["base_whole"]}))  # fmt: skip
    con.print(floors("base floors (item 2)", summary["base_checks"], BASE_TARGETS))
    con.print(table(f"patient-wise, minutes {args.minutes:g}-30 of {len(results)} records: gross %",
                    {"base": g["base"], "base + seed (gated)": g["seed"], "base + seed (no G4)": g["ungated"],
                     "full fine-tuning": g["finetune"]}))  # fmt: skip
    checks = dict(summary["seed_checks"], recovery=summary["recovery"],
                  params=1.0 if summary["max_param_fraction"] <= 0.10 else 0.0)  # fmt: skip
    con.print(floors("seed floors (item 3; params: 100 = every seed set ≤ 10 % of the base)", checks,
                     {**SEED_TARGETS, "recovery": 0.90, "params": 1.0}))  # fmt: skip
    con.print(gate_table(results))
    con.print(f"gate outcomes: {summary['outcomes']}; records worse than the base by > 1 point: "
              f"{summary['worse'] or 'none'}; seed params {summary['params']} "
              f"(max {100 * summary['max_param_fraction']:.1f} % of the base)")  # fmt: skip
    if parity:
        con.print(parity_table(parity))
    for d in e2e:
        if d.get("bundle", True) is None:
            con.print(f"end to end {d['record']}: morph --patient culled the seed ({d['outcome']}): no bundle")
            continue
        tr = d["transfer"]
        live = "-" if d["live_after_wall_s"] is None else f"{d['live_after_wall_s']:.1f}"
        con.print(
            f"end to end {d['record']}: morph --patient {d['morph_patient_s']:.1f} s, flash {d['flash_s']:.2f} s, "
            f"fossilized on the device at {d['fossilized_at_signal_s']} s of signal → live {live} s after morph "
            f"began; emulator run macro-F1 {pct(d['device_run']['macro_f1'])} (float on the same detected beats "
            f"{pct(d['float_on_detected_beats']['macro_f1'])}); kernels {d['kernel_bytes']:,} B (bundle "
            f"{d['bundle_bytes']:,} B): LoRaWAN EU868 DR5 {tr['lorawan-eu868-dr5']['frames']} downlinks = "
            f"{tr['lorawan-eu868-dr5']['days_fair_use']} days at {tr['lorawan-eu868-dr5']['downlinks_per_day']}/day "
            f"(DR0 {tr['lorawan-eu868-dr0']['days_fair_use']} days), NB-IoT {tr['nb-iot']['seconds']:.1f} s, "
            f"5G {tr['5g-embb']['seconds']:.3f} s"
        )


if __name__ == "__main__":
    main()
