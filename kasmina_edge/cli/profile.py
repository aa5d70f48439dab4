"""`kasmina-edge profile`: estimate (and measure) a bundle or a bare model on the hardware profiles.

    kasmina-edge profile bundle.kedge                       # every profile, one comparison table
    kasmina-edge profile bundle.kedge --profile coral-usb --measure --html report.html --report report.json
    kasmina-edge profile bundle.kedge --json              # the report as JSON on stdout
    kasmina-edge profile model.tflite --profile stm32h743

matplotlib (for --html plots) is imported inside the command only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer
from rich.console import Console

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, fail, human, json_option
from kasmina_edge.contracts.errors import KasminaError


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# first bytes of files people have at hand, to say what a file is when it is not a model
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF document"), (b"GIF8", "a GIF image"),
          (b"\xff\xd8\xff", "a JPEG image"), (b"\x1f\x8b", "a gzip file"), (b"PK\x03\x04", "a zip archive"),
          (b"<", "an HTML/XML text"), (b"{", "a JSON text"))  # fmt: skip


def _what_is(head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.lstrip().startswith(magic):
            return what
    return "neither"


def check_model_content(path: Path) -> None:
    """A .tflite or .onnx must hold that model (FlatBuffer identifier 'TFL3'; an ONNX ModelProto with a
    graph), a .kedge a zip: said in one line before any profiling."""
    suffix = path.suffix.lower()
    head = path.read_bytes()[:64] if suffix in (".tflite", ".onnx", ".kedge") else b""
    if suffix == ".kedge":
        if not head.startswith(b"PK\x03\x04"):
            raise KasminaError(f"{path}: not a bundle (a .kedge is a signed zip; this is {_what_is(head)})")
        return
    if suffix not in (".tflite", ".onnx"):
        return  # load_subject names the suffixes it takes
    is_tflite = head[4:8] == b"TFL3"
    is_onnx = not is_tflite and _parses_as_onnx(path)
    if not is_tflite and not is_onnx:
        what = _what_is(head)
        raise KasminaError(
            f"{path}: not a TFLite or ONNX model" + ("" if what == "neither" else f" (it is {what})")
        )
    if is_tflite != (suffix == ".tflite"):
        raise KasminaError(f"{path}: named {suffix}, but it holds a {'TFLite' if is_tflite else 'ONNX'} model")


def _parses_as_onnx(path: Path) -> bool:
    try:
        import onnx
    except ImportError:  # a device without onnx: trust the suffix, the profiler's reader says the rest
        return path.suffix.lower() == ".onnx"
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # any parse failure: not an ONNX model
        return False
    return len(model.graph.node) > 0


def run_profile(
    con: Console,
    path: Path,
    *,
    profile: str | None = None,
    measure: bool = False,
    html_out: Path | None = None,
    json_out: Path | None = None,
    keys: Path | None = None,
    heart_rate: float = 72.0,
    network: str | None = None,
    runs: int = 1000,
) -> object:
    """Profile ``path`` and print the tables; returns the report (``profiler.report.Report``)."""
    from kasmina_edge.core.catalog import hardware
    from kasmina_edge.profiler.energy import DEFAULT_NETWORK
    from kasmina_edge.profiler.render import render
    from kasmina_edge.profiler.report import Settings, load_subject, measure_subject, profile_subject

    if not 20.0 <= heart_rate <= 250.0:
        raise KasminaError(f"--heart-rate: {heart_rate:g} bpm is outside 20-250")
    if runs < 1:
        raise KasminaError(f"--runs: {runs} must be at least 1")
    profiles = [hardware(profile)] if profile else None
    check_model_content(path)
    subject = load_subject(path, keys)
    report = profile_subject(
        subject, profiles, Settings(heart_rate_bpm=heart_rate, network=network or DEFAULT_NETWORK)
    )
    if measure:
        with con.status("measuring on the runtimes here (one core)..."):
            measure_subject(report, runs=runs)
    from kasmina_edge.cli.tables import FitToWidth

    render(report, FitToWidth(con), detail=profile)  # type: ignore[arg-type]  # tables reflowed to the width
    if json_out is not None:
        _atomic_write(json_out, json.dumps(report.to_dict(samples=True), indent=1, default=str))
        con.print(f"json: {json_out}")
    if html_out is not None:
        from kasmina_edge.profiler.html import write_html

        _atomic_write(html_out, write_html(report, detail=profile))
        con.print(f"html: {html_out}")
    return report


def profile_command(
    path: Path = typer.Argument(
        ..., help="A signed bundle (.kedge) or a model (.tflite, .onnx).", callback=checks.input_file
    ),
    profile: str = typer.Option(None, "--profile", help="One hardware profile (default: every profile)."),
    measure: bool = typer.Option(
        False, "--measure", help="Also run the artifacts on the runtimes here, pinned to one core."
    ),
    html_out: Path = typer.Option(
        None, "--html", help="Write one self-contained HTML page (tables and plots).",
        callback=checks.output_file(".html", ".htm"),
    ),
    json_out: Path = typer.Option(
        None, "--report", help="Write the whole report as a JSON file here (was `--json PATH`).",
        callback=checks.output_file(".json"),
    ),
    keys: Path = typer.Option(
        None, "--keys", help="Public key (folder or PEM) that signed the bundle (default: the keys folder).",
        callback=checks.input_path,
    ),
    heart_rate: float = typer.Option(
        72.0, "--heart-rate", help="Beats per minute (20-250), for energy and battery life.",
        callback=checks.number(low=20, high=250, what="bpm"),
    ),
    network: str = typer.Option(
        None, "--network", help="Network profile the telemetry goes over (default lorawan-eu868-dr5)."
    ),
    runs: int = typer.Option(
        1000, "--runs", help="With --measure: invokes per artifact and backend (at most ~2 s each).",
        callback=checks.at_least_one,
    ),
    as_json: bool = json_option(),
) -> None:
    """Estimate a bundle or a model on hardware profiles: latency per op, memory, energy, budgets."""
    try:
        report = run_profile(
            human(as_json),
            path,
            profile=profile,
            measure=measure,
            html_out=html_out,
            json_out=json_out,
            keys=keys,
            heart_rate=heart_rate,
            network=network,
            runs=runs,
        )
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        emit(report.to_dict(samples=True))  # type: ignore[attr-defined]


def demo_step(con: Console, workdir: Path) -> None:
    """The profile table of the demo's bundle (written by the build step) on every hardware profile."""
    bundle = workdir / "build" / "demo-edgetpu.kedge"
    if not bundle.exists():
        raise KasminaError(f"{bundle}: the build step did not write the demo bundle")
    run_profile(
        con,
        bundle,
        keys=workdir / "keys",
        html_out=workdir / "profile.html",
        json_out=workdir / "profile.json",
    )


def register(app: typer.Typer) -> None:
    app.command(
        name="profile",
        help="Hardware profiler reports: estimate (and --measure) a bundle or a model per profile.",
    )(profile_command)
