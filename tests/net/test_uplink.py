"""Device-side uplink: packets, queue and drop policy, scheduler priorities and budgets, store and forward."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from net_helpers import EPOCH, make_harness, run_day

from firmware_sim.storage import FlashStorage, PowerCut
from firmware_sim.telemetry import FlashQueue
from kasmina_edge.contracts import codec
from kasmina_edge.contracts.errors import FrameError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.contracts.telemetry import (
    AnomalyEvent,
    AnomalyKind,
    BeatCounts,
    DeviceStatus,
    ReasonCode,
    SeedEvent,
    Severity,
    Slot,
)
from kasmina_edge.core import catalog
from kasmina_edge.core.profiles import LoRaProfile
from kasmina_edge.net.faults import FaultInjector, GatewayRestart, LossBurst, Outage
from kasmina_edge.net.packet import (
    Ack,
    DropRange,
    Packet,
    SeqRecord,
    SeqUnwrapper,
    decode_packet,
    encode_packet,
)
from kasmina_edge.net.priority import Priority, priority_of
from kasmina_edge.net.radio_budget import LoRaBudget, radio_budget
from kasmina_edge.net.uplink import RecordQueue, TelemetryPlan, UplinkScheduler

T0 = int(EPOCH)


def counts(n: int = 70, v: int = 1, period: int = 60) -> BeatCounts:
    return BeatCounts(0, T0, period, n, 0, v, 0, 0)


def heartbeat(battery: int = 90) -> DeviceStatus:
    return DeviceStatus(0, T0, battery, 3600, Slot.A, 3)


def vt() -> AnomalyEvent:
    return AnomalyEvent(0, T0, AnomalyKind.VT_RUN, Severity.CRITICAL, 1200, 1200, 0.9)


def pvc() -> AnomalyEvent:
    return AnomalyEvent(0, T0, AnomalyKind.PVC_RUN, Severity.WARNING, 900, 900, 0.8)


def seed_event(
    dst: Stage = Stage.GERMINATED, reason: ReasonCode = ReasonCode.CONDITION_DETECTED
) -> SeedEvent:
    return SeedEvent(0, T0, 1, 2, Stage.DORMANT, dst, reason)


# --------------------------------------------------------------------------------------------- packets


def test_packet_round_trip_extends_sequence_numbers_across_the_byte_wrap() -> None:
    records = (SeqRecord(1020, vt()), SeqRecord(1030, counts()), SeqRecord(1024, heartbeat()))
    data = encode_packet(Packet(records, (DropRange(1000, 3),), ack_request=True))
    assert len(data) == 2 + 1 + 3 + sum(codec.FRAME_SIZES[type(r.record)] for r in records)
    out = decode_packet(data)
    assert [s for s, _ in out.records] == [1020, 1030, 1024]
    assert out.ack_request and out.drops == [DropRange(1000, 3)]
    assert [r for _, r in out.records] == [
        replace(codec.quantize(r.record), seq=r.fseq % 256) for r in records
    ]
    with pytest.raises(FrameError, match="too far apart"):
        encode_packet(Packet((SeqRecord(0, vt()), SeqRecord(200, vt()))))


def test_a_corrupted_frame_is_reported_and_the_rest_of_the_packet_still_decodes() -> None:
    data = bytearray(encode_packet(Packet((SeqRecord(5, vt()), SeqRecord(6, counts()), SeqRecord(7, pvc())))))
    size_vt = codec.FRAME_SIZES[AnomalyEvent]
    data[2 + size_vt + 5] ^= 0x40  # a bit flip inside the beat counts frame
    out = decode_packet(bytes(data))
    assert [s for s, _ in out.records] == [5, 7]
    assert len(out.bad_frames) == 1 and "CRC" in out.bad_frames[0]
    with pytest.raises(FrameError, match="version"):
        decode_packet(b"\xe0\x00")
    with pytest.raises(FrameError):
        decode_packet(b"\x20")


def test_ack_round_trip_and_unwrapper() -> None:
    ack = Ack(65530, 65545, (65533, 65540))
    back = Ack.decode(ack.encode(), reference=65550)
    assert back == ack
    assert Ack.from_json(ack.to_json()) == ack
    assert len(Ack(0, 100, tuple(range(1, 40))).encode()) <= 51  # a DR0 downlink carries it
    u = SeqUnwrapper()
    assert [u.unwrap(s) for s in (65534, 65535, 0, 1, 65535, 2)] == [65534, 65535, 65536, 65537, 65535, 65538]


# --------------------------------------------------------------------------------------------- queue


def test_periodic_records_merge_and_events_keep_their_own_numbers() -> None:
    q = RecordQueue(16)
    a = q.submit(counts(70, 1), 0.0)
    b = q.submit(counts(72, 2), 60.0)
    h1 = q.submit(heartbeat(90), 60.0)
    h2 = q.submit(heartbeat(89), 120.0)
    e = q.submit(vt(), 130.0)
    assert a == b and h1 == h2 and len({a, h1, e}) == 3
    merged = q.entries[a].record
    assert isinstance(merged, BeatCounts) and (merged.n, merged.v, merged.period_s) == (142, 3, 120)
    assert isinstance(q.entries[h1].record, DeviceStatus) and q.entries[h1].record.battery_pct == 89
    assert q.stats.merged == 2 and q.entries[e].priority == Priority.CRITICAL
    q.entries[a].sent_count = 1  # once sent, a new count starts a new record
    assert q.submit(counts(), 180.0) not in (a, h1, e)


def test_drop_policy_evicts_periodic_then_events_and_reports_the_numbers() -> None:
    q = RecordQueue(6)
    for _ in range(2):
        q.submit(vt(), 0)
    for _ in range(2):
        q.submit(pvc(), 0)
    c = q.submit(counts(), 0)
    q.submit(heartbeat(), 0)
    q.submit(seed_event(), 0)  # full: the oldest periodic (the counts) goes
    assert c not in q.entries and q.drops == [DropRange(c, 1)]
    q.submit(seed_event(), 0)  # then the heartbeat
    q.submit(seed_event(), 0)  # no periodic left: the oldest event
    assert q.stats.dropped_by_priority == {"periodic": 2, "event": 1}
    assert all(e.priority != Priority.PERIODIC for e in q.entries.values())
    assert sum(1 for e in q.entries.values() if e.priority == Priority.CRITICAL) == 2  # critical kept
    assert sum(d.count for d in q.drops) == 3


def test_ack_frees_records_and_marks_missing_for_resend() -> None:
    q = RecordQueue(16)
    seqs = [q.submit(pvc(), 0) for _ in range(6)]
    for s in seqs:
        q.entries[s].sent_count = 1
    assert q.ack(Ack(2, 5, (3,))) == 5  # 0, 1 below cum; 2, 4, 5 seen; 3 missing
    assert list(q.entries) == [3] and q.entries[3].resend


def test_priorities() -> None:
    assert priority_of(vt()) == Priority.CRITICAL
    assert (
        priority_of(AnomalyEvent(0, T0, AnomalyKind.ASYSTOLE, Severity.WARNING, 0, 0, 0.5))
        == Priority.CRITICAL
    )
    assert priority_of(pvc()) == Priority.EVENT
    assert priority_of(seed_event(Stage.CULLED, ReasonCode.HEALTH_NAN)) == Priority.CRITICAL  # breaker opens
    assert priority_of(seed_event(Stage.CULLED, ReasonCode.CONDITION_CLEARED)) == Priority.EVENT
    assert priority_of(counts()) == Priority.PERIODIC


def test_queue_survives_a_restart_on_flash_and_a_power_cut(tmp_path: Path) -> None:
    flash = FlashQueue(FlashStorage(tmp_path))
    for _ in range(3):
        flash.queue.submit(pvc(), 1.0)
    flash.queue.entries[1].sent_count = 1
    assert flash.persist()
    cut = FlashQueue(FlashStorage(tmp_path, cut_after_bytes=10))
    cut.queue.submit(vt(), 2.0)
    with pytest.raises(PowerCut):
        cut.persist()
    again = FlashQueue(FlashStorage(tmp_path))  # the cut write left the old queue
    assert again.recovered and list(again.queue.entries) == [0, 1, 2] and again.queue.next_seq == 3
    assert again.queue.entries[1].sent_count == 1
    assert again.queue.submit(vt(), 3.0) == 3  # numbering continues


# --------------------------------------------------------------------------------------------- scheduler


def _scheduler(name: str, plan: TelemetryPlan | None = None) -> UplinkScheduler:
    profile = catalog.network(name)
    return UplinkScheduler(RecordQueue(64), radio_budget(profile, keep_log=True), plan)


def test_packets_fit_the_data_rate_and_critical_goes_first() -> None:
    s = _scheduler("lorawan-eu868-dr0")
    for _ in range(3):
        s.queue.submit(seed_event(), 0.0)
    s.queue.submit(counts(), 0.0)
    s.queue.submit(vt(), 0.0)
    sent = s.poll(0.0)
    assert sent is not None and sent.size_bytes <= 51
    assert isinstance(sent.packet.records[0].record, AnomalyEvent) and sent.priority == Priority.CRITICAL
    # header 2 + VT 19 + two seed events of 13 = 47 B; a third (13) or the counts (20) would pass 51
    assert [type(r.record) for r in sent.packet.records] == [AnomalyEvent, SeedEvent, SeedEvent]
    assert sent.size_bytes == 2 + codec.FRAME_SIZES[AnomalyEvent] + 2 * codec.FRAME_SIZES[SeedEvent] == 47
    big = _scheduler("lorawan-eu868-dr4")
    for _ in range(20):
        big.queue.submit(seed_event(), 0.0)
    sent = big.poll(0.0)
    assert sent is not None and len(sent.packet.records) == (222 - 2) // codec.FRAME_SIZES[SeedEvent]
    assert sent.size_bytes <= 222


def test_critical_bypasses_pacing_but_never_the_duty_cycle() -> None:
    s = _scheduler("lorawan-eu868-dr0")
    s.queue.submit(seed_event(), 0.0)
    first = s.poll(0.0)
    assert first is not None
    s.queue.submit(pvc(), 10.0)
    assert s.poll(400.0) is None  # the pacing bucket is empty: an ordinary event waits
    s.queue.submit(vt(), 401.0)
    assert s.poll(401.0) is not None  # a critical one does not
    s.queue.submit(vt(), 402.0)
    assert s.poll(402.0) is None  # but the duty cycle holds for it too
    budget = s.budget
    assert isinstance(budget, LoRaBudget)
    wake = s.next_wakeup(402.0)
    assert wake > 402.0 and s.poll(wake) is not None


def test_us915_dr0_sends_a_heartbeat_bare_and_what_does_not_fit_at_a_faster_rate() -> None:
    from kasmina_edge.core.airtime import time_on_air_s

    s = _scheduler("lorawan-us915-dr0")
    s.queue.submit(heartbeat(), 0.0)
    sent = s.poll(0.0)
    assert sent is not None and sent.fport == 2 and sent.size_bytes == 11  # fits DR0 bare: stays at DR0
    assert isinstance(codec.decode(sent.payload), DeviceStatus)  # type: ignore[arg-type]
    assert s.stats.fallback_packets == 0
    s.queue.submit(counts(), 100.0)  # 20 bytes: no DR0 uplink carries it
    wake = s.next_wakeup(100.0)  # the pacing bucket refills for the larger frame's airtime
    assert wake > 100.0
    later = s.poll(wake)
    assert later is not None and later.fport == 1 and later.size_bytes > 11
    dr1 = catalog.network("lorawan-us915-dr1")
    assert later.airtime_s == pytest.approx(time_on_air_s(dr1, later.size_bytes))  # type: ignore[arg-type]
    assert later.airtime_s <= 0.4 and s.stats.fallback_packets == 1  # inside the 400 ms dwell time


def _max_hour(log: list[dict[str, float]]) -> float:
    best = 0.0
    for row in log:
        end = row["t"] + row["airtime_s"]
        best = max(best, sum(r["airtime_s"] for r in log if end - 3600 < r["t"] + r["airtime_s"] <= end))
    return best


def test_a_day_at_eu868_dr0_keeps_duty_cycle_and_fair_use_and_delivers_every_critical_event() -> None:
    h = make_harness("lorawan-eu868-dr0")
    run_day(h, 86400, step=2.0, vt_every_s=6 * 3600)
    log = h.link.ledger.log
    profile = h.link.profile
    assert isinstance(profile, LoRaProfile)
    assert _max_hour(log) <= 0.01 * 3600 + 1e-9
    ordinary = sum(r["airtime_s"] for r in log if r["priority"] != "critical")
    assert ordinary <= profile.fair_use.uplink_airtime_s_per_day
    assert 10 <= len(log) <= 30
    produced = {fseq: rec for fseq, _, rec in h.tel.produced}
    view = h.net.monitor.devices["d1"]
    criticals = [f for f, rec in produced.items() if priority_of(rec) == Priority.CRITICAL]
    assert len(criticals) == len(h.vt_times) == 3
    assert all(c < view.cum or c in view.have for c in criticals)
    # each critical event went out in the first uplink opportunity after it was detected
    critical_tx = [r["t"] for r in log if r["priority"] == "critical"]
    for detected in h.vt_times:
        first_after = min(t for t in critical_tx if t >= detected - 1e-6)
        assert first_after - detected <= 2.0 + 1e-6  # the next 2 s tick: the duty cycle was free


def test_store_and_forward_nothing_lost_through_outage_restart_and_burst_loss() -> None:
    """Loopback version of the nothing-lost check (the Mosquitto one kills a real broker)."""
    faults = FaultInjector([Outage(1200, 600), GatewayRestart(2400, 30), LossBurst(2700, 900, 0.2)])
    h = make_harness("nb-iot", faults=faults, seed=3)
    h.net.broker_down = [(2000, 2130)]
    run_day(h, 3600, step=1.0, vt_every_s=900, drain_s=1800)
    produced = sorted(f for f, _, _ in h.tel.produced)
    view = h.net.monitor.devices["d1"]
    h.net.monitor.flush()
    assert view.cum == produced[-1] + 1, view.missing()
    assert view.records == len(set(produced)) and not view.dropped
    assert view.duplicates > 0  # resends happened and were removed
    assert h.link.ledger.outage > 0 and h.net.lost_at_broker > 0


def test_lora_gaps_are_reported_and_resent() -> None:
    faults = FaultInjector([LossBurst(3000, 4 * 3600, 0.3)])
    h = make_harness("lorawan-eu868-dr3", faults=faults, seed=2)
    run_day(h, 12 * 3600, step=5.0, vt_every_s=3 * 3600, drain_s=12 * 3600)
    view = h.net.monitor.devices["d1"]
    produced = {f for f, _, _ in h.tel.produced}
    h.net.monitor.flush()
    assert h.link.ledger.lost > 0
    assert view.records == len(produced) and view.cum == max(produced) + 1
    assert h.link.queue.stats.resent > 0


def test_full_queue_drops_are_reported_not_counted_as_loss() -> None:
    """More events than DR0's budget carries into an 8-record queue: the policy drops, the cloud is told."""
    h = make_harness("lorawan-eu868-dr0", capacity=8)
    produced: list[int] = []
    t = 0.0
    while t < 24 * 3600:
        if t < 3 * 3600 and t % 300 == 0:
            produced.append(h.tel.submit(seed_event(), t))
        if t % 5400 == 0:
            produced.append(h.tel.submit(vt(), t))
        h.link.tick(t)
        h.net.advance(t)
        t += 10.0
    h.net.advance(float("inf"))
    q = h.link.queue
    assert q.stats.dropped_by_priority.get("event", 0) > 0
    assert "critical" not in q.stats.dropped_by_priority  # critical records outlive every event
    view = h.net.monitor.devices["d1"]
    h.net.monitor.flush()
    assert view.dropped and len(view.dropped) <= q.stats.dropped
    assert view.missing() == []  # a drop is a known absence, not a gap
    unseen = [
        f for f in q.entries if f >= (view.cum or 0) and f not in view.have
    ]  # still waiting on the device
    unreported = [s for d in q.drops for s in range(d.start, d.start + d.count) if s not in view.dropped]
    assert view.records + len(view.dropped) + len(unseen) + len(unreported) == len(set(produced)), (
        q.drops,
        view.high,
        max(produced),
        list(q.entries),
    )


def test_lora_coalesces_a_seeds_unsent_moves_into_one_record() -> None:
    q = RecordQueue(16)
    q.coalesce_seed_events = True
    path = [Stage.DORMANT, Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING]
    seqs = {
        q.submit(SeedEvent(0, T0, 1, 2, a, b, ReasonCode.GATE_PASSED), 0.0)
        for a, b in zip(path, path[1:], strict=False)
    }
    assert len(seqs) == 1 and q.stats.merged == 3
    only = next(iter(q.entries.values())).record
    assert isinstance(only, SeedEvent) and (only.src, only.dst) == (Stage.DORMANT, Stage.SHADOWING)
    q.submit(
        SeedEvent(0, T0, 2, 2, Stage.DORMANT, Stage.GERMINATED, ReasonCode.GATE_PASSED), 0.0
    )  # another site
    breaker = q.submit(seed_event(Stage.CULLED, ReasonCode.HEALTH_NAN), 0.0)  # critical: never folded in
    assert len(q) == 3 and q.entries[breaker].priority == Priority.CRITICAL
    assert not RecordQueue(16).coalesce_seed_events  # broadband keeps every move
