"""Benchmark the morphogenetic phase: does a small seed recover what full fine-tuning recovers?

Side by side in one run, on held-out synthetic patients (fixed seeds) that neither the base
nor any seed ever trained or was selected on:
- the base model's macro-F1 on clean beats;
- per condition (EMG noise, baseline wander, electrode motion, lead change, unseen-patient
  shift): the base alone, the base + the seed Tamiyo grew for it (best by *validation* gain
  among those that reached FOSSILIZED), and full fine-tuning of every weight on the same
  adaptation data (the upper bound); recovered fraction = (seed − base) / (fine-tune − base),
  and the seed's extra parameters as a fraction of the base;
- the lifecycle trace summary: seeds fossilized and culled, with their gate reasons;
- on MIT-BIH record 100 (real data nobody here generated; skipped when absent): N accuracy
  (N sensitivity) and S sensitivity of the base, and of the base + the best patient seed grown
  on the record's first minutes of annotated beats (tested on the rest), with fine-tuning on
  the same minutes beside it.

    .venv/bin/python tools/bench_morph.py [--quick] [--json runs/bench_morph.json] [--seed 0]

With ``--data wfdb:DIR`` (issue 15 items 1-2), on real records instead: the DS1 records of DIR in
four leave-records-out folds (fold k tests DS1[k::4]); each fold's base (trained on the other
records; reused from ``--bases``, default runs/bench_morph, where bench_patient's fold bases serve,
or trained there) grows condition seeds on its own
training records with real NSTDB noise (bw, ma) at 12, 6, 0 and -6 dB on the NSTDB schedule and on
the second lead, gates them on its validation records, and is judged on the fold's test records
(noise from the other half of the noise record). Per condition x SNR, gross over the 22 records:
base clean, base in the condition, base + seed, full fine-tuning, recovery, and item 2's verdict.

    .venv/bin/python tools/bench_morph.py --data wfdb:../shared/data/mitdb [--quick] [--bases DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    train: str = "default"
    patients: int = 24
    minutes: float = 3.0
    epochs: int = 12
    test_patients: int = 12
    test_minutes: float = 4.0
    conditions: tuple[str, ...] = ("emg", "baseline", "motion", "lead", "patient")
    sites_per_condition: int = 2
    finetune_epochs: int = 8
    finetune_lr: float = 1e-3
    mitdb_calibration_s: float = 300.0
    morph_preset: str = "default"


QUICK = BenchConfig(
    train="tiny", patients=12, minutes=2.0, epochs=10, test_patients=4, test_minutes=2.0,
    conditions=("emg", "lead"), sites_per_condition=1, finetune_epochs=3, mitdb_calibration_s=120.0,
    morph_preset="tiny",
)  # fmt: skip


def _f1(d: dict[str, Any] | None) -> float | None:
    return None if d is None else float(d["macro_f1"])


def _recovered(base: float, seed: float | None, ft: float) -> float | None:
    if seed is None:
        return None
    gap = ft - base
    return (seed - base) / gap if gap > 1e-9 else None


def run(cfg: BenchConfig, seed: int, target: str | None, log: Any) -> dict[str, Any]:
    import torch

    from kasmina_edge.host.data import CONDITIONS, beats, condition_split, patient_records
    from kasmina_edge.host.model import count_host_parameters
    from kasmina_edge.host.morph import (
        MORPH_PRESETS,
        fine_tune,
        make_controller,
        measure_reference,
        observe,
        plan_trials,
        run_trial,
    )
    from kasmina_edge.host.train import TRAIN_PRESETS, evaluate, set_threads, synthetic_split, train_base

    threads = set_threads()
    t0 = time.perf_counter()
    tcfg = dataclasses.replace(TRAIN_PRESETS[cfg.train], patients=cfg.patients, minutes=cfg.minutes,
                               epochs=cfg.epochs, seed=seed)  # fmt: skip
    mcfg = dataclasses.replace(MORPH_PRESETS[cfg.morph_preset], target=target, seed=seed,
                               sites_per_condition=cfg.sites_per_condition)  # fmt: skip
    split = synthetic_split(tcfg)
    console.print(f"training the base: {tcfg.model}, {len(split.train)} beats of {len(split.train_records)} patients")
    res = train_base(tcfg, split.train, split.val, log=log)
    base = res.model
    base_params = count_host_parameters(base)
    # Held-out patients: a seed far from the training one; the patient shift gets its own.
    test_recs = patient_records(cfg.test_patients, cfg.test_minutes, seed + 424_242)
    clean_test = evaluate(base, beats(test_recs))
    reference = measure_reference(base, split.train, split.val, split.val_records)
    ctrl = make_controller(base, reference, mcfg)
    out: dict[str, Any] = {
        "config": dataclasses.asdict(cfg), "seed": seed, "target": target, "threads": threads,
        "base": {"params": base_params, "val": res.val.to_dict() if res.val else None, "clean_test": clean_test.to_dict(),
                 "train_seconds": sum(h.seconds for h in res.history)},
        "budget": {"max_params": ctrl.budget.max_params, "max_macs": ctrl.budget.max_macs},
        "conditions": [], "trials": [],
    }  # fmt: skip
    for k, name in enumerate(cfg.conditions):
        cond = CONDITIONS[name]
        tc = time.perf_counter()
        console.print(f"[bold]{name}[/]: {cond.description}")
        # The patient shift is tested on yet other patients, each adapted on its own first minutes.
        test_for = patient_records(cfg.test_patients, cfg.test_minutes, seed + 99) if cond.kind == "patient" else test_recs
        cs = condition_split(
            cond, split.train_records, split.val_records, test_for, seed=seed + k,
            calibration_s=mcfg.calibration_s, replay=split.train if mcfg.replay else None,
        )  # fmt: skip
        assert cs.test is not None
        obs = observe(base, cs.val, cs.records, cs.lead, reference.template, reference.sites, plateau=True,
                      calibration=cond.kind == "patient").vector()  # fmt: skip
        decision, plan = plan_trials(ctrl, obs, cfg.sites_per_condition)
        base_test = evaluate(base, cs.test).to_dict()
        trials = []
        for j, d in enumerate(plan):
            assert d.site is not None and d.blueprint is not None and d.grafting is not None
            t = run_trial(
                base, cs, split.val, ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint],
                ctrl.space.graftings[d.grafting], ctrl.space.intensities[d.intensity], ctrl.budget, mcfg,
                seed=seed * 1000 + k * 10 + j, clean_sites=reference.sites,
            )  # fmt: skip
            trials.append(t)
            s = t.summary()
            s["history"] = [e for e in s["history"] if e.get("event") in ("transition", "gate")]
            out["trials"].append(s)
            console.print(f"  {t.site} {t.blueprint}: {t.final_stage} ({t.reason[:80]})")
        fossils = [t for t in trials if t.fossilized]
        best = max(fossils, key=lambda t: t.gain) if fossils else None  # chosen on validation, not test
        torch.manual_seed(seed)
        ft = fine_tune(base, cs, cfg.finetune_epochs, cfg.finetune_lr, mcfg.batch_size, seed)
        ft_test = evaluate(ft, cs.test).to_dict()
        b, f = float(base_test["macro_f1"]), float(ft_test["macro_f1"])
        sv = _f1(best.test_seed) if best else None
        row = {
            "condition": name, "description": cond.description, "observation": obs.tolist(),
            "decision": decision.describe(ctrl.space), "base_test": base_test,
            "base_drop_vs_clean": float(clean_test.macro_f1) - b if cond.kind != "patient" else None,
            "seed": None if best is None else {
                "site": best.site, "blueprint": best.blueprint, "params": best.param_count,
                "param_fraction": best.param_count / base_params, "val_gain": best.gain, "test": best.test_seed,
            },
            "finetune_test": ft_test, "recovered": _recovered(b, sv, f), "seconds": time.perf_counter() - tc,
            "adapt_beats": len(cs.adapt), "test_beats": len(cs.test),
        }  # fmt: skip
        out["conditions"].append(row)
        rec = row["recovered"]
        console.print(f"  base {100 * b:.1f}, seed {'-' if sv is None else f'{100 * sv:.1f}'}, fine-tune "
                      f"{100 * f:.1f}, recovered {'-' if rec is None else f'{100 * rec:.0f}%'}")  # fmt: skip
    out["mitdb"] = bench_mitdb(base, reference, ctrl, mcfg, cfg, seed, split)
    out["seconds"] = time.perf_counter() - t0
    return out


def bench_mitdb(base: Any, reference: Any, ctrl: Any, mcfg: Any, cfg: BenchConfig, seed: int, split: Any) -> dict[str, Any]:
    """Record 100: the base, a patient seed grown on its first minutes, and fine-tuning beside it."""
    from kasmina_edge.ecg.data import mitdb_path
    from kasmina_edge.host.data import CONDITIONS, SPEC, beats, condition_split
    from kasmina_edge.host.morph import fine_tune, observe, plan_trials, run_trial
    from kasmina_edge.host.train import evaluate

    path = mitdb_path("100")
    if not path.with_suffix(".hea").exists():
        return {"skipped": f"{path}.hea not found (MIT-BIH record 100 is read from ../shared/data/mitdb)"}
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rec = read_wfdb(path, fs=SPEC.fs, leads=["MLII"])
    whole = beats([rec])
    cs = condition_split(CONDITIONS["patient"], [], [], [rec], seed=seed, calibration_s=cfg.mitdb_calibration_s,
                         replay=split.train if mcfg.replay else None)  # fmt: skip
    assert cs.test is not None

    def ns(d: dict[str, Any]) -> dict[str, float | None]:
        return {"N_accuracy": d["se"][0], "S_sensitivity": d["se"][1], "macro_f1": d["macro_f1"],
                "support": d["support"]}  # fmt: skip

    out: dict[str, Any] = {"record": "100", "beats": len(whole), "calibration_s": cfg.mitdb_calibration_s,
                           "base_whole_record": ns(evaluate(base, whole).to_dict()),
                           "base_test": ns(evaluate(base, cs.test).to_dict())}  # fmt: skip
    obs = observe(base, cs.val, cs.records, 0, reference.template, reference.sites, plateau=True,
                  calibration=True).vector()  # fmt: skip
    decision, plan = plan_trials(ctrl, obs, cfg.sites_per_condition)
    out["decision"] = decision.describe(ctrl.space)
    best = None
    for j, d in enumerate(plan):
        assert d.site is not None and d.blueprint is not None and d.grafting is not None
        t = run_trial(base, cs, split.val, ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint],
                      ctrl.space.graftings[d.grafting], ctrl.space.intensities[d.intensity], ctrl.budget, mcfg,
                      seed=seed * 1000 + 900 + j, clean_sites=reference.sites)  # fmt: skip
        console.print(f"  record 100 · {t.site} {t.blueprint}: {t.final_stage} ({t.reason[:80]})")
        if t.fossilized and (best is None or t.gain > best.gain):
            best = t
        out.setdefault("trials", []).append({"site": t.site, "blueprint": t.blueprint, "stage": t.final_stage,
                                             "reason": t.reason, "val_gain": t.gain})  # fmt: skip
    out["seed_test"] = ns(best.test_seed) if best is not None and best.test_seed else None
    out["seed"] = None if best is None else {"site": best.site, "blueprint": best.blueprint, "params": best.param_count}
    ft = fine_tune(base, cs, cfg.finetune_epochs, cfg.finetune_lr, mcfg.batch_size, seed)
    out["finetune_test"] = ns(evaluate(ft, cs.test).to_dict())
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def report(out: dict[str, Any]) -> None:
    base = out["base"]
    console.print(f"base: {base['params']:,} parameters; clean held-out macro-F1 "
                  f"[bold]{_pct(base['clean_test']['macro_f1'])}[/] (per class Se "
                  f"{', '.join(_pct(v) for v in base['clean_test']['se'])})")  # fmt: skip
    t = Table(title="morph: macro-F1 % on held-out patients (seed vs full fine-tuning on the same data)")
    for col in ("condition", "drop", "base", "seed", "fine-tune", "recovered", "seed params", "site · blueprint"):
        t.add_column(col, justify="left" if col in ("condition", "site · blueprint") else "right")
    for row in out["conditions"]:
        seed = row["seed"]
        drop = row["base_drop_vs_clean"]
        t.add_row(
            row["condition"], "-" if drop is None else f"{100 * drop:+.1f}", _pct(row["base_test"]["macro_f1"]),
            _pct(_f1(seed["test"])) if seed else "culled", _pct(row["finetune_test"]["macro_f1"]),
            "-" if row["recovered"] is None else f"{100 * row['recovered']:.0f}%",
            f"{seed['params']} ({100 * seed['param_fraction']:.1f}%)" if seed else "-",
            f"{seed['site']} · {seed['blueprint']}" if seed else "-",
        )  # fmt: skip
    console.print(t)
    lt = Table(title="lifecycle: every seed grown")
    for col in ("condition", "seed", "blueprint", "final", "reason"):
        lt.add_column(col)
    for tr in out["trials"]:
        style = "green" if tr["final_stage"] == "FOSSILIZED" else "red"
        lt.add_row(tr["condition"], tr["seed_id"], tr["blueprint"], f"[{style}]{tr['final_stage']}", tr["reason"][:70])
    console.print(lt)
    mit = out["mitdb"]
    if "skipped" in mit:
        console.print(f"MIT-BIH record 100: skipped ({mit['skipped']})")
        return
    mt = Table(title=f"MIT-BIH record 100 (after its first {mit['calibration_s']:.0f} s of annotated beats)")
    for col in ("model", "N accuracy %", "S sensitivity %", "macro-F1 %"):
        mt.add_column(col, justify="left" if col == "model" else "right")
    for label, key in (("base", "base_test"), ("base + best seed", "seed_test"), ("full fine-tuning", "finetune_test")):
        m = mit.get(key)
        mt.add_row(label, *(("-",) * 3 if not m else (_pct(m["N_accuracy"]), _pct(m["S_sensitivity"]), _pct(m["macro_f1"]))))
    console.print(mt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 2 conditions: under a couple of minutes")
    ap.add_argument("--json", type=Path, default=None, help="default runs/bench_morph.json (--data: bench_morph_records)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="edgetpu", help="target whose op set limits the seeds (or 'host')")
    ap.add_argument("--conditions", default=None, help="comma list (default: all five; quick: emg,lead)")
    ap.add_argument("--data", default=None, help="wfdb:DIR: condition seeds on real records (DS1 folds) instead")
    ap.add_argument("--snr", default=None, help="with --data: noise SNRs in dB (default 12,6,0,-6)")
    ap.add_argument("--folds", default=None, help="with --data: which of the 4 folds, e.g. 0,2 (default all)")
    ap.add_argument("--bases", type=Path, default=Path("runs/bench_morph"),
                    help="with --data: folder of fold0..3/base.pt, reused when they never saw the fold's test "
                    "records, else trained there (~1-2 min each)")
    ap.add_argument("--jobs", type=int, default=2, help="with --data: folds run side by side (one thread each)")
    args = ap.parse_args(argv)
    if args.data is not None:
        return main_records(args)
    cfg = QUICK if args.quick else BenchConfig()
    if args.conditions:
        cfg = dataclasses.replace(cfg, conditions=tuple(c.strip() for c in args.conditions.split(",") if c.strip()))
    from kasmina_edge.host.experiment import ExperimentLog, atomic_write_json

    args.json = args.json or Path("runs/bench_morph.json")
    log = ExperimentLog(args.json.with_suffix(".jsonl"), command="bench_morph", config=dataclasses.asdict(cfg),
                        seed=args.seed)  # fmt: skip
    out = run(cfg, args.seed, None if args.target == "host" else args.target, log)
    out["experiment_id"] = log.experiment_id
    out["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    report(out)
    atomic_write_json(args.json, out)
    console.print(f"{out['seconds']:.0f} s; JSON {args.json}")
    return 0


# --------------------------------------------------------------------------- real records (--data wfdb:DIR)


@dataclasses.dataclass(frozen=True)
class RecordsConfig:
    folds: tuple[int, ...] = (0, 1, 2, 3)
    n_folds: int = 4
    conditions: str = "emg,baseline,lead"
    snrs: tuple[float, ...] = (12.0, 6.0, 0.0, -6.0)
    preset: str = "default"  # MORPH_PRESETS and CONDITIONS_PRESETS
    base_epochs: int = 12  # only for a fold base that must be trained


RECORDS_QUICK = RecordsConfig(folds=(1,), conditions="emg,lead", snrs=(6.0, -6.0), preset="tiny")  # ~1 min


def fold_base(k: int, test: list[str], names: list[str], folder: Path, args: argparse.Namespace,
              cfg: RecordsConfig) -> Path:  # fmt: skip
    """The fold's base: ``--bases``/fold{k}/base.pt when it never saw the fold's test records, else
    trained (as `kasmina-edge train --data wfdb:` trains: last epoch, balanced loss) in its place."""
    from kasmina_edge.host.experiment import load_checkpoint

    path = args.bases / f"fold{k}" / "base.pt"
    if path.exists():
        ck = load_checkpoint(path)
        seen = {*ck.get("train_records", []), *ck.get("val_records", [])}
        if seen and not seen & set(test):
            return path
        console.print(f"[yellow]{path}: trained on test record(s) {sorted(seen & set(test))} or unknown: retrained")
    return train_fold_base(k, [n for n in names if n not in test], folder, path, cfg)


def train_fold_base(k: int, train: list[str], folder: Path, out: Path, cfg: RecordsConfig) -> Path:
    import numpy as np

    from kasmina_edge.ecg.dataset import concat
    from kasmina_edge.host.data import SPEC
    from kasmina_edge.host.experiment import load_checkpoint, save_checkpoint
    from kasmina_edge.host.records import RecordSummary, choose_validation, record_beats
    from kasmina_edge.host.train import TRAIN_PRESETS, for_real_records, train_base

    console.print(f"fold {k}: training its base on {len(train)} records ({cfg.base_epochs} epochs)")
    beats = {r: record_beats(folder, RecordSummary(r, SPEC.fs, "MLII", (0,) * 5)) for r in train}
    summaries = [RecordSummary(r, SPEC.fs, "MLII", tuple(int(c) for c in np.bincount(beats[r].labels, minlength=5)))
                 for r in train]  # fmt: skip
    fit, val = choose_validation(summaries, seed=k)
    tcfg = for_real_records(dataclasses.replace(TRAIN_PRESETS["default"], epochs=cfg.base_epochs, seed=k))
    out.parent.mkdir(parents=True, exist_ok=True)
    train_base(tcfg, concat([beats[r] for r in fit]), concat([beats[r] for r in val]), out=out)
    ck = load_checkpoint(out)
    ck["train_records"], ck["val_records"], ck["data_lead"] = list(fit), list(val), "MLII"
    save_checkpoint(out, ck)
    return out


def fold_job(k: int, path: Path, test: list[str], names: list[str], folder: Path, cells: list[Any], mcfg: Any,
             ccfg: Any) -> dict[str, Any]:  # fmt: skip
    """One fold, start to end (runs in its own process with --jobs 2): its cells' results, trial weights dropped."""
    import torch

    from kasmina_edge.host.conditions import NoiseBank, default_noise_folder
    from kasmina_edge.host.conditions_morph import load_records, morph_on_records, roles_from_checkpoint
    from kasmina_edge.host.train import load_base

    torch.set_num_threads(1)  # 2 threads on 2 shared cores were up to 20x slower per step (contention)
    tf = time.perf_counter()
    base, ckpt = load_base(path)
    roles = roles_from_checkpoint(ckpt, names, test, str(folder))
    console.print(f"[bold]fold {k}[/]: base {path}; seeds grow on {len(roles.adapt)} records, gated on "
                  f"{', '.join(roles.gate)}, judged on {', '.join(roles.test)}")  # fmt: skip

    def say(msg: str) -> None:
        if ": " in msg and not msg.split(": ", 1)[1].startswith(("TRAINING", "BLENDING", "SHADOWING", "PROBATION",
                                                                   "mixing", "full fine")):  # fmt: skip
            console.print(f"  fold {k} · {msg}")

    records = load_records(folder, [*roles.adapt, *roles.gate, *roles.test], "MLII")
    res = morph_on_records(base, ckpt, records, roles, cells, mcfg, ccfg, NoiseBank(default_noise_folder()), say=say)
    for c in res.cells:
        for t in c.trials:
            t.state = None  # the bench keeps figures, not weights
    return {"fold": k, "base": str(path), "roles": dataclasses.asdict(roles), "results": res.cells,
            "seconds": time.perf_counter() - tf}  # fmt: skip


def run_records(cfg: RecordsConfig, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from kasmina_edge.host.conditions import NoiseBank, default_noise_folder, parse_real_conditions
    from kasmina_edge.host.conditions_morph import CONDITIONS_PRESETS
    from kasmina_edge.host.morph import MORPH_PRESETS
    from kasmina_edge.host.records import DS1, list_records

    t0 = time.perf_counter()
    available = list_records(folder)
    names = [r for r in DS1 if r in set(available)]
    if len(names) < cfg.n_folds * 2:
        raise SystemExit(f"{folder}: {len(names)} DS1 records; the folds need the 22 DS1 records")
    cells = parse_real_conditions(cfg.conditions, cfg.snrs)
    mcfg = dataclasses.replace(MORPH_PRESETS[cfg.preset], target=args.target if args.target != "host" else None,
                               seed=args.seed)  # fmt: skip
    ccfg = dataclasses.replace(CONDITIONS_PRESETS[cfg.preset], seed=args.seed)
    NoiseBank(default_noise_folder()).require(["bw", "ma"])
    jobs = [(k, fold_base(k, names[k :: cfg.n_folds], names, folder, args, cfg), names[k :: cfg.n_folds])
            for k in cfg.folds]  # fmt: skip
    if args.jobs > 1 and len(jobs) > 1:  # one process per fold, one thread each: 2 cores, no thread contention
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(fold_job, k, path, test, names, folder, cells, mcfg, ccfg) for k, path, test in jobs]
            done = [f.result() for f in futures]
    else:
        done = [fold_job(k, path, test, names, folder, cells, mcfg, ccfg) for k, path, test in jobs]
    out: dict[str, Any] = {"config": dataclasses.asdict(cfg), "morph_config": mcfg.to_dict(), "jobs": args.jobs,
                           "conditions_config": ccfg.to_dict(), "seed": args.seed, "folds": []}  # fmt: skip
    per_cell: dict[str, list[Any]] = {c.key: [] for c in cells}
    for d in done:
        for c in d["results"]:
            per_cell[c.cell.key].append(c)
        out["folds"].append({"fold": d["fold"], "base": d["base"], "roles": d["roles"], "seconds": d["seconds"],
                             "cells": [c.summary() for c in d["results"]]})  # fmt: skip
    out["cells"] = [pooled_cell(c, per_cell[c.key], ccfg) for c in cells]
    out["seconds"] = time.perf_counter() - t0
    return out


def pooled_cell(cell: Any, folds: list[Any], ccfg: Any) -> dict[str, Any]:
    """One row of the table: every fold's held-out beats together, and item 2's verdict on them."""
    from kasmina_edge.host.conditions_morph import HeldOut, judge, macro_f1

    pooled = HeldOut.pool([c.held_out for c in folds])
    fig = pooled.figures()
    shipped = [c for c in folds if c.verdict.ships]
    fractions = [float(c.param_fraction) for c in shipped if c.param_fraction is not None]
    nothing = sum(c.verdict.code == "nothing_to_recover" for c in folds)
    verdict = judge(fig, fractions, nothing, len(folds), ccfg)
    hurt = []
    for c in shipped:  # did every seed that shipped help on its fold's held-out records?
        h = c.held_out
        gain = macro_f1(h.truth, h.seed) - macro_f1(h.truth, h.base)
        if gain < 0:
            hurt.append({"records": c.test_records, "gain": gain})
    return {"cell": cell.key, "label": cell.label, "condition": cell.name, "snr_db": cell.snr_db, **fig,
            "shipped": len(shipped), "folds": len(folds), "culled_nothing_to_recover": nothing,
            "param_fraction_max": max(fractions, default=None), "item2": dataclasses.asdict(verdict),
            "shipped_but_hurt_on_test": hurt,
            "verdicts": [{"code": c.verdict.code, "reason": c.verdict.reason, "gate_drop": c.drop} for c in folds]}  # fmt: skip


FOLD_CODE = {"shipped": "shipped", "nothing_to_recover": "nothing", "culled": "culled", "did_not_help": "no help",
             "no_seed": "no seed"}


def report_records(out: dict[str, Any]) -> None:
    from rich import box

    t = Table(title="condition seeds on real records: macro-F1 % (N/S/V/F), gross over the held-out records of "
              f"{len(out['folds'])} fold(s)", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
              padding=(0, 1), collapse_padding=True)  # fmt: skip
    for col in ("condition", "clean", "base", "drop", "seed", "fine-\ntune", "recov-\nered", "para-\nmeters",
                "ship-\nped", "item 2"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("condition", "item 2") else "right", no_wrap=True)
    for r in out["cells"]:
        rec, frac = r["recovery"], r["param_fraction_max"]
        ok = r["item2"]["met"]
        t.add_row(
            r["label"], _pct(r["base_clean"]), _pct(r["base"]), f"{100 * r['drop']:+.1f}", _pct(r["seed"]),
            _pct(r["finetune"]), "-" if rec is None else f"{100 * rec:.0f}%", "-" if frac is None else f"{100 * frac:.1f}%",
            f"{r['shipped']}/{r['folds']}", f"[{'green' if ok else 'red'}]{'✓' if ok else '✗'}",
        )  # fmt: skip
    console.print(t)
    for r in out["cells"]:
        console.print(f"  {r['label']}: {r['item2']['text']}")
    vt = Table(title="per fold: the base's drop on the gate records (its validation records), and the morph's verdict",
               box=box.SIMPLE_HEAD, title_justify="left")  # fmt: skip
    vt.add_column("condition")
    for f in out["folds"]:
        vt.add_column(f"fold {f['fold']}")
    for i, r in enumerate(out["cells"]):
        vt.add_row(r["label"], *(f"{100 * f['cells'][i]['gate_drop']:+.1f} {FOLD_CODE[f['cells'][i]['verdict']['code']]}"
                                 for f in out["folds"]))  # fmt: skip
    console.print(vt)
    hurt = [(r["label"], h) for r in out["cells"] for h in r["shipped_but_hurt_on_test"]]
    n_ship = sum(r["shipped"] for r in out["cells"])
    console.print(f"{n_ship} seed(s) shipped; {len(hurt)} of them lower on their fold's test records"
                  + "".join(f"\n  {lab}: {100 * h['gain']:+.1f} points on {', '.join(h['records'])}" for lab, h in hurt))
    met = sum(r["item2"]["met"] for r in out["cells"])
    console.print(f"item 2 met in {met} of {len(out['cells'])} cells")


def main_records(args: argparse.Namespace) -> int:
    from kasmina_edge.host.experiment import atomic_write_json
    from kasmina_edge.host.records import parse_data_spec

    spec = parse_data_spec(args.data)
    if spec.folder is None:
        raise SystemExit("--data: give wfdb:DIR (a folder with the DS1 records)")
    cfg = RECORDS_QUICK if args.quick else RecordsConfig()
    if args.conditions:
        cfg = dataclasses.replace(cfg, conditions=args.conditions)
    if args.snr:
        from kasmina_edge.host.conditions import parse_snrs

        cfg = dataclasses.replace(cfg, snrs=parse_snrs(args.snr))
    if args.folds:
        cfg = dataclasses.replace(cfg, folds=tuple(int(f) for f in args.folds.split(",") if f.strip()))
    out = run_records(cfg, spec.folder, args)
    out["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    report_records(out)
    path = args.json or Path("runs/bench_morph_records.json")
    atomic_write_json(path, out)
    console.print(f"{out['seconds']:.0f} s; JSON {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
