"""A read-only dashboard (past one machine: monitor workers own the subscription and the acks) subscribes to
nothing, notices from the store which devices changed, and serves them; no broker is needed."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, Severity
from kasmina_edge.net.broker import free_port

pytest.importorskip("fastapi", reason="the server extra is not installed")


def test_a_read_only_dashboard_sees_what_a_worker_stores(tmp_path: Path) -> None:
    from kasmina_edge.dashboard.server import DashboardBackend, DashboardServer
    from kasmina_edge.net.store import open_store

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    worker = open_store(url)  # a monitor worker elsewhere, writing the shared store
    rec = codec.to_dict(AnomalyEvent(0, 1_800_000_000, AnomalyKind.VT_RUN, Severity.CRITICAL, 0, 900, 0.9))
    worker.write({"fleet": "f", "device": "old", "fseq": 0, "kind": "anomaly", "record": rec, "link": "wifi"})
    worker.flush()
    backend = DashboardBackend(f"mqtt://127.0.0.1:{free_port()}", url, read_only=True).start()
    server = DashboardServer(backend, port=free_port()).start()
    try:
        assert backend.service is None and backend.live() == {}
        version = backend.changes.version
        worker.write({"fleet": "f", "device": "new", "fseq": 0, "kind": "anomaly", "record": rec, "link": "nb-iot"})
        worker.flush()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not backend.changes.since(version)[1]:
            time.sleep(0.05)
        assert backend.changes.since(version)[1] == ["new"]  # the device that did not change is not pushed
        with urllib.request.urlopen(server.url + "/api/fleet", timeout=5) as r:
            rows = {d["device"]: d for d in json.loads(r.read())["devices"]}
        assert sorted(rows) == ["new", "old"] and rows["new"]["critical_alerts"] == 1
        with urllib.request.urlopen(server.url + "/api/device/new", timeout=5) as r:
            assert json.loads(r.read())["alerts"][0]["kind"] == "vt_run"
    finally:
        server.stop()
        backend.close()
        worker.close()
