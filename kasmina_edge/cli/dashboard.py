"""`kasmina-edge dashboard`: the live web dashboard over the telemetry store.

    kasmina-edge dashboard --mqtt mqtt://127.0.0.1:1883 [--store sqlite:///runs/dashboard.sqlite] [--port 8080]
        [--host 127.0.0.1] [--fleet F] [--bundle B.kedge] [--seconds N] [--json]

The dashboard runs the monitor (subscribed to the fleet, answering with acks) writing to the store, and serves
the pages on http://HOST:PORT. FastAPI, uvicorn and SQLAlchemy (the ``server`` extra) are imported inside the
command.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, err_console, human, json_option
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.optional import require

DEFAULT_STORE = "sqlite:///runs/dashboard.sqlite"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STORE_HELP = "Telemetry store: sqlite:///FILE (made on first use) or postgresql://USER@HOST:PORT/DB."


def require_server(purpose: str) -> None:
    """The ``server`` extra, or one line naming it (exit 3: not available here)."""
    for module in ("fastapi", "sqlalchemy", "uvicorn"):
        require(module, purpose)


def dashboard(
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="Broker URL (mqtt:// or mqtts://)."),
    store: str = typer.Option(DEFAULT_STORE, "--store", help=STORE_HELP),
    port: int = typer.Option(8080, "--port", help="HTTP port (1-65535).", callback=checks.tcp_port),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (loopback unless you mean it)."),
    fleet: str = typer.Option("+", "--fleet", help="Fleet to watch ('+': every fleet)."),
    bundle: Path = typer.Option(
        None, "--bundle", help="The devices' bundle: its build-time activation statistics head the drift panel.",
        callback=checks.input_file,
    ),
    seconds: float = typer.Option(
        None, "--seconds", help="Stop after this many seconds (default: until Ctrl-C).",
        callback=checks.positive_seconds,
    ),
    read_only: bool = typer.Option(
        False, "--read-only",
        help="Serve the store only: no subscription, no acks (monitor workers own them); --mqtt only sends the "
        "strip requests.",
    ),
    as_json: bool = json_option(),
    ca: Path = typer.Option(None, "--ca", help="CA certificate for mqtts://.", callback=checks.input_file),
    cert: Path = typer.Option(None, "--cert", help="Client certificate for mqtts://.", callback=checks.input_file),
    key: Path = typer.Option(None, "--key", help="Client certificate's private key.", callback=checks.input_file),
    user: str = typer.Option(None, "--user", help="MQTT user name."),
    password_file: Path = typer.Option(
        None, "--password-file", help="File holding the MQTT password.", callback=checks.input_file
    ),
) -> None:
    """Live web dashboard: fleet, per-device beat classes, alerts, seed lifecycle, drift, link budget, ECG strips.
    Pages update by server push; every asset is served by the package (works offline)."""
    from kasmina_edge.cli.net import _auth, _operator_audit
    from kasmina_edge.net.broker import port_free

    require_server("the dashboard")
    con = human(as_json)
    auth = _auth(mqtt, ca, cert, key, user, password_file)
    if not read_only:
        checks.broker_reachable(mqtt)
    if not port_free(port, host if host != "localhost" else "127.0.0.1"):
        raise KasminaError(f"--port {port}: already in use on {host} (another dashboard running?)")
    if host not in LOOPBACK:
        err_console.print(
            f"[yellow]warning:[/] serving on {host}: anyone who reaches it sees patient telemetry and can request "
            "strips; put it behind an authenticating proxy"
        )
    from kasmina_edge.dashboard.server import DashboardBackend, DashboardServer

    backend = DashboardBackend(
        mqtt, store, read_only=read_only, fleet=fleet, audit_path=_operator_audit(None), bundle=bundle, tls=auth.tls,
        username=auth.username, password=auth.password,
    )  # fmt: skip
    backend.start()
    server = DashboardServer(backend, host, port)
    try:
        server.start()
        con.print(f"dashboard on [bold]{server.url}[/] (broker {mqtt}, store {backend.store.safe_url}); Ctrl-C stops")  # type: ignore[attr-defined]
        end = time.monotonic() + seconds if seconds else None
        while end is None or time.monotonic() < end:
            time.sleep(0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        summary: dict[str, Any] = backend.summary()
        backend.close()
    if as_json:
        emit({"url": server.url, "store": backend.store.safe_url, "messages": summary["messages"],  # type: ignore[attr-defined]
              "records": summary["records"], "devices": sorted(summary["devices"])})  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command(name="dashboard", help="Live web dashboard over the telemetry store (fleet, devices, seeds, strips).")(
        dashboard
    )
