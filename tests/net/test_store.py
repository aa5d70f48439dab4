"""The telemetry store, the same tests on SQLite and on PostgreSQL (a throwaway cluster; skipped without one).

Migrations make the schema the code describes; a record is stored once per (device, sequence) whatever the
network or several workers do; the monitor writes the same records to a database as to JSON lines and resumes
from it; seed transitions, gate verdicts, alerts, strips and reports land in their tables; retention deletes by
age; erasure removes a device's or a patient's rows and nothing else.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dashboard"))

import pg_cluster  # noqa: E402

from kasmina_edge.contracts import codec  # noqa: E402
from kasmina_edge.contracts.lifecycle import Gate, Stage  # noqa: E402
from kasmina_edge.contracts.telemetry import (  # noqa: E402
    AnomalyEvent,
    AnomalyKind,
    GateEvent,
    ReasonCode,
    SeedEvent,
    Severity,
)
from kasmina_edge.net import topics  # noqa: E402
from kasmina_edge.net.monitor import Monitor, read_store  # noqa: E402
from kasmina_edge.net.packet import Packet, SeqRecord, Uplink, encode_packet  # noqa: E402

# the fixtures: a throwaway PostgreSQL cluster for the session, and each test on SQLite and on PostgreSQL
pg = pg_cluster.pg
store_url = pg_cluster.store_url
sqlalchemy = pytest.importorskip("sqlalchemy", reason="the server extra (sqlalchemy) is not installed")
store_mod = pytest.importorskip("kasmina_edge.net.store")

T0 = 1_800_000_000


def anomaly(i: int) -> AnomalyEvent:
    return AnomalyEvent(0, T0 + i, AnomalyKind.VT_RUN, Severity.CRITICAL, 0, 1500, 0.9)


def seed(i: int, src: Stage, dst: Stage) -> SeedEvent:
    return SeedEvent(0, T0 + i, 1, 0, src, dst, ReasonCode.GATE_PASSED)


def gate(i: int, g: Gate, passed: bool) -> GateEvent:
    return GateEvent(0, T0 + i, 1, 0, g, passed, ReasonCode.GATE_PASSED if passed else ReasonCode.GATE_FAILED, 0.7)


def uplink(device: str, entries: list[tuple[int, Any]], fcnt: int) -> tuple[str, bytes]:
    packet = Packet(tuple(SeqRecord(f, r) for f, r in entries), ())
    up = Uplink(device, "lorawan-eu868-dr3", fcnt, fcnt * 10.0, fcnt * 10.0 + 1, 0.2, encode_packet(packet), T0)
    return topics.telemetry("f1", device, "batch"), up.to_bytes()


def stream(device: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` records in packets of three, every packet sent twice (MQTT at-least-once), two out of order."""
    lifecycle_walk = [Stage.DORMANT, Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING]
    recs: list[tuple[int, Any]] = []
    for i in range(n):
        if i % 5 == 1 and i // 5 + 1 < len(lifecycle_walk):
            recs.append((i, seed(i, lifecycle_walk[i // 5], lifecycle_walk[i // 5 + 1])))
        elif i % 5 == 2:
            recs.append((i, gate(i, Gate.G0, passed=i % 2 == 0)))
        else:
            recs.append((i, anomaly(i)))
    msgs = [uplink(device, recs[i : i + 3], fcnt=i) for i in range(0, n, 3)]
    msgs[1], msgs[2] = msgs[2], msgs[1]
    return [m for m in msgs for _ in range(2)]


def test_migrations_make_the_schema_the_code_describes(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = store_mod.open_store(store_url)
    store_mod.open_store(store_url).close()  # opening an up-to-date store again is a no-op
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == "0001"
        assert compare_metadata(ctx, store_mod.metadata) == []
    store.close()


def test_a_record_is_stored_once_even_from_two_workers(store_url: str) -> None:
    a, b = store_mod.open_store(store_url), store_mod.open_store(store_url)
    rec = {"fleet": "f1", "device": "d1", "kind": "anomaly", "link": "wifi", "record": codec.to_dict(anomaly(0))}
    for i in range(10):
        a.write({**rec, "fseq": i})
    for i in range(5, 15):  # a second worker got half of them again (a reconnect, a shared-subscription rebalance)
        b.write({**rec, "fseq": i})
    a.flush()
    b.flush()
    b.write({**rec, "fseq": 3})
    b.close()
    a.close()
    store = store_mod.open_store(store_url)
    assert store.fseqs("d1") == list(range(15))
    assert store.count(store_mod.alerts, "d1") == 15
    assert store.count(store_mod.devices) == 1
    store.close()


def test_monitor_writes_the_same_records_to_a_database_as_to_json_lines(store_url: str, tmp_path: Path) -> None:
    msgs = stream("d1", 30) + stream("d2", 12)
    jsonl = Monitor(tmp_path / "m.jsonl")
    sql = Monitor(store_url)
    for topic, payload in msgs:
        jsonl.ingest(topic, payload)
        sql.ingest(topic, payload)
    jsonl.close()
    sql.close()
    lines = [o for o in read_store(tmp_path / "m.jsonl") if "fseq" in o]
    assert sql.summary()["duplicates"] == jsonl.summary()["duplicates"] > 0
    store = store_mod.open_store(store_url)
    for device in ("d1", "d2"):
        assert store.fseqs(device) == sorted(o["fseq"] for o in lines if o["device"] == device)
    assert store.count(store_mod.records) == 42
    with store.engine.connect() as conn:
        steps = conn.execute(
            sqlalchemy.select(store_mod.lifecycle.c.event, store_mod.lifecycle.c.dst, store_mod.lifecycle.c.gate,
                              store_mod.lifecycle.c.passed)
            .where(store_mod.lifecycle.c.device == "d1").order_by(store_mod.lifecycle.c.fseq)
        ).all()
        dev = conn.execute(sqlalchemy.select(store_mod.devices).where(store_mod.devices.c.device == "d1")).one()
    assert [s.dst for s in steps if s.event == "transition"] == ["GERMINATED", "TRAINING", "BLENDING"]
    assert [(s.gate, s.passed) for s in steps if s.event == "gate"] == [("G0", i % 2 == 0) for i in range(2, 30, 5)]
    assert store.count(store_mod.alerts, "d1") == 30 - len(steps)
    assert dev.fleet == "f1" and dev.link == "lorawan-eu868-dr3"
    store.close()

    again = Monitor(store_url)  # a restarted monitor: what it stored is known, the same stream is all duplicates
    for topic, payload in msgs:
        again.ingest(topic, payload)
    again.close()
    assert again.summary()["records"] == 0
    assert store_mod.open_store(store_url).count(store_mod.records) == 42


def test_status_reports_strips_and_bad_messages_have_their_tables(store_url: str) -> None:
    m = Monitor(store_url)
    m.ingest(topics.status("f1", "d1"), b'{"state":"online"}')
    m.ingest(topics.telemetry("f1", "d1", "ota_report"), b'{"status":"probation_passed","final":true}')
    sealed = {"device": "d1", "nonce": "n1", "fs": 360.0, "iv": "00", "ciphertext": "00", "samples": 720}
    import json

    m.ingest(topics.telemetry("f1", "d1", "strip"), json.dumps(sealed).encode())
    m.ingest(topics.telemetry("f1", "d1", "strip"), json.dumps(sealed).encode())  # the same strip twice
    m.ingest(topics.telemetry("f1", "d1", "batch"), b"\x00garbage")
    m.close()
    store = store_mod.open_store(store_url)
    with store.engine.connect() as conn:
        dev = conn.execute(sqlalchemy.select(store_mod.devices)).one()
        report = conn.execute(sqlalchemy.select(store_mod.reports)).one()
    assert dev.status == "online"
    assert report.kind == "ota_report" and report.body["status"] == "probation_passed"
    assert store.count(store_mod.strips) == 1
    assert store.count(store_mod.bad_messages) == 1
    store.close()


def test_retention_deletes_by_age_and_erasure_by_device_and_patient(store_url: str) -> None:
    store = store_mod.open_store(store_url)
    rec = {"fleet": "f1", "kind": "anomaly", "link": "wifi", "record": codec.to_dict(anomaly(0))}
    for device in ("a", "b", "c"):
        for i in range(4):
            store.write({**rec, "device": device, "fseq": i})
    store.flush()
    old = time.time() - 40 * 86400
    with store.engine.begin() as conn:  # device a's first two records were stored 40 days ago
        conn.execute(sqlalchemy.update(store_mod.records)
                     .where(store_mod.records.c.device == "a", store_mod.records.c.fseq < 2).values(stored_at=old))
    gone = store.purge_older_than(30)
    assert gone["records"] == 2
    assert store.fseqs("a") == [2, 3] and store.fseqs("b") == [0, 1, 2, 3]
    assert store.count(store_mod.alerts, "a") == 4  # alerts were stored now: retention is per row's own age

    store.assign_patient("b", "patient-7")
    store.assign_patient("c", "patient-7")
    with pytest.raises(store_mod.StoreError, match="not in the store"):
        store.assign_patient("zzz", "patient-7")
    erased = store.erase_patient("patient-7")
    assert erased["records"] == 8 and erased["devices"] == 2
    assert store.fseqs("b") == [] and store.count(store_mod.alerts, "c") == 0
    assert store.fseqs("a") == [2, 3]
    erased = store.erase_device("a")
    assert erased["devices"] == 1 and store.count(store_mod.records) == 0
    store.close()


def test_a_bad_store_url_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(store_mod.StoreError, match="only sqlite"):
        store_mod.open_store("mysql://x@localhost/db")
    with pytest.raises(store_mod.StoreError, match="not a database URL"):
        store_mod.open_store("::nonsense::")
    with pytest.raises(store_mod.StoreError, match="store postgresql"):
        store_mod.open_store("postgresql://nobody@127.0.0.1:1/none")


def test_workers_opening_a_fresh_store_at_once_do_not_race(store_url: str) -> None:
    import threading

    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            store_mod.open_store(store_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store_mod.open_store(store_url).count(store_mod.records) == 0
