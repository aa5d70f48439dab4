"""`kasmina-edge train` and `kasmina-edge morph`, and the demo's host step.

torch and the ECG generators are imported inside the commands: `kasmina-edge --help` and the
device never pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, fail, human, json_option
from kasmina_edge.cli.host_tables import (
    conditions_table,
    lifecycle_trace,
    metrics_json,
    metrics_table,
    patient_trace,
    pct,
    records_table,
    results_table,
    tamiyo_line,
)

if TYPE_CHECKING:
    from kasmina_edge.host.morph import MorphResult
    from kasmina_edge.host.train import TrainResult


def _progress(con: Console) -> Any:
    """Description, bar, 'done/total' (only where the total is known: no '0/?'), what it is doing, elapsed
    and (where the total is known) time remaining."""
    from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text("" if task.total is None else f"{int(task.completed)}/{int(task.total)}")

    class Remaining(ProgressColumn):
        def render(self, task: Task) -> Text:
            left = task.time_remaining
            if task.total is None or task.finished or left is None:
                return Text("")
            return Text(f"~{int(left) // 60}:{int(left) % 60:02d} left", style="cyan")

    return Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=20), Count(), TimeElapsedColumn(), Remaining(),
        TextColumn("{task.fields[info]}"), console=con, transient=False,
    )  # fmt: skip


def run_train(
    con: Console,
    *,
    config: str = "default",
    patients: int | None = None,
    minutes: float | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    out: Path = Path("runs/base.pt"),
    resume: Path | None = None,
    log: Path | None = None,
    data: str | None = None,
    records: str | None = None,
    val_records: str | None = None,
    lead: str = "0",
    skip_unknown_symbols: bool = False,
) -> TrainResult:
    """Train the base (host.train_run) with a progress bar and the tables: on synthetic patients (``data``
    None or "synthetic"), or on the annotated WFDB records of a folder (``data="wfdb:DIR"``), split
    patient-wise. Every user error is raised before anything is written or trained."""
    from kasmina_edge.host.model import count_host_parameters, count_macs, example_inputs
    from kasmina_edge.host.train import set_threads
    from kasmina_edge.host.train_run import TrainOptions, TrainProgress, open_log, plan_training, run_training

    plan = plan_training(TrainOptions(
        config=config, patients=patients, minutes=minutes, epochs=epochs, seed=seed, out=out, resume=resume, log=log,
        data=data, records=records, val_records=val_records, lead=lead, skip_unknown_symbols=skip_unknown_symbols,
    ))  # fmt: skip
    cfg = plan.cfg
    threads = set_threads()
    xlog = open_log(plan)
    con.print(f"experiment {xlog.experiment_id}: {cfg.model} model, {plan.describe()}, {cfg.epochs} "
              f"epoch{'s' * (cfg.epochs != 1)}, seed {cfg.seed}, {threads} thread(s)")  # fmt: skip
    if config != "tiny":
        con.print(f"[dim]{_duration_note(plan.split is None)}[/]")
    with _progress(con) as prog:
        tasks: dict[str, Any] = {}

        def loading(what: str, total: int | None) -> None:
            tasks["data"] = prog.add_task(what, total=total, info="")

        def loaded(n_train: int, n_val: int, n_batches: int, done: int) -> None:
            finished = {"total": 1, "completed": 1} if plan.split is None else {}
            prog.update(tasks["data"], **finished, info=f"{n_train} train / {n_val} val beats")
            tasks["train"] = prog.add_task("training", total=n_batches * max(1, cfg.epochs),
                                           completed=n_batches * done, info="")  # fmt: skip

        def on_batch(epoch: int, b: int, nb: int, loss: float) -> None:
            prog.update(tasks["train"], completed=epoch * nb + b, info=f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.3f}")

        progress = TrainProgress(loading, lambda i, n, name: prog.update(tasks["data"], completed=i, info=name),
                                 loaded, on_batch)  # fmt: skip
        run = run_training(plan, xlog, progress)
    result, split = run.result, run.split
    assert result.val is not None
    held_out = "held-out patients" if split is None else f"held-out records {', '.join(run.val_names)}"
    if split is not None:
        con.print(records_table(split))
        resampled = split.resampled()
        if resampled:
            con.print("resampled to 360 Hz: " + ", ".join(f"{n} ({fs:g} Hz)" for n, fs in resampled.items()))
        skipped = split.skipped()
        if skipped:
            con.print("[yellow]left out[/] (symbols without an AAMI class): "
                      + ", ".join(f"{n}: {k} beats" for n, k in skipped.items()))  # fmt: skip
    kept = f"best epoch {result.best_epoch}" if cfg.weights == "best" else f"last epoch {len(result.history)}"
    con.print(metrics_table(f"validation ({held_out}), {kept}", result.val))
    x, rr = example_inputs(result.model_config)
    con.print(
        f"{count_host_parameters(result.model):,} parameters, {count_macs(result.model, x, rr):,} MACs per beat; "
        f"{run.seconds:.1f} s; checkpoint [bold]{out}[/], log {plan.log_path}"
    )
    return result


# measured on 2 shared cores (2026-12): the default preset on the 22 DS1 records
DS1_TRAIN_MINUTES = 19


def _duration_note(synthetic: bool) -> str:
    took = "several minutes" if synthetic else f"~{DS1_TRAIN_MINUTES} min on 2 cores for the 22 DS1 records"
    return f"the default preset takes {took} (the bar shows what is left); --preset tiny trains in seconds"


def train(
    data: str = typer.Option(
        None,
        "--data",
        help="wfdb:DIR: every annotated WFDB record in DIR, split patient-wise; "
        "or synthetic (the default: synthetic patients).",
    ),
    records: str = typer.Option(
        None,
        "--records",
        help="Records of DIR to train on, comma-separated, or ds1 (MIT-BIH DS1). Default: all "
        "not in --val-records. Without --val-records, ~20 % of them are held out to validate.",
    ),
    val_records: str = typer.Option(
        None,
        "--val-records",
        help="Validation records, comma-separated (never trained on; not also in --records).",
    ),
    lead: str = typer.Option("0", "--lead", help="With --data wfdb: the lead, by index or name (e.g. MLII)."),
    skip_unknown_symbols: bool = typer.Option(
        False,
        "--skip-unknown-symbols",
        help="Leave out beats whose annotation symbol has no AAMI class (default: refuse the record).",
    ),
    config: str = typer.Option(
        "default", "--preset", "--config", help="Model and training preset: default (minutes) or tiny (seconds).",
        callback=checks.choice(("default", "tiny"), "preset"),
    ),
    patients: int = typer.Option(
        None, "--patients", help="Synthetic patients (split patient-wise; at least 2).", callback=checks.number(low=2)
    ),
    minutes: float = typer.Option(
        None, "--minutes", help="Minutes of ECG per synthetic patient.", callback=checks.number(low=0, low_open=True, what="min")
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Training epochs, at least 1 (with --resume: the new total).", callback=checks.at_least_one
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed for data, split, initialisation and batch order.", callback=checks.non_negative
    ),
    out: Path = typer.Option(
        Path("runs/base.pt"), "--out", help="Checkpoint to write (atomically, every epoch).",
        callback=checks.output_file(),
    ),
    resume: Path = typer.Option(
        None, "--resume", help="Continue from this checkpoint.", callback=checks.existing_checkpoint
    ),
    log: Path = typer.Option(
        None, "--log", help="JSON-lines experiment log (default: beside --out).", callback=checks.output_file()
    ),
    as_json: bool = json_option(),
) -> None:
    """Train the base ECG beat classifier on annotated WFDB records (--data wfdb:DIR) or synthetic patients.
    --json: no progress bar or tables, the checkpoint, history and validation figures as one JSON document."""
    from kasmina_edge.contracts.errors import KasminaError

    try:
        result = run_train(human(as_json), config=config, patients=patients, minutes=minutes, epochs=epochs, seed=seed, out=out,
                  resume=resume, log=log, data=data, records=records, val_records=val_records, lead=lead,
                  skip_unknown_symbols=skip_unknown_symbols)  # fmt: skip
    except KasminaError as exc:  # one line and exit 2, also where the console script's handler is not around
        fail(str(exc))
    if as_json:
        emit({"checkpoint": out, "experiment_id": result.experiment_id, "best_epoch": result.best_epoch,
              "config": result.config, "model_config": result.model_config, "history": result.history,
              "validation": None if result.val is None else metrics_json(result.val)})


# --------------------------------------------------------------------------- morph


def run_morph_command(
    con: Console,
    *,
    checkpoint: Path,
    conditions: str | None = None,
    out: Path = Path("runs/seeds"),
    target: str = "edgetpu",
    preset: str = "default",
    seed: int | None = None,
    patients: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    report: bool = False,
    log: Path | None = None,
    reward: str | None = None,
    intensity: str | None = None,
) -> MorphResult:
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.morph import STATE_FILE, run_morph
    from kasmina_edge.host.morph_config import morph_config_for
    from kasmina_edge.host.train import load_base, set_threads

    cfg = morph_config_for(preset, target, conditions=conditions, reward=reward, intensity=intensity, seed=seed,
                           patients=patients, minutes=minutes)  # fmt: skip
    base, ckpt = load_base(checkpoint)
    set_threads()
    log_path = log or out / "morph.jsonl"
    resumed = resume and (out / STATE_FILE).exists()
    xlog = ExperimentLog(log_path, command="morph", config={**cfg.to_dict(), "checkpoint": str(checkpoint)},
                         seed=cfg.seed, resumed=resumed)  # fmt: skip
    if resumed:
        from kasmina_edge.host.morph import load_state

        xlog.experiment_id = load_state(out / STATE_FILE, cfg)[0]
    con.print(
        f"experiment {xlog.experiment_id}: morphing {checkpoint} over {', '.join(cfg.conditions)} "
        f"for target {cfg.target or 'host'}{' (resumed)' if resumed else ''}"
    )
    if preset != "tiny":
        con.print("[dim]the default preset takes minutes per condition on 2 cores (the bar counts them); "
                  "--preset tiny takes ~35 s[/]")  # fmt: skip
    with _progress(con) as prog:
        task = prog.add_task("morph", total=len(cfg.conditions) + 1, info="")
        seen: set[str] = set()

        def say(msg: str) -> None:
            cond = msg.split(":")[0].split(" ·")[0]
            if cond in cfg.conditions and cond not in seen:
                seen.add(cond)
                prog.update(task, completed=len(seen) - 1)
            prog.update(task, info=msg[:70])

        result = run_morph(base, ckpt, cfg, out, log=xlog, say=say, resume=resume)
        prog.update(task, completed=len(cfg.conditions) + 1, info="done")
    if report:
        con.print(lifecycle_trace(result))
    con.print(results_table(result))
    con.print(tamiyo_line(result.tamiyo))
    n_fossil = sum(t.fossilized for t in result.trials())
    con.print(
        f"{n_fossil} seed(s) fossilized, {len(result.trials()) - n_fossil} culled or refused; library "
        f"[bold]{out / 'library.json'}[/] ({len(result.library.entries)} seeds), log {log_path}, "
        f"{result.seconds:.1f} s"
    )
    return result


def morph(
    checkpoint: Path = typer.Option(
        None, "--checkpoint", help="Base checkpoint from `kasmina-edge train` (with --patient: default runs/base.pt).",
        callback=checks.checkpoint_content,
    ),  # a missing one: the commands say so before any work (tests read their KasminaError)
    conditions: str = typer.Option(
        None, "--conditions", help="Comma list of: emg, baseline, motion, lead, patient (with --data: emg, baseline, lead)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Seed library folder (default runs/seeds); with --patient the bundle (seed-REC.kedge)."
    ),
    target: str = typer.Option(
        "edgetpu", "--target", help="Target whose op set and budget limit the seeds: edgetpu, cortex-m, linux-arm, "
        "x86 (or host).", callback=checks.choice(("edgetpu", "cortex-m", "linux-arm", "x86", "host"), "target"),
    ),
    preset: str = typer.Option(
        "default", "--preset", help="Morph budget preset: default or tiny.", callback=checks.choice(("default", "tiny"), "preset")
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for data, seeds and Tamiyo.", callback=checks.non_negative),
    patients: int = typer.Option(
        None, "--patients", help="Training patients to adapt on, at least 1 (default: all the checkpoint's).",
        callback=checks.at_least_one,
    ),
    minutes: float = typer.Option(
        None, "--minutes", help="Minutes per patient (default: the checkpoint's); with --patient the window (5).",
        callback=checks.number(low=0, low_open=True, what="min"),
    ),
    report: bool = typer.Option(False, "--report", help="Also print the lifecycle trace of every seed."),
    resume: bool = typer.Option(False, "--resume", help="Skip the conditions already done in --out."),
    log: Path = typer.Option(
        None, "--log", help="JSON-lines experiment log (default: OUT/morph.jsonl).", callback=checks.output_file()
    ),
    reward: str = typer.Option(
        None, "--reward", help="Tamiyo's reward weights: accuracy, params, latency, drift, safety (e.g. params=2)."
    ),
    intensity: str = typer.Option(
        None, "--intensity", help="Intensity config: a library name (kasmina-edge tune intensity list) or a TOML file."
    ),
    patient: str = typer.Option(
        None, "--patient", help="Grow a seed for this patient (wfdb:PATH, annotated) and write a kernel-only bundle."
    ),
    base_bundle: Path = typer.Option(
        None, "--base-bundle", help="With --patient: the base bundle on the device (its site grids are used).",
        callback=checks.input_file,
    ),
    keys: Path = typer.Option(
        None, "--keys", help="With --patient: signing keys folder (default: the user's).", callback=checks.input_path
    ),
    data: str = typer.Option(
        None, "--data", help="Real records, wfdb:DIR: seeds grow on the base's training records with real NSTDB "
        "noise or the other lead, and are judged on the folder's records the base never saw.",
    ),
    snr: str = typer.Option(None, "--snr", help="With --data: noise SNRs in dB (default 12,6,0,-6)."),
    records: str = typer.Option(
        None, "--records", help="With --data: held-out records to judge on (default: every record the base never saw)."
    ),
    noise: Path = typer.Option(
        None, "--noise", help="With --data: folder of the NSTDB noise records bw and ma (default ../shared/data/nstdb).",
        callback=checks.input_dir,
    ),
    as_json: bool = json_option(),
) -> None:
    """Grow seed kernels per signal condition and write the seed library; or, with --patient, one
    patient's seed as a signed kernel-only bundle. --json: no progress bar or tables; what was grown,
    shipped and written as one JSON document."""
    from kasmina_edge.contracts.errors import KasminaError

    try:
        _morph(checkpoint=checkpoint, conditions=conditions, out=out, target=target, preset=preset, seed=seed,
               patients=patients, minutes=minutes, report=report, resume=resume, log=log, reward=reward,
               intensity=intensity, patient=patient, base_bundle=base_bundle, keys=keys, data=data, snr=snr, records=records, noise=noise,
               as_json=as_json)  # fmt: skip
    except KasminaError as exc:  # one line and exit 2 (JSON under --json), also without the console script's handler
        fail(str(exc))


def _morph(
    *, checkpoint: Path | None, conditions: str | None, out: Path | None, target: str, preset: str, seed: int | None,
    patients: int | None, minutes: float | None, report: bool, resume: bool, log: Path | None, reward: str | None,
    intensity: str | None, patient: str | None, base_bundle: Path | None, keys: Path | None, data: str | None, snr: str | None,
    records: str | None, noise: Path | None, as_json: bool,
) -> None:  # fmt: skip
    import json

    from kasmina_edge.host.records import parse_data_spec

    con = human(as_json)
    spec = parse_data_spec(data)
    if spec.synthetic:
        real_only = [f for f, v in (("--snr", snr), ("--records", records), ("--noise", noise)) if v is not None]
        if real_only:
            fail(f"{', '.join(real_only)}: only with real records (--data wfdb:DIR)")
    else:
        synth_only = [f for f, v in (("--patient", patient), ("--patients", patients), ("--minutes", minutes),
                      ("--resume", resume or None), ("--reward", reward), ("--intensity", intensity),
                      ("--base-bundle", base_bundle),
                      ("--keys", keys)) if v is not None]  # fmt: skip
        if synth_only:
            fail(f"{', '.join(synth_only)}: not with --data {spec.text} (condition seeds on real records)")
        if checkpoint is None:
            fail("--checkpoint is required (a base trained on real records: `kasmina-edge train --data wfdb:DIR`)")
        checks.output_dir(out)
        folder_out = out or Path("runs/seeds")
        run_morph_records(con=con, checkpoint=checkpoint, folder=spec.folder, conditions=conditions, snr=snr,
                          records=records, noise=noise, out=folder_out, target=target, preset=preset,
                          seed=seed, log=log, report=report)  # fmt: skip
        if as_json:
            table = json.loads((folder_out / "conditions.json").read_text(encoding="utf-8"))
            emit({"library": folder_out / "library.json", "conditions_json": folder_out / "conditions.json",
                  "log": log or folder_out / "morph.jsonl", **table})  # fmt: skip
        return
    if patient is None:
        given = [flag for flag, v in (("--base-bundle", base_bundle), ("--keys", keys)) if v is not None]
        if given:
            fail(f"{', '.join(given)}: only with --patient")
    else:
        only_conditions = [flag for flag, v in (("--conditions", conditions), ("--patients", patients),
                           ("--reward", reward), ("--intensity", intensity), ("--resume", resume or None),
                           ("--report", report or None))
                           if v is not None]  # fmt: skip
        if only_conditions:
            fail(f"{', '.join(only_conditions)}: not with --patient (it grows one patient's seed)")
        if out is not None and out.suffix != ".kedge":
            fail(f"--out {out}: with --patient the output is a bundle: give a .kedge file name")
        checks.output_file(".kedge")(out)
    if patient is not None:
        # a seed the gates culled writes no bundle: said in one line, and not an error (the base stays)
        grown, built = run_morph_patient(con, patient=patient, checkpoint=checkpoint or Path("runs/base.pt"), out=out,
                                         minutes=5.0 if minutes is None else minutes, target=target,
                                         base_bundle=base_bundle, keys=keys, seed=seed or 0, log=log)  # fmt: skip
        if as_json:
            emit({"patient": patient, "bundle": out if built is not None else None, "seed": grown.summary()})
        return
    if checkpoint is None:
        from kasmina_edge.contracts.errors import KasminaError

        raise KasminaError("--checkpoint is required (a base checkpoint from `kasmina-edge train`)")
    checks.output_dir(out)
    folder_out = out or Path("runs/seeds")
    result = run_morph_command(con, checkpoint=checkpoint, conditions=conditions, out=folder_out,
                               target=target, preset=preset, seed=seed, patients=patients, minutes=minutes,
                               resume=resume, report=report, log=log, reward=reward,
                               intensity=intensity)  # fmt: skip
    if as_json:
        outcomes = [{"condition": o.condition, "decision": o.decision, "base_val": o.base_val,
                     "trials": [{k: v for k, v in t.summary().items() if k != "history"} for t in o.trials]}
                    for o in result.outcomes]  # fmt: skip
        emit({"experiment_id": result.experiment_id, "library": folder_out / "library.json",
              "seeds": sorted(result.library.entries), "outcomes": outcomes, "tamiyo": result.tamiyo,
              "seconds": result.seconds})  # fmt: skip


# --------------------------------------------------------------------------- morph --data wfdb:DIR


def run_morph_records(
    con: Console, *, checkpoint: Path, folder: Path | None, conditions: str | None, snr: str | None,
    records: str | None, noise: Path | None, out: Path, target: str, preset: str, seed: int | None,
    log: Path | None, report: bool,
) -> Any:  # fmt: skip
    """`morph --data wfdb:DIR`: condition seeds grown and judged on real records (host.conditions_morph)."""
    import dataclasses
    from types import SimpleNamespace

    from kasmina_edge.host.conditions import parse_real_conditions, parse_snrs
    from kasmina_edge.host.conditions_morph import CONDITIONS_PRESETS, run_conditions_morph
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.morph import MORPH_PRESETS
    from kasmina_edge.host.records import parse_record_names
    from kasmina_edge.host.train import load_base, set_threads

    assert folder is not None
    cells = parse_real_conditions(conditions, parse_snrs(snr))
    test = parse_record_names(records, "--records")
    mcfg = dataclasses.replace(MORPH_PRESETS[preset], target=None if target == "host" else target,
                               seed=seed or 0)  # fmt: skip
    cfg = dataclasses.replace(CONDITIONS_PRESETS[preset], seed=seed or 0)
    base, ckpt = load_base(checkpoint)
    set_threads()
    log_path = log or out / "morph.jsonl"
    xlog = ExperimentLog(log_path, command="morph", seed=cfg.seed, config={
        **mcfg.to_dict(), **cfg.to_dict(), "checkpoint": str(checkpoint), "data": f"wfdb:{folder}",
        "cells": [c.key for c in cells]})  # fmt: skip
    con.print(f"experiment {xlog.experiment_id}: condition seeds for {checkpoint} on wfdb:{folder}, "
              f"{len(cells)} cells ({', '.join(c.key for c in cells)}), target {mcfg.target or 'host'}")  # fmt: skip
    if preset != "tiny":
        con.print("[dim]about a minute per cell that grows a seed on 2 cores; --preset tiny is several times faster[/]")
    with _progress(con) as prog:
        reading = prog.add_task("reading records", total=None, info="")
        task = prog.add_task("morph", total=len(cells), info="")
        done: set[str] = set()

        def on_record(i: int, n: int, name: str) -> None:
            prog.update(reading, total=n, completed=i, info=name)

        def say(msg: str) -> None:
            key = msg.split(":")[0]
            if key not in done and key in {c.key for c in cells}:
                done.add(key)
                prog.update(task, completed=len(done) - 1)
            prog.update(task, info=msg[:70])

        result = run_conditions_morph(base, ckpt, folder, cells, mcfg, cfg, out, noise_folder=noise, test_records=test,
                                      log=xlog, say=say, on_record=on_record)  # fmt: skip
        prog.update(reading, completed=prog.tasks[reading].total or 0, info="")
        prog.update(task, completed=len(cells), info="done")
    if report:
        con.print(lifecycle_trace(SimpleNamespace(trials=lambda: [t for c in result.cells for t in c.trials])))  # type: ignore[arg-type]
    con.print(conditions_table(result))
    for c in result.cells:
        con.print(f"  {c.cell.label}: {c.verdict.reason}")
    roles = result.roles
    con.print(f"seeds grown on {len(roles.adapt)} records (the base's training records), gated on "
              f"{', '.join(roles.gate)}, judged on {', '.join(roles.test)}")  # fmt: skip
    con.print(f"{len(result.library.entries)} seed(s) shipped; library [bold]{out / 'library.json'}[/], table "
              f"{out / 'conditions.json'}, log {log_path}, {result.seconds:.0f} s")  # fmt: skip
    return result


# --------------------------------------------------------------------------- morph --patient


def run_morph_patient(
    con: Console,
    *,
    patient: str,
    checkpoint: Path,
    out: Path | None = None,
    minutes: float = 5.0,
    target: str = "edgetpu",
    base_bundle: Path | None = None,
    keys: Path | None = None,
    seed: int = 0,
    log: Path | None = None,
) -> Any:
    """`morph --patient` (host.patient_run) with its progress and trace: read the record, grow the patient's
    seeds, write the kernel-only bundle. Returns (the seed, the build or None)."""
    from kasmina_edge.compile.patient_bundle import device_site_ranges, patient_bundle
    from kasmina_edge.host.patient_run import PatientRequest, grow, prepare_patient, write_bundle

    req = PatientRequest(patient=patient, checkpoint=checkpoint, out=out, minutes=minutes, target=target,
                         base_bundle=base_bundle, keys=keys, seed=seed, log=log)  # fmt: skip
    run = prepare_patient(req, device_site_ranges)
    if run.common is None:
        con.print("[yellow]note:[/] the checkpoint names no training patients: no common beats mixed in")
    con.print(run.describe())
    con.print("[dim]growing, gating and judging the seed takes a few minutes on 2 cores[/]")
    with _progress(con) as prog:
        task = prog.add_task("patient seed", total=None, info="")
        result = grow(run, say=lambda m: prog.update(task, info=m[:70]))
    grown_s = run.elapsed()
    con.print(patient_trace(result))
    con.print(
        f"{result.outcome}; {result.param_count:,} seed parameters ({100 * result.param_fraction:.1f} % of the "
        f"base's {result.base_params:,}); out-of-fold macro-F1 {pct(result.baseline_val)} → "
        f"{pct(result.seed_val)}; grown in {grown_s:.1f} s"
    )
    if not result.fossilized:  # a culled seed never reaches a bundle
        con.print(f"[yellow]no seed earned its place for {run.record.name}: no bundle written, the device keeps "
                  f"its base[/] (log {run.log_path})")  # fmt: skip
        return result, None
    written = write_bundle(run, result, patient_bundle, con=con)
    con.print(
        f"kernel-only bundle [bold]{run.out}[/] ({run.out.stat().st_size:,} B, kernels {written.kernel_bytes:,} B) "
        f"for {target}; {written.seconds:.1f} s in all; log {run.log_path}"
    )
    return result, written.built


# --------------------------------------------------------------------------- demo


def demo_step(con: Console, workdir: Path) -> None:
    """Train a tiny model and morph it for two conditions (well under a minute on 2 cores)."""
    folder = workdir / "host"
    run_train(con, config="tiny", out=folder / "base.pt")
    run_morph_command(con, checkpoint=folder / "base.pt", out=folder / "seeds", preset="tiny", report=True)


def register(app: typer.Typer) -> None:
    app.command(
        name="train",
        help="Train the base ECG beat classifier on annotated WFDB records or synthetic patients.",
    )(train)
    app.command(name="morph", help="Grow seed kernels per signal condition and write the seed library.")(morph)
