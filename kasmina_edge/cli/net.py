"""`kasmina-edge broker`, `monitor`, `send` and `ota`: the cloud side of the telemetry path.

    kasmina-edge broker [--port 1883]                       embedded amqtt broker on 127.0.0.1
    kasmina-edge monitor --mqtt mqtt://127.0.0.1:1883 [--json] [--store runs/monitor.jsonl] [--seconds N]
      (a live stream: under --json one JSON line per record, then a summary line)
    kasmina-edge send patch-01 pause|resume|request-strip|set [KEY=VALUE ...] --mqtt URL
    kasmina-edge ota bundle.kedge --device patch-01 --mqtt URL

Heavy or optional parts (amqtt, paho) are imported inside the commands.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import EXIT_CHECK_FAILED, emit, err_console, error_exit, human, json_option


def broker(
    port: int = typer.Option(1883, "--port", help="TCP port on 127.0.0.1 (1-65535).", callback=checks.tcp_port),
    seconds: float = typer.Option(
        None, "--seconds", help="Stop after this many seconds (default: until Ctrl-C).",
        callback=checks.positive_seconds,
    ),
    mosquitto_example: Path = typer.Option(
        None, "--mosquitto-example",
        help="Write the production Mosquitto example (TLS-only listener, password file, per-device ACL) into "
        "this folder and stop: the embedded broker is for a laptop only.",
    ),
    as_json: bool = json_option(),
) -> None:
    """Run an embedded MQTT broker (amqtt) on loopback for a laptop; Ctrl-C stops it.
    --json: one JSON line when it listens ({"url": ...}), or the files --mosquitto-example wrote."""
    console = human(as_json)
    _quiet_reachability_probes()
    if mosquitto_example is not None:
        from kasmina_edge.net.credentials import EXAMPLE_FILES, example_config

        mosquitto_example.mkdir(parents=True, exist_ok=True)
        for name in EXAMPLE_FILES:
            (mosquitto_example / name).write_text(example_config(name), encoding="utf-8")
            console.print(f"wrote {mosquitto_example / name}")
        console.print("see the comments in mosquitto.conf; SECURITY.md says what each part protects")
        if as_json:
            emit({"wrote": [str(mosquitto_example / name) for name in EXAMPLE_FILES]})
        return
    from kasmina_edge.net.broker import EmbeddedBroker

    with EmbeddedBroker(port) as b:
        console.print(f"[green]broker[/] listening on {b.url} (loopback only, anonymous); Ctrl-C stops it")
        if as_json:
            sys.stdout.write(json.dumps({"url": b.url, "port": port, "seconds": seconds}) + "\n")
            sys.stdout.flush()
        deadline = time.monotonic() + seconds if seconds else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            console.print("stopping broker")


_USER_HELP = "Broker user name (or $KASMINA_MQTT_USER)."
_PASSWORD_HELP = "File whose first line is the broker password (or $KASMINA_MQTT_PASSWORD); never in the URL."


def _auth(mqtt: str, ca: Path | None, cert: Path | None, key: Path | None, user: str | None,
          password_file: Path | None) -> Any:
    """TLS files and credentials from the options or the environment (a password in the URL is refused)."""
    from kasmina_edge.net.credentials import resolve_auth

    return resolve_auth(mqtt, ca=ca, cert=cert, key=key, user=user, password_file=password_file)


MONITOR_COLUMNS = (
    "device", "link", "status", "records", "missing", "dropped", "dup", "bad", "loss", "airtime/h", "duty left",
    "latency p50", "battery", "seed stages",
)  # fmt: skip


def _quiet_reachability_probes() -> None:
    """The other commands check a broker answers before they speak MQTT (connect, close): amqtt logs each such
    probe as an error ('No data from ...'). Not an error here; KASMINA_VERBOSE=1 (--verbose) shows them."""
    import logging
    import os

    class Probe(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            probe = msg.startswith("No data from") or (msg.startswith("Failed to initialize client session")
                                                       and "No data" in msg)  # fmt: skip
            return bool(os.environ.get("KASMINA_VERBOSE")) or not probe

    logging.getLogger("amqtt.broker").addFilter(Probe())


def _monitor_table(summary: dict[str, Any], width: int = 80) -> Table:
    """One row per device where the terminal is wide enough; else one column (or one block) per device."""
    from kasmina_edge.cli.tables import adaptive

    rows = []
    for name, d in summary["devices"].items():
        duty = d["duty_cycle_left"]
        lat = d["link_latency_median_s"]
        rows.append([
            name,
            d["link"],
            d["status"],
            f"{d['records']:,}",
            str(d["missing"]),
            str(d["dropped_by_device"]),
            str(d["duplicates"]),
            str(d["bad_frames"]),
            f"{100 * d['uplink_loss']:.1f} %",
            f"{d['airtime_last_hour_s']:.1f} s",
            "-" if duty is None else f"{100 * duty:.0f} %",
            "-" if lat is None else f"{lat:.3f} s",
            "-" if d["battery_pct"] is None else f"{d['battery_pct']} %",
            " ".join(f"{k}:{v}" for k, v in sorted(d["stages"].items())) or "-",
        ])  # fmt: skip
    title = (
        f"monitor: {summary['messages']:,} messages, {summary['records']:,} records, "
        f"{summary['duplicates']:,} duplicates, {summary['bad_messages']:,} bad"
    )
    right = [c for c in MONITOR_COLUMNS if c not in ("device", "link", "status", "seed stages")]
    return adaptive(title, MONITOR_COLUMNS, rows, width=width, right=right)


def run_monitor(
    con: Console,
    url: str,
    *,
    fleet: str = "+",
    store: Path | str | None = None,
    as_json: bool = False,
    seconds: float | None = None,
    tls: Any = None,
    username: str | None = None,
    password: str | None = None,
    live: bool = True,
) -> dict[str, Any]:
    from kasmina_edge.net.cloud import MonitorService
    from kasmina_edge.net.monitor import StoredRecord

    def on_record(rec: StoredRecord) -> None:
        if as_json:
            sys.stdout.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
            sys.stdout.flush()

    def log_bad(msg: str) -> None:
        err_console.print(f"[yellow]bad frame[/] {msg}", highlight=False)

    service = MonitorService(
        url,
        fleet=fleet,
        store=store,
        on_record=on_record,
        log_bad=log_bad,
        tls=tls,
        username=username,
        password=password,
    )
    service.start()
    deadline = time.monotonic() + seconds if seconds else None
    live_ctx: Any = None
    if live and not as_json and con.is_terminal:
        from rich.live import Live

        live_ctx = Live(_monitor_table(service.summary(), con.width), console=con, refresh_per_second=2)
        live_ctx.start()
    else:
        err_console.print(
            f"monitor subscribed to fleet {fleet!r} on {url}" + (f", storing to {store}" if store else "")
        )
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.25)
            if live_ctx is not None:
                live_ctx.update(_monitor_table(service.summary(), con.width))
    except KeyboardInterrupt:
        pass
    finally:
        if live_ctx is not None:
            live_ctx.stop()
        service.close()
    summary = service.monitor.summary()
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary}, separators=(",", ":"), default=str) + "\n")
    else:
        con.print(_monitor_table(summary, con.width))
    return summary


def monitor(
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="Broker URL (mqtt:// or mqtts://)."),
    fleet: str = typer.Option("+", "--fleet", help="Fleet to watch ('+': every fleet)."),
    store: str = typer.Option(
        "runs/monitor.jsonl", "--store",
        help="JSON-lines file (appended; read back on start) or a database URL (sqlite:///FILE, postgresql://...).",
        callback=checks.monitor_store,
    ),
    as_json: bool = json_option(),
    seconds: float = typer.Option(
        None, "--seconds", help="Stop after this many seconds (default: until Ctrl-C).",
        callback=checks.positive_seconds,
    ),
    ca: Path = typer.Option(None, "--ca", help="CA certificate for mqtts:// (or $KASMINA_MQTT_CA).", callback=checks.input_file),
    cert: Path = typer.Option(None, "--cert", help="Client certificate for mqtts://.", callback=checks.input_file),
    key: Path = typer.Option(None, "--key", "--tls-key", help="Client certificate's private key.", callback=checks.input_file),
    user: str = typer.Option(None, "--user", help=_USER_HELP),
    password_file: Path = typer.Option(None, "--password-file", help=_PASSWORD_HELP, callback=checks.input_file),
) -> None:
    """Live table of devices, decoded telemetry, seed stages and link budget; everything to a JSON-lines store.
    A live stream: under --json one JSON line per record, then {"summary": ...} as the last line."""
    auth = _auth(mqtt, ca, cert, key, user, password_file)
    checks.broker_reachable(mqtt)  # refused, unresolvable and timed out read differently
    run_monitor(
        human(as_json), mqtt, fleet=fleet, store=store, as_json=as_json, seconds=seconds, tls=auth.tls,
        username=auth.username, password=auth.password,
    )


def _operator_audit(path: Path | None) -> Path:
    import os

    if path is not None:
        return path
    env = os.environ.get("KASMINA_AUDIT_DIR")
    root = Path(env) if env else Path.home() / ".local" / "share" / "kasmina-edge" / "audit"
    return root / "operator.jsonl"


def _operator_log(path: Path | None) -> Any:
    """The operator's audit log, keyed with the operator's audit key (made on first use)."""
    from kasmina_edge.net.audit import AuditLog
    from kasmina_edge.net.commands import operator_audit_key

    return AuditLog(_operator_audit(path), key=operator_audit_key())


audit_app = typer.Typer(help="Audit logs: keyed hash chains with a signed head.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    log: Path = typer.Argument(None, help="Audit log (default: the operator's, or the device's with --device)."),
    device: str = typer.Option(None, "--device", help="Verify an emulated device's log: emu://NAME."),
    key: Path = typer.Option(None, "--key", help="Audit key file (default: the operator's, or the device's)."),
    as_json: bool = json_option(),
) -> None:
    """Check every entry's keyed hash and the signed head: edits, reordering and truncation are one line
    and exit 1 (the check failed); a missing log or key exits 2."""
    from kasmina_edge.cli.common import fail
    from kasmina_edge.net.audit import AuditError, read_key, verify_report
    from kasmina_edge.net.commands import OPERATOR_AUDIT_KEY, operator_keys_dir

    if device is not None:
        from firmware_sim.device import DeviceAddress
        from firmware_sim.telemetry import AUDIT_FILE, AUDIT_KEY_FILE

        root = DeviceAddress.parse(device).path
        log = log or root / AUDIT_FILE
        key = key or root / AUDIT_KEY_FILE
    log = log or _operator_audit(None)
    key = key or operator_keys_dir() / OPERATOR_AUDIT_KEY
    if not log.exists():
        fail(f"{log}: no such audit log")
    try:
        audit_key = read_key(key)
    except AuditError as exc:  # no key, or not a key: the user's to fix
        fail(str(exc))
    try:
        report = verify_report(log, audit_key)
    except AuditError as exc:
        error_exit(f"audit log does not verify: {exc}", EXIT_CHECK_FAILED)
    if as_json:
        emit({"verified": True, "log": str(log), "entries": report.entries, "key": str(key)})
        return
    human(False).print(
        f"[green]verified[/] {log}: {report.entries} entries, keyed chain and signed head intact (key {key})"
    )


def send(
    device: str = typer.Argument(..., help="Device name (patch-01)."),
    name: str = typer.Argument(..., help="pause, resume, request-strip, set, reboot or terminate-seed (site=N)."),
    args: list[str] = typer.Argument(
        None, help="KEY=VALUE arguments (set summary_every_s=600; request-strip seconds=2)."
    ),
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="Broker URL."),
    fleet: str = typer.Option("default", "--fleet", help="The device's fleet."),
    key: Path = typer.Option(
        None, "--key", help="Command key file (default: the operator key store).", callback=checks.input_file
    ),
    timeout: float = typer.Option(
        30.0, "--timeout", help="Seconds to wait for the device's acknowledgement.", callback=checks.positive_seconds
    ),
    audit: Path = typer.Option(
        None, "--audit", help="Operator audit log (default ~/.local/share/kasmina-edge/audit/operator.jsonl)."
    ),
    ca: Path = typer.Option(None, "--ca", help="CA certificate for mqtts:// (or $KASMINA_MQTT_CA).", callback=checks.input_file),
    cert: Path = typer.Option(None, "--cert", help="Client certificate for mqtts:// (with --tls-key).", callback=checks.input_file),
    tls_key: Path = typer.Option(None, "--tls-key", help="Client certificate's private key.", callback=checks.input_file),
    user: str = typer.Option(None, "--user", help=_USER_HELP),
    password_file: Path = typer.Option(None, "--password-file", help=_PASSWORD_HELP, callback=checks.input_file),
    as_json: bool = json_option(),
) -> None:
    """Send a signed command; the device verifies it, acts, and acknowledges (both sides audit it)."""
    from kasmina_edge.cli.common import fail
    from kasmina_edge.net.commands import operator_key, parse_set_args, send_command

    parsed = check_command(name, parse_set_args(args or []))  # the device's schema, before a key or broker
    command_key = operator_key(device, key)
    auth = _auth(mqtt, ca, cert, tls_key, user, password_file)
    checks.broker_reachable(mqtt)
    result = send_command(
        mqtt,
        device,
        name,
        parsed,
        command_key,
        _operator_log(audit),
        fleet=fleet,
        timeout_s=timeout,
        tls=auth.tls,
        username=auth.username,
        password=auth.password,
    )
    if result.status == "timeout":
        fail(
            f"{name} to {device}: no acknowledgement within {timeout:.0f} s (on LoRaWAN it waits for the "
            "device's next uplink; the command stays fresh for 6 h)"
        )
    if result.status != "ok":
        reason = (result.ack or {}).get("reason", "")
        fail(f"{name} to {device}: {result.status}" + (f" ({reason})" if reason else ""))
    detail = (result.ack or {}).get("result")
    if as_json:
        emit(result)
        return
    human(False).print(
        f"[green]{name}[/] acknowledged by {device} in {result.seconds:.2f} s"
        + (f": {_ack_detail(detail)}" if detail else ""),
        highlight=False,
    )


def check_command(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The command and its arguments against what the device accepts (its ``set`` schema), refused in one
    line before anything is signed or sent."""
    from firmware_sim.device_commands import SETTABLE, STRIP_MAX_S
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.net.commands import OPERATOR_COMMANDS

    if name not in OPERATOR_COMMANDS:
        raise KasminaError(f"unknown command {name!r}: choose one of {', '.join(OPERATOR_COMMANDS)}")
    allowed: dict[str, tuple[float, float]] = {
        "pause": {}, "resume": {}, "request-strip": {"seconds": (0.0, STRIP_MAX_S)}, "set": dict(SETTABLE),
        "reboot": {}, "terminate-seed": {"site": (0.0, 63.0)},
    }[name]  # fmt: skip
    if name == "terminate-seed" and "site" not in args:
        raise KasminaError("terminate-seed needs site=N (the seed site whose kernel goes)")
    if name == "set" and not args:
        raise KasminaError(f"set needs KEY=VALUE (settable: {', '.join(sorted(allowed))})")
    for k, v in args.items():
        if k not in allowed:
            known = f"settable: {', '.join(sorted(allowed))}" if allowed else "it takes no arguments"
            raise KasminaError(f"{name} {k}: not a setting the device accepts ({known})")
        lo, hi = allowed[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v or not lo <= v <= hi:
            raise KasminaError(f"{name} {k}={v!r}: must be a number in [{lo:g}, {hi:g}]")
    return args


def _ack_detail(detail: Any) -> str:
    """``{'adapt': False}`` → ``adapt=false``: what the device reported, not a Python dict."""
    if not isinstance(detail, dict):
        return str(detail)
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in detail.items())


def ota(
    bundle: Path = typer.Argument(
        ..., help="Signed bundle (.kedge): a full image or kernels only.", callback=checks.input_file
    ),
    device: str = typer.Option(..., "--device", help="Device name (patch-01)."),
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="Broker URL."),
    link: str = typer.Option(
        "wifi", "--link", help="The device's network profile (sizes chunks or fragments)."
    ),
    fleet: str = typer.Option("default", "--fleet", help="The device's fleet."),
    keys: Path = typer.Option(
        None, "--keys", help="Keys folder that verifies the bundle before it is offered.", callback=checks.input_path
    ),
    key: Path = typer.Option(
        None, "--key", help="Command key file that signs the offer (default: the key store).",
        callback=checks.input_file,
    ),
    timeout: float = typer.Option(
        300.0, "--timeout", help="Seconds to wait for the device's final report.", callback=checks.positive_seconds
    ),
    audit: Path = typer.Option(None, "--audit", help="Operator audit log."),
    ca: Path = typer.Option(None, "--ca", help="CA certificate for mqtts:// (or $KASMINA_MQTT_CA).", callback=checks.input_file),
    cert: Path = typer.Option(None, "--cert", help="Client certificate for mqtts:// (with --tls-key).", callback=checks.input_file),
    tls_key: Path = typer.Option(None, "--tls-key", help="Client certificate's private key.", callback=checks.input_file),
    user: str = typer.Option(None, "--user", help=_USER_HELP),
    password_file: Path = typer.Option(None, "--password-file", help=_PASSWORD_HELP, callback=checks.input_file),
    as_json: bool = json_option(),
) -> None:
    """Offer a bundle; the device pulls it in link-sized pieces, verifies, flashes its inactive slot and reports
    (--json: no progress bar, the result as one JSON document)."""
    console = human(as_json)
    from kasmina_edge.cli.common import fail
    from kasmina_edge.core import catalog
    from kasmina_edge.net.commands import operator_key
    from kasmina_edge.net.ota import plan_transfer, run_ota

    profile = catalog.network(link.partition(":")[0])
    check_ota_bundle(bundle, device, keys)  # verified and matched to the device before any transfer
    command_key = operator_key(device, key)
    auth = _auth(mqtt, ca, cert, tls_key, user, password_file)
    checks.broker_reachable(mqtt)
    plan = plan_transfer(profile, bundle.stat().st_size)
    link_time = "under 1 s" if plan.estimate_s < 1 else f"about {plan.estimate_s:,.0f} s"
    console.print(
        f"offering {bundle.name} ({bundle.stat().st_size:,} B) to {device} over {profile.name}: {plan.note}; "
        f"{link_time} of link time, plus the device's polling (it pulls pieces as it runs)",
        highlight=False, soft_wrap=True,
    )
    from kasmina_edge.cli.ota_progress import ota_progress

    session = secrets.randbelow(1 << 16)  # known here too: the bar watches this session's chunk requests
    with ota_progress(console, mqtt, fleet, device, session, plan.pieces, chunked=plan.mode == "chunks",
                      tls=auth.tls, username=auth.username, password=auth.password) as progress:  # fmt: skip
        result = run_ota(
            mqtt,
            device,
            bundle,
            command_key,
            profile,
            fleet=fleet,
            timeout_s=timeout,
            session=session,
            keys=keys,
            audit=_operator_log(audit),
            tls=auth.tls,
            username=auth.username,
            password=auth.password,
            on_progress=progress,
        )
    if result.status == "timeout":
        fail(
            f"ota to {device}: no final report within {timeout:.0f} s ({result.offers} offers, "
            f"{result.chunks_served} chunks served)"
        )
    rep = result.report or {}
    if result.status in ("refused", "rolled_back"):
        fail(f"ota to {device}: {result.status} ({rep.get('reason', '')}); the device keeps its current slot")
    erase = (
        f", {rep['erase_blocks']} erase blocks (a full image: {rep['full_image_blocks']})"
        if "erase_blocks" in rep
        else ""
    )
    if as_json:
        emit(result)
        return
    console.print(
        f"[green]ota {result.status}[/] on {device} in {result.seconds:.1f} s: "
        f"{rep.get('pieces')} pieces, {rep.get('refused_pieces', 0)} refused{erase}"
        + (f"; live at the device's {rep['live']}" if rep.get("live") else "")
    )


def check_ota_bundle(bundle: Path, device: str, keys: Path | None) -> None:
    """The bundle verifies here, and (where the device is an emulator of this home) is for the device's target."""
    from firmware_sim.device import DeviceAddress, EmulatedDevice
    from kasmina_edge.contracts.bundle import BundleError, read_bundle
    from kasmina_edge.contracts.errors import KasminaError

    try:
        manifest = read_bundle(bundle, keys).manifest
    except BundleError as exc:
        raise KasminaError(f"{bundle}: {exc}") from None
    try:
        local = EmulatedDevice(DeviceAddress.parse(f"emu://{device}"))
    except KasminaError:
        return  # not a name an emulator can have: a real device checks for itself
    prof = local.profile() if local.exists else None
    if prof is not None and manifest.target not in prof.targets:
        raise KasminaError(
            f"{bundle}: built for target {manifest.target}; device {device} ({prof.name}) runs "
            f"{', '.join(prof.targets)}: nothing offered"
        )


def demo_step(con: Console, workdir: Path) -> None:
    """A simulated patch on LoRaWAN EU868 DR3 publishes two hours of telemetry (beats, a VT run, a seed episode)
    through the embedded broker; the monitor decodes it; a signed `pause` goes back and is acknowledged."""
    from firmware_sim.telemetry import RuntimeTelemetry
    from kasmina_edge.contracts.events import BeatClassified, SeedTransition
    from kasmina_edge.contracts.lifecycle import Stage, TransitionEvent
    from kasmina_edge.core import catalog
    from kasmina_edge.net.audit import AuditLog
    from kasmina_edge.net.broker import EmbeddedBroker, free_port
    from kasmina_edge.net.cloud import MonitorService
    from kasmina_edge.net.commands import provision_device_key, send_command
    from kasmina_edge.net.mqtt import MqttDeviceTransport
    from kasmina_edge.net.session import DeviceLink

    profile = catalog.network("lorawan-eu868-dr3")
    with EmbeddedBroker(free_port()) as broker:
        service = MonitorService(broker.url, fleet="demo", store=workdir / "monitor.jsonl").start()
        transport = MqttDeviceTransport(broker.url, "demo", "patch-01")
        transport.connect()
        link = DeviceLink("patch-01", profile, transport)
        tel = RuntimeTelemetry(link, downlinks=transport.drain)
        key = provision_device_key(workdir / "patch-01", "patch-01", workdir / "command-keys")
        tel.enable_commands(key, AuditLog(workdir / "patch-01" / "audit.jsonl"))
        t, beat, path = (
            0.0,
            0.0,
            [Stage.DORMANT, Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY],
        )
        while t < 7200:
            while beat <= t:
                vt = 3600 <= beat < 3602
                tel.on_event(BeatClassified(round(beat * 360), beat, "V" if vt else "N", 0.9))
                beat += 0.4 if vt else 0.8
            if t == 1800:
                for a, b in zip(path, path[1:], strict=False):
                    move = TransitionEvent("emg", a, b, "condition_detected", t)
                    tel.on_event(SeedTransition(move, site=1, kernel="emg", window=0, t=t))
            tel.tick(t)
            t += 2.0
        stop = threading.Event()

        def keep_ticking() -> None:  # the device goes on sending, so Class A downlinks have a window
            now = t
            while not stop.is_set():
                now += 30.0
                tel.on_event(BeatClassified(round(now * 360), now, "N", 0.9))
                tel.tick(now)
                time.sleep(0.05)

        ticker = threading.Thread(target=keep_ticking, daemon=True)
        ticker.start()
        result = send_command(
            broker.url,
            "patch-01",
            "pause",
            {},
            key,
            AuditLog(workdir / "operator-audit.jsonl"),
            fleet="demo",
            timeout_s=15,
        )
        stop.set()
        ticker.join(5)
        time.sleep(0.5)
        transport.close()
        time.sleep(0.3)
        summary = service.summary()
        service.close()
    con.print(_monitor_table(summary, con.width))
    dev = summary["devices"].get("patch-01", {})
    con.print(
        f"monitor received {dev.get('records', 0)} records in {dev.get('uplinks', 0)} uplinks "
        f"({dev.get('airtime_s', 0):.2f} s airtime on {profile.name}); signed pause: {result.status} "
        f"after {result.seconds:.1f} s; store {workdir / 'monitor.jsonl'}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.command(name="broker", help="Embedded MQTT broker on 127.0.0.1 (amqtt).")(broker)
    app.command(name="monitor", help="Live telemetry monitor: decode, dedup, reorder, link stats, store.")(
        monitor
    )
    app.command(name="send", help="Signed command to a device (pause, resume, request-strip, set, reboot, terminate-seed).")(send)
    app.command(
        name="ota", help="Over-the-air update: offer, link-sized transfer, verify, A/B flash, report."
    )(ota)
