"""The emulated fleet device on the in-memory network: its beats, alarms, seed moves and drift reach the monitor.

The device replays a record's labelled beats: the beat counts the monitor stores add up to the record's beats in
the minutes that passed; its seed walks the lifecycle table to FOSSILIZED with a passed gate before each gated
move, or is culled at the gate its plan fails; a recorded MIT-BIH record works the same way (skipped without the
data). No broker, no sockets: LoopbackNetwork stands in for MQTT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.contracts.lifecycle import Gate, Stage
from kasmina_edge.dashboard.emulated import FleetDevice, SeedPlan, fleet_record
from kasmina_edge.ecg.types import AAMI_CLASSES
from kasmina_edge.net.loopback import LoopbackNetwork
from kasmina_edge.net.monitor import Monitor, StoredRecord

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "mitdb"


def run(device_record, plan: SeedPlan, seconds: float, home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(home / "operator"))
    got: list[StoredRecord] = []
    net = LoopbackNetwork(Monitor(on_record=got.append))
    dev = FleetDevice("d1", "wifi", net, device_record, home, seed_plan=plan, epoch_unix=1_800_000_000.0)
    net.attach(dev.link)
    t = 0.0
    while t < seconds:
        t += 1.0
        dev.step(t)
        net.advance(t)
    net.advance(t + 60)
    net.monitor.flush()
    return dev, got


def test_beats_seed_and_drift_reach_the_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = fleet_record(seed=3, minutes=2.0)
    dev, got = run(record, SeedPlan(1, "k1", 30.0, 20.0), 600.0, tmp_path, monkeypatch)
    kinds = [type(r.record).__name__ for r in got]
    # beat counts: every labelled beat of the record in the first 9 whole minutes, counted once
    counts = [r.record for r in got if type(r.record).__name__ == "BeatCounts"]
    assert len(counts) >= 9
    period = len(record.signal) / record.fs
    times = np.concatenate([(record.beats.samples / record.fs) + k * period for k in range(6)]) - dev.offset_s
    labels = np.tile(record.beats.classes, 6)
    first9 = (times >= 0) & (times < 540)
    want = {c: int(np.sum(labels[first9] == i)) for i, c in enumerate(AAMI_CLASSES)}
    have = {c: sum(getattr(r, c.lower()) for r in counts[:9]) for c in AAMI_CLASSES}
    assert have == want
    moves = [(r.record.src.name, r.record.dst.name) for r in got if type(r.record).__name__ == "SeedEvent"]
    assert moves == [("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING"), ("TRAINING", "BLENDING"),
                     ("BLENDING", "SHADOWING"), ("SHADOWING", "PROBATIONARY"), ("PROBATIONARY", "FOSSILIZED")]
    gates = [(r.record.gate.name, r.record.passed) for r in got if type(r.record).__name__ == "GateEvent"]
    assert gates == [(g, True) for g in ("G0", "G1", "G2", "G3", "G4")]
    assert "AnomalyEvent" in kinds  # the arrhythmia mix has PVC / VT runs: the device's rhythm alarms
    assert "SignalQuality" in kinds and dev.seed.stage == Stage.FOSSILIZED
    assert sorted(r.fseq for r in got) == sorted(set(dev.link.delivered_fseqs))  # what it sent is what arrived


def test_a_seed_whose_gate_fails_is_culled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev, got = run(fleet_record(seed=1, minutes=1.0), SeedPlan(0, "k0", 10.0, 10.0, fail_gate=Gate.G2), 120.0,
                   tmp_path, monkeypatch)  # fmt: skip
    moves = [r.record.dst.name for r in got if type(r.record).__name__ == "SeedEvent"]
    assert moves == ["GERMINATED", "TRAINING", "BLENDING", "CULLED"]
    failed = [r.record for r in got if type(r.record).__name__ == "GateEvent" and not r.record.passed]
    assert [g.gate for g in failed] == [Gate.G2]


@pytest.mark.skipif(not (DATA / "100.hea").exists(), reason="MIT-BIH record 100 is not in ../shared/data/mitdb")
def test_a_recorded_ecg_drives_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kasmina_edge.dashboard.fleet_up import ecg_record

    record = ecg_record(f"wfdb:{DATA / '100'}", 0)
    _, got = run(record, SeedPlan(0, "k0", float("inf"), 1.0), 300.0, tmp_path, monkeypatch)
    counts = [r.record for r in got if type(r.record).__name__ == "BeatCounts"]
    n = sum(c.n for c in counts)
    assert len(counts) >= 4 and n > 4 * 60  # record 100: ~75 bpm, nearly all N
    assert sum(c.v for c in counts) <= 0.05 * n
