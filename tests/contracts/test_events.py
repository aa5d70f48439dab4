"""The runtime's typed event records: one kind name each, the run log's JSON keys, and the way a seed move or a
gate verdict becomes a wire record the codec carries."""

from __future__ import annotations

import typing

import pytest

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.events import (
    EVENT_TYPES,
    BeatClassified,
    DecisionTaken,
    EvidenceVerdict,
    Fault,
    FaultRollback,
    GateVerdict,
    KernelDecision,
    KernelInstalled,
    KernelRefused,
    ReferenceMeasured,
    RuntimeBooted,
    RuntimeEvent,
    SeedTransition,
    SegmentCheck,
)
from kasmina_edge.contracts.lifecycle import Gate, GateResult, Stage, TransitionEvent
from kasmina_edge.contracts.telemetry import GateEvent, ReasonCode, SeedEvent

MOVE = TransitionEvent("k1", Stage.DORMANT, Stage.GERMINATED, "noise severity 0.40", 12.0,
                       GateResult(Gate.G0, True, "loaded", {"rows": 8.0}))


def test_every_event_type_has_its_own_kind_and_is_in_the_union() -> None:
    kinds = [t.KIND for t in EVENT_TYPES]
    assert len(set(kinds)) == len(kinds) == 10
    assert set(typing.get_args(RuntimeEvent)) == set(EVENT_TYPES)


def test_beat_json_is_the_run_log_record() -> None:
    beat = BeatClassified(21613, 60.03611, "V", 0.3092, valid=True, anomaly=True, latency_us=145.0,
                          active={"0": "k0"}, trial={"1": "k1"}, faults=("k1:nan",))
    assert beat.to_json() == {
        "event": "beat", "sample": 21613, "t": 60.0361, "class": "V", "p": 0.3092, "valid": True, "anomaly": True,
        "latency_us": 145.0, "active": {"0": "k0"}, "trial": {"1": "k1"}, "faults": ["k1:nan"],
    }  # fmt: skip
    plain = BeatClassified(5, 0.01, "N").to_json()
    assert "trial" not in plain and "faults" not in plain and "device_us" not in plain and plain["p"] is None


def test_transition_json_keeps_the_contracts_keys_then_site_kernel_window_t() -> None:
    out = SeedTransition(MOVE, site=0, kernel="k1", window=40, t=12.0).to_json()
    assert list(out) == ["event", "seed_id", "from", "to", "reason", "at", "gate", "gate_passed", "gate_reason",
                         "gate_metrics", "site", "kernel", "window", "t"]  # fmt: skip
    assert out["event"] == "transition" and out["from"] == "DORMANT" and out["gate"] == "G0"


def test_decision_fault_evidence_and_gate_json() -> None:
    wait = DecisionTaken(KernelDecision("wait", "onset_pending", symptom="noise", severity=0.1234), False, 61.0, 3, 1.5)
    assert wait.to_json() == {"event": "decision", "action": "wait", "reason": "onset_pending", "source": "heuristic",
                              "symptom": "noise", "severity": 0.123, "applied": False, "latency_us": 61.0,
                              "window": 3, "t": 1.5}  # fmt: skip
    act = DecisionTaken(KernelDecision("activate", "noise", site=2, kernel="k2", alpha_target=0.66666), True, 9.0, 4, 2.0)
    assert act.to_json()["site"] == 2 and act.to_json()["alpha_target"] == 0.667
    fault = FaultRollback(Fault("health_nan", 1, "k1", "NaN out", {"x": 1.0}), window=7, t=3.25)
    assert fault.to_json() == {"event": "fault", "code": "health_nan", "site": 1, "kernel": "k1", "detail": "NaN out",
                               "metrics": {"x": 1.0}, "window": 7, "action": "rollback", "t": 3.25}  # fmt: skip
    ev = EvidenceVerdict("k1", 1, 9, "hurts", "SHADOWING", {"evidence": -1.5, "disagreements": 4.0}, 4.0).to_json()
    assert ev["evidence"] == -1.5 and ev["verdict"] == "hurts" and list(ev)[-1] == "t"
    gate = GateVerdict("k1", 1, GateResult(Gate.G3, False, "no evidence", {"evidence": -0.01}), 9, 4.0).to_json()
    assert gate["gate"] == "G3" and gate["passed"] is False and gate["site"] == 1 and gate["seed_id"] == "k1"


def test_boot_reference_and_installed_kernels_json() -> None:
    boot = RuntimeBooted("b1", "litert", 3, 2, (SegmentCheck("segment_0", True, {"rows": 8.0}),), 0.0).to_json()
    assert boot["checks"] == [{"artifact": "segment_0", "passed": True, "rows": 8.0}] and boot["event"] == "boot"
    ref = ReferenceMeasured("device warm-up", 12, None, (0.1, 0.2), 9.0).to_json()
    assert ref["features"] == [0.1, 0.2] and ref["quality"] is None
    assert KernelInstalled("k", 1, "kb", (1.0, 0.5), 30.0).to_json()["rr_scale"] == [1.0, 0.5]
    assert KernelInstalled("k", 1, "kb", None, 30.0).to_json()["rr_scale"] is None
    assert KernelRefused("k", 1, "culled on the host: g4", 30.0).to_json()["reason"].startswith("culled")


def test_a_seed_move_becomes_a_seed_event_the_codec_carries() -> None:
    ev = SeedTransition(MOVE, site=2, kernel="k1", window=40, t=12.0)
    rec = SeedEvent.from_transition(ev.transition, seq=5, timestamp=1_800_000_012, site=ev.site, kernel_id=3)
    assert (rec.site, rec.kernel_id, rec.src, rec.dst) == (2, 3, Stage.DORMANT, Stage.GERMINATED)
    assert codec.decode(codec.encode(rec)) == rec


@pytest.mark.parametrize(
    ("metrics", "headline"),
    [({"evidence": -0.25, "windows": 24.0}, -0.25), ({}, 0.0), ({"note": "x", "m": 2}, 2.0), ({"m": float("nan")}, 0.0)],
)
def test_a_gate_verdict_becomes_a_gate_event_with_its_headline_metric(metrics: dict, headline: float) -> None:
    result = GateResult(Gate.G2, False, "health_drift: site moved", metrics)  # type: ignore[arg-type]
    rec = GateEvent.from_verdict(result, seq=1, timestamp=1_800_000_000, site=1, kernel_id=0)
    assert rec.gate is Gate.G2 and not rec.passed and rec.site == 1 and rec.metric == headline
    assert rec.reason is ReasonCode.HEALTH_DRIFT
    assert codec.decode(codec.encode(rec)) == codec.quantize(rec)
