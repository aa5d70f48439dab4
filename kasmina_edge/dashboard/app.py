"""The dashboard web app (FastAPI): two pages, a JSON API over the store, and Server-Sent Events.

Pages: ``/`` the fleet, ``/device/{name}`` one device; they are static HTML + JS shipped in the package
(``static/``: no CDN, every asset served here) that draw their plots as inline SVG. ``/api/events`` is a
Server-Sent Events stream (sse-starlette): one ``change`` event naming the devices whose telemetry arrived,
at most every ``PUSH_S``; the page then fetches ``/api/fleet`` or ``/api/device/{name}`` again — live without
reloading. ``POST /api/device/{name}/request-strip`` sends the signed ``request-strip`` command (the operator's
key, the operator's audit log) and the strip arrives, sealed, through the monitor like any telemetry.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse

from kasmina_edge.dashboard import queries
from kasmina_edge.dashboard.server import DashboardBackend
from kasmina_edge.net import topics

STATIC = Path(__file__).with_name("static")
PUSH_S = 0.25
PING_S = 10


def _bundle_stats(path: Path | None) -> dict[str, Any] | None:
    """The bundle's build-time activation statistics per site (the drift reference), when a bundle was given."""
    if path is None:
        return None
    from kasmina_edge.contracts.bundle import read_bundle

    bundle = read_bundle(path)  # signature and hashes checked: statistics from a tampered bundle are no reference
    sites = bundle.manifest.sites
    return {
        "bundle_id": bundle.manifest.bundle_id,
        "sites": [
            {"index": s.index, "name": s.name, "channels": s.channels,
             "windows": s.activation_stats.windows if s.activation_stats else None,
             "mean_abs": (sum(abs(m) for m in s.activation_stats.mean) / len(s.activation_stats.mean))
             if s.activation_stats else None}
            for s in sites
        ],
    }  # fmt: skip


def create_app(backend: DashboardBackend) -> FastAPI:
    app = FastAPI(title="kasmina-edge dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    engine = backend.engine
    strip_requests: dict[str, str] = {}
    try:
        bundle_stats = _bundle_stats(backend.bundle)
    except Exception as exc:  # a bundle that cannot be read: the drift panel says so, the rest works
        bundle_stats = {"error": f"{backend.bundle}: {exc}"}

    @app.get("/", include_in_schema=False)
    def fleet_page() -> FileResponse:
        return FileResponse(STATIC / "fleet.html", media_type="text/html")

    @app.get("/device/{name}", include_in_schema=False)
    def device_page(name: str) -> FileResponse:
        return FileResponse(STATIC / "device.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/fleet")
    def api_fleet() -> dict[str, Any]:
        live = backend.live()
        rows = queries.fleet(engine)
        for row in rows:
            view = live.get(row["device"], {})
            row["duty_cycle_left"] = view.get("duty_cycle_left")
            row["airtime_last_hour_s"] = view.get("airtime_last_hour_s")
        return {"devices": rows, "version": backend.changes.version}

    @app.get("/api/device/{name}")
    def api_device(name: str) -> dict[str, Any]:
        data = queries.device(engine, name)
        if data is None:
            raise HTTPException(404, f"no device {name!r} in the store")
        data["live"] = backend.live().get(name)
        data["link_profile"] = _link_budget(data["device"].get("link"))
        data["bundle"] = bundle_stats
        data["strip_request"] = strip_requests.get(name)
        return data

    @app.get("/api/device/{name}/strip/{strip_id}")
    def api_strip(name: str, strip_id: int) -> dict[str, Any]:
        strip = queries.open_strip(engine, name, strip_id)
        if strip is None:
            raise HTTPException(404, f"no strip {strip_id} of {name!r}")
        return strip

    @app.post("/api/device/{name}/request-strip")
    def api_request_strip(name: str, seconds: float = 2.0) -> JSONResponse:
        try:
            topics.check_name("device", name)
        except topics.TopicError as exc:
            raise HTTPException(400, str(exc)) from None
        strip_requests[name] = "sent"
        threading.Thread(target=_send_strip_request, args=(backend, name, seconds, strip_requests), daemon=True).start()
        return JSONResponse({"device": name, "status": "sent"}, status_code=202)

    @app.get("/api/events")
    async def api_events() -> EventSourceResponse:
        async def stream() -> AsyncIterator[dict[str, Any]]:
            seen = backend.changes.version
            while True:
                await asyncio.sleep(PUSH_S)
                version, changed = backend.changes.since(seen)
                if version != seen:
                    seen = version
                    yield {"event": "change", "data": json.dumps({"version": version, "devices": changed})}

        return EventSourceResponse(stream(), ping=PING_S)

    return app


def _link_budget(link: str | None) -> dict[str, Any] | None:
    """The link's regulatory and fair-use limits, for the budget panel."""
    if not link:
        return None
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.core import catalog

    try:
        p = catalog.network(link)
    except KasminaError:
        return None
    fair = getattr(p, "fair_use", None)
    return {
        "name": p.name,
        "kind": getattr(p, "kind", None),
        "duty_cycle": getattr(p, "duty_cycle", None),
        "fair_use_airtime_s_per_day": getattr(fair, "uplink_airtime_s_per_day", None),
        "fair_use_downlinks_per_day": getattr(fair, "downlinks_per_day", None),
    }


def _send_strip_request(backend: DashboardBackend, device: str, seconds: float, status: dict[str, str]) -> None:
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.net.audit import AuditLog
    from kasmina_edge.net.commands import operator_audit_key, operator_key, send_command

    try:
        audit_path = backend.audit_path or Path("runs/dashboard-operator-audit.jsonl")
        result = send_command(
            backend.mqtt, device, "request-strip", {"seconds": seconds}, operator_key(device),
            AuditLog(audit_path, key=operator_audit_key()), fleet=_fleet_of(backend, device), timeout_s=30.0,
            tls=backend.tls, username=backend.username, password=backend.password,
        )  # fmt: skip
        status[device] = result.status
    except KasminaError as exc:
        status[device] = f"failed: {exc}"


def _fleet_of(backend: DashboardBackend, device: str) -> str:
    if backend.fleet != "+":
        return backend.fleet
    for row in queries.fleet(backend.engine):
        if row["device"] == device:
            return str(row["fleet"])
    return topics.DEFAULT_FLEET
