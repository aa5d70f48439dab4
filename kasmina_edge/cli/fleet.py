"""`kasmina-edge fleet up | rollout | status`: many emulated devices, staged updates, the fleet at a glance.

    kasmina-edge fleet up --devices 200 --link lorawan-eu868-dr3 --mqtt URL [--minutes 10] [--speed 60]
    kasmina-edge fleet rollout BUNDLE --mqtt URL --canary 5% --halt-on 'probation-failures>1' [--store URL]
    kasmina-edge fleet status [--store URL]

The fleet tools live in :mod:`kasmina_edge.dashboard` (emulated devices, rollout) and read the store the
dashboard's monitor writes; the ``server`` extra (SQLAlchemy) is imported inside the commands.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import EXIT_CHECK_FAILED, emit, human, json_option
from kasmina_edge.cli.dashboard import DEFAULT_STORE, STORE_HELP, require_server
from kasmina_edge.contracts.errors import KasminaError

app = typer.Typer(help="Fleets of emulated devices, staged OTA rollouts, fleet status.", no_args_is_help=True)


def _write_report(path: Path | None, data: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@app.command("up")
def up(
    devices: int = typer.Option(10, "--devices", help="How many emulated devices.", callback=checks.at_least_one),
    link: str = typer.Option("lorawan-eu868-dr3", "--link", help="Network profile every device uses."),
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="Broker URL."),
    minutes: float = typer.Option(10.0, "--minutes", help="Wall-clock minutes to run.", callback=checks.positive),
    speed: float = typer.Option(60.0, "--speed", help="Simulated seconds per wall second.", callback=checks.positive),
    fleet: str = typer.Option("default", "--fleet", help="Fleet name in the topics."),
    home: Path = typer.Option(Path("runs/fleet"), "--home", help="Where the devices keep their flash and keys."),
    processes: int = typer.Option(0, "--processes", help="Worker processes (0: ~50 devices each, at most the CPUs)."),
    base: Path = typer.Option(None, "--base", help="Flash this bundle first: the devices then take OTA updates.",
                              callback=checks.input_file),
    keys: Path = typer.Option(None, "--keys", help="The bundle signer's public key (the devices' trust anchor)."),
    fail_probation: str = typer.Option(
        "", "--fail-probation", help="Emulation: comma-separated devices that fail probation of any update."
    ),
    ecg: str = typer.Option(
        None, "--ecg", help="Replay a recorded ECG's labelled beats (wfdb:PATH, csv:PATH) instead of the synthetic mix."
    ),
    report: Path = typer.Option(None, "--report", help="Write every device's figures and delivered sequence numbers."),
    as_json: bool = json_option(),
) -> None:
    """Start emulated devices (worker processes) streaming ECG telemetry over the link simulator to the broker."""
    from kasmina_edge.dashboard.fleet_up import FleetSpec, fleet_up

    con = human(as_json)
    checks.broker_reachable(mqtt)
    spec = FleetSpec(devices, link, mqtt, minutes * 60.0, fleet=fleet, home=home, speed=speed, processes=processes,
                     base_bundle=base, keys=keys, ecg=ecg,
                     fail_probation=tuple(n for n in fail_probation.split(",") if n))  # fmt: skip
    con.print(f"fleet: {devices} devices on {link} in {len(spec.groups())} processes, {minutes:g} min at "
              f"{speed:g}x simulated time, broker {mqtt}; Ctrl-C stops them cleanly")  # fmt: skip
    run = fleet_up(spec)
    totals = run.totals()
    _write_report(report, {"totals": totals, "devices": run.devices})
    if as_json:
        emit({"totals": totals, "devices": {n: {k: v for k, v in d.items() if k != "fseqs"}
                                            for n, d in run.devices.items()}})  # fmt: skip
        return
    table = Table(title="fleet run")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in totals.items():
        table.add_row(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else str(v))
    con.print(table)


@app.command("rollout")
def rollout_cmd(
    bundle: Path = typer.Argument(..., help="The signed bundle to roll out.", callback=checks.input_file),
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="Broker URL."),
    canary: str = typer.Option("5%", "--canary", help="Canary: a share of the fleet (5%) or a count."),
    halt_on: str = typer.Option(
        "probation-failures>1", "--halt-on",
        help="Halt rule over the devices offered so far: probation-failures, failures, timeouts or refusals, "
        "then >N, >=N or ==N.",
    ),
    store: str = typer.Option(DEFAULT_STORE, "--store", help=STORE_HELP + " The devices to update come from it."),
    devices: str = typer.Option("", "--devices", help="Comma-separated devices (instead of every one in the store)."),
    link: str = typer.Option(None, "--link", help="Their link, where the store does not know it."),
    fleet: str = typer.Option("default", "--fleet", help="Fleet name in the topics."),
    wave: int = typer.Option(0, "--wave", help="Devices per wave after the canary (0: all the rest at once)."),
    parallel: int = typer.Option(8, "--parallel", help="Transfers at a time.", callback=checks.at_least_one),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds to wait for one device's final report.",
                                  callback=checks.positive_seconds),
    keys: Path = typer.Option(None, "--keys", help="Public key the bundle must verify against before it is offered."),
    report: Path = typer.Option(None, "--report", help="Write the per-device report as JSON."),
    as_json: bool = json_option(),
) -> None:
    """Staged OTA: the canary first, the halt rule checked after each wave, the rest held when it trips.
    Exits 1 when the rollout halted or a device did not take the update."""
    from kasmina_edge.cli.net import _operator_audit
    from kasmina_edge.dashboard.rollout import HaltRule, canary_size, ota_updater, rollout
    from kasmina_edge.net.audit import AuditLog
    from kasmina_edge.net.commands import operator_audit_key

    con = human(as_json)
    HaltRule.parse(halt_on)  # a bad rule is refused before any broker work
    canary_size(canary, 1)
    links = _targets(store, devices, link, fleet)
    checks.broker_reachable(mqtt)
    audit = AuditLog(_operator_audit(None), key=operator_audit_key())
    update = ota_updater(mqtt, bundle, links, fleet=fleet, keys=keys, timeout_s=timeout, audit=audit)

    def progress(o: Any) -> None:
        con.print(f"  {o.device}: {o.status}" + (f" ({o.reason})" if o.reason else ""))

    con.print(f"rollout of {bundle.name} to {len(links)} devices, canary {canary}, halt on {halt_on}")
    result = rollout(sorted(links), update, bundle=str(bundle), canary=canary, halt_on=halt_on, wave=wave,
                     parallel=parallel, on_outcome=progress)  # fmt: skip
    _write_report(report, result.to_dict())
    if as_json:
        emit(result.to_dict())
    else:
        table = Table(title=f"rollout {'HALTED: ' + (result.halt_reason or '') if result.halted else 'done'}")
        for col in ("device", "wave", "status", "reason"):
            table.add_column(col)
        for o in result.outcomes:
            d = o.to_dict()
            table.add_row(o.device, str(d["wave"]), o.status, o.reason or "")
        con.print(table)
    if not result.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _targets(store: str, devices: str, link: str | None, fleet: str) -> dict[str, str]:
    """device -> link: the named devices, or every device of the fleet in the store."""
    named = [d for d in devices.split(",") if d]
    known: dict[str, str] = {}
    if store and (not named or link is None):
        require_server("reading the store")
        from kasmina_edge.dashboard.queries import fleet as fleet_rows
        from kasmina_edge.net.store import open_store

        st = open_store(store)
        try:
            known = {r["device"]: r["link"] or "" for r in fleet_rows(st.engine) if r["fleet"] == fleet}
        finally:
            st.close()
    names = named or sorted(known)
    out = {n: link or known.get(n) or "" for n in names}
    missing = [n for n, lk in out.items() if not lk]
    if missing:
        raise KasminaError(f"no link known for {', '.join(missing[:5])}: give --link or run the monitor first")
    return out


@app.command("status")
def status(
    store: str = typer.Option(DEFAULT_STORE, "--store", help=STORE_HELP),
    fleet: str = typer.Option(None, "--fleet", help="Only this fleet."),
    as_json: bool = json_option(),
) -> None:
    """Every device in the store: link, status, battery, last seen, records, alerts, seed stage, last update."""
    require_server("reading the store")
    from kasmina_edge.dashboard.queries import fleet as fleet_rows
    from kasmina_edge.dashboard.queries import latest_per_device
    from kasmina_edge.net.store import open_store

    st = open_store(store)
    try:
        rows = [r for r in fleet_rows(st.engine) if fleet is None or r["fleet"] == fleet]
        extra = latest_per_device(st.engine)
    finally:
        st.close()
    for r in rows:
        r.update(extra.get(r["device"], {}))
    if as_json:
        emit({"store": store, "devices": rows})
        return
    con = human(as_json)
    table = Table(title=f"fleet status: {len(rows)} devices")
    for col in ("device", "link", "status", "battery", "last seen", "records", "alerts", "seed", "update"):
        table.add_column(col)
    for r in rows:
        seen = time.strftime("%H:%M:%S", time.gmtime(r["last_seen"])) if r["last_seen"] else "-"
        table.add_row(r["device"], r["link"] or "-", r["status"] or "-",
                      "-" if r["battery_pct"] is None else f"{r['battery_pct']} %", seen, f"{r['records']:,}",
                      str(r["alerts"]), r.get("seed_stage") or "-", r.get("update") or "-")  # fmt: skip
    con.print(table)


@app.command("retention")
def retention(
    days: float = typer.Option(..., "--days", help="Delete what was stored more than this many days ago.",
                               callback=checks.non_negative),
    store: str = typer.Option(DEFAULT_STORE, "--store", help=STORE_HELP),
    as_json: bool = json_option(),
) -> None:
    """Retention: delete telemetry, lifecycle, alerts, strips and reports stored more than N days ago."""
    require_server("the store")
    from kasmina_edge.net.store import open_store

    st = open_store(store)
    try:
        deleted = st.purge_older_than(days)
    finally:
        st.close()
    _done(as_json, {"store": store, "older_than_days": days, "deleted": deleted}, f"older than {days:g} days")


@app.command("erase")
def erase(
    device: str = typer.Option(None, "--device", help="Erase every row of this device."),
    patient: str = typer.Option(None, "--patient", help="Erase every row of every device assigned to this patient."),
    assign: str = typer.Option(None, "--assign", help="Instead: assign --device to this patient (for later erasure)."),
    store: str = typer.Option(DEFAULT_STORE, "--store", help=STORE_HELP),
    as_json: bool = json_option(),
) -> None:
    """Erasure (a data subject's request): every stored row of one device or of one patient's devices."""
    if (device is None) == (patient is None) or (assign is not None and device is None):
        raise KasminaError("give exactly one of --device or --patient (--assign goes with --device)")
    require_server("the store")
    from kasmina_edge.net.store import open_store

    st = open_store(store)
    try:
        if assign is not None:
            st.assign_patient(device, assign)
            _done(as_json, {"store": store, "device": device, "patient": assign}, f"{device} assigned to {assign}")
            return
        deleted = st.erase_device(device) if device is not None else st.erase_patient(patient)
    finally:
        st.close()
    who = f"device {device}" if device is not None else f"patient {patient}"
    _done(as_json, {"store": store, "erased": who, "deleted": deleted}, who)


def _done(as_json: bool, data: dict[str, Any], what: str) -> None:
    if as_json:
        emit(data)
        return
    deleted = data.get("deleted")
    rows = sum(deleted.values()) if isinstance(deleted, dict) else 0
    human(as_json).print(f"{what}: {rows:,} rows deleted" if deleted is not None else what)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="fleet")
