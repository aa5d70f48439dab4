"""The telemetry store: a database with migrations (SQLite by default, PostgreSQL through the same code).

``open_store(url)`` takes a SQLAlchemy URL: ``sqlite:///runs/monitor.sqlite`` (a file, made on first use) or
``postgresql://USER@HOST:PORT/DB`` (driven by psycopg 3: ``postgresql+psycopg://`` is implied). The schema is
made and upgraded by Alembic (the migrations ship inside the package, :data:`MIGRATIONS`), so a store written by
an older kasmina-edge is upgraded in place on open, and two monitors opening a fresh database do not race on
``CREATE TABLE``.

:class:`SqlStore` has the monitor's store interface (``write(obj)`` / ``flush()`` / ``close()``, the same
objects the JSON-lines store writes) and buffers rows, inserting them in one transaction per flush. A record is
keyed by (device, sequence number): the unique constraint stores it once however often it arrives, even from
several monitor workers behind a shared subscription (``ON CONFLICT DO NOTHING`` on both databases). Seed
transitions and gate verdicts also land in ``lifecycle``, anomaly events in ``alerts``, decoded-ready ECG strips
(still sealed: only the operator's key opens them) in ``strips``, command and update reports in ``reports``.

Retention: :meth:`SqlStore.purge_older_than` deletes what was stored more than N days ago. Erasure:
:meth:`SqlStore.erase_device` and :meth:`SqlStore.erase_patient` (devices are assigned to a patient with
:meth:`SqlStore.assign_patient`) delete every row that belongs to them, the device row included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from kasmina_edge.contracts.errors import KasminaError

MIGRATIONS = Path(__file__).with_name("migrations")
_UPGRADE_LOCK = threading.Lock()
MIGRATION_LOCK = 0x6B65_6467  # "kedg": the advisory lock key every worker's upgrade takes on PostgreSQL
DAY_S = 86400.0
NAME = String(64)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

devices = Table(
    "devices",
    metadata,
    Column("device", NAME, primary_key=True),
    Column("fleet", NAME, nullable=False),
    Column("patient", NAME, nullable=True, index=True),
    Column("link", NAME, nullable=True),
    Column("status", String(32), nullable=True),
    Column("battery_pct", Integer, nullable=True),
    Column("firmware_version", Integer, nullable=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("device", NAME, nullable=False),
    Column("fseq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ts", Float, nullable=True, doc="the record's own time (unix seconds)"),
    Column("sent_at", Float, nullable=True),
    Column("arrival_at", Float, nullable=True),
    Column("late", Boolean, nullable=False, default=False),
    Column("body", JSON, nullable=False),
    Column("stored_at", Float, nullable=False, index=True),
    UniqueConstraint("device", "fseq", name="uq_records_device_fseq"),
)

lifecycle = Table(
    "lifecycle",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("device", NAME, nullable=False),
    Column("fseq", BigInteger, nullable=False),
    Column("ts", Float, nullable=True),
    Column("site", Integer, nullable=False),
    Column("kernel_id", Integer, nullable=False),
    Column("event", String(16), nullable=False, doc="transition or gate"),
    Column("src", String(16), nullable=True),
    Column("dst", String(16), nullable=True),
    Column("gate", String(4), nullable=True),
    Column("passed", Boolean, nullable=True),
    Column("reason", String(32), nullable=True),
    Column("metric", Float, nullable=True),
    Column("stored_at", Float, nullable=False, index=True),
    UniqueConstraint("device", "fseq", name="uq_lifecycle_device_fseq"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("device", NAME, nullable=False),
    Column("fseq", BigInteger, nullable=False),
    Column("ts", Float, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("duration_ms", Integer, nullable=True),
    Column("confidence", Float, nullable=True),
    Column("stored_at", Float, nullable=False, index=True),
    UniqueConstraint("device", "fseq", name="uq_alerts_device_fseq"),
)

strips = Table(
    "strips",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("device", NAME, nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("fs", Float, nullable=False),
    Column("samples", Integer, nullable=False),
    Column("sealed", JSON, nullable=False, doc="as the device sent it: AES-GCM under the device's strip key"),
    Column("stored_at", Float, nullable=False, index=True),
    UniqueConstraint("device", "nonce", name="uq_strips_device_nonce"),
)

reports = Table(
    "reports",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("device", NAME, nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("body", JSON, nullable=False),
    Column("stored_at", Float, nullable=False, index=True),
)

bad_messages = Table(
    "bad_messages",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("device", NAME, nullable=True),
    Column("topic", String(256), nullable=True),
    Column("reason", String(512), nullable=False),
    Column("stored_at", Float, nullable=False, index=True),
)

PER_DEVICE = (records, lifecycle, alerts, strips, reports, bad_messages)
REPORT_KINDS = ("cmd_ack", "ota_report", "ota_req", "drift")


class StoreError(KasminaError):
    """A store URL that is not a database we can open, or a database that refuses us."""


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (SQLAlchemy would pick psycopg2); a relative SQLite file is kept."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"--store {url!r}: not a database URL (sqlite:///FILE or postgresql://USER@HOST/DB)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("sqlite", "postgresql+psycopg", "sqlite+pysqlite"):
        raise StoreError(f"--store {url!r}: only sqlite:/// and postgresql:// stores are supported")
    return parsed.render_as_string(hide_password=False)


def is_store_url(value: str | Path | None) -> bool:
    return isinstance(value, str) and "://" in value


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:  # readers and the writer at once: WAL
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine, attempts: int = 5) -> None:
    """Bring the schema to the newest migration (Alembic, the migrations shipped in the package).

    Several monitor workers may open a fresh database at once: on PostgreSQL the upgrade runs under an advisory
    lock (the others wait, then find the schema at head); SQLite has no such lock, so a worker that lost the race
    to create a table tries again and finds it made. Alembic's context is process-global: one upgrade at a time
    per process."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    for attempt in range(attempts):
        try:
            with _UPGRADE_LOCK, engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            return
        except OperationalError as exc:
            if "already exists" in str(exc.orig) and attempt + 1 < attempts:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise StoreError(
                f"store {engine.url.render_as_string()}: {str(exc.orig).strip().splitlines()[0]}"
            ) from None
        except IntegrityError:
            if attempt + 1 < attempts:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class _Batch:
    records: list[dict[str, Any]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    strips: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> latest fields seen

    def __len__(self) -> int:
        return (len(self.records) + len(self.reports) + len(self.bad) + len(self.strips)
                + len(self.devices))  # fmt: skip


class SqlStore:
    """The monitor's store on a database: buffered, one transaction per flush, duplicates ignored."""

    def __init__(self, url: str, *, flush_every: int = 1024, flush_after_s: float = 0.25) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        upgrade(self.engine)
        self.dialect = self.engine.dialect.name
        self.flush_every = flush_every
        self.flush_after_s = flush_after_s
        self.lines = 0
        self.rows_inserted = 0
        self._batch = _Batch()
        self._oldest: float | None = None

    # ------------------------------------------------------------------ writing (the monitor's interface)

    def write(self, obj: Mapping[str, Any]) -> None:
        self.lines += 1
        now = time.time()
        if "fseq" in obj and isinstance(obj.get("record"), Mapping):
            self._record(obj, now)
        elif "bad" in obj:
            self._batch.bad.append({"device": obj.get("device"), "topic": obj.get("topic"),
                                    "reason": str(obj["bad"])[:512], "stored_at": now})  # fmt: skip
        elif "status" in obj and isinstance(obj.get("device"), str):
            self._device(obj["device"], obj.get("fleet"), now, status=str(obj["status"])[:32])
        elif isinstance(obj.get("strip"), Mapping):
            self._strip(obj, now)
        else:
            for kind in REPORT_KINDS:
                if isinstance(obj.get(kind), Mapping) and isinstance(obj.get("device"), str):
                    self._batch.reports.append({"device": obj["device"], "kind": kind, "body": dict(obj[kind]),
                                                "stored_at": now})  # fmt: skip
                    self._device(obj["device"], obj.get("fleet"), now)
                    break
        self._oldest = self._oldest or now
        if len(self._batch) >= self.flush_every or now - self._oldest >= self.flush_after_s:
            self.flush()

    def _device(self, device: str, fleet: Any, now: float, **fields: Any) -> None:
        row = self._batch.devices.setdefault(device, {"fleet": fleet if isinstance(fleet, str) else None})
        if isinstance(fleet, str):
            row["fleet"] = fleet
        row["last_seen"] = now
        row.update({k: v for k, v in fields.items() if v is not None})

    def _record(self, obj: Mapping[str, Any], now: float) -> None:
        device, fseq, body = str(obj["device"]), int(obj["fseq"]), dict(obj["record"])
        kind = str(obj.get("kind") or body.get("type") or "?")
        ts = _num(body.get("timestamp"))
        self._batch.records.append({
            "device": device, "fseq": fseq, "kind": kind, "ts": ts, "sent_at": _num(obj.get("sent_at")),
            "arrival_at": _num(obj.get("arrival_at")), "late": bool(obj.get("late", False)), "body": body,
            "stored_at": now,
        })  # fmt: skip
        extra: dict[str, Any] = {"link": obj.get("link")}
        if kind in ("seed_event", "gate_event"):
            self._batch.lifecycle.append({
                "device": device, "fseq": fseq, "ts": ts, "site": int(body.get("site", 0)),
                "kernel_id": int(body.get("kernel_id", 0)), "event": "transition" if kind == "seed_event" else "gate",
                "src": body.get("src"), "dst": body.get("dst"), "gate": body.get("gate"), "passed": body.get("passed"),
                "reason": body.get("reason"), "metric": _num(body.get("metric")), "stored_at": now,
            })  # fmt: skip
        elif kind == "anomaly":
            self._batch.alerts.append({
                "device": device, "fseq": fseq, "ts": ts, "kind": str(body.get("kind")),
                "severity": str(body.get("severity")), "duration_ms": body.get("duration_ms"),
                "confidence": _num(body.get("confidence")), "stored_at": now,
            })  # fmt: skip
        elif kind == "device_status":
            extra.update(battery_pct=body.get("battery_pct"), firmware_version=body.get("firmware_version"))
        self._device(device, obj.get("fleet"), now, **extra)

    def _strip(self, obj: Mapping[str, Any], now: float) -> None:
        body = obj["strip"]
        device = str(obj.get("device") or body.get("device"))
        fs, samples = _num(body.get("fs")), body.get("samples")
        if fs is None or not isinstance(samples, int) or not isinstance(body.get("nonce"), str):
            self._batch.bad.append({"device": device, "topic": None, "reason": "strip without fs/samples/nonce",
                                    "stored_at": now})  # fmt: skip
            return
        self._batch.strips.append({"device": device, "nonce": body["nonce"][:64], "fs": fs, "samples": samples,
                                   "sealed": dict(body), "stored_at": now})  # fmt: skip
        self._device(device, obj.get("fleet"), now)

    def _insert_ignore(self, conn: Any, table: Table, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).on_conflict_do_nothing()
        result = conn.execute(stmt, list(rows))
        return int(result.rowcount or 0) if result.rowcount and result.rowcount > 0 else 0

    def _upsert_devices(self, conn: Any, rows: dict[str, dict[str, Any]]) -> None:
        """New devices inserted, every device's row updated where this batch knows better: two statements
        whatever the batch holds (a device per statement would cost more than the records)."""
        if not rows:
            return
        self._insert_ignore(conn, devices, [
            {"device": d, "fleet": r.get("fleet") or "default", "first_seen": r["last_seen"], "last_seen": r["last_seen"]}
            for d, r in rows.items()
        ])  # fmt: skip
        cols = ("fleet", "link", "status", "battery_pct", "firmware_version")
        stmt = (
            update(devices)
            .where(devices.c.device == bindparam("b_device"))
            .values(
                last_seen=func.max(devices.c.last_seen, bindparam("b_last_seen"))
                if self.dialect == "sqlite"
                else func.greatest(devices.c.last_seen, bindparam("b_last_seen")),
                **{c: func.coalesce(bindparam(f"b_{c}", type_=devices.c[c].type), devices.c[c]) for c in cols},
            )
        )
        conn.execute(stmt, [{"b_device": d, "b_last_seen": r["last_seen"], **{f"b_{c}": r.get(c) for c in cols}}
                            for d, r in rows.items()])  # fmt: skip

    def flush(self) -> None:
        batch, self._batch, self._oldest = self._batch, _Batch(), None
        if not len(batch) and not batch.lifecycle and not batch.alerts:
            return
        try:
            with self.engine.begin() as conn:
                self._upsert_devices(conn, batch.devices)
                self.rows_inserted += self._insert_ignore(conn, records, batch.records)
                self._insert_ignore(conn, lifecycle, batch.lifecycle)
                self._insert_ignore(conn, alerts, batch.alerts)
                self._insert_ignore(conn, strips, batch.strips)
                if batch.reports:
                    conn.execute(reports.insert(), batch.reports)
                if batch.bad:
                    conn.execute(bad_messages.insert(), batch.bad)
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.safe_url}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        self.flush()
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # ------------------------------------------------------------------ reading back

    def resume_rows(self) -> Iterator[dict[str, Any]]:
        """What a restarted monitor needs: every stored (device, fseq) with the device's fleet and link."""
        q = select(records.c.device, records.c.fseq, devices.c.fleet, devices.c.link).join(
            devices, devices.c.device == records.c.device, isouter=True
        )
        with self.engine.connect() as conn:
            for device, fseq, fleet, link in conn.execute(q):
                yield {"device": device, "fseq": int(fseq), "fleet": fleet or "default", "link": link or "?"}

    def count(self, table: Table, device: str | None = None) -> int:
        q = select(func.count()).select_from(table)
        if device is not None:
            q = q.where(table.c.device == device)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def fseqs(self, device: str) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(records.c.fseq).where(records.c.device == device).order_by(records.c.fseq))
            return [int(r) for r in rows.scalars()]

    # ------------------------------------------------------------------ retention and erasure

    def purge_older_than(self, days: float, *, now: float | None = None) -> dict[str, int]:
        """Delete every row stored more than ``days`` ago (devices stay: they are the fleet's inventory)."""
        if days < 0:
            raise StoreError(f"retention {days} days: must be >= 0")
        cutoff = (time.time() if now is None else now) - days * DAY_S
        self.flush()
        out: dict[str, int] = {}
        with self.engine.begin() as conn:
            for table in PER_DEVICE:
                out[table.name] = int(conn.execute(delete(table).where(table.c.stored_at < cutoff)).rowcount or 0)
        return out

    def assign_patient(self, device: str, patient: str) -> None:
        self.flush()
        with self.engine.begin() as conn:
            done = conn.execute(update(devices).where(devices.c.device == device).values(patient=patient)).rowcount
        if not done:
            raise StoreError(f"device {device!r} is not in the store")

    def erase_device(self, device: str) -> dict[str, int]:
        """Every row of ``device``, its device row included (a data subject's erasure request)."""
        self.flush()
        out: dict[str, int] = {}
        with self.engine.begin() as conn:
            for table in (*PER_DEVICE, devices):
                out[table.name] = int(conn.execute(delete(table).where(table.c.device == device)).rowcount or 0)
        return out

    def erase_patient(self, patient: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            names = list(conn.execute(select(devices.c.device).where(devices.c.patient == patient)).scalars())
        total: dict[str, int] = {}
        for device in names:
            for table, n in self.erase_device(device).items():
                total[table] = total.get(table, 0) + n
        return total


def open_store(url: str, **kwargs: Any) -> SqlStore:
    return SqlStore(url, **kwargs)
