"""`kasmina-edge profile`: the report over every profile, one profile, a bare model, JSON and HTML, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kasmina_edge.cli.app import app
from kasmina_edge.core.catalog import hardware_names
from kasmina_edge.profiler.report import DECISION_BUDGET_S, PER_BEAT_BUDGET_S, load_subject, profile_subject

runner = CliRunner()



def _artifacts(bundle: Path, keys: Path) -> dict[str, bytes]:
    from kasmina_edge.contracts.bundle import read_bundle

    b = read_bundle(bundle, keys)
    return {a.name: b.artifact_bytes(a.name) for a in b.manifest.artifacts if a.kind in ("segment", "kernel", "whole")}


@pytest.fixture(scope="module")
def tflite_artifacts(bundles: Path, keys: Path) -> dict[str, bytes]:
    return _artifacts(bundles / "cortex-m-v1.kedge", keys)


@pytest.fixture(scope="module")
def onnx_artifacts(bundles: Path, keys: Path) -> dict[str, bytes]:
    return _artifacts(bundles / "x86-v1.kedge", keys)


def _run(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["profile", *args], terminal_width=240)
    return r.exit_code, r.output


def test_bundle_over_every_profile_lists_incompatible_ones(bundles: Path, keys: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    page = tmp_path / "report.html"
    code, text = _run(
        str(bundles / "edgetpu-v1.kedge"), "--keys", str(keys), "--report", str(out), "--html", str(page)
    )
    assert code == 0, text
    report = json.loads(out.read_text())
    by = {p["profile"]: p for p in report["profiles"]}
    assert set(by) == set(hardware_names())
    x86 = by["x86-64-host"]
    assert not x86["compatible"] and x86["limits"][0]["limit"] == "runtime"
    assert (
        "runt" in text and "Traceback" not in text
    )  # the limit is a row of the table (wrapped at 80 columns)
    usb = by["coral-usb"]
    assert usb["compatible"] and usb["artifacts"]["segment_0"]["partition"]["mapped_ops"] >= 1
    assert usb["decision"]["runs_on"] == "x86-64-host"
    for p in report["profiles"]:
        if p["compatible"]:
            assert p["per_beat_ok"] == (p["per_beat_s"] <= PER_BEAT_BUDGET_S)
            assert p["decision_ok"] == (p["decision"]["total_s"] <= DECISION_BUDGET_S)
            assert p["per_beat_s"] >= p["base_s"] > 0
    nrf = by["nrf52840"]["energy"]
    assert nrf["battery_life_days"] > 0 and nrf["battery_source"].startswith("nrf52840")
    html = page.read_text()
    assert html.startswith("<!doctype html>") and html.count("<svg") >= 3 and "coral-usb" in html


def test_one_profile_shows_per_artifact_and_per_op_detail(bundles: Path, keys: Path) -> None:
    from rich.console import Console

    from kasmina_edge.cli.profile import run_profile

    con = Console(record=True, width=250)
    run_profile(con, bundles / "cortex-m-v1.kedge", keys=keys, profile="stm32h743")
    text = con.export_text()
    assert "stm32h743: per artifact" in text and "slowest ops" in text
    assert "per beat (+ heaviest kernel per site)" in text and "whole model in one piece" in text


def test_a_bare_tflite_and_onnx_model(
    tflite_artifacts: dict[str, bytes], onnx_artifacts: dict[str, bytes], tmp_path: Path
) -> None:
    model = tmp_path / "seg.tflite"
    model.write_bytes(tflite_artifacts["segment_1"])
    code, text = _run(str(model), "--profile", "stm32h743")
    assert code == 0 and "stm32h743" in text
    onnx = tmp_path / "seg.onnx"
    onnx.write_bytes(onnx_artifacts["segment_1"])
    out = tmp_path / "o.json"
    code, text = _run(str(onnx), "--report", str(out))
    assert code == 0, text
    profiles = {p["profile"]: p for p in json.loads(out.read_text())["profiles"]}
    assert profiles["x86-64-host"]["compatible"] and not profiles["stm32h743"]["compatible"]


def test_measure_sets_the_host_estimate_beside_onnxruntime(bundles: Path, keys: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    code, text = _run(
        str(bundles / "x86-v1.kedge"),
        "--keys",
        str(keys),
        "--profile",
        "x86-64-host",
        "--measure",
        "--runs",
        "30",
        "--report",
        str(out),
    )
    assert code == 0, text
    report = json.loads(out.read_text())
    measured = {m["artifact"] for m in report["measurements"] if m["backend"] == "onnxruntime"}
    assert {"segment_0", "segment_1", "segment_2"} <= measured
    assert all(m["runs"] >= 20 and m["p50_s"] <= m["p99_s"] for m in report["measurements"])
    cal = report["calibration"]
    assert {c["artifact"] for c in cal} == measured and all(c["profile"] == "x86-64-host" for c in cal)
    for c in cal:
        assert c["ratio"] == pytest.approx(c["estimate_s"] / c["measured_p50_s"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.kedge"], "no such file"),
        (["--profile", "no-such-board", "{bundle}"], "unknown hardware profile"),
        (["{model_txt}"], "not .txt"),
        (["{bundle}", "--network", "carrier-pigeon"], "unknown network profile"),
        (["{bundle}", "--heart-rate", "5"], "--heart-rate"),
        (["{bundle}", "--keys", "{wrong_keys}"], "signature does not verify"),
    ],
)
def test_user_errors_are_one_line(
    args: list[str], message: str, bundles: Path, keys: Path, tmp_path: Path
) -> None:
    from kasmina_edge.contracts.bundle import init_keys

    wrong = tmp_path / "other-keys"
    init_keys(wrong)
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    subs = {
        "{bundle}": str(bundles / "linux-arm-v1.kedge"),
        "{model_txt}": str(txt),
        "{wrong_keys}": str(wrong),
    }
    argv = [subs.get(a, a) for a in args]
    if "--keys" not in argv:
        argv += ["--keys", str(keys)]
    code, text = _run(*argv)
    assert code == 2, text
    assert message in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1


def test_profiling_a_bundle_over_all_profiles_runs_no_model(
    bundles: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The estimate over every profile is arithmetic on the graph: no interpreter or session is created (that
    is what keeps it quick; `--measure` is the part that runs the model)."""
    import onnxruntime
    from ai_edge_litert import interpreter as litert

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("profiling without --measure ran a model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    monkeypatch.setattr(litert, "Interpreter", refuse)
    subject = load_subject(bundles / "cortex-m-v1.kedge", keys)
    report = profile_subject(subject)
    assert sorted(r.profile for r in report.results) == sorted(hardware_names())
    compatible = [r.compatible for r in report.results]
    assert compatible == sorted(compatible, reverse=True) and any(compatible)  # compatible ones first
    assert report.elapsed_s > 0.0 and not report.measurements


def test_demo_step_profiles_the_demo_bundle(bundles: Path, keys: Path, tmp_path: Path) -> None:
    from rich.console import Console

    from kasmina_edge.cli.profile import demo_step

    (tmp_path / "build").mkdir()
    shutil.copy(bundles / "edgetpu-v1.kedge", tmp_path / "build" / "demo-edgetpu.kedge")
    shutil.copytree(keys, tmp_path / "keys")
    con = Console(record=True, width=200)
    demo_step(con, tmp_path)
    assert "coral-usb" in con.export_text()
    assert json.loads((tmp_path / "profile.json").read_text())["subject"]["target"] == "edgetpu"
