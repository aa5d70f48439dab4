"""Cloud-side monitor: bad input counted never raised, dedup, reorder, gaps, drops, store, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, BeatCounts, Severity
from kasmina_edge.net import topics
from kasmina_edge.net.monitor import Monitor, read_store
from kasmina_edge.net.packet import Ack, DropRange, Packet, SeqRecord, Uplink, encode_packet, packet_to_json

T0 = 1_800_000_000
TOPIC = topics.telemetry("f1", "dev", "batch")


def event(i: int) -> AnomalyEvent:
    return AnomalyEvent(0, T0 + i, AnomalyKind.PVC_RUN, Severity.WARNING, 100, 100, 0.5)


def lora(
    fseqs: list[int],
    *,
    fcnt: int = 1,
    at: float = 10.0,
    drops: tuple[DropRange, ...] = (),
    device: str = "dev",
) -> bytes:
    packet = Packet(tuple(SeqRecord(f, event(f)) for f in fseqs), drops)
    return Uplink(
        device, "lorawan-eu868-dr3", fcnt, at - 1.0, at, 0.2, encode_packet(packet), float(T0)
    ).to_bytes()


def test_garbage_is_counted_and_logged_never_raised(tmp_path: Path) -> None:
    logged: list[str] = []
    m = Monitor(tmp_path / "store.jsonl", log_bad=logged.append)
    good = lora([0, 1])
    frame_bad = bytearray(encode_packet(Packet((SeqRecord(2, event(2)), SeqRecord(3, event(3))))))
    frame_bad[5] ^= 0xFF
    bad_crc = Uplink("dev", "lorawan-eu868-dr3", 2, 10, 11, 0.2, bytes(frame_bad), float(T0)).to_bytes()
    rng = random.Random(0)
    inputs = [
        (TOPIC, good),
        (TOPIC, b""),
        (TOPIC, b"\xff\xfe not json"),
        (TOPIC, json.dumps({"v": 9}).encode()),
        (TOPIC, bad_crc),
        (TOPIC, Uplink("dev", "x", 3, 0, 1, 0, b"\xe0\x00", 0.0).to_bytes()),  # unknown packet version
        (TOPIC, lora([9], device="someone-else")),  # envelope names another device
        ("not/our/topic", good),
        (topics.telemetry("f1", "dev", "cmd_ack"), b"[1,2"),
        *[(TOPIC, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))) for _ in range(50)],
    ]
    for topic, payload in inputs:
        m.ingest(topic, payload)
    view = m.devices["dev"]
    assert view.records == 3  # 0 and 1, and 3 whose frame survived next to the corrupted one
    assert m.stats.bad_frames >= 1 and m.stats.bad_messages >= 55
    assert any("CRC" in msg for msg in logged) and any(
        "another" in msg or "names device" in msg for msg in logged
    )
    m.close()
    lines = list(read_store(tmp_path / "store.jsonl"))
    assert sum(1 for x in lines if "bad" in x) == m.stats.bad_messages
    assert [x["fseq"] for x in lines if "fseq" in x] == [0, 1, 3]  # 3 waited for 2, released at close


def test_dedup_and_reorder_release_in_sequence() -> None:
    released: list[int] = []
    acks: list[Ack] = []
    m = Monitor(on_record=lambda r: released.append(r.fseq), send_ack=lambda f, d, a, e: acks.append(a))
    m.ingest(TOPIC, lora([0, 1], fcnt=1, at=10))
    m.ingest(TOPIC, lora([4, 5], fcnt=3, at=20))  # 2, 3 missing: held back, gap reported
    assert released == [0, 1] and acks[-1].missing == (2, 3)
    m.ingest(TOPIC, lora([4, 5], fcnt=3, at=21))  # a duplicate uplink
    m.ingest(TOPIC, lora([2, 3], fcnt=2, at=30))
    assert released == [0, 1, 2, 3, 4, 5]
    view = m.devices["dev"]
    assert view.duplicates == 2 and view.cum == 6 and view.uplinks_lost == 0


def test_gap_released_after_timeout_then_late_record() -> None:
    released: list[tuple[int, bool]] = []
    m = Monitor(on_record=lambda r: released.append((r.fseq, r.late)), reorder_timeout_s=100)
    m.ingest(TOPIC, lora([0], at=10))
    m.ingest(TOPIC, lora([2], at=20, fcnt=3))
    assert released == [(0, False)]
    m.ingest(TOPIC, lora([3], at=200, fcnt=4))  # 2 has waited past the timeout: released over the gap
    assert released == [(0, False), (2, False), (3, False)] and m.devices["dev"].gaps_released == 1
    m.ingest(TOPIC, lora([1], at=300, fcnt=2))
    assert released[-1] == (1, True)


def test_device_drop_report_closes_the_gap() -> None:
    released: list[int] = []
    m = Monitor(on_record=lambda r: released.append(r.fseq))
    m.ingest(TOPIC, lora([0, 1]))
    m.ingest(TOPIC, lora([5], fcnt=2, drops=(DropRange(2, 3),)))
    view = m.devices["dev"]
    assert released == [0, 1, 5] and view.missing() == [] and view.dropped == {2, 3, 4}


def test_json_packets_and_bare_frames() -> None:
    m = Monitor()
    packet = Packet((SeqRecord(0, event(0)), SeqRecord(1, BeatCounts(0, T0, 60, 70, 0, 1, 0, 0))))
    up = Uplink("dev", "nb-iot", 1, 0.0, 1.5, 0.01, packet_to_json(packet), float(T0))
    m.ingest(TOPIC, up.to_bytes())
    view = m.devices["dev"]
    assert view.records == 2 and view.beats["N"] == 70
    frame = codec.encode(AnomalyEvent(2, T0, AnomalyKind.PVC_RUN, Severity.WARNING, 1, 1, 0.5))
    bare = Uplink("dev", "lorawan-us915-dr0", 2, 2.0, 3.0, 0.37, frame, float(T0), fport=2)
    m.ingest(TOPIC, bare.to_bytes())
    assert view.records == 3 and view.cum == 3
    tampered = json.loads(up.to_bytes())
    tampered["payload"]["records"][0]["seq"] = 7  # seq no longer matches fseq
    m.ingest(TOPIC, json.dumps(tampered).encode())
    assert m.stats.bad_messages == 1


def test_link_stats_from_envelopes() -> None:
    m = Monitor()
    for i in range(10):
        m.ingest(TOPIC, lora([i], fcnt=i * 2, at=100.0 * i + 10))  # every other uplink lost
    s = m.devices["dev"].summary(now=1000.0)
    assert s["uplinks"] == 10 and s["uplink_loss"] == round(9 / 19, 4)
    assert s["airtime_last_hour_s"] == 2.0 and 0 < s["duty_cycle_left"] < 1
    assert s["link_latency_median_s"] == 0.8  # arrival - sent - airtime


def test_restarted_monitor_reads_its_store_back(tmp_path: Path) -> None:
    store = tmp_path / "s.jsonl"
    m = Monitor(store)
    m.ingest(TOPIC, lora([0, 1, 2]))
    m.close()
    acks: list[Ack] = []
    again = Monitor(store, send_ack=lambda f, d, a, e: acks.append(a))
    again.ingest(TOPIC, lora([1, 2, 3], fcnt=2))  # a resend overlapping what was stored before the restart
    again.close()
    fseqs = [x["fseq"] for x in read_store(store) if "fseq" in x]
    assert fseqs == [0, 1, 2, 3] and again.devices["dev"].duplicates == 2
