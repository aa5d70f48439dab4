"""RuntimeTelemetry takes the runtime's typed events: beats feed counts and rhythm alarms, seed moves and gate
verdicts become wire records with their site and kernel, every other event stays in the run log; what reaches
the monitor decodes to the records the device made."""

from __future__ import annotations

from dataclasses import replace

from firmware_sim.telemetry import RuntimeTelemetry
from kasmina_edge.contracts import codec
from kasmina_edge.contracts.events import (
    BeatClassified,
    DecisionTaken,
    EvidenceVerdict,
    Fault,
    FaultRollback,
    GateVerdict,
    KernelDecision,
    KernelInstalled,
    SeedTransition,
)
from kasmina_edge.contracts.lifecycle import Gate, GateResult, Stage, TransitionEvent
from kasmina_edge.contracts.telemetry import (
    AnomalyEvent,
    AnomalyKind,
    BeatCounts,
    GateEvent,
    ReasonCode,
    SeedEvent,
    Severity,
)
from kasmina_edge.core import catalog
from kasmina_edge.net.link import Channel
from kasmina_edge.net.loopback import LoopbackNetwork
from kasmina_edge.net.monitor import StoredRecord
from kasmina_edge.net.session import DeviceLink

EPOCH = 1_800_000_000.0


def _telemetry() -> tuple[RuntimeTelemetry, LoopbackNetwork]:
    profile = catalog.network("wifi")
    net = LoopbackNetwork()
    link = DeviceLink("d1", profile, net, channel=Channel(profile, seed=1))
    net.attach(link)
    tel = RuntimeTelemetry(link, epoch_unix=EPOCH, kernel_ids={"k_base": 0})
    tel.keep_produced = True
    return tel, net


def test_seed_moves_and_gate_verdicts_become_wire_records_with_their_site() -> None:
    tel, _ = _telemetry()
    tel.now = 30.0
    move = TransitionEvent("k_emg", Stage.PROBATIONARY, Stage.CULLED, "health_nan: NaN at site 2", 30.0)
    tel.on_event(SeedTransition(move, site=2, kernel="k_emg", window=80, t=30.0))
    verdict = GateResult(Gate.G3, False, "no evidence the kernel helps", {"shadow_agreement": 0.75})
    tel.on_event(GateVerdict("k_emg", 2, verdict, window=81, t=30.5))
    records = [rec for _, _, rec in tel.produced]
    assert len(records) == 2
    seed, gate = records
    assert isinstance(seed, SeedEvent) and isinstance(gate, GateEvent)
    assert (seed.site, seed.kernel_id, seed.src, seed.dst, seed.reason) == (
        2, 1, Stage.PROBATIONARY, Stage.CULLED, ReasonCode.HEALTH_NAN)  # fmt: skip
    assert (gate.site, gate.kernel_id, gate.gate, gate.passed, gate.metric) == (2, 1, Gate.G3, False, 0.75)
    assert seed.timestamp == gate.timestamp == int(EPOCH + 30.0)
    for rec in records:
        assert codec.decode(codec.encode(rec)) == codec.quantize(rec)


def test_beats_make_the_counts_and_a_fast_ventricular_run_an_alarm() -> None:
    tel, _ = _telemetry()
    t = 1.0
    for _ in range(20):
        tel.on_event(BeatClassified(round(t * 360), t, "N", 0.9))
        t += 0.8
    for _ in range(3):  # three V beats at 150 bpm: a VT run
        tel.on_event(BeatClassified(round(t * 360), t, "V", 0.8, anomaly=True))
        t += 0.4
    tel.on_event(BeatClassified(round(t * 360), t, "?"))  # not a class the model knows: counted as Q
    tel.tick(61.0)
    records = [rec for _, _, rec in tel.produced]
    vt, asystole = [r for r in records if isinstance(r, AnomalyEvent)]  # then no beat for 40 s: asystole
    assert vt.kind is AnomalyKind.VT_RUN and vt.severity is Severity.CRITICAL and vt.confidence == 0.8
    assert asystole.kind is AnomalyKind.ASYSTOLE
    (counts,) = [r for r in records if isinstance(r, BeatCounts)]
    assert counts.as_dict() == {"N": 20, "S": 0, "V": 3, "F": 0, "Q": 1}


def test_events_without_a_wire_record_stay_in_the_log() -> None:
    tel, _ = _telemetry()
    tel.on_event(DecisionTaken(KernelDecision("activate", "noise", site=0, kernel="k"), True, 50.0, 3, 2.0))
    tel.on_event(FaultRollback(Fault("health_nan", 0, "k", "NaN"), window=4, t=2.5))
    tel.on_event(EvidenceVerdict("k", 0, 5, "hurts", "SHADOWING", {"evidence": -2.0}, 3.0))
    tel.on_event(KernelInstalled("k", 0, "kb", None, 3.5))
    assert tel.produced == []


def test_what_the_monitor_decodes_is_what_the_device_made() -> None:
    tel, net = _telemetry()
    arrived: list[StoredRecord] = []
    net.monitor.on_record = arrived.append
    for j, (a, b) in enumerate([(Stage.DORMANT, Stage.GERMINATED), (Stage.GERMINATED, Stage.TRAINING)]):
        tel.now = 10.0 + j
        tel.on_event(SeedTransition(TransitionEvent("k_emg", a, b, "condition_detected", tel.now), 1, "k_emg", j, tel.now))
    tel.tick(20.0)
    net.advance(float("inf"))
    sent = [rec for _, _, rec in tel.produced if isinstance(rec, SeedEvent)]
    seen = [r.record for r in arrived if isinstance(r.record, SeedEvent)]
    # the queue numbers them as it takes them (seq); the rest arrives as the device made it
    assert [replace(codec.quantize(r), seq=0) for r in sent] == [replace(r, seq=0) for r in seen]
    assert [r.dst for r in seen] == [Stage.GERMINATED, Stage.TRAINING]
    assert net.monitor.devices["d1"].stages == {"1/1": "TRAINING"}  # site 1, kernel id 1 (k_base is 0)
