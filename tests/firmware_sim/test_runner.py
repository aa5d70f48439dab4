"""Streaming through an emulated device: the prediction log, probation, Ctrl-C, faults, MIT-BIH 100."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runtime_fixtures import mitdb_100

from firmware_sim.device import open_device
from firmware_sim.runner import RunOptions, run_stream
from firmware_sim.score import score_run
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.sources import RecordSource, open_source
from kasmina_edge.ecg.types import AAMI_CLASSES
from kasmina_edge.runtime.engine import RuntimeConfig
from kasmina_edge.runtime.health import HealthLimits

REPO = Path(__file__).resolve().parents[2]
NAN_KERNEL = "kernel_s0_nan"
OPTIONS = RunOptions(runtime=RuntimeConfig(health=HealthLimits(confidence_floor=0.0)), keep_predictions=True,
                     probation_beats=20)


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")  # nothing half-written
    return [json.loads(line) for line in text.splitlines()]


def _flashed(bundles: Path, keys: Path, name: str, bundle: str = "linux-arm-v1") -> Any:
    dev = open_device(f"emu://{name}")
    dev.flash(bundles / f"{bundle}.kedge", keys)
    return dev


def test_run_logs_every_beat_and_confirms_the_trial_slot(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    dev = _flashed(bundles, keys, "p1")
    record = make_scenario("emg-switch", 1.0, seed=1)
    out = tmp_path / "preds.jsonl"
    s = run_stream(dev, RecordSource(record), out=out, options=OPTIONS)
    lines = _lines(out)
    beats = [r for r in lines if r["event"] == "beat"]
    assert len(beats) == s.status["beats"] == len(s.predictions) > 50
    assert all(r["class"] in AAMI_CLASSES and r["device_us"] > 0 for r in beats)
    # the log holds the typed records' JSON forms: the kept predictions are those very beats
    assert [b.to_json() for b in s.predictions] == beats
    assert [r["event"] for r in lines[:2]] == ["boot", "run"] and lines[-1]["event"] == "stop" and not s.interrupted
    assert any(r["event"] == "slot_confirmed" for r in lines) and s.confirmed
    assert open_device("emu://p1").describe()["active"] == "a"
    sc = score_run(s.predictions, record)
    assert sc.sensitivity > 0.95 and sc.ppv > 0.9
    assert s.device_infer_s > 0 and s.battery["used_j"] > 0 and 0 < s.battery["charge"] <= 1


def test_ctrl_c_stops_cleanly_and_keeps_the_device_consistent(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    dev = _flashed(bundles, keys, "p2")
    out = tmp_path / "preds.jsonl"
    sent = []

    def interrupt(runtime: Any, emu: dict[str, Any]) -> None:
        if runtime.counters.beats >= 5 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    s = run_stream(dev, RecordSource(make_scenario("clean", 2.0, seed=2)), out=out, options=OPTIONS,
                   on_update=interrupt)
    assert s.interrupted and 5 <= s.status["beats"] < 100
    lines = _lines(out)
    assert lines[-1] == {**lines[-1], "event": "stop", "interrupted": True}
    assert len([r for r in lines if r["event"] == "beat"]) == s.status["beats"]
    # probation never finished: the slot stays on trial, and the next boot tries it again
    st = open_device("emu://p2").describe()
    assert st["pending"] == "a" and st["active"] is None
    assert open_device("emu://p2").boot().slot == "a"


def test_nan_kernel_is_caught_and_no_prediction_is_lost(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    dev = open_device("emu://x86")
    dev.flash(bundles / "x86-v1.kedge", keys)
    out = tmp_path / "preds.jsonl"
    forced = []

    def force(runtime: Any, emu: dict[str, Any]) -> None:
        if not forced and runtime.counters.beats >= 2:
            forced.append(runtime.manager.activate(NAN_KERNEL, 1.0, "forced by the test", 0.3))

    record = make_scenario("clean", 1.0, seed=3)
    s = run_stream(dev, RecordSource(record), out=out, options=OPTIONS, on_update=force)
    assert forced == [True]
    lines = _lines(out)
    faults = [r for r in lines if r["event"] == "fault"]
    assert faults and faults[0]["code"] == "health_nan" and faults[0]["action"] == "rollback"
    culled = [r for r in lines if r["event"] == "transition" and r["to"] == "CULLED"]
    assert culled[0]["reason"] == "health_nan"
    beats = [r for r in lines if r["event"] == "beat"]
    assert len(beats) == s.status["beats"] and all(r["p"] is not None for r in beats)
    assert score_run(s.predictions, record).sensitivity > 0.95  # every beat still classified


def test_cli_errors_are_one_line(devices: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KASMINA_DEVICES_DIR": str(devices)}
    for args, needle in (
        (["flash", str(tmp_path / "none.kedge"), "--device", "emu://a"], "none.kedge: no such"),
        (["run", "--device", "usb://a", "--ecg", "synthetic:clean"], "--device"),
        (["run", "--device", "emu://ghost", "--ecg", "synthetic:clean?minutes=0.1"], "emu://ghost: no such device"),
    ):
        proc = subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_flash_and_run(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KASMINA_DEVICES_DIR": str(devices)}
    out = tmp_path / "p.jsonl"
    cmds = [
        ["flash", str(bundles / "linux-arm-v1.kedge"), "--device", "emu://cli", "--keys", str(keys)],
        ["run", "--device", "emu://cli", "--ecg", "synthetic:emg-switch?minutes=0.5", "--fast", "--out", str(out)],
    ]
    for args in cmds:
        proc = subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    lines = _lines(out)
    events = [r["event"] for r in lines if r["event"] != "source"]  # the CLI may note its source after the run
    assert events[1] == "run" and events[-1] == "stop"
    assert sum(r["event"] == "beat" for r in lines) > 20


def test_mitbih_100_beats_found(devices: Path, bundles: Path, keys: Path) -> None:
    rec = mitdb_100()
    if rec is None:
        pytest.skip("MIT-BIH record 100 not found under ../shared/data/mitdb (see the data README)")
    dev = _flashed(bundles, keys, "m100")
    src = open_source(f"wfdb:{rec}", seconds=600.0)
    s = run_stream(dev, src, options=OPTIONS)
    record = src.record()
    assert record is not None
    sc = score_run(s.predictions, record)
    assert sc.sensitivity >= 0.99 and sc.ppv >= 0.99, sc.to_dict()


def test_slow_kernel_is_rolled_back_and_no_prediction_is_lost(devices: Path, bundles: Path, keys: Path,
                                                              tmp_path: Path) -> None:
    import time

    dev = _flashed(bundles, keys, "slow")
    out = tmp_path / "preds.jsonl"
    state: dict[str, Any] = {}
    kernel = "kernel_s1_lead-adapter_site1"

    def force(runtime: Any, emu: dict[str, Any]) -> None:
        if "on" not in state and runtime.counters.beats >= 2:
            model = runtime.image.kernels[kernel].model
            fast = model.run

            def slow(*a: Any) -> Any:
                time.sleep(0.01)  # 10 ms per invoke: far over a kernel's budget on this host
                return fast(*a)

            model.run = slow
            state["on"] = runtime.manager.activate(kernel, 1.0, "forced by the test", 0.3)

    record = make_scenario("clean", 1.0, seed=5)
    s = run_stream(dev, RecordSource(record), out=out, options=OPTIONS, on_update=force)
    assert state["on"] is True
    lines = _lines(out)
    faults = [r for r in lines if r["event"] == "fault"]
    assert faults and faults[0]["code"] == "health_latency" and faults[0]["kernel"] == kernel
    beats = [r for r in lines if r["event"] == "beat"]
    assert len(beats) == s.status["beats"] and all(r["p"] is not None for r in beats)
    after = [r for r in beats if r["t"] > faults[0]["t"]]
    assert after and all("1" not in r["active"] for r in after)  # rolled back, and it stays out
