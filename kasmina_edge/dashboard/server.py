"""The dashboard's back end: the monitor subscribed to the fleet, writing to the store, and a change counter.

:class:`DashboardBackend` runs a :class:`~kasmina_edge.net.cloud.MonitorService` whose store is the database
(``--store URL``; an SQLite file by default). Every MQTT message bumps a version number and marks its device as
changed; a flusher thread writes the store's buffered rows at least every ``flush_s`` (so what the page is told
has changed is already in the database when the page asks) and the Server-Sent Events stream
(:mod:`kasmina_edge.dashboard.app`) tells browsers which devices changed. Read-only (past one machine, where
monitor workers own the subscription and the acks) it subscribes to nothing and polls the store instead
(:class:`StorePoller`). :class:`DashboardServer` serves the app with uvicorn in a thread (tests, ``fleet`` tools)
or in the foreground (the CLI).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.net import topics
from kasmina_edge.net.cloud import MonitorService
from kasmina_edge.net.monitor import Monitor
from kasmina_edge.net.mqtt import TlsFiles


@dataclass
class Changes:
    """A version number and the devices changed at each version (bounded: old entries fall off)."""

    version: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def bump(self, device: str) -> None:
        with self.cond:
            self.version += 1
            self.log.append((self.version, device))
            if len(self.log) > 10_000:
                del self.log[:5_000]
            self.cond.notify_all()

    def since(self, version: int) -> tuple[int, list[str]]:
        with self.cond:
            return self.version, sorted({d for v, d in self.log if v > version})


class _Service(MonitorService):
    """The monitor service that also reports each message's device to the dashboard."""

    def __init__(self, *args: Any, changes: Changes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changes = changes
        self.pending: set[str] = set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        super()._on_message(topic, payload)
        with contextlib.suppress(topics.TopicError):
            self.pending.add(topics.parse(topic).device)


class StorePoller:
    """Read-only dashboards learn what changed from the store itself: every row a monitor worker writes moves its
    device's ``last_seen`` (in the same transaction), so a device whose ``last_seen`` moved has news."""

    def __init__(self, engine: Any, window_s: float = 30.0) -> None:
        from sqlalchemy import select

        from kasmina_edge.net.store import devices

        self.engine = engine
        self.window_s = window_s  # rows stamped by a writer up to this much behind our clock are still seen
        with engine.connect() as conn:
            self.seen: dict[str, float] = dict(conn.execute(select(devices.c.device, devices.c.last_seen)).all())

    def changed(self) -> list[str]:
        from sqlalchemy import select

        from kasmina_edge.net.store import devices

        with self.engine.connect() as conn:
            rows = conn.execute(
                select(devices.c.device, devices.c.last_seen).where(devices.c.last_seen > time.time() - self.window_s)
            ).all()
        out = [d for d, seen in rows if self.seen.get(d) != seen]
        self.seen.update(dict(rows))
        return out


class DashboardBackend:
    def __init__(
        self,
        mqtt: str,
        store: str,
        *,
        read_only: bool = False,
        fleet: str = "+",
        flush_s: float = 0.2,
        audit_path: Path | None = None,
        bundle: Path | None = None,
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "kasmina-dashboard",
    ) -> None:
        self.mqtt = mqtt
        self.fleet = fleet
        self.flush_s = flush_s
        self.audit_path = audit_path
        self.bundle = bundle
        self.tls, self.username, self.password = tls, username, password
        self.changes = Changes()
        self.service: _Service | None = None
        self.poller: StorePoller | None = None
        if read_only:  # the monitor workers own the subscription and the acks: read the store, poll it
            from kasmina_edge.net.store import open_store

            self.store: Any = open_store(store)
            self.poller = StorePoller(self.store.engine)
        else:
            self.service = _Service(mqtt, fleet=fleet, changes=self.changes, tls=tls, username=username,
                                    password=password, client_id=client_id)  # fmt: skip
            # the monitor writes the database (the service was built without a store: swap in the URL's)
            self.service.monitor = Monitor(store, send_ack=self.service._send_ack)
            self.store = self.service.monitor.store
        self.engine = self.store.engine
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="dashboard-flush", daemon=True)

    def start(self, timeout_s: float = 10.0) -> DashboardBackend:
        if self.service is not None:
            self.service.start(timeout_s)
        self._flusher.start()
        return self

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def flush(self) -> None:
        if self.service is None:
            assert self.poller is not None
            changed: set[str] | list[str] = self.poller.changed()
        else:
            with self.service.lock:
                self.store.flush()
                changed, self.service.pending = self.service.pending, set()
        for device in sorted(changed):
            self.changes.bump(device)

    def live(self) -> dict[str, Any]:
        """The monitor's in-memory view (link budget, duty cycle, latencies) per device; none when read-only."""
        if self.service is None:
            return {}
        return self.service.summary()["devices"]  # type: ignore[no-any-return]

    def summary(self) -> dict[str, Any]:
        if self.service is None:
            from kasmina_edge.dashboard.queries import fleet

            return {"messages": 0, "records": 0, "devices": {r["device"]: r for r in fleet(self.engine)}}
        return self.service.summary()

    def close(self) -> None:
        self._stop.set()
        if self._flusher.is_alive():
            self._flusher.join(5)
        if self.service is not None:
            self.service.close()
        else:
            self.store.close()


class DashboardServer:
    """uvicorn serving the app; ``start()`` runs it in a thread and waits until it listens."""

    def __init__(self, backend: DashboardBackend, host: str = "127.0.0.1", port: int = 8080) -> None:
        import uvicorn

        from kasmina_edge.dashboard.app import create_app

        self.backend = backend
        self.host, self.port = host, port
        config = uvicorn.Config(create_app(backend), host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> DashboardServer:
        self._thread = threading.Thread(target=self.server.run, name="dashboard-http", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError(f"the dashboard did not start listening on {self.url}")
            time.sleep(0.05)
        return self

    def run(self) -> None:
        self.server.run()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
