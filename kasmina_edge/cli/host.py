"""`kasmina-edge train` and `kasmina-edge morph`, and the demo's host step.

torch and the ECG generators are imported inside the commands: `kasmina-edge --help` and the
device never pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, fail, human, json_option

if TYPE_CHECKING:
    from kasmina_edge.host.morph import MorphResult
    from kasmina_edge.host.records import RecordSplit
    from kasmina_edge.host.train import ClassMetrics, TrainResult


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def metrics_table(title: str, m: ClassMetrics) -> Table:
    from kasmina_edge.ecg.types import AAMI_CLASSES

    t = Table(title=title)
    t.add_column("class")
    t.add_column("beats", justify="right")
    t.add_column("Se %", justify="right")
    t.add_column("+P %", justify="right")
    t.add_column("F1 %", justify="right")
    for i, c in enumerate(AAMI_CLASSES):
        t.add_row(c, str(int(m.support[i])), _pct(m.se[i]), _pct(m.ppv[i]), _pct(m.f1[i]))
    t.add_row("[bold]macro-F1", "", "", "", f"[bold]{_pct(m.macro_f1)}")
    t.add_row("accuracy", "", "", "", _pct(m.accuracy))
    return t


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


def records_table(split: RecordSplit) -> Table:
    """Beats per AAMI class of every record, by side, with each side's total."""
    from kasmina_edge.ecg.types import AAMI_CLASSES

    leads = {n: s.lead for n, s in split.plan.summaries.items()}
    mixed = len(set(leads.values())) > 1  # e.g. MIT-BIH 114, whose first lead is V5, not MLII
    one_lead = "" if mixed else f", lead {next(iter(leads.values()))}"
    t = Table(title=f"records (patient-wise split){one_lead}")
    t.add_column("record")
    t.add_column("side")
    if mixed:
        t.add_column("lead")
    for c in AAMI_CLASSES:
        t.add_column(c, justify="right")
    t.add_column("beats", justify="right")
    for side, names in (("training", split.train_records), ("validation", split.val_records)):
        for n in names:
            counts = split.per_record[n].class_counts()
            lead = [leads[n]] if mixed else []
            t.add_row(n, side, *lead, *(str(counts[c]) for c in AAMI_CLASSES), str(len(split.per_record[n])))
        total = split.counts(names)
        t.add_row(f"[bold]{side}", f"[bold]{len(names)} records", *([""] if mixed else []),
                  *(f"[bold]{total[c]}" for c in AAMI_CLASSES), f"[bold]{sum(total.values())}",
                  end_section=True)  # fmt: skip
    return t


def _store_provenance(out: Path, split: RecordSplit, seed: int) -> None:
    """The data a real-record base was trained on, and the common beats its patient seeds mix in."""
    from kasmina_edge.host.experiment import load_checkpoint, save_checkpoint
    from kasmina_edge.host.patient import COMMON_KEY, common_beats, common_beats_to_checkpoint
    from kasmina_edge.host.train import BASE_KIND

    ckpt = load_checkpoint(out, kind=BASE_KIND)
    ckpt["data"] = split.plan.spec.text
    ckpt["data_folder"] = str(split.plan.folder.resolve())  # what --resume compares, wherever it runs from
    ckpt["data_lead"] = split.plan.lead
    ckpt["train_records"] = list(split.train_records)
    ckpt["val_records"] = list(split.val_records)
    ckpt["record_classes"] = {n: ds.class_counts() for n, ds in split.per_record.items()}
    ckpt[COMMON_KEY] = common_beats_to_checkpoint(common_beats(split.train, 200, seed=seed))
    save_checkpoint(out, ckpt)


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
    """Train the base: on synthetic patients (``data`` None or "synthetic"), or on the annotated
    WFDB records of a folder (``data="wfdb:DIR"``), split patient-wise. Every user error is
    raised before anything is written or trained."""
    import time

    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.model import count_host_parameters, count_macs, example_inputs
    from kasmina_edge.host.records import parse_data_spec, parse_record_names, plan_split, read_split
    from kasmina_edge.host.train import resolve_train_config, set_threads, synthetic_split, train_base

    spec = parse_data_spec(data)
    if spec.synthetic:
        real_only = [flag for flag, v in (("--records", records), ("--val-records", val_records),
                     ("--lead", None if lead == "0" else lead), ("--skip-unknown-symbols", skip_unknown_symbols or None))
                     if v is not None]  # fmt: skip
        if real_only:
            raise KasminaError(f"{', '.join(real_only)}: only with real records (--data wfdb:DIR)")
    else:
        synth_only = [f"--{k}" for k, v in (("patients", patients), ("minutes", minutes)) if v is not None]
        if synth_only:
            raise KasminaError(
                f"{', '.join(synth_only)}: only for synthetic patients, not with --data {spec.text}"
            )
    overrides = {"patients": patients, "minutes": minutes, "epochs": epochs, "seed": seed}
    cfg, resumed = resolve_train_config(config, resume, overrides, spec.synthetic)
    if not spec.synthetic and resumed is None:
        from kasmina_edge.host.train import for_real_records

        cfg = for_real_records(cfg)
    plan = None
    if spec.synthetic and resumed is not None and resumed.get("data_folder"):
        raise KasminaError(f"--resume: the checkpoint was trained on --data {resumed['data']}: give it again")
    if not spec.synthetic:
        folder = str(spec.folder.resolve()) if spec.folder is not None else None
        if resumed is not None and resumed.get("data_folder", folder) != folder:
            raise KasminaError(
                f"--resume: the checkpoint was trained on --data {resumed['data']}, not {spec.text}"
            )
        try:
            plan = plan_split(
                spec, records=parse_record_names(records, "--records"),
                val_records=parse_record_names(val_records, "--val-records"), seed=cfg.seed, lead=lead,
                unknown="skip" if skip_unknown_symbols else "error",
            )  # fmt: skip
        except KasminaError as exc:
            from kasmina_edge.host.records import RECORD_SETS

            if "is not in" not in str(exc):
                raise
            raise KasminaError(f"{exc}; or a named set: {', '.join(RECORD_SETS)}") from None
        if resumed is not None and resumed.get("train_records") not in (None, plan.train):
            raise KasminaError(
                "--resume: the checkpoint was trained on other records (give the same --records)"
            )
    threads = set_threads()
    log_path = log or out.with_suffix(".jsonl")
    xlog = ExperimentLog(
        log_path, command="train", config={**cfg.to_dict(), "data": spec.text}, seed=cfg.seed,
        experiment_id=(resumed or {}).get("experiment_id") or None, resumed=resume is not None,
    )  # fmt: skip
    if plan is None:
        what = f"{cfg.patients} synthetic patients × {cfg.minutes:g} min"
    else:
        what = f"{len(plan.train)} training + {len(plan.val)} validation records from {spec.text}"
    con.print(
        f"experiment {xlog.experiment_id}: {cfg.model} model, {what}, {cfg.epochs} epoch{'s' * (cfg.epochs != 1)}, "
        f"seed {cfg.seed}, "
        f"{threads} thread(s)"
    )
    if config != "tiny":
        con.print(f"[dim]{_duration_note(plan is None)}[/]")
    t0 = time.perf_counter()
    split = None
    with _progress(con) as prog:
        if plan is None:
            task = prog.add_task("synthesizing patients", total=None, info="")
            synth = synthetic_split(cfg)
            train_ds, val_ds = synth.train, synth.val
            train_names, val_names = (
                [r.name for r in synth.train_records],
                [r.name for r in synth.val_records],
            )
        else:
            task = prog.add_task("reading records", total=len(plan.train) + len(plan.val), info="")
            split = read_split(plan, lambda i, n, name: prog.update(task, completed=i, info=name))
            train_ds, val_ds = split.train, split.val
            train_names, val_names = split.train_records, split.val_records
        counts = {c: int((train_ds.labels == i).sum()) for i, c in enumerate("NSVFQ")}
        finished = {"total": 1, "completed": 1} if split is None else {}
        prog.update(task, **finished, info=f"{len(train_ds)} train / {len(val_ds)} val beats")
        n_batches = max(1, (len(train_ds) + cfg.batch_size - 1) // cfg.batch_size)
        done = int(resumed["epochs_done"]) if resumed is not None else 0
        bar = prog.add_task(
            "training", total=n_batches * max(1, cfg.epochs), completed=n_batches * done, info=""
        )

        def on_batch(epoch: int, b: int, nb: int, loss: float) -> None:
            prog.update(bar, completed=epoch * nb + b, info=f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.3f}")

        xlog.write("data", source=spec.text, train_beats=len(train_ds), val_beats=len(val_ds), train_classes=counts,
                   train_patients=train_names, val_patients=val_names)  # fmt: skip
        result = train_base(cfg, train_ds, val_ds, out=out, resume=resume, log=xlog, on_batch=on_batch)
    secs = time.perf_counter() - t0
    assert result.val is not None
    held_out = "held-out patients" if split is None else f"held-out records {', '.join(val_names)}"
    if split is not None:
        con.print(records_table(split))
        resampled = split.resampled()
        if resampled:
            con.print("resampled to 360 Hz: " + ", ".join(f"{n} ({fs:g} Hz)" for n, fs in resampled.items()))
        skipped = split.skipped()
        if skipped:
            con.print("[yellow]left out[/] (symbols without an AAMI class): "
                      + ", ".join(f"{n}: {k} beats" for n, k in skipped.items()))  # fmt: skip
        _store_provenance(out, split, cfg.seed)
    kept = f"best epoch {result.best_epoch}" if cfg.weights == "best" else f"last epoch {len(result.history)}"
    con.print(metrics_table(f"validation ({held_out}), {kept}", result.val))
    x, rr = example_inputs(result.model_config)
    con.print(
        f"{count_host_parameters(result.model):,} parameters, {count_macs(result.model, x, rr):,} MACs per beat; "
        f"{secs:.1f} s; checkpoint [bold]{out}[/], log {log_path}"
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
              "validation": None if result.val is None else _metrics_json(result.val)})


def _metrics_json(m: ClassMetrics) -> dict[str, Any]:
    """Per-class Se, +P and F1 (null where a class never occurs), macro-F1 and the confusion matrix."""
    from kasmina_edge.ecg.types import AAMI_CLASSES

    return {"classes": {c: {"support": m.support[i], "se": m.se[i], "ppv": m.ppv[i], "f1": m.f1[i]}
                        for i, c in enumerate(AAMI_CLASSES)},
            "macro_f1": m.macro_f1, "confusion": m.confusion}


# --------------------------------------------------------------------------- morph


def _stage_style(stage: str) -> str:
    return {"FOSSILIZED": "green", "CULLED": "red", "DORMANT": "yellow"}.get(stage, "white")


def short_reason(stage: str, reason: str) -> str:
    """'gate_G4_failed: gain …' → 'G4✗ gain …' (the trace has the whole reason)."""
    if stage == "FOSSILIZED":
        return "[green]fossilized"
    if reason.startswith("gate_") and "_failed" in reason:
        gate, _, why = reason[5:].partition("_failed: ")
        return f"[red]{gate}✗[/] {why.split(';')[0][:40]}"
    return f"[red]{reason[:46]}"


def results_table(result: MorphResult) -> Table:
    from rich import box

    t = Table(title="morph results: macro-F1 % on the condition's validation data", box=box.SIMPLE_HEAD,
              pad_edge=False, title_justify="left")  # fmt: skip
    t.add_column("condition")
    t.add_column("base", justify="right")
    t.add_column("seed", justify="right")
    t.add_column("clean", justify="right")
    t.add_column("site\nblueprint", no_wrap=True)  # names stay whole; the outcome wraps
    t.add_column("params", justify="right")
    t.add_column("outcome", overflow="fold")
    base_params = int(result.library.meta.get("base_params", 0)) or 1
    for o in result.outcomes:
        if not o.trials:
            t.add_row(o.condition, _pct(o.base_val), "-", "-", "-", "-", f"[yellow]no action: {o.decision.get('reason', '')}")
        for tr in o.trials:
            clean = f"{_pct(tr.clean_host)}→{_pct(tr.clean_seed)}" if tr.clean_seed is not None else "-"
            t.add_row(
                tr.condition, _pct(tr.baseline_val), _pct(tr.seed_val), clean, f"{tr.site}\n{tr.blueprint}",
                f"{100 * tr.param_count / base_params:.1f}%", short_reason(tr.final_stage, tr.reason),
            )  # fmt: skip
    return t


def lifecycle_trace(result: MorphResult) -> Table:
    t = Table(title="lifecycle trace (every transition, with its gate verdict)")
    t.add_column("seed")
    t.add_column("trace")
    for tr in result.trials():
        parts: list[str] = []
        pending_gate: dict[str, Any] | None = None
        for ev in tr.history:
            if ev.get("event") == "gate":
                pending_gate = ev
                if not ev.get("passed"):
                    parts.append(f"[red]{ev['gate']}✗ {ev.get('reason', '')}[/]")
            elif ev.get("event") == "transition":
                gate = ""
                if pending_gate is not None and pending_gate.get("passed"):
                    gate = f"[green]{pending_gate['gate']}✓[/] "
                pending_gate = None
                if not parts:
                    parts.append(str(ev["from"]))
                parts.append(f"{gate}[{_stage_style(str(ev['to']))}]{ev['to']}[/]")
        t.add_row(f"{tr.condition}\n{tr.seed_id}\n{tr.blueprint}", " → ".join(parts) or "-")
    return t


def tamiyo_line(tamiyo: dict[str, Any]) -> str:
    if not tamiyo:
        return "Tamiyo policy: not trained"
    return (
        f"Tamiyo policy ({tamiyo['policy_params']:,} params): imitation agreement "
        f"{100 * tamiyo['imitation_agreement']:.0f}% (chance {100 * tamiyo['imitation_chance']:.0f}%, "
        f"majority {100 * tamiyo['imitation_majority']:.0f}%); mean reward heuristic {tamiyo['reward_heuristic']:+.3f}, "
        f"policy after imitation {tamiyo['reward_policy_imitation']:+.3f}, after REINFORCE "
        f"{tamiyo['reward_policy_reinforce']:+.3f}; decision latency p50 {tamiyo['decision_latency_p50_us']:.0f} µs, "
        f"p99 {tamiyo['decision_latency_p99_us']:.0f} µs"
    )


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
) -> MorphResult:
    import dataclasses

    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.blueprints import TARGETS
    from kasmina_edge.host.data import parse_conditions
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.morph import MORPH_PRESETS, STATE_FILE, run_morph
    from kasmina_edge.host.train import load_base, set_threads

    if preset not in MORPH_PRESETS:
        raise KasminaError(f"--preset: unknown {preset!r}; choose one of: {', '.join(MORPH_PRESETS)}")
    if target not in (*TARGETS, "host"):
        raise KasminaError(f"--target: unknown {target!r}; choose one of: {', '.join((*TARGETS, 'host'))}")
    cfg = MORPH_PRESETS[preset]
    changes: dict[str, Any] = {"target": None if target == "host" else target}
    if conditions is not None:
        changes["conditions"] = tuple(c.name for c in parse_conditions(conditions))
    if reward is not None:
        from kasmina_edge.host.tamiyo.reward import RewardWeights

        RewardWeights.parse(reward)  # a bad term fails here, before any work
        changes["reward"] = reward
    for key, value in (("seed", seed), ("patients", patients), ("minutes", minutes)):
        if value is not None:
            changes[key] = value
    cfg = dataclasses.replace(cfg, **changes)
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
               patient=patient, base_bundle=base_bundle, keys=keys, data=data, snr=snr, records=records, noise=noise,
               as_json=as_json)  # fmt: skip
    except KasminaError as exc:  # one line and exit 2 (JSON under --json), also without the console script's handler
        fail(str(exc))


def _morph(
    *, checkpoint: Path | None, conditions: str | None, out: Path | None, target: str, preset: str, seed: int | None,
    patients: int | None, minutes: float | None, report: bool, resume: bool, log: Path | None, reward: str | None,
    patient: str | None, base_bundle: Path | None, keys: Path | None, data: str | None, snr: str | None,
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
                      ("--resume", resume or None), ("--reward", reward), ("--base-bundle", base_bundle),
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
                           ("--reward", reward), ("--resume", resume or None), ("--report", report or None))
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
                               resume=resume, report=report, log=log, reward=reward)  # fmt: skip
    if as_json:
        outcomes = [{"condition": o.condition, "decision": o.decision, "base_val": o.base_val,
                     "trials": [{k: v for k, v in t.summary().items() if k != "history"} for t in o.trials]}
                    for o in result.outcomes]  # fmt: skip
        emit({"experiment_id": result.experiment_id, "library": folder_out / "library.json",
              "seeds": sorted(result.library.entries), "outcomes": outcomes, "tamiyo": result.tamiyo,
              "seconds": result.seconds})  # fmt: skip


# --------------------------------------------------------------------------- morph --data wfdb:DIR


SHORT_VERDICT = {"shipped": "[green]shipped", "nothing_to_recover": "[yellow]nothing to\nrecover",
                 "culled": "[red]culled\n(gates)", "did_not_help": "[red]did not\nhelp", "no_seed": "[red]no seed"}


def conditions_table(result: Any) -> Table:
    """Per condition cell, on the held-out records: base clean, base in the condition, base + seed, fine-tuning."""
    from rich import box

    t = Table(title="condition seeds: macro-F1 % (N/S/V/F) on held-out records", box=box.SIMPLE_HEAD,
              pad_edge=False, title_justify="left")  # fmt: skip
    for col in ("condition", "gate\ndrop", "clean", "base", "seed", "fine-\ntune", "recov-\nered", "params"):
        t.add_column(col, justify="left" if col == "condition" else "right")
    t.add_column("verdict")
    for c in result.cells:
        f = c.held_out.figures() if c.held_out is not None else {}
        rec = f.get("recovery")
        frac = c.param_fraction
        t.add_row(
            c.cell.label, f"{100 * c.drop:+.1f}", _pct(f.get("base_clean")), _pct(f.get("base")),
            _pct(f.get("seed")) if c.verdict.ships else "-", _pct(f.get("finetune")),
            "-" if rec is None else f"{100 * rec:.0f}%", "-" if frac is None else f"{100 * frac:.1f}%",
            SHORT_VERDICT.get(c.verdict.code, c.verdict.code),
        )  # fmt: skip
    return t


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


def patient_trace(seed: Any) -> Table:
    t = Table(title=f"patient {seed.record}: each seed's lifecycle on the host (gate verdicts)")
    t.add_column("seed")
    t.add_column("trace")
    for g in seed.seeds:
        parts: list[str] = []
        pending: dict[str, Any] | None = None
        for ev in g.history:
            if ev.get("event") == "gate":
                pending = ev
                if not ev.get("passed"):
                    parts.append(f"[red]{ev['gate']}✗ {str(ev.get('reason', ''))[:60]}[/]")
            elif ev.get("event") == "transition":
                gate = f"[green]{pending['gate']}✓[/] " if pending is not None and pending.get("passed") else ""
                pending = None
                if not parts:
                    parts.append(str(ev["from"]))
                parts.append(f"{gate}[{_stage_style(str(ev['to']))}]{ev['to']}[/]")
        label = f"{g.seed_id}\n{g.plan.blueprint} {g.plan.params} · {g.plan.param_count:,} params"
        t.add_row(label, " → ".join(parts) or f"[red]{g.reason}")
    return t


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
    """`morph --patient`: read the record, grow the patient's seeds, write the kernel-only bundle."""
    import dataclasses
    import time

    from kasmina_edge.compile.patient_bundle import device_site_ranges, patient_bundle
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.ecg.sources import open_source
    from kasmina_edge.host.blueprints import TARGETS
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.patient import PatientConfig, adaptation_set, common_beats_of, patient_window
    from kasmina_edge.host.patient_grow import grow_patient_seed
    from kasmina_edge.host.site_gradients import refuse_gradient_free_base
    from kasmina_edge.host.train import load_base, set_threads

    if target not in TARGETS:
        raise KasminaError(f"--target: a kernel-only bundle needs a device target, one of: {', '.join(TARGETS)}")
    if not checkpoint.exists():
        raise KasminaError(f"{checkpoint}: base checkpoint not found (train one, or pass --checkpoint)")
    t0 = time.perf_counter()
    cfg = dataclasses.replace(PatientConfig(), minutes=minutes, seed=seed)
    source = open_source(patient)
    record = source.record()
    if record is None:
        raise KasminaError(f"--patient {patient}: the source holds no record")
    base, ckpt = load_base(checkpoint)
    window = patient_window(record, base, cfg)  # the bad-input checks, before any work
    # the device's site grids (another base's or target's bundle is refused here, before any training): the
    # seeds grow clipped to them, since the device saturates every site at its grid
    device_ranges = device_site_ranges(checkpoint, target, base_bundle, keys, base.config.site_names)
    refuse_gradient_free_base(base, window.beats, device_ranges, checkpoint, record.name)
    out = out or Path(f"seed-{record.name}.kedge")
    set_threads()
    log_path = log or out.with_suffix(".jsonl")
    xlog = ExperimentLog(log_path, command="morph --patient", config={**cfg.to_dict(), "patient": patient,
                         "checkpoint": str(checkpoint), "target": target}, seed=seed)  # fmt: skip
    common = common_beats_of(ckpt, cfg.common_per_class, seed)
    if common is None:
        con.print("[yellow]note:[/] the checkpoint names no training patients: no common beats mixed in")
    counts = window.counts()
    con.print(
        f"patient {record.name}: first {minutes:g} min, {sum(counts.values())} beats "
        f"({', '.join(f'{c} {n:,}' for c, n in counts.items())}), judged out of "
        f"fold over {cfg.cv_folds} blocks of {cfg.cv_block_s:g} s; RR scale {window.rr_scale[0]:.3f}"
    )
    con.print("[dim]growing, gating and judging the seed takes a few minutes on 2 cores[/]")
    with _progress(con) as prog:
        task = prog.add_task("patient seed", total=None, info="")
        result = grow_patient_seed(base, window, common, cfg, target=target, ranges=device_ranges,
                                   say=lambda m: prog.update(task, info=m[:70]),
                                   sink=lambda ev: xlog.write(str(ev.get("event", "lifecycle")), **{k: v for k, v in ev.items() if k != "event"}))  # fmt: skip
    grown_s = time.perf_counter() - t0
    xlog.write("patient_seed", **result.summary())
    con.print(patient_trace(result))
    con.print(
        f"{result.outcome}; {result.param_count:,} seed parameters ({100 * result.param_fraction:.1f} % of the "
        f"base's {result.base_params:,}); out-of-fold macro-F1 {_pct(result.baseline_val)} → "
        f"{_pct(result.seed_val)}; grown in {grown_s:.1f} s"
    )
    if not result.fossilized:  # a culled seed never reaches a bundle
        con.print(f"[yellow]no seed earned its place for {record.name}: no bundle written, the device keeps "
                  f"its base[/] (log {log_path})")  # fmt: skip
        return result, None
    # the kernels' int8 grids are calibrated on the beats they will see: the patient's, RR-scaled
    built = patient_bundle(result, checkpoint=checkpoint, out=out, target=target, keys=keys, base_bundle=base_bundle,
                           con=con, beats=adaptation_set(window, common))  # fmt: skip
    kernel_bytes = sum(len(v) for k, v in built.files.items() if k.startswith("artifacts/"))
    total = time.perf_counter() - t0
    xlog.write("bundle", path=str(out), kernel_bytes=kernel_bytes, seconds=total)
    con.print(
        f"kernel-only bundle [bold]{out}[/] ({out.stat().st_size:,} B, kernels {kernel_bytes:,} B) for "
        f"{target}; {total:.1f} s in all; log {log_path}"
    )
    return result, built


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
