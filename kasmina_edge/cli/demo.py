"""`kasmina-edge demo`: the product's path end to end, as far as it exists.

Each stage lives beside its own command group as ``demo_step(console, workdir)``;
this module only runs them in order and prints what each took.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli.common import emit, fail, human, json_option

# (title, module holding `demo_step`), in the order of the data path.
STEPS: list[tuple[str, str]] = [
    ("profiles and targets", "kasmina_edge.cli.catalog"),
    ("contracts: telemetry frame and signed command", "kasmina_edge.cli.demo_contracts"),
    ("ECG: synthetic scenario and QRS detection", "kasmina_edge.cli.ecg"),
    ("host: train and morph a tiny model", "kasmina_edge.cli.host"),
    ("build: int8 bundle for the Edge TPU", "kasmina_edge.cli.build"),
    ("device: flash, boot and stream on an emulator", "kasmina_edge.cli.device"),
    ("profile: the demo bundle on every hardware profile", "kasmina_edge.cli.profile"),
    ("telemetry: MQTT over LoRaWAN EU868 DR3 to the monitor, a signed command back", "kasmina_edge.cli.net"),
]

DemoStep = Callable[[Console, Path], None]


def _load_step(module: str) -> DemoStep | None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    step = getattr(mod, "demo_step", None)
    return step if callable(step) else None


def demo(
    workdir: Path = typer.Option(
        None, "--workdir", help="Where the demo writes its files (default: a fresh temporary folder)."
    ),
    as_json: bool = json_option(),
) -> None:
    """Run the whole path that exists so far, end to end (--json: only the summary, as JSON)."""
    console = human(as_json)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="kasmina-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]kasmina-edge demo")
    console.print(f"work folder: {workdir}")
    summary: list[tuple[str, str, float]] = []
    for title, module in STEPS:
        step = _load_step(module)
        if step is None:
            summary.append((title, "not built yet", 0.0))
            continue
        console.rule(title)
        t0 = time.perf_counter()
        step(console, workdir)
        summary.append((title, "ok", time.perf_counter() - t0))
    table = Table(title="demo summary")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for title, result, secs in summary:
        table.add_row(title, result, f"{secs:.1f}" if result == "ok" else "-")
    console.print(table)
    if as_json:
        emit({"workdir": workdir, "steps": [{"stage": t, "result": res, "seconds": secs if res == "ok" else None}
                                            for t, res, secs in summary]})
    if not any(result == "ok" for _, result, _ in summary):
        fail("no demo stage is available")
