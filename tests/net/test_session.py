"""Item 4: nothing lost on US915 DR0 (11-byte frames). An hour of a patch's events (VT runs, PVC runs, a seed
episode with its lifecycle moves, beat counts, heartbeats): every record reaches the monitor, the critical ones
at once, the rest later as the fair-use budget allows; the frames that fit no DR0 uplink went at DR1, inside
the 400 ms dwell time, and the device dropped nothing."""

from __future__ import annotations

from net_helpers import make_harness, run_day

from kasmina_edge.contracts.events import GateVerdict, SeedTransition
from kasmina_edge.contracts.lifecycle import Gate, GateResult, Stage, TransitionEvent
from kasmina_edge.core.profiles import LoRaProfile
from kasmina_edge.net.priority import Priority, priority_of

SEED_PATH = [Stage.DORMANT, Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY]


def test_an_hour_on_us915_dr0_loses_nothing() -> None:
    h = make_harness("lorawan-us915-dr0", seed=5)
    for j, (a, b) in enumerate(zip(SEED_PATH, SEED_PATH[1:], strict=False)):  # a seed episode at minute 20
        h.tel.now = 1200.0 + 5 * j
        t = h.tel.now
        h.tel.on_event(SeedTransition(TransitionEvent("emg", a, b, "condition_detected", t), 1, "emg", 0, t))
        h.tel.on_event(GateVerdict("emg", 1, GateResult(Gate(f"G{j}"), True, "ok", {"m": 0.5}), 0, t))
    run_day(h, 3600, step=2.0, vt_every_s=900, pvc_rate=0.02, drain_s=36 * 3600)
    produced = {fseq: rec for fseq, _, rec in h.tel.produced}
    events = [f for f, rec in produced.items() if priority_of(rec) >= Priority.EVENT]
    assert len(events) >= 8 and sum(priority_of(produced[f]) == Priority.CRITICAL for f in events) == 3
    h.net.monitor.flush()
    view = h.net.monitor.devices["d1"]
    # every record the device made arrived (merged periodic records count once), none dropped
    assert view.cum == max(produced) + 1, view.missing()
    assert view.records == len(produced) and not view.dropped and h.link.queue.stats.dropped == 0
    assert len(h.link.queue) == 0
    # the 13- to 20-byte frames went at a faster data rate; the dwell time held for every uplink
    profile = h.link.profile
    assert isinstance(profile, LoRaProfile)
    assert h.link.scheduler.stats.fallback_packets > 0
    assert all(r["airtime_s"] <= 0.4 + 1e-9 for r in h.link.ledger.log)
    ordinary = sum(r["airtime_s"] for r in h.link.ledger.log if r["priority"] != "critical")
    assert ordinary <= profile.fair_use.uplink_airtime_s_per_day * 2  # 36 h of draining: two days' budget
    # the critical VT runs went within seconds of their detection
    critical_tx = [r["t"] for r in h.link.ledger.log if r["priority"] == "critical"]
    for detected in h.vt_times:
        assert min(t for t in critical_tx if t >= detected - 1e-6) - detected <= 4.0 + 1e-6
