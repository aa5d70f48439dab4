"""`kasmina-edge flash` and `kasmina-edge run`: a bundle onto an (emulated) device, and ECG through it.

    kasmina-edge flash bundle.kedge --device emu://patch-01 [--keys DIR] [--profile NAME]
    kasmina-edge flash bundle.kedge --device dir:/media/DEVICE
    kasmina-edge run --device emu://patch-01 --ecg wfdb:../shared/data/mitdb/100 --fast [--out preds.jsonl]

Nothing here imports torch; the runtime and the emulator are imported inside the commands.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, human, json_option

REFRESH_S = 0.25


def device_spec(must_be_flashed: bool) -> Callable[[str], str]:
    """--device: emu://NAME or dir:PATH, checked up front; a dir: device is a folder that exists (a typo is
    not a new device); ``must_be_flashed``: an emulated device must have been flashed already."""

    def check(spec: str) -> str:
        from firmware_sim.device import DeviceAddress
        from kasmina_edge.contracts.errors import KasminaError

        try:
            addr = DeviceAddress.parse(spec)
        except KasminaError as exc:
            raise typer.BadParameter(re.sub(r"^--device \S+: ", "", str(exc))) from None
        if addr.kind == "dir" and not addr.path.is_dir():
            what = "is a file" if addr.path.exists() else "does not exist"
            raise typer.BadParameter(f"{spec}: {addr.path} {what}; a mass-storage device is a mounted folder")
        if addr.kind == "emu" and must_be_flashed and not (addr.path / "device.json").exists():
            raise typer.BadParameter(
                f"{spec}: no such device in {addr.path.parent} (flash a bundle to it first: kasmina-edge flash)"
            )
        return spec

    return check


def flash(
    bundle: Path = typer.Argument(
        ..., help="Signed bundle (.kedge) from `kasmina-edge build`.", callback=checks.input_file
    ),
    device: str = typer.Option(
        ..., "--device", help="emu://NAME (emulated device) or dir:PATH (mass storage).", callback=device_spec(False)
    ),
    keys: Path = typer.Option(
        None, "--keys", help="Keys folder (or public key PEM) that verifies the bundle.", callback=checks.input_path
    ),
    profile: str = typer.Option(None, "--profile", help="Hardware profile of a new emulated device (default: the bundle's)."),
    trust: Path = typer.Option(
        None, "--trust", callback=checks.input_path,
        help="Public key (PEM or keys folder) to provision as the device's trusted key on its first flash "
        "(default: the keys folder's own public key). A provisioned device never takes another.",
    ),
    rotate: Path = typer.Option(
        None, "--rotate", callback=checks.input_file,
        help="Key rotation statement (`kasmina-edge keys rotate`): the device moves its trust to the new key, "
        "signed by the key it trusts now, before verifying this bundle.",
    ),
    as_json: bool = json_option(),
) -> None:
    """Verify a bundle and write it to the device's inactive slot; it boots from it next time."""
    result = run_flash(human(as_json), bundle, device, keys=keys, profile=profile, trust=trust, rotate=rotate)
    if as_json:
        emit(result)


def run_flash(con: Console, bundle: Path, device: str, *, keys: Path | None = None, profile: str | None = None,
              devices_root: Path | None = None, trust: Path | None = None, rotate: Path | None = None) -> Any:
    from firmware_sim.device import EmulatedDevice, open_device

    dev = open_device(device, devices_root)
    if rotate is not None:
        if not isinstance(dev, EmulatedDevice):
            from kasmina_edge.contracts.errors import KasminaError

            raise KasminaError(f"--rotate: {device} is mass storage; rotate keys on an emu:// device")
        con.print(f"{dev.address} now trusts signing key {dev.rotate_trust(rotate)} (rotation {rotate})")
    result = dev.flash(bundle, keys, profile=profile, trust=trust)
    slot = ("its kernel store (live at the next run)" if result.kernels is not None
            else f"slot {result.slot} (pending: boots next)" if result.slot else "mass storage")  # fmt: skip
    con.print(
        f"[green]flashed[/] {result.bundle_id} (v{result.version}, {result.bytes:,} B, target {result.target}) "
        f"to {result.device} {slot}, profile {result.profile}"
    )
    for note in result.notes:
        con.print(f"  note: {note}")
    return result


def run(
    device: str = typer.Option(..., "--device", help="emu://NAME or dir:PATH.", callback=device_spec(True)),
    ecg: str = typer.Option(..., "--ecg", help="synthetic:NAME, wfdb:PATH or csv:PATH (see `kasmina-edge ecg`)."),
    fast: bool = typer.Option(True, "--fast/--realtime", help="As fast as possible, or paced like a sensor."),
    start: float = typer.Option(
        0.0, "--from", help="Start this many seconds into the recording.", callback=checks.non_negative_seconds
    ),
    seconds: float = typer.Option(
        None, "--seconds", help="Stream only this many seconds.", callback=checks.positive_seconds
    ),
    out: Path = typer.Option(
        None, "--out", help="Predictions and events as JSON lines (default: runs/run-<device>-<time>.jsonl).",
        callback=checks.output_file(".jsonl", ".json", ".ndjson"),
    ),
    keys: Path = typer.Option(
        None, "--keys", help="Keys that verify a dir: device's bundle (emu devices keep their own).",
        callback=checks.input_path,
    ),
    static: bool = typer.Option(False, "--static", help="The base model alone: no kernel live at boot, none swapped in."),
    kernels: str = typer.Option(
        "xnnpack", "--kernels", help="LiteRT kernels: xnnpack, builtin or reference.",
        callback=checks.choice(("xnnpack", "builtin", "reference"), "kernels"),
    ),
    link: str = typer.Option(None, "--link", help="Telemetry over this network profile, e.g. lorawan-eu868-dr0 (NAME:FAULTS adds faults)."),
    mqtt: str = typer.Option(None, "--mqtt", help="Publish telemetry to this broker, e.g. mqtt://127.0.0.1:1883 or mqtts://HOST:8883."),
    ca: Path = typer.Option(None, "--ca", help="CA certificate that signed the broker's (mqtts://; or $KASMINA_MQTT_CA).", callback=checks.input_file),
    cert: Path = typer.Option(None, "--cert", help="Client certificate for mqtts:// (with --key).", callback=checks.input_file),
    key: Path = typer.Option(None, "--key", help="Client certificate's private key.", callback=checks.input_file),
    user: str = typer.Option(None, "--user", help="Broker user name (or $KASMINA_MQTT_USER; the device's name under the example ACL)."),
    password_file: Path = typer.Option(
        None, "--password-file", help="File whose first line is the broker password (or $KASMINA_MQTT_PASSWORD); never in the URL.",
        callback=checks.input_file,
    ),
    as_json: bool = json_option(),
) -> None:
    """Boot the device from its flash and stream ECG through the on-device runtime, with a live panel
    (under --json: no panel, the run's summary as one JSON document; the per-beat log still goes to --out)."""
    auth = None
    if mqtt:
        from kasmina_edge.net.credentials import resolve_auth

        auth = resolve_auth(mqtt, ca=ca, cert=cert, key=key, user=user, password_file=password_file)
    con = human(as_json)
    summary = run_device(con, device, ecg, fast=fast, start=start, seconds=seconds, out=out, keys=keys,
                         static=static, kernels=kernels, link=link, mqtt=mqtt, mqtt_auth=auth, live=not as_json)
    if as_json:
        emit(summary.to_dict() | {"log": str(out) if out is not None else None})


def _panel(runtime: Any, emu: dict[str, Any], title: str) -> Panel:
    st = runtime.status()
    wall = max(emu["wall_s"], 1e-9)
    head = Table.grid(padding=(0, 3))  # two columns of short facts: reads at 80 columns
    beats = max(st["beats"], 1)
    link_word = "up" if runtime.platform.link_state >= 1 else "constrained" if runtime.platform.link_state > 0 else "down"
    head.add_row(
        f"beats {st['beats']:,} ({st['beats'] / wall:,.0f}/s), anomalies {st['anomalies']:,}, faults {st['faults']}",
        f"signal {st['signal_s']:,.1f} s ({st['signal_s'] / wall:,.0f}x real time)",
    )
    head.add_row(
        "classes " + " ".join(f"{k}:{v}" for k, v in st["classes"].items()),
        f"battery {_charge_pct(emu['battery'])}, link {link_word}",
    )
    head.add_row(
        f"host {1e6 * st['infer_s'] / beats:.0f} us/beat", f"device est. {1e6 * emu['device_s'] / beats:.0f} us/beat"
    )
    slots = Table(title="seed slots", expand=False)
    for col in ("site", "kernel", "stage", "alpha", "base"):
        slots.add_column(col, overflow="fold")
    for s in st["slots"]:
        # a kernel on trial runs beside the answers (label-free evidence), not in them
        kernel = s["kernel"] or (f"{s['trial']} (trial)" if s.get("trial") else "-")
        slots.add_row(str(s["site"]), kernel, s["stage"] or "identity", f"{s['alpha']:.2f}", s["base"] or "-")
    dec = Table(title="last decisions", expand=False)
    for col in ("t (s)", "action", "kernel", "reason", "latency"):
        dec.add_column(col, overflow="fold")
    for d in list(runtime.last_decisions)[-5:]:
        dec.add_row(f"{d.t:.1f}", d.decision.action, d.decision.kernel or "-", d.decision.reason, f"{d.latency_us:.0f} us")
    return Panel(Group(head, slots, dec), title=title)


def run_device(
    con: Console,
    device: str,
    ecg: str,
    *,
    fast: bool = True,
    start: float = 0.0,
    seconds: float | None = None,
    out: Path | None = None,
    keys: Path | None = None,
    static: bool = False,
    kernels: str = "xnnpack",
    devices_root: Path | None = None,
    live: bool = True,
    keep_predictions: bool = False,
    link: str | None = None,
    mqtt: str | None = None,
    mqtt_auth: Any = None,
) -> Any:
    from dataclasses import replace

    from firmware_sim.device import open_device
    from firmware_sim.runner import RunOptions, run_stream
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.ecg.sources import open_source
    from kasmina_edge.runtime.engine import RuntimeConfig

    if kernels not in ("xnnpack", "builtin", "reference"):
        raise KasminaError(f"--kernels {kernels!r}: choose xnnpack, builtin or reference")
    dev = open_device(device, devices_root)
    source = open_source(ecg, start_s=start, seconds=seconds)
    if out is None:
        out = Path("runs") / f"run-{dev.address.name}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    record = source.record() if hasattr(source, "record") else None
    if not fast and record is not None and record.seconds > 30:  # a long default says so up front
        con.print(f"[dim]real time: {record.seconds / 60:,.1f} min of signal take as long to stream "
                  "(--seconds N streams less, --fast as fast as it runs)[/]")  # fmt: skip
    config = RuntimeConfig()
    if static:
        config = replace(config, adapt=False, boot_kernels=False)
    options = RunOptions(realtime=not fast, backend_mode=kernels, runtime=config,  # type: ignore[arg-type]
                         keep_predictions=keep_predictions)
    title = f"{dev.address} · {source.name}"
    update: Callable[[Any, dict[str, Any]], None] | None = None
    live_ctx: Any = None
    if live and not con.is_terminal and not fast:  # paced like a sensor: say every 10 s how far it got

        def update(runtime: Any, emu: dict[str, Any]) -> None:
            now = time.perf_counter()
            if now - last[0] >= 10.0:
                last[0] = now
                st = runtime.status()
                con.print(f"  {st['signal_s']:,.0f} s streamed, {st['beats']:,} beats, {st['anomalies']:,} anomalies",
                          highlight=False)  # fmt: skip

        last = [time.perf_counter()]
    elif live and con.is_terminal:
        from rich.live import Live

        live_ctx = Live(console=con, refresh_per_second=4, transient=False)
        last = [0.0]

        def update(runtime: Any, emu: dict[str, Any]) -> None:
            now = time.perf_counter()
            if now - last[0] >= REFRESH_S:
                last[0] = now
                live_ctx.update(_panel(runtime, emu, title))

    telemetry, transport = None, None
    if link or mqtt:
        from firmware_sim.device import EmulatedDevice
        from firmware_sim.telemetry import open_device_telemetry

        telemetry, transport = open_device_telemetry(
            dev.address.name, dev.storage, link, mqtt, emulated=dev if isinstance(dev, EmulatedDevice) else None,
            auth=mqtt_auth)
    _append_source(out, ecg, start, seconds)  # first: the runner's log ends with its own 'stop' event
    try:
        if live_ctx is not None:
            with live_ctx:
                summary = run_stream(dev, source, out=out, keys=keys, options=options, on_update=update,
                                     telemetry=telemetry)
        else:
            summary = run_stream(dev, source, out=out, keys=keys, options=options, telemetry=telemetry)
    finally:
        if transport is not None:
            transport.close()
    _print_summary(con, summary, out)
    if summary.telemetry is not None:
        con.print("telemetry: " + ", ".join(f"{k} {v}" for k, v in summary.telemetry.items()))
    return summary


def _append_source(out: Path, ecg: str, start: float, seconds: float | None) -> None:
    """What is streamed, in the run's own log (before the runner's records): `evaluate` compares it with the
    record it is given and takes the start from it (rather than guessing the offset)."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:  # the runner appends after it
        f.write(json.dumps({"event": "source", "spec": ecg, "from_s": start, "seconds": seconds}) + "\n")


def _charge_pct(charge: float) -> str:
    """State of charge with enough digits that a few joules out of a large battery still move it."""
    used = 100.0 * (1.0 - charge)
    digits = 2 if used <= 0 or used >= 1 else min(6, 2 - math.floor(math.log10(used)))
    return f"{100.0 * charge:.{digits}f} %"


def battery_text(battery: dict[str, Any], profile: str) -> str:
    """'99.9871 % left: 0.05 of 400 mAh used (0.68 J)'; a mains-powered profile says so."""
    from kasmina_edge.core.catalog import hardware

    used_j = float(battery.get("used_j") or 0.0)
    try:
        spec = hardware(profile).battery
    except Exception:  # a profile this host does not know: joules only
        spec = None
    if spec is None:
        return f"mains-powered (no battery): {used_j:,.1f} J used"
    used_mah = used_j / (3.6 * spec.voltage_v)
    return (f"{_charge_pct(float(battery['charge']))} left: {used_mah:,.3g} of {spec.capacity_mAh:,.0f} mAh "
            f"used ({used_j:,.3g} J)")  # fmt: skip


def _print_summary(con: Console, s: Any, out: Path) -> None:
    st = s.status
    t = Table(title=f"{s.device}: {s.bundle_id} from slot {s.slot or '-'} on {s.profile}" + (" (stopped)" if s.interrupted else ""))
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("signal streamed", f"{s.signal_s:,.1f} s in {s.wall_s:,.2f} s ({s.realtime_factor:,.0f}x real time)")
    t.add_row("beats", f"{st['beats']:,}  " + " ".join(f"{k}:{v}" for k, v in st["classes"].items()))
    t.add_row("anomalies (S/V/F)", f"{st['anomalies']:,}")
    t.add_row("inference, host", f"{1e6 * s.host_infer_s / max(st['beats'], 1):,.0f} us/beat")
    t.add_row(f"inference, {s.profile} (estimate)", f"{1e6 * s.device_infer_s / max(st['beats'], 1):,.0f} us/beat")
    if st["decision_ms_p50"] is not None:
        t.add_row("decision + swap, host", f"p50 {st['decision_ms_p50']:.2f} ms, p99 {st['decision_ms_p99']:.2f} ms")
    t.add_row("swaps / faults", f"{st['swaps']} / {st['faults']}")
    t.add_row("battery", battery_text(s.battery, s.profile))
    t.add_row("backend", f"{s.backend['name']}: {s.backend['runtime']}")
    con.print(t)
    for note in s.backend.get("notes", []):
        con.print(f"note: {note}")
    for f in s.fallbacks:
        con.print(f"[yellow]boot fallback:[/] {f}")
    if not s.confirmed:
        con.print("[yellow]slot not confirmed yet[/] (probation unfinished): the next boot tries it again")
    con.print(f"predictions and events: {out} ({s.records:,} records)")


def demo_step(con: Console, workdir: Path) -> None:
    """Flash the demo's Edge TPU bundle to an emulator and stream an EMG-switch scenario, with and without
    kernel swapping; print what the device decided and how well it classified."""
    from firmware_sim.score import score_run
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.ecg.sources import open_source

    bundle = workdir / "build" / "demo-edgetpu.kedge"
    if not bundle.exists():
        raise KasminaError(f"{bundle}: the build step did not write the demo bundle")
    root = workdir / "devices"
    run_flash(con, bundle, "emu://demo-patch", keys=workdir / "keys", devices_root=root)
    spec = "synthetic:emg-switch?minutes=4&seed=3"
    runs = {}
    for name, static in (("with swapping", False), ("base only", True)):
        con.print(f"[bold]{name}[/]: streaming {spec}")
        log = workdir / f"device-{'static' if static else 'adaptive'}.jsonl"
        log.unlink(missing_ok=True)  # the log appends: start this demo's afresh
        runs[name] = run_device(con, "emu://demo-patch", spec, out=log,
                                static=static, devices_root=root, live=False, keep_predictions=True)
    record = open_source(spec).record()
    assert record is not None
    half = record.seconds / 2
    t = Table(title="demo: classification on the emg-switch scenario (noise from half time)")
    for col in ("run", "beat Se", "beat +P", "macro-F1 clean half", "macro-F1 noisy half", "V Se", "S Se"):
        t.add_column(col, justify="right")
    for name, s in runs.items():
        whole = score_run(s.predictions, record)
        clean = score_run(s.predictions, record, end_s=half)
        noisy = score_run(s.predictions, record, start_s=half)
        t.add_row(name, f"{whole.sensitivity:.3f}", f"{whole.ppv:.3f}", f"{clean.macro_f1():.3f}",
                  f"{noisy.macro_f1():.3f}", f"{whole.se('V'):.2f}", f"{whole.se('S'):.2f}")
    con.print(t)
    adaptive = runs["with swapping"]
    events = [r for r in _read_jsonl(workdir / "device-adaptive.jsonl") if r.get("event") in ("decision", "transition", "fault")]
    d = Table(title="what the device decided (adaptive run)")
    for col in ("t (s)", "event", "detail"):
        d.add_column(col)
    for e in events[:30]:
        if e["event"] == "decision":
            d.add_row(f"{e['t']:.1f}", f"decision: {e['action']}", f"{e.get('kernel')} at site {e.get('site')}: {e['reason']} ({e['latency_us']:.0f} us)")
        elif e["event"] == "transition":
            gate = f" [{e['gate']} {'pass' if e.get('gate_passed') else 'fail'}]" if e.get("gate") else ""
            d.add_row(f"{e['t']:.1f}", "lifecycle", f"{e['seed_id']}: {e['from']} -> {e['to']}{gate} ({e['reason']})")
        else:
            d.add_row(f"{e['t']:.1f}", "fault", f"{e['kernel']}: {e['code']} ({e['detail']})")
    con.print(d)
    con.print(f"decision + swap latency on the host: p50 {adaptive.status['decision_ms_p50']:.2f} ms, "
              f"p99 {adaptive.status['decision_ms_p99']:.2f} ms")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def register(app: typer.Typer) -> None:
    app.command(name="flash", help="Verify a bundle and flash it to a device (emu://NAME or dir:PATH).")(flash)
    app.command(name="run", help="Boot a device and stream ECG through the on-device runtime.")(run)
