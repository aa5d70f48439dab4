"""Patient-specific seeds on real patients (issue 11): base alone, base + patient seed, full fine-tuning.

Patient-wise on the DS1 records of ../shared/data/mitdb: folds by record (the base of a fold never saw
its test records), each test record adapted on its first ``--minutes`` of annotated beats and tested on
the rest (minutes 5-30), gross Se/+P/F1 per AAMI class and macro-F1 over N/S/V/F (kasmina_edge.ecg.
evaluate). For ``--device-records`` records (the one with most ectopic beats in each of the first folds)
the whole path runs: base bundle → emulator, ``morph --patient`` → kernel-only bundle → flash → live on
the emulator, timed; the int8 chain beside the float model on the same beats; the kernel's bytes and its
transfer time over LoRaWAN (fair use) vs NB-IoT and 5G (``kasmina_edge.net.link``).

    .venv/bin/python tools/bench_patient.py [--folds 4] [--json runs/bench_patient.json]

One thread, a small base, few epochs: about 15 minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import dataclasses
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
DS1 = [
    "101",
    "106",
    "108",
    "109",
    "112",
    "114",
    "115",
    "116",
    "118",
    "119",
    "122",
    "124",
    "201",
    "203",
    "205",
    "207",
    "208",
    "209",
    "215",
    "220",
    "223",
    "230",
]
CLASSES = ("N", "S", "V", "F")
TARGETS = {"V_se": 0.93, "V_ppv": 0.90, "S_se": 0.75, "S_ppv": 0.75, "macro_f1": 0.78}
con = Console()


def pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


# ------------------------------------------------------------------------------------------- data


def load_records(names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from kasmina_edge.ecg.dataset import beats_from_record
    from kasmina_edge.ecg.wfdb_io import read_wfdb
    from kasmina_edge.host.data import SPEC

    records, beats = {}, {}
    for r in names:
        records[r] = read_wfdb(DATA / r)
        beats[r] = beats_from_record(records[r], SPEC)
    return records, beats


def thin(ds: Any, keep_n: float, seed: int) -> Any:
    """Every ectopic beat, a share of the normal ones: a class mix the small base can learn in a few epochs."""
    rng = np.random.default_rng(seed)
    return ds.subset(np.flatnonzero((ds.labels != 0) | (rng.random(len(ds)) < keep_n)))


def train_fold_base(
    k: int, train: list[str], beats: dict[str, Any], args: argparse.Namespace, work: Path
) -> Path:
    """The fold's base (the default model) on its training records; checkpoint with the common beats."""
    from kasmina_edge.ecg.dataset import concat
    from kasmina_edge.host.experiment import load_checkpoint, save_checkpoint
    from kasmina_edge.host.patient import COMMON_KEY, common_beats, common_beats_to_checkpoint
    from kasmina_edge.host.train import TrainConfig, train_base

    out = work / f"fold{k}" / "base.pt"
    n_val = max(1, min(2, len(train) - 1))  # one or two training records pick the best epoch (patient-wise)
    val_recs, fit_recs = train[:n_val], train[n_val:]
    fit = concat([thin(beats[r], args.keep_n, k) for r in fit_recs])
    val = concat([thin(beats[r], args.keep_n, k + 100) for r in val_recs])
    cfg = TrainConfig(model="default", epochs=args.epochs, batch_size=128, lr=3e-3, seed=k)
    train_base(cfg, fit, val, out=out)
    ckpt = load_checkpoint(out)
    ckpt[COMMON_KEY] = common_beats_to_checkpoint(
        common_beats(concat([beats[r] for r in train]), 200, seed=k)
    )
    ckpt["train_records"] = list(train)
    save_checkpoint(out, ckpt)
    return out


# ------------------------------------------------------------------------------------------- one record


def evaluate_model(model: Any, test: Any, name: str, fs: float, start_s: float) -> Any:
    from kasmina_edge.ecg.evaluate import evaluate_beats
    from kasmina_edge.host.patient import classes_of

    return evaluate_beats(test.r_peaks, test.labels, test.r_peaks, classes_of(model, test), fs, name=name,
                          start_s=start_s)  # fmt: skip


def adapt_record(
    r: str, base: Any, ckpt: dict[str, Any], record: Any, beats: Any, cfg: Any
) -> dict[str, Any]:
    from kasmina_edge.host.patient import (
        common_beats_of,
        fine_tune_patient,
        grow_patient_seed,
        patient_window,
        seeded_model,
    )

    start_s = cfg.minutes * 60.0
    test = beats.subset(np.flatnonzero(beats.r_peaks >= int(start_s * record.fs)))
    window = patient_window(record, base, cfg)
    common = common_beats_of(ckpt, cfg.common_per_class, cfg.seed)
    t0 = time.perf_counter()
    seed = grow_patient_seed(base, window, common, cfg, target="edgetpu")
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ft = fine_tune_patient(base, window, common, cfg)
    ft_s = time.perf_counter() - t0
    models = {"base": base, "seed": seeded_model(base, seed), "finetune": ft}
    evs = {k: evaluate_model(m, test, r, record.fs, start_s) for k, m in models.items()}
    return {"record": r, "seed": seed, "models": models, "evals": evs, "seed_s": seed_s, "finetune_s": ft_s,
            "test": test}  # fmt: skip


# ------------------------------------------------------------------------------------------- device path


def int8_chain_eval(base_bundle: Path, kernel_bundle: Path | None, keys: Path, test: Any, record: Any, start_s: float,
                    rr_scale: np.ndarray | None) -> Any:  # fmt: skip
    """The int8 artifacts the device runs, chained on the test beats (the kernels live at their sites)."""
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
    )


def transfer_estimates(kernel_bytes: int) -> dict[str, Any]:
    """Seconds (or days) to get ``kernel_bytes`` to the device: LoRaWAN downlinks under fair use vs IP links."""
    from kasmina_edge import catalog

    out: dict[str, Any] = {"kernel_bytes": kernel_bytes}
    try:
        from kasmina_edge.net.link import max_payload_bytes, time_on_air_s

        source = "kasmina_edge.net.link"
    except ImportError:  # the link simulator is another issue's: fall back to the catalog's own figures
        max_payload_bytes = None  # type: ignore[assignment]
        time_on_air_s = None  # type: ignore[assignment]
        source = "catalog (net.link absent)"
    out["source"] = source
    for name in ("lorawan-eu868-dr0", "lorawan-eu868-dr5"):
        p = catalog.network(name)
        payload = max_payload_bytes(p) if max_payload_bytes else p.max_payload_bytes  # type: ignore[attr-defined]
        frames = math.ceil(kernel_bytes / payload)
        air = frames * (time_on_air_s(p, payload) if time_on_air_s else p.time_on_air_s(payload))  # type: ignore[attr-defined]
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
    from kasmina_edge.cli.host import run_morph_patient
    from kasmina_edge.compile.pipeline import BuildRequest, build
    from kasmina_edge.ecg.dataset import beats_from_record
    from kasmina_edge.ecg.evaluate import evaluate_record, read_predictions
    from kasmina_edge.host.data import SPEC
    from kasmina_edge.host.patient import classes_of

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
    seed, built = run_morph_patient(quiet, patient=f"wfdb:{DATA / r}", checkpoint=ckpt_path, out=seed_bundle,
                                    minutes=cfg.minutes, target="edgetpu", base_bundle=base_bundle, keys=keys)  # fmt: skip
    morph_s = time.perf_counter() - t_e2e
    import torch

    torch.set_num_threads(1)  # the CLI takes the cores it finds; the bench stays on one
    from kasmina_edge.host.patient import seeded_model
    from kasmina_edge.host.train import load_base

    base, _ = load_base(ckpt_path)
    float_seed_model = seeded_model(base, seed)  # the seed the device got (grown again by the CLI)
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
    int8_seed = int8_chain_eval(base_bundle, seed_bundle, keys, res["test"], record, start_s, seed.rr_scale)
    int8_base = int8_chain_eval(base_bundle, None, keys, res["test"], record, start_s, None)
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
    cells = [f"{pct(ev.se(c))}/{pct(ev.ppv(c))}/{pct(ev.f1(c))}" for c in CLASSES]
    return [*cells, pct(ev.macro_f1())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--records", default=",".join(DS1), help="DS1 records to use (comma list)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--keep-n", type=float, default=0.3, help="share of N beats the base trains on")
    ap.add_argument("--train-steps", type=int, default=None, help="patient seed TRAINING updates")
    ap.add_argument("--device-records", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_patient.json")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_patient")
    args = ap.parse_args()
    if not (DATA / "101.hea").exists():
        con.print(f"[red]MIT-BIH DS1 records not found under {DATA}[/]")
        raise SystemExit(2)
    import torch

    torch.set_num_threads(1)
    from kasmina_edge.contracts.bundle import PRIVATE_KEY_NAME, init_keys
    from kasmina_edge.ecg.evaluate import gross
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
    if args.train_steps:
        cfg = dataclasses.replace(cfg, train_steps=args.train_steps)
    folds = [names[i :: args.folds] for i in range(args.folds)]
    results: list[dict[str, Any]] = []
    device: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for k, test in enumerate(folds):
        train = [r for r in names if r not in test]
        t0 = time.perf_counter()
        ckpt_path = train_fold_base(k, train, beats, args, args.work)
        timings[f"fold{k}_base_s"] = time.perf_counter() - t0
        base, ckpt = load_base(ckpt_path)
        for site in base.sites.values():
            site.telemetry_enabled = False
        con.print(
            f"fold {k}: base on {len(train)} records ({timings[f'fold{k}_base_s']:.0f} s); testing {', '.join(test)}"
        )
        fold_res = []
        for r in test:
            res = adapt_record(r, base, ckpt, records[r], beats[r], cfg)
            fold_res.append(res)
            ev = res["evals"]
            con.print(f"  {r}: base {pct(ev['base'].macro_f1())} seed {pct(ev['seed'].macro_f1())} "
                      f"fine-tune {pct(ev['finetune'].macro_f1())} ({res['seed'].outcome[:60]}; "
                      f"{res['seed_s']:.0f} + {res['finetune_s']:.0f} s)")  # fmt: skip
        results += fold_res
        if k < args.device_records:
            # the record of the fold with the most ectopic beats: where adaptation matters
            pick = max(test, key=lambda r: int(np.sum(beats[r].labels != 0)))
            res = next(x for x in fold_res if x["record"] == pick)
            t0 = time.perf_counter()
            device.append(
                device_path(pick, args.work / f"fold{k}", ckpt_path, records[pick], res, keys, args.work, cfg)
            )
            timings[f"device_{pick}_s"] = time.perf_counter() - t0

    g = {m: gross([x["evals"][m] for x in results], name=m) for m in ("base", "seed", "finetune")}
    t = Table(
        title=f"patient-wise, {len(results)} DS1 records, minutes {args.minutes:g}-30: gross Se/+P/F1 %"
    )
    for col in ("model", *CLASSES, "macro-F1"):
        t.add_column(col, justify="right")
    for m, ev in g.items():
        t.add_row(m, *class_row(ev))
    con.print(t)
    base_f1, seed_f1, ft_f1 = (g[m].macro_f1() for m in ("base", "seed", "finetune"))
    recovery = (seed_f1 - base_f1) / (ft_f1 - base_f1) if ft_f1 > base_f1 else float("nan")
    worse = [x["record"] for x in results
             if x["evals"]["seed"].accuracy("N") < x["evals"]["base"].accuracy("N") - 0.01]  # fmt: skip
    fractions = [x["seed"].param_fraction for x in results if x["seed"].seeds]
    params = [x["seed"].param_count for x in results if x["seed"].seeds]
    outcomes = {"fossilized": sum(x["seed"].fossilized for x in results),
                "culled_or_none": sum(not x["seed"].fossilized for x in results)}  # fmt: skip
    s = g["seed"]
    checks = {
        "V_se": s.se("V"), "V_ppv": s.ppv("V"), "S_se": s.se("S"), "S_ppv": s.ppv("S"), "macro_f1": seed_f1,
    }  # fmt: skip
    r2 = Table(title="targets (floors) with the seed")
    for col in ("figure", "measured", "floor", "met"):
        r2.add_column(col, justify="right")
    for key, v in checks.items():
        r2.add_row(key, pct(v), pct(TARGETS[key]), "yes" if v >= TARGETS[key] else "[red]no")
    r2.add_row("recovery of FT gain", pct(recovery), "90.0", "yes" if recovery >= 0.9 else "[red]no")
    r2.add_row("max seed params / base", pct(max(fractions) if fractions else 0.0), "10.0",
               "yes" if fractions and max(fractions) <= 0.10 else "[red]no")  # fmt: skip
    r2.add_row(
        "records worse than base by >1 pt N acc.",
        str(len(worse)),
        "0",
        "yes" if not worse else f"[red]no {worse}",
    )
    con.print(r2)
    con.print(f"seeds fossilized on {outcomes['fossilized']} of {len(results)} records (the others culled by "
              f"their gates: the base alone runs there); seed params {min(params, default=0):,}-{max(params, default=0):,} "
              f"= int8 {max(params, default=0):,} B / 4-bit {max(params, default=0) // 2:,} B of weights at most")  # fmt: skip
    for d in device:
        dt = Table(
            title=f"record {d['record']} through the emulator: int8 beside float (macro-F1 %, same beats)"
        )
        for col in ("run", "N", "S", "V", "F", "macro-F1"):
            dt.add_column(col, justify="right")

        def row(name: str, body: dict[str, Any], dt: Table = dt) -> None:
            cl = body["classes"]
            dt.add_row(
                name, *(f"{pct(cl[c]['se'])}/{pct(cl[c]['ppv'])}" for c in CLASSES), pct(body["macro_f1"])
            )

        row("float base (annotated beats)", d["float_base"])
        row("int8 chain base", d["int8_chain_base"])
        row("float base+seed", d["float_seed"])
        row("int8 chain base+seed", d["int8_chain_seed"])
        row("float base+seed, device's beats", d["float_on_detected_beats"])
        row("emulator run (lifecycle as it ran)", d["device_run"])
        con.print(dt)
        tr = d["transfer"]
        live = "-" if d["live_after_wall_s"] is None else f"{d['live_after_wall_s']:.1f}"
        con.print(
            f"  {d['outcome']}; morph --patient {d['morph_patient_s']:.1f} s, flash {d['flash_s']:.2f} s, "
            f"fossilized on the device at {d['fossilized_at_signal_s']} s of signal → live {live} "
            f"after morph began; kernels {d['kernel_bytes']:,} B (bundle {d['bundle_bytes']:,} B): LoRaWAN EU868 DR5 "
            f"{tr['lorawan-eu868-dr5']['frames']} downlinks = {tr['lorawan-eu868-dr5']['days_fair_use']} days at "
            f"{tr['lorawan-eu868-dr5']['downlinks_per_day']}/day (DR0: {tr['lorawan-eu868-dr0']['days_fair_use']} days), "
            f"NB-IoT {tr['nb-iot']['seconds']:.1f} s, 5G {tr['5g-embb']['seconds']:.3f} s ({tr['source']})"
        )
        for e in d["device_trace"][:14]:
            if e["event"] == "transition":
                con.print(
                    f"    t={e['t']:.1f}s {e['seed_id']}: {e['from']} → {e['to']} ({e.get('gate') or ''} {e['reason']})"
                )
            else:
                con.print(
                    f"    t={e['t']:.1f}s {e['event']} {e.get('kernel')}: {e.get('code') or e.get('reason') or ''}"
                )
    timings["total_s"] = time.perf_counter() - t_all
    con.print(f"bench: {timings['total_s']:.0f} s in all")
    body = {
        "config": {**vars(args), "patient": cfg.to_dict()},
        "gross": {m: ev.to_dict() for m, ev in g.items()},
        "recovery_of_finetune_gain": recovery, "targets": TARGETS, "checks": checks,
        "records_worse_n_accuracy": worse, "outcomes": outcomes,
        "seed_param_fraction_max": max(fractions) if fractions else None,
        "per_record": [{"record": x["record"], "patient_seed": x["seed"].summary(), "seed_s": x["seed_s"],
                        "finetune_s": x["finetune_s"], **{m: x["evals"][m].to_dict() for m in x["evals"]}}
                       for x in results],
        "device": device, "timings_s": timings,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(body, indent=1, default=str))
    con.print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
