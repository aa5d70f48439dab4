"""`kasmina-edge evaluate`: a run's beat predictions against a record's reference annotations.

    kasmina-edge evaluate wfdb:../shared/data/mitdb/208 --predictions run.jsonl [--report out.json] [--json] [--plot cm.png]
    kasmina-edge evaluate wfdb:A wfdb:B --predictions a.jsonl --predictions b.jsonl   # per record, then gross

The evaluation itself is :mod:`kasmina_edge.ecg.evaluate` (numpy); matplotlib is imported only for --plot.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, err_console, human, json_option

if TYPE_CHECKING:
    from kasmina_edge.ecg.evaluate import Evaluation


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f}"


def summary_table(
    evaluations: list[Evaluation], title: str = "beat-by-beat evaluation, % (AAMI classes)"
) -> Table:
    """One row per record (and the gross pool); each class cell holds Se, +P, F1 and the class's reference
    beats on four lines, so the table reads at 80 columns."""
    from rich import box

    from kasmina_edge.ecg.evaluate import REPORTED_CLASSES

    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True,
              title_justify="left", caption_justify="left",
              caption="Se sensitivity, +P positive predictivity, F1 (%); n reference beats; QRS: beat detection")  # fmt: skip
    t.add_column("record", overflow="fold")  # its reference beats below the name; a long name folds
    t.add_column("QRS", justify="right", no_wrap=True)
    for c in REPORTED_CLASSES:
        t.add_column(c, justify="right", no_wrap=True)
    t.add_column("macro\nF1", justify="right", no_wrap=True)
    for ev in evaluations:
        row = [f"{ev.name}\n[dim]{ev.reference_beats:,} beats[/]", f"Se {_pct(ev.beat_se)}\n+P {_pct(ev.beat_ppv)}"]
        for c in REPORTED_CLASSES:
            row.append(f"Se {_pct(ev.se(c))}\n+P {_pct(ev.ppv(c))}\nF1 {_pct(ev.f1(c))}\n[dim]n {ev.support(c):,}[/]")
        row.append(f"[bold]{_pct(ev.macro_f1())}")
        t.add_row(*row, end_section=True)
    return t


def confusion_table(ev: Evaluation) -> Table:
    from kasmina_edge.ecg.types import AAMI_CLASSES

    t = Table(title=f"confusion, {ev.name}: rows reference, columns prediction")
    t.add_column("")
    for c in (*AAMI_CLASSES, "missed"):
        t.add_column(c, justify="right")
    for i, r in enumerate((*AAMI_CLASSES, "extra")):
        t.add_row(r, *(str(int(v)) for v in ev.confusion[i]))
    return t


def plot_confusion(ev: Evaluation, out: Path) -> Path:
    """The confusion matrix as a heat map (row-normalised colour, counts written in), written atomically."""
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.contracts.optional import require
    from kasmina_edge.ecg.types import AAMI_CLASSES

    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf"):
        raise KasminaError(f"--plot {out}: use a .png, .svg or .pdf file name")
    mpl = require("matplotlib", "plotting the confusion matrix")
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = ev.confusion.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    labels_x, labels_y = [*AAMI_CLASSES, "missed"], [*AAMI_CLASSES, "extra"]
    ax.set_xticks(range(len(labels_x)), labels_x)
    ax.set_yticks(range(len(labels_y)), labels_y)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if share[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    ax.set_title(f"{ev.name}: macro-F1 {_pct(ev.macro_f1())} % (N/S/V/F)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{fmt}", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format=fmt, dpi=120)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def run_evaluate(
    con: Console,
    records: list[str],
    predictions: list[Path],
    *,
    start: float | None = None,
    end: float | None = None,
    json_out: Path | None = None,
    plot: Path | None = None,
) -> list[Evaluation]:
    """Evaluate each (record, predictions) pair; with more than one, the gross pool is the last entry."""
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.ecg.evaluate import (
        MIN_ALIGNED,
        coverage,
        estimate_offset,
        evaluate_record,
        gross,
        read_predictions,
    )
    from kasmina_edge.ecg.sources import open_source

    if not records:
        raise KasminaError("give at least one record (e.g. wfdb:../shared/data/mitdb/208)")
    if len(predictions) != len(records):
        raise KasminaError(
            f"{len(records)} record(s) but {len(predictions)} --predictions file(s): give one run log per record"
        )
    if start is not None and start < 0:
        raise KasminaError(f"--from {start}: must be >= 0 seconds")
    if start is not None and end is not None and end <= start:
        raise KasminaError(f"--to {end:g}: must be after --from {start:g}")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise KasminaError(f"--plot {plot}: use a .png, .svg or .pdf file name")
    evals: list[Evaluation] = []
    warnings: list[str] = []
    for spec, pred_path in zip(records, predictions, strict=True):
        preds = read_predictions(pred_path)
        source = open_source(spec)
        rec = source.record()
        if rec is None or rec.beats is None or len(rec.beats) == 0:
            raise KasminaError(f"{spec}: no reference beat annotations (a WFDB record needs its .atr file)")
        logged = run_source(pred_path)
        ran_on = logged.get("spec") or preds.source
        if ran_on is not None and _record_name(str(ran_on)) != _record_name(spec):
            warnings.append(f"{pred_path} is a run on {ran_on}, not on {spec}: its beats are scored against "
                            "another record's annotations")  # fmt: skip
        from_s = logged.get("from_s")
        if start is None and isinstance(from_s, int | float) and not isinstance(from_s, bool):
            offset = int(round(float(from_s) * rec.fs))  # the run log says where the stream began
        elif start is None:
            offset, frac = estimate_offset(rec.beats.samples, preds.samples, rec.fs)
            if frac < MIN_ALIGNED:
                raise KasminaError(
                    f"{pred_path}: its beats do not line up with {spec}'s reference beats at any offset "
                    f"(at best {100 * frac:.0f} % of the first beats pair); give --from SECONDS"
                )
        else:
            offset = int(round(start * rec.fs))
        if start is not None and isinstance(from_s, int | float) and abs(float(from_s) - start) > 0.5:
            warnings.append(f"{pred_path}: the run log says the stream began at {from_s:g} s, not --from {start:g}")
        cover = coverage(rec.beats, preds.samples, rec.fs, offset_samples=offset, start_s=offset / rec.fs, end_s=end)
        if cover.truncated:
            lo, hi = cover.scored_s
            warnings.append(
                f"{pred_path} covers {100 * cover.fraction:.0f} % of {rec.name}'s scored beats: its predictions stop "
                f"at {cover.predicted_until_s:,.0f} s of {lo:,.0f}-{hi:,.0f} s (a run cut short?); the rest count as "
                "missed (--to SECONDS scores only the span it covers)"
            )
        # the stream began at the offset: score from there to --to (or the end)
        ev = evaluate_record(
            rec.beats,
            preds.samples,
            preds.classes,
            rec.fs,
            name=rec.name,
            offset_samples=offset,
            start_s=offset / rec.fs,
            end_s=end,
        )
        evals.append(ev)
    shown = [*evals, gross(evals)] if len(evals) > 1 else evals
    con.print(summary_table(shown))
    con.print(confusion_table(shown[-1]))
    for ev in evals:
        if ev.offset_samples:
            con.print(f"{ev.name}: predictions aligned {ev.offset_samples / ev.fs:.1f} s into the record")
    for line in warnings:
        err_console.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if json_out is not None:
        import json

        from kasmina_edge.host.experiment import atomic_write_json

        json_out.parent.mkdir(parents=True, exist_ok=True)
        body = {"records": [e.to_dict() for e in evals], "gross": shown[-1].to_dict()}
        atomic_write_json(json_out, json.loads(json.dumps(body)))
        con.print(f"JSON: {json_out}")
    if plot is not None:
        con.print(f"confusion plot: {plot_confusion(shown[-1], plot)}")
    return shown


def run_source(path: Path) -> dict[str, object]:
    """The ``source`` record `kasmina-edge run` appends to its log (the --ecg spec, --from, --seconds), if any."""
    import json

    found: dict[str, object] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"source"' not in line or '"event"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == "source":
                found = rec  # the last run appended to the log
    return found


def _record_name(spec: str) -> str:
    """'wfdb:../shared/data/mitdb/100' and '100' both name record 100; 'synthetic:noisy-walk?minutes=2' → the scenario."""
    kind, sep, rest = spec.partition(":")
    body = rest if sep and kind in ("wfdb", "csv", "synthetic") else spec
    return f"{kind if sep else ''}:{Path(body.split('?')[0]).stem}" if kind == "synthetic" else Path(body.split("?")[0]).stem


def evaluate(
    records: list[str] = typer.Argument(
        ..., help="Reference record(s): wfdb:PATH (with its .atr annotations)."
    ),
    predictions: list[Path] = typer.Option(
        ..., "--predictions", help="Run log (JSON lines) per record, in order.",
        callback=checks.list_of(checks.json_lines_input),
    ),
    start: float = typer.Option(
        None, "--from", help="Where the run began in the record, seconds (default: the run log's, else aligned).",
        callback=checks.non_negative_seconds,
    ),
    end: float = typer.Option(
        None, "--to", help="Score beats before this many seconds into the record.", callback=checks.positive_seconds
    ),
    report: Path = typer.Option(
        None, "--report", help="Write the figures (and confusion matrices) as a JSON file here (was `--json PATH`).",
        callback=checks.output_file(".json"),
    ),
    plot: Path = typer.Option(
        None, "--plot", help="Draw the (gross) confusion matrix to this .png/.svg/.pdf.",
        callback=checks.output_file(".png", ".svg", ".pdf"),
    ),
    as_json: bool = json_option(),
) -> None:
    """Beat-by-beat evaluation (150 ms match window): Se, +P and F1 per AAMI class N/S/V/F, gross over records."""
    shown = run_evaluate(human(as_json), records, predictions, start=start, end=end, json_out=report, plot=plot)
    if as_json:
        evals = shown[:-1] if len(shown) > 1 else shown
        emit({"records": [e.to_dict() for e in evals], "gross": shown[-1].to_dict()})


def register(app: typer.Typer) -> None:
    app.command(name="evaluate", help="Beat-by-beat evaluation of a run against reference annotations.")(
        evaluate
    )
