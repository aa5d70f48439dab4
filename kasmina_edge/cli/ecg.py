"""`kasmina-edge ecg`: synthesize labelled records, plot strips, report statistics, list scenarios."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, fail, human, json_option
from kasmina_edge.contracts.errors import KasminaError

app = typer.Typer(help="ECG data: synthesize, plot, stats.", no_args_is_help=True)

SOURCE_HELP = "synthetic:NAME[?minutes=M&seed=S], wfdb:PATH (no extension) or csv:PATH[?fs=HZ]"


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors a user caused become one red line and exit code 2, never a traceback."""
    try:
        yield
    except KasminaError as exc:
        fail(str(exc))


def _parse_levels(levels: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in levels:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise KasminaError(f"--level {item!r}: expected NAME=DB, e.g. snr_db=0") from None
    return out


def _scenario_name(name: str) -> str:
    from kasmina_edge.ecg.scenarios import SCENARIOS

    return checks.choice(SCENARIOS, "scenario")(name) or name


@app.command("scenarios")
def scenarios(as_json: bool = json_option()) -> None:
    """List the named synthetic scenarios and their levels."""
    from kasmina_edge.ecg.scenarios import SCENARIOS

    if as_json:
        emit([{"name": s.name, "description": s.description, "levels": dict(s.levels)} for s in SCENARIOS.values()])
        return

    table = Table(title="synthetic ECG scenarios")
    table.add_column("name", style="bold")
    table.add_column("what happens")
    table.add_column("levels (dB, default)")
    for s in SCENARIOS.values():
        table.add_row(s.name, s.description, ", ".join(f"{k}={v:g}" for k, v in s.levels.items()) or "-")
    human(False).print(table)


@app.command("synth")
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder for the WFDB record (.hea/.dat/.atr and labels).", callback=checks.output_dir
    ),
    scenario: str = typer.Option(
        "noisy-walk", "--scenario", help="Scenario name (see `ecg scenarios`).", callback=_scenario_name
    ),
    minutes: float = typer.Option(
        10.0, "--minutes", help="Length in minutes.", callback=checks.number(low=0, low_open=True, high=24 * 60, what="min")
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same record.", callback=checks.non_negative),
    fs: float = typer.Option(360.0, "--fs", help="Sample rate in Hz (50-10000).", callback=checks.sample_rate),
    level: list[str] = typer.Option([], "--level", help="Scenario level NAME=DB, e.g. snr_db=0 (repeatable)."),
    as_json: bool = json_option(),
) -> None:
    """Write a labelled synthetic ECG record in WFDB format."""
    console = human(as_json)
    with user_errors():
        from kasmina_edge.ecg.scenarios import make_scenario
        from kasmina_edge.ecg.wfdb_io import write_wfdb

        levels = _parse_levels(level)
        try:  # the folder first: a place that cannot be written fails before minutes of synthesis
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KasminaError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"generating {scenario} ({minutes:g} min)", total=2)
            record = make_scenario(scenario, minutes, fs=fs, seed=seed, **levels)
            progress.update(task, advance=1, description=f"writing WFDB to {out}")
            base = write_wfdb(record, out)
            progress.update(task, advance=1)
        counts = record.beats.counts() if record.beats is not None else {}
        console.print(f"wrote [bold]{base}[/] (.hea .dat .atr"
                      f"{' .cnd' if record.conditions else ''}"
                      f"{' .art' if record.artifact_mask is not None and record.artifact_mask.any() else ''}"
                      f"{' .evt' if record.anomalies else ''}): {record.seconds:.0f} s at {record.fs:g} Hz, "
                      f"{len(record.beats or [])} beats " + " ".join(f"{k}={v}" for k, v in counts.items() if v))
        for c in record.conditions:
            level_txt = f" at {c.level_db:g} dB" if c.level_db is not None else ""
            console.print(f"  {c.label}{level_txt}: {c.start / record.fs:.1f}-{c.end / record.fs:.1f} s"
                          f"{' (' + c.source + ')' if c.source else ''}")
        if as_json:
            emit({"record": str(base), "seconds": record.seconds, "fs": record.fs, "beats": len(record.beats or []),
                  "classes": counts, "conditions": [{"label": c.label, "level_db": c.level_db,
                                                     "start_s": c.start / record.fs, "end_s": c.end / record.fs,
                                                     "source": c.source} for c in record.conditions]})


@app.command("plot")
def plot(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    out: Path = typer.Option(
        ..., "--out", help="Image file (.png, .svg or .pdf).", callback=checks.output_file(".png", ".svg", ".pdf")
    ),
    start: float = typer.Option(0.0, "--from", help="Start, seconds into the source.", callback=checks.non_negative_seconds),
    seconds: float = typer.Option(10.0, "--seconds", help="Length of the strip in seconds.", callback=checks.positive_seconds),
    fs: float = typer.Option(360.0, "--fs", help="Rate to read the source at (Hz, 50-10000).", callback=checks.sample_rate),
    as_json: bool = json_option(),
) -> None:
    """Draw an ECG strip with beats, classes and artifact spans marked."""
    with user_errors():
        from kasmina_edge.ecg.plot import plot_strip
        from kasmina_edge.ecg.qrs import detect_qrs
        from kasmina_edge.ecg.sources import open_source

        src = open_source(source, fs=fs, start_s=start, seconds=seconds)
        record = src.record()
        if record is None:
            raise KasminaError(f"source {source!r} cannot be plotted (no record)")
        detected = detect_qrs(record.lead(0), record.fs) if record.beats is None else None
        # The source is already cut to the span: draw all of it, with times counted from the source's start.
        path = plot_strip(record, out, 0.0, seconds, detected=detected, title=f"{src.name} from {start:g} s",
                          time_offset_s=start)
        if as_json:
            emit({"image": str(path), "source": src.name, "from_s": start, "seconds": seconds})
        else:
            human(False).print(f"wrote [bold]{path}[/]")


@app.command("stats")
def stats(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    as_json: bool = json_option(),
    start: float = typer.Option(0.0, "--from", help="Start, seconds into the source.", callback=checks.non_negative_seconds),
    seconds: float = typer.Option(
        None, "--seconds", help="Length in seconds (default: to the end).", callback=checks.positive_seconds
    ),
    fs: float = typer.Option(360.0, "--fs", help="Rate to read the source at (Hz, 50-10000).", callback=checks.sample_rate),
) -> None:
    """Heart rate, HRV, beat classes and (with reference annotations) QRS detector Se/+P."""
    with user_errors():
        from kasmina_edge.ecg.sources import open_source
        from kasmina_edge.ecg.stats import compute_stats

        src = open_source(source, fs=fs, start_s=start, seconds=seconds)
        record = src.record()
        if record is None:
            raise KasminaError(f"source {source!r} has no record to summarise")
        result = compute_stats(record)
        if as_json:
            print(result.to_json())
        else:
            _print_stats(human(False), result.to_dict(), title=f"{src.name}")
        quality = result.signal_quality
        if quality and not quality["plausible_ecg"]:
            from kasmina_edge.cli.common import err_console

            err_console.print(
                f"[bold yellow]warning:[/] {src.name} does not look like an ECG ({'; '.join(quality['problems'])}): "
                "the beats and heart rate above are not to be trusted", highlight=False, soft_wrap=True,
            )  # fmt: skip


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_stats(out: Console, s: dict, title: str) -> None:  # type: ignore[type-arg]
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("length", f"{s['seconds']:.1f} s at {s['fs']:g} Hz")
    table.add_row(f"beats ({s['beats_from']})", str(s["n_beats"]))
    table.add_row("heart rate", f"{_fmt(s['heart_rate_bpm'])} bpm")
    table.add_row("SDNN / RMSSD", f"{_fmt(s['sdnn_ms'])} / {_fmt(s['rmssd_ms'])} ms")
    table.add_row("pNN50", f"{_fmt(s['pnn50'])} %")
    if s["class_counts"]:
        table.add_row("classes", "  ".join(f"{k} {v}" for k, v in s["class_counts"].items()))
    table.add_row("QRS detected", str(s["n_detected"]))
    if s["detector_se"] is not None:
        table.add_row("QRS detector Se / +P",
                      f"{100 * s['detector_se']:.2f} % / {100 * s['detector_ppv']:.2f} % "
                      f"(TP {s['detector_tp']}, FP {s['detector_fp']}, FN {s['detector_fn']}; 150 ms window)")
    q = s.get("signal_quality") or {}
    if q:
        sim = "-" if q["beat_similarity"] is None else f"{q['beat_similarity']:.2f}"
        verdict = "plausible ECG" if q["plausible_ecg"] else "[yellow]not a plausible ECG[/]"
        table.add_row("signal quality", f"{verdict} (QRS kurtosis {q['qrs_kurtosis']:.1f}, QRS band "
                      f"{100 * q['qrs_band_fraction']:.0f} %, beat similarity {sim})")  # fmt: skip
    for c in s["conditions"]:
        level = f" at {c['snr_db']:g} dB" if c["snr_db"] is not None else ""
        table.add_row("condition", f"{c['label']}{level}: {c['start_s']:.1f}-{c['end_s']:.1f} s")
    out.print(table)


def demo_step(console: Console, workdir: Path) -> None:
    """Generate a 1-minute emg-switch scenario, write it as WFDB, detect its beats, summarise."""
    from kasmina_edge.ecg.scenarios import make_scenario
    from kasmina_edge.ecg.stats import compute_stats
    from kasmina_edge.ecg.wfdb_io import write_wfdb

    record = make_scenario("emg-switch", 1.0, seed=0, snr_db=0.0)
    console.print("scenario [bold]emg-switch[/]: clean for 30 s, then muscle noise at 0 dB")
    try:
        base = write_wfdb(record, workdir / "ecg")
        console.print(f"wrote WFDB record {base}")
    except KasminaError as exc:  # wfdb is an optional extra: the demo goes on without the file
        console.print(f"[yellow]not written:[/] {exc}")
    _print_stats(console, compute_stats(record).to_dict(), title="ECG summary (detector vs. ground truth)")
