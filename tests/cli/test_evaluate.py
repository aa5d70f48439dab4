"""`kasmina-edge evaluate`: a run log against MIT-BIH 100's annotations, the report and plot it writes,
and a user error in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from .conftest import MITDB, needs_mitdb

FS = 360.0


def _write_log(path: Path, samples: np.ndarray, classes: list[str]) -> None:
    """A run log as `kasmina-edge run --log` writes it: one beat event per prediction."""
    lines = [json.dumps({"event": "run", "source": "wfdb:x"}), json.dumps({"event": "boot"})]
    lines += [
        json.dumps({"event": "beat", "sample": int(s), "class": c, "p": 0.9})
        for s, c in zip(samples, classes, strict=True)
    ]
    lines.append(json.dumps({"event": "stop"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@needs_mitdb
def test_cli_on_record_100(tmp_path: Path) -> None:
    from kasmina_edge.cli.app import app
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rec = read_wfdb(MITDB / "100")
    assert rec.beats is not None
    s = rec.beats.samples
    start = 300.0
    keep = s >= int(start * FS)
    pred_s = s[keep] - int(start * FS) + 5
    pred_c = ["N"] * int(keep.sum())  # every beat called N: S sensitivity 0, N +P below 1
    log = tmp_path / "run.jsonl"
    _write_log(log, pred_s, pred_c)
    out = tmp_path / "ev.json"
    plot = tmp_path / "cm.png"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            f"wfdb:{MITDB / '100'}",
            "--predictions",
            str(log),
            "--report",
            str(out),
            "--plot",
            str(plot),
        ],
    )
    assert res.exit_code == 0, res.output
    body = json.loads(out.read_text())["gross"]
    n_s = int(np.sum(np.asarray(rec.beats.classes)[keep] == 1))
    assert body["classes"]["S"]["support"] == n_s and body["classes"]["S"]["se"] == 0.0
    assert body["classes"]["N"]["se"] == 1.0
    assert body["offset_samples"] == int(start * FS) - 5  # the predictions sit 5 samples late
    assert plot.stat().st_size > 1000
    # a wrong --from is believed: only chance pairs (regular rhythm) remain
    res = CliRunner().invoke(
        app,
        ["evaluate", f"wfdb:{MITDB / '100'}", "--predictions", str(log), "--from", "0", "--report", str(out)],
    )
    assert res.exit_code == 0
    assert json.loads(out.read_text())["gross"]["matched"] < 0.5 * len(pred_s)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    from kasmina_edge.cli.app import app

    log = tmp_path / "run.jsonl"
    _write_log(log, np.array([10]), ["N"])
    res = CliRunner().invoke(app, ["evaluate", "wfdb:a", "wfdb:b", "--predictions", str(log)])
    assert res.exit_code != 0
    assert "2 record(s) but 1 --predictions" in str(res.exception)
