"""Over the air to live, end to end through the CLI and a real Mosquitto broker (issue 14, item 6).

A base is flashed to ``emu://D``; the device runs (``kasmina-edge run --link lorawan-eu868-dr0 --mqtt``) while
``kasmina-edge ota seed.kedge --device D`` offers it a kernel-only seed; the seed crosses the LoRaWAN link as FEC
fragments, lands in the device's one kernel store, and goes live at the device's next boot: the running image is
not changed under the runtime (no seed event in the run that received it), the next ``kasmina-edge run`` shows
its lifecycle up to FOSSILIZED and predictions that differ from the base's on the beats where it matters.

The base and the seed are the kernel-store fixtures (:mod:`seed_fixtures`: the runtime fixtures' ONNX segments,
a readable head, a seed that moves its S threshold). Skipped, with the reason, where mosquitto is not installed.
The run takes about 20 s (the device streams a long record at full speed while the update crosses): slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "net"))  # the broker helper

from mosquitto_broker import Mosquitto, require_mosquitto

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "runtime", HERE.parent / "firmware_sim"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from runtime_fixtures import ensure_fixture_bundles  # noqa: E402
from seed_fixtures import SEED_ECG, SEED_KERNEL, designed_base, seed_bundle  # noqa: E402

LINK = "lorawan-eu868-dr0"  # the slowest LoRaWAN data rate: 46-byte fragments, 10 % gateway duty cycle
LISTEN_ECG = "synthetic:clean?minutes=180&seed=2"  # long enough that the update lands while the device runs


def kasmina(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "kasmina_edge.cli.app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, (
        f"kasmina-edge {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    )
    return proc


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def seed_events(log: Path) -> list[dict[str, Any]]:
    return [e for e in events(log) if SEED_KERNEL in (e.get("kernel"), e.get("seed_id"))]


def wait_streaming(proc: subprocess.Popen[str], log: Path, timeout: float = 60.0) -> None:
    """Until the device booted and streams (its run log has the ``run`` record): it is connected by then."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the device run ended early:\n{proc.communicate()[0][-2000:]}")
        if log.exists() and any(e.get("event") == "run" for e in events(log)[:5]):
            return
        time.sleep(0.05)
    raise AssertionError("the device run did not start streaming")


@pytest.mark.slow
def test_a_seed_sent_over_lorawan_is_live_at_the_next_run(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    require_mosquitto()
    started = time.monotonic()
    fixtures = ensure_fixture_bundles(request.config)
    keys = fixtures / "keys"
    base = designed_base(fixtures, tmp_path / "base.kedge")
    seed = seed_bundle(base, keys, tmp_path / "seed.kedge")
    env = {
        **os.environ,
        "KASMINA_DEVICES_DIR": str(tmp_path / "devices"),
        "KASMINA_COMMAND_KEYS": str(tmp_path / "command-keys"),
        "KASMINA_AUDIT_DIR": str(tmp_path / "audit"),
    }
    broker = Mosquitto(tmp_path / "mosquitto").start()
    listening: subprocess.Popen[str] | None = None
    try:
        kasmina("flash", str(base), "--device", "emu://D", "--keys", str(keys), env=env)
        kasmina(
            "run", "--device", "emu://D", "--ecg", SEED_ECG, "--out", str(tmp_path / "base.jsonl"), env=env
        )
        assert not seed_events(tmp_path / "base.jsonl")

        # the device runs, on LoRaWAN through the broker, while the operator sends the seed
        listen_log = tmp_path / "listening.jsonl"
        listening = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kasmina_edge.cli.app",
                "run",
                "--device",
                "emu://D",
                "--ecg",
                LISTEN_ECG,
                "--link",
                LINK,
                "--mqtt",
                broker.url,
                "--out",
                str(listen_log),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        wait_streaming(listening, listen_log)
        ota = kasmina(
            "ota",
            str(seed),
            "--device",
            "D",
            "--mqtt",
            broker.url,
            "--link",
            LINK,
            "--keys",
            str(keys),
            "--timeout",
            "120",
            env=env,
        )
        assert "fragments of 46 B" in ota.stdout and "ota installed on D" in ota.stdout, ota.stdout
        time.sleep(1.0)  # the device goes on running with the seed stored: hundreds of signal seconds
        assert listening.poll() is None, "the record ended before the update landed: lengthen LISTEN_ECG"
        listening.send_signal(signal.SIGINT)  # Ctrl-C: the run stops cleanly
        out, _ = listening.communicate(timeout=60)
        assert listening.returncode == 0, out[-2000:]
        listened = [e for e in events(listen_log) if e["event"] != "source"]  # the CLI notes its source last
        assert listened[-1]["event"] == "stop" and listened[-1]["interrupted"]
        assert not seed_events(listen_log), "live at the next boot: the running image does not change"
    finally:
        if listening is not None and listening.poll() is None:
            listening.kill()
            listening.wait(10)
        broker.stop()

    # one store: the entry came over the air; the operator's audit log has the device's final report
    index = json.loads((tmp_path / "devices" / "D" / "kernels" / "index.json").read_text())
    assert [(e["kernels"], e["via"]) for e in index["entries"]] == [([SEED_KERNEL], "ota")]
    results = [e for e in events(tmp_path / "audit" / "operator.jsonl") if e.get("event") == "ota_result"]
    assert results and results[-1]["status"] == "installed", results

    # the next run boots with the seed: its lifecycle in the run log, predictions that differ from the base's
    kasmina("run", "--device", "emu://D", "--ecg", SEED_ECG, "--out", str(tmp_path / "seeded.jsonl"), env=env)
    mine = seed_events(tmp_path / "seeded.jsonl")
    assert any(e["event"] == "kernel_installed" for e in mine), mine
    assert [e["to"] for e in mine if e["event"] == "transition"][-1] == "FOSSILIZED", mine
    before = [e for e in events(tmp_path / "base.jsonl") if e.get("event") == "beat"]
    after = [e for e in events(tmp_path / "seeded.jsonl") if e.get("event") == "beat"]
    assert len(before) == len(after) > 200
    changed = [
        (a["class"], b["class"]) for a, b in zip(before, after, strict=True) if a["class"] != b["class"]
    ]
    assert len(changed) >= 5 and set(changed) == {("N", "S")}, changed
    print(f"ota to live, end to end: {time.monotonic() - started:.1f} s, {len(changed)} beats changed")
