"""`kasmina-edge profiles` and `kasmina-edge targets`: list and show the hardware, network and target files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli.common import console, emit, fail, json_option
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core import catalog
from kasmina_edge.core.airtime import time_on_air_s
from kasmina_edge.core.profiles import HardwareProfile, IpLinkProfile, LoRaProfile, NetworkProfile, Target

profiles_app = typer.Typer(help="Hardware and network profiles.", no_args_is_help=True)
targets_app = typer.Typer(help="Build targets (edgetpu, cortex-m, linux-arm, x86).", no_args_is_help=True)


class ProfileKind(StrEnum):
    hardware = "hardware"
    network = "network"


JSON_OPTION = json_option()


# ------------------------------------------------------------------------------------------ formatting


def _si(value: float, unit: str) -> str:
    """480000000, 'Hz' -> '480 MHz'; 0.0099, 'W' -> '9.9 mW'."""
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in (
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
    ):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _size(n: float) -> str:
    """Bytes in binary units: 1048576 -> '1 MiB' (datasheets' 'MB' for memories mean MiB)."""
    if n == 0:
        return "-"
    for factor, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n:g} B"


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _value(key: str, value: Any) -> str:
    """Format one field by its unit suffix (the field names carry their units)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if not isinstance(value, int | float):
        return str(value)
    leaf = key.rsplit(".", 1)[-1]
    if key.startswith("peak_ops_per_s."):
        return _si(value, "OPS")
    if leaf.endswith("_bytes"):
        # Memories in binary units; payloads and headers are counted in bytes.
        small = "payload" in leaf or "overhead" in leaf
        return f"{value:g} B" if small else _size(value)
    if leaf.endswith("_Bps"):
        return _si(value, "B/s")
    if leaf.endswith("_bps"):
        return _si(value, "bit/s")
    if leaf.endswith("_hz"):
        return _si(value, "Hz")
    if leaf.endswith("_w"):
        return _si(value, "W")
    if leaf.endswith("_s") or leaf.endswith("_s_per_day"):
        return _seconds(value) + (" per day" if leaf.endswith("per_day") else "")
    if leaf in ("duty_cycle", "downlink_duty_cycle", "loss_rate", "efficiency"):
        return f"{value:.3g} ({value * 100:.3g} %)"
    return f"{value:g}"


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{path}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                rows.extend(_flatten(item, f"{path}[{i}]."))
        else:
            rows.append((path, value))
    return rows


def _print_json(data: Any) -> None:
    emit(data)


def _duty_or_dwell(p: NetworkProfile) -> str:
    if isinstance(p, IpLinkProfile):
        return "-"
    parts = []
    if p.duty_cycle is not None:
        parts.append(f"{p.duty_cycle:.1%} duty")
    if p.dwell_time_s is not None:
        parts.append(f"{_seconds(p.dwell_time_s)} dwell")
    return ", ".join(parts) or "-"


# ------------------------------------------------------------------------------------------ tables


def _table(title: str) -> Table:
    # No vertical rules: a catalog row has many short cells, and terminals are often 80-100 columns.
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")


def _columns(table: Table, *headers: str) -> None:
    """Add columns; a header ending in '>' is right-aligned, one starting with '~' is free text.

    Names stay on one line; other cells wrap or fold when the terminal is narrow, never vanish.
    """
    for header in headers:
        text = header.startswith("~")
        table.add_column(
            header.strip("~>"),
            justify="right" if header.endswith(">") else "left",
            no_wrap=header == "name",
            overflow="fold",
            min_width=7 if text else None,
        )


def hardware_table(profiles: list[HardwareProfile], *, compact: bool = False) -> Table:
    table = _table("hardware profiles")
    if compact:
        _columns(table, "name", "compute>", "int8 peak>", "SRAM>", "flash>", "power>")
    else:
        _columns(
            table, "name", "kind", "compute>", "int8 peak>", "SRAM>", "flash>", "DRAM>", "power>", "~targets"
        )
    for p in profiles:
        int8 = _si(p.peak_ops_per_s["int8"], "OPS") if "int8" in p.peak_ops_per_s else "-"
        compute = (f"{p.cores}x " if p.cores > 1 else "") + _si(p.clock_hz, "Hz")
        memory = [_size(p.memory.sram_bytes), _size(p.memory.flash_bytes)]
        power = _si(p.power.active_w, "W")
        if compact:
            table.add_row(p.name, compute, int8, *memory, power)
        else:
            dram = _size(p.memory.dram_bytes)
            table.add_row(p.name, p.kind, compute, int8, *memory, dram, power, ", ".join(p.targets))
    return table


def network_table(profiles: list[NetworkProfile], *, compact: bool = False) -> Table:
    table = _table("network profiles")
    if compact:
        _columns(table, "name", "kind", "uplink>", "payload>", "~limit")
    else:
        _columns(table, "name", "kind", "uplink>", "payload>", "~airtime / latency>", "~limit", "TX>")
    for p in profiles:
        if isinstance(p, LoRaProfile):
            kind = f"SF{p.data_rate.spreading_factor} {p.data_rate.bandwidth_hz // 1000}k"
            rate, delay = p.bit_rate_bps, _seconds(time_on_air_s(p, p.max_payload_bytes))
        else:
            kind, rate = p.kind, p.uplink_bps
            delay = f"{_seconds(p.latency.median_s)} (p99 {_seconds(p.latency.p99_s)})"
        if compact:
            table.add_row(p.name, kind, _si(rate, "bit/s"), f"{p.max_payload_bytes} B", _duty_or_dwell(p))
            continue
        table.add_row(
            p.name,
            kind,
            _si(rate, "bit/s"),
            f"{p.max_payload_bytes} B",
            delay,
            _duty_or_dwell(p),
            _si(p.radio.tx_power_w, "W"),
        )
    return table


def _fitting(full: Table, compact: Table, width: int) -> tuple[Table, bool]:
    """The full table where it reads at ``width``, else the compact one (and True: say so)."""
    from kasmina_edge.cli.tables import fits

    return (full, False) if fits(full, width) else (compact, True)


NARROW_NOTE = "[dim]fewer columns at this width: `{cmd} show NAME` has every field[/]"


def targets_table(targets: list[Target], *, compact: bool = False) -> Table:
    table = _table("build targets")
    if compact:
        _columns(table, "name", "format", "runtime", "bits", "dims>", "ops>", "default profile")
    else:
        _columns(
            table, "name", "format", "~runtime", "bits", "~weights", "~activations", "I/O",
            "dims>", "ops>", "~fallback", "~default profile",
        )  # fmt: skip
    for t in targets:
        q = t.quantization
        bits = ", ".join(str(b) for b in t.bits_allowed)
        dims = str(t.rules.max_nontrivial_dims or "-")
        ops = str(len(t.rules.allowed_ops)) if t.rules.allowed_ops is not None else "any"
        if compact:
            table.add_row(t.name, t.format, t.runtime, bits, dims, ops, t.default_profile)
        else:
            weights = f"{q.weights_dtype}/{q.weights_granularity.removeprefix('per-')}"
            activations = f"{q.activations_dtype}/{q.activations_granularity.removeprefix('per-')}"
            table.add_row(
                t.name, t.format, t.runtime, bits, weights, activations, q.io_dtype,
                dims, ops, t.rules.cpu_fallback, t.default_profile,
            )  # fmt: skip
    return table


def _fields_table(title: str, data: dict[str, Any], derived: list[tuple[str, str]]) -> Table:
    table = _table(title)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value")
    first = {k: data[k] for k in ("name", "kind") if k in data}
    for key, value in _flatten(first | data):
        table.add_row(key, _value(key, value))
    for key, text in derived:
        table.add_row(f"[italic]{key}[/]", text)
    return table


def _derived(profile: HardwareProfile | NetworkProfile) -> list[tuple[str, str]]:
    if isinstance(profile, HardwareProfile):
        rows = [
            (f"effective {d} (peak x efficiency)", _si(profile.effective_ops_per_s(d), "OPS"))
            for d in profile.peak_ops_per_s
        ]
        if profile.battery is not None:
            rows.append(("battery energy", f"{profile.battery.energy_j:.4g} J"))
        return rows
    if isinstance(profile, LoRaProfile):
        return [
            (
                f"time on air of {profile.max_payload_bytes} B",
                _seconds(time_on_air_s(profile, profile.max_payload_bytes)),
            ),
            ("low data rate optimisation", "yes" if profile.data_rate.low_data_rate_optimize else "no"),
        ]
    return [("latency lognormal sigma", f"{profile.latency.sigma:.3f}")]


# ------------------------------------------------------------------------------------------ commands


@profiles_app.command("list")
def profiles_list(
    kind: ProfileKind | None = typer.Option(None, "--kind", help="Only hardware or only network profiles."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the hardware and network profiles."""
    try:
        hw = catalog.list_hardware() if kind in (None, ProfileKind.hardware) else None
        net = catalog.list_network() if kind in (None, ProfileKind.network) else None
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        out: dict[str, Any] = {}
        if hw is not None:
            out["hardware"] = [p.model_dump(mode="json") for p in hw]
        if net is not None:
            out["network"] = [p.model_dump(mode="json") for p in net]
        _print_json(out)
        return
    narrow = False
    if hw is not None:
        table, cut = _fitting(hardware_table(hw), hardware_table(hw, compact=True), console.width)
        console.print(table)
        narrow |= cut
    if net is not None:
        table, cut = _fitting(network_table(net), network_table(net, compact=True), console.width)
        console.print(table)
        narrow |= cut
    if narrow:
        console.print(NARROW_NOTE.format(cmd="kasmina-edge profiles"))


@profiles_app.command("show")
def profiles_show(
    name: str = typer.Argument(..., help="A hardware or network profile name (see `profiles list`)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every field of one hardware or network profile."""
    try:
        hw_names, net_names = catalog.hardware_names(), catalog.network_names()
        if name in hw_names:
            profile: HardwareProfile | NetworkProfile = catalog.hardware(name)
            title = f"hardware profile {name}"
        elif name in net_names:
            profile = catalog.network(name)
            title = f"network profile {name}"
        else:
            fail(
                f"unknown profile '{name}'; known hardware: {', '.join(hw_names)}; known network: {', '.join(net_names)}"
            )
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        _print_json(profile.model_dump(mode="json"))
        return
    console.print(_fields_table(title, profile.model_dump(mode="json"), _derived(profile)))


@targets_app.command("list")
def targets_list(as_json: bool = JSON_OPTION) -> None:
    """List the build targets."""
    try:
        targets = catalog.list_targets()
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        _print_json([t.model_dump(mode="json") for t in targets])
        return
    table, cut = _fitting(targets_table(targets), targets_table(targets, compact=True), console.width)
    console.print(table)
    if cut:
        console.print(NARROW_NOTE.format(cmd="kasmina-edge targets"))


@targets_app.command("show")
def targets_show(
    name: str = typer.Argument(..., help="A target name (see `targets list`)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every field of one build target, op list included."""
    try:
        tgt = catalog.target(name)
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        _print_json(tgt.model_dump(mode="json"))
        return
    console.print(_fields_table(f"target {name}", tgt.model_dump(mode="json"), []))


def demo_step(console: Console, workdir: Path) -> None:
    """Demo stage: the devices and targets the rest of the path builds for."""
    del workdir  # nothing to write: the catalog is read-only
    console.print(hardware_table(catalog.list_hardware(), compact=True))
    console.print(targets_table(catalog.list_targets(), compact=True))
    names = catalog.network_names()
    console.print(f"{len(names)} network profiles: {', '.join(names)}")
