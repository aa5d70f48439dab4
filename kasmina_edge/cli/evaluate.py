"""`kasmina-edge evaluate`: a run's beat predictions against a record's reference annotations.

    kasmina-edge evaluate wfdb:../shared/data/mitdb/208 --predictions run.jsonl [--json out.json] [--plot cm.png]
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

from kasmina_edge.cli.common import console

if TYPE_CHECKING:
    from kasmina_edge.ecg.evaluate import Evaluation


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f}"


def summary_table(
    evaluations: list[Evaluation], title: str = "beat-by-beat evaluation (AAMI classes, %)"
) -> Table:
    from kasmina_edge.ecg.evaluate import REPORTED_CLASSES

    t = Table(title=title)
    t.add_column("record")
    t.add_column("beats", justify="right")
    t.add_column("det Se/+P", justify="right")
    for c in REPORTED_CLASSES:
        t.add_column(f"{c} n", justify="right")
        t.add_column(f"{c} Se/+P/F1", justify="right")
    t.add_column("macro-F1", justify="right")
    for ev in evaluations:
        row = [ev.name, f"{ev.reference_beats:,}", f"{_pct(ev.beat_se)}/{_pct(ev.beat_ppv)}"]
        for c in REPORTED_CLASSES:
            row += [str(ev.support(c)), f"{_pct(ev.se(c))}/{_pct(ev.ppv(c))}/{_pct(ev.f1(c))}"]
        row.append(f"[bold]{_pct(ev.macro_f1())}")
        t.add_row(*row)
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
    evals: list[Evaluation] = []
    for spec, pred_path in zip(records, predictions, strict=True):
        preds = read_predictions(pred_path)
        rec = open_source(spec).record()
        if rec is None or rec.beats is None or len(rec.beats) == 0:
            raise KasminaError(f"{spec}: no reference beat annotations (a WFDB record needs its .atr file)")
        if start is None:
            offset, frac = estimate_offset(rec.beats.samples, preds.samples, rec.fs)
            if frac < MIN_ALIGNED:
                raise KasminaError(
                    f"{pred_path}: its beats do not line up with {spec}'s reference beats at any offset "
                    f"(at best {100 * frac:.0f} % of the first beats pair); give --from SECONDS"
                )
        else:
            offset = int(round(start * rec.fs))
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


def evaluate(
    records: list[str] = typer.Argument(
        ..., help="Reference record(s): wfdb:PATH (with its .atr annotations)."
    ),
    predictions: list[Path] = typer.Option(
        ..., "--predictions", help="Run log (JSON lines) per record, in order."
    ),
    start: float = typer.Option(
        None, "--from", help="Where the run began in the record, seconds (default: aligned)."
    ),
    end: float = typer.Option(None, "--to", help="Score beats before this many seconds into the record."),
    json_out: Path = typer.Option(
        None, "--json", help="Write the figures (and confusion matrices) as JSON here."
    ),
    plot: Path = typer.Option(
        None, "--plot", help="Draw the (gross) confusion matrix to this .png/.svg/.pdf."
    ),
) -> None:
    """Beat-by-beat evaluation (150 ms match window): Se, +P and F1 per AAMI class N/S/V/F, gross over records."""
    run_evaluate(console, records, predictions, start=start, end=end, json_out=json_out, plot=plot)


def register(app: typer.Typer) -> None:
    app.command(name="evaluate", help="Beat-by-beat evaluation of a run against reference annotations.")(
        evaluate
    )
