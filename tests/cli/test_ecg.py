"""`kasmina-edge ecg ...` through the real app: outputs, files, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from kasmina_edge.cli.app import app

from .conftest import MITDB, needs_mitdb

runner = CliRunner()


def _one_line_error(result, text: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.output
    assert "Traceback" not in result.output


def test_scenarios_lists_them() -> None:
    result = runner.invoke(app, ["ecg", "scenarios"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("clean", "noisy-walk", "emg-switch", "lead-change", "new-patient", "arrhythmia-mix"):
        assert name in result.output


def test_synth_writes_a_labelled_wfdb_record_readable_by_stats(tmp_path: Path) -> None:
    pytest.importorskip("wfdb")
    out = tmp_path / "rec"
    result = runner.invoke(app, ["ecg", "synth", "--scenario", "noisy-walk", "--minutes", "1", "--out", str(out),
                                 "--seed", "4"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert {p.suffix for p in out.iterdir()} >= {".hea", ".dat", ".atr", ".cnd", ".art"}
    assert "emg at 0 dB" in result.output
    result = runner.invoke(app, ["ecg", "stats", f"wfdb:{out / 'noisy-walk-s4'}", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n_beats"] > 50 and data["detector_se"] > 0.9
    assert [c["label"] for c in data["conditions"]] == ["emg", "baseline_wander", "electrode_motion"]


def test_stats_table_and_span() -> None:
    result = runner.invoke(app, ["ecg", "stats", "synthetic:clean?minutes=1&seed=2", "--from", "10", "--seconds",
                                 "30"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "heart rate" in result.output and "Se / +P" in result.output and "30.0 s" in result.output


@needs_mitdb
def test_plot_record_100(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "strip.png"
    result = runner.invoke(app, ["ecg", "plot", f"wfdb:{MITDB / '100'}", "--from", "60", "--seconds", "10",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["ecg", "synth", "--scenario", "nope", "--out", "x"], "unknown scenario 'nope'"),
        (["ecg", "synth", "--minutes", "-1", "--out", "x"], "minutes"),
        (["ecg", "synth", "--level", "loud", "--out", "x"], "--level 'loud'"),
        (["ecg", "stats", "ftp:thing"], "unknown source scheme"),
        (["ecg", "stats", "wfdb:/no/such/record"], "WFDB header not found"),
        (["ecg", "plot", "synthetic:clean?minutes=0.2", "--out", "x.gif"], ".png"),
        (["ecg", "stats", "synthetic:clean?minutes=0.2", "--fs", "5"], "not supported"),
    ],
)
def test_user_errors_are_one_line(args: list[str], text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                  ) -> None:
    monkeypatch.chdir(tmp_path)
    _one_line_error(runner.invoke(app, args, terminal_width=300), text)


def test_csv_with_nan_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0.1\n0.2\ninf\n")
    _one_line_error(runner.invoke(app, ["ecg", "stats", f"csv:{bad}"], terminal_width=300), "line 3")


def test_demo_step(tmp_path: Path) -> None:
    from kasmina_edge.cli.ecg import demo_step

    console = Console(record=True, width=160)
    demo_step(console, tmp_path)
    text = console.export_text()
    assert "emg-switch" in text and "QRS detector Se / +P" in text and "heart rate" in text
