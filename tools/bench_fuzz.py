"""Fuzz every parser a device or the cloud exposes to the outside, and count: no crash, no hang, one-line errors.

    .venv/bin/python tools/bench_fuzz.py [--count 100000] [--only codec-binary,bundle] [--json runs/bench_fuzz.json]

Hypothesis generates the inputs (``Phase.generate`` only, no database, no shrinking: a benchmark counts, the tests
in ``tests/security/test_fuzz.py`` run the same targets small and fail on the first finding). Every target mixes
wholly random input with mutations of valid input (byte flips, truncations, insertions, splices; for the bundle,
also hostile manifests *signed with the trusted key*, so the checks behind the signature are reached too):

    codec-binary   the telemetry binary codec (contracts.codec.decode)            refusal: FrameError
    codec-json     the telemetry JSON codec (contracts.codec.from_json)            refusal: FrameError
    command        the signed command envelope through the device's Verifier       refusal: Rejected
    bundle         .kedge zip reading and verification (contracts.bundle.read_bundle)  refusal: BundleError
    csv            the CSV ECG reader (ecg.sources.read_csv)                       refusal: KasminaError
    wfdb           the WFDB reader (ecg.wfdb_io.read_wfdb): mutated header and signal  refusal: KasminaError
    mqtt           the MQTT message handlers: the monitor's ingest (any topic, any payload), the device's command
                   handler, its OTA receiver, the operator's OTA report handler    refusal: none (must not raise)

An outcome is *ok* (accepted), *refused* (the target's error type, with a one-line message) or a *finding*: any
other exception, a refusal whose message spans lines, or an input that took longer than the hang limit twice in
a row (one slow call on a loaded machine is usually the scheduler). The table
shows inputs, inputs/s, refusals, findings and the slowest input per target; the JSON keeps the first findings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kasmina_edge.contracts.errors import KasminaError  # noqa: E402

HANG_S = 1.0  # an input that takes longer than this counts as a hang
DEFAULT_COUNT = 100_000


# --------------------------------------------------------------------------------------------- mutation


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid seed with a few byte-level edits (flip, set, delete, insert, truncate, splice with another seed)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 5))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif op == 2 and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == 3:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 4:
            data = data[: draw(st.integers(0, len(data)))]
        else:
            other = draw(st.sampled_from(seeds))
            data = data[:at] + bytearray(other[draw(st.integers(0, len(other))) :])
    return bytes(data)


def bytes_input(seeds: list[bytes], max_size: int = 512) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=max_size), mutated(seeds))


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def json_text_input(seeds: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Valid JSON objects with fields replaced, dropped or added; their text mutated; or any JSON at all."""

    @st.composite
    def edited(draw: st.DrawFn) -> bytes:
        obj = dict(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 3))):
            keys = sorted(obj)
            op = draw(st.integers(0, 2))
            if op == 0 and keys:
                obj[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
            elif op == 1 and keys:
                obj.pop(draw(st.sampled_from(keys)))
            else:
                obj[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        return json.dumps(obj, default=str).encode()

    texts = [json.dumps(s).encode() for s in seeds]
    return st.one_of(
        edited(), mutated(texts), JSON_VALUES.map(lambda v: json.dumps(v, default=str).encode()), st.binary(max_size=64)
    )


# --------------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    what: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], object]
    refusals: tuple[type[BaseException], ...]  # () : the target must never raise


def codec_targets() -> list[Target]:
    from kasmina_edge.contracts import codec
    from kasmina_edge.contracts.errors import FrameError
    from kasmina_edge.contracts.lifecycle import Gate, Stage
    from kasmina_edge.contracts.telemetry import (
        AnomalyEvent,
        AnomalyKind,
        BeatCounts,
        DeviceStatus,
        GateEvent,
        LinkStats,
        ReasonCode,
        SeedEvent,
        Severity,
        Slot,
    )

    t0 = 1_800_000_000
    records = [
        DeviceStatus(1, t0, 80, 3600, Slot.A, 2),
        BeatCounts(2, t0, 60, 70, 1, 2, 0, 0),
        AnomalyEvent(3, t0, AnomalyKind.VT_RUN, Severity.CRITICAL, 1200, 1200, 0.9),
        SeedEvent(4, t0, 1, 2, Stage.TRAINING, Stage.BLENDING, ReasonCode.from_text("condition_detected")),
        GateEvent(5, t0, 1, 2, Gate.G2, True, ReasonCode.from_text("ok"), 0.5),
        LinkStats(6, t0, -110, 7.5, 1200, 0.5, 3),
    ]
    frames = [codec.encode(r) for r in records]
    dicts = [json.loads(codec.to_json(r)) for r in records]
    return [
        Target("codec-binary", "telemetry frames (binary)", bytes_input(frames, 64), codec.decode, (FrameError,)),
        Target("codec-json", "telemetry records (JSON)", json_text_input(dicts), codec.from_json, (FrameError,)),
    ]


def command_target() -> Target:
    from kasmina_edge.contracts.commands import Rejected, Verifier, sign

    key, now = bytes(range(32)), 1_800_000_000.0
    seeds = [
        sign(key, "patch-01", name, args, clock=lambda: now).to_dict()
        for name, args in (("pause", {}), ("set", {"summary_every_s": 600}), ("request-strip", {"seconds": 2}))
    ]
    verifier = Verifier(key, "patch-01", clock=lambda: now, window_s=60, nonce_ttl_s=300)

    def run(payload: bytes) -> object:
        return verifier.verify(payload)

    return Target("command", "signed command envelope (device verifier)", json_text_input(seeds), run, (Rejected,))


def _tiny_bundle(folder: Path) -> tuple[Path, Any, dict[str, Any], dict[str, bytes]]:
    """A small valid kernels bundle and its key (what the bundle target mutates)."""
    from kasmina_edge.contracts.bundle import init_keys, load_private_key, write_bundle
    from kasmina_edge.contracts.manifest import SCHEMA

    keys = folder / "keys"
    init_keys(keys)
    files = {"artifacts/k0.tflite": bytes(range(200)), "reference/k0.npz": b"\x93NUMPY" + bytes(40)}
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "kernels",
        "version": 3,
        "target": "cortex-m",
        "profile": "stm32h743",
        "format": "tflite-int8",
        "model": {"checkpoint_sha256": "ab" * 32},
        "artifacts": [
            {"name": "k0", "kind": "kernel", "format": "tflite-int8", "file": "artifacts/k0.tflite",
             "sha256": "0" * 64, "bytes": 0, "site": 0, "reference": "reference/k0.npz"}
        ],
        "provenance": {"kasmina_edge": "0.1.0", "built_at": "2026-12-01T00:00:00Z"},
    }
    path = folder / "seed.kedge"
    signed = write_bundle(path, manifest, files, keys)
    return path, load_private_key(keys), json.loads(signed.to_bytes()), files


def bundle_target(workdir: Path) -> Target:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kasmina_edge.contracts.bundle import BundleError, read_bundle

    path, private, manifest, files = _tiny_bundle(workdir)
    public = private.public_key()
    assert isinstance(private, Ed25519PrivateKey)
    valid = path.read_bytes()
    probe = workdir / "probe.kedge"

    def signed_zip(manifest_bytes: bytes, extra: dict[str, bytes]) -> bytes:
        """A zip whose (hostile) manifest carries a *valid* signature: the checks behind the signature run."""
        sig = json.dumps({"alg": "Ed25519", "key_id": "x",
                          "signature": base64.b64encode(private.sign(manifest_bytes)).decode()}).encode()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("manifest.json", manifest_bytes)
            z.writestr("signature.json", sig)
            for name, data in {**files, **extra}.items():
                z.writestr(name, data)
        return buf.getvalue()

    @st.composite
    def hostile_signed(draw: st.DrawFn) -> bytes:
        text = draw(json_text_input([manifest]))
        extra = draw(st.dictionaries(st.sampled_from(["artifacts/k0.tflite", "../evil", "x", "manifest.json"]),
                                     st.binary(max_size=32), max_size=2))
        return signed_zip(text, extra)

    strategy = st.one_of(bytes_input([valid], 2048), mutated([valid]), hostile_signed())

    def run(data: bytes) -> object:
        probe.write_bytes(data)
        b = read_bundle(probe, public)
        for name in b.files:  # every file read back (hash-checked again)
            b.read(name)
        return b

    return Target("bundle", ".kedge zip read and verify", strategy, run, (BundleError,))


def csv_target(workdir: Path) -> Target:
    from kasmina_edge.ecg.sources import read_csv

    probe = workdir / "probe.csv"
    cell = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(10**20), 10**20).map(str),
        st.text(alphabet=",;\t .-+eE0123456789abcnaINF\"'", max_size=8),
    )
    line = st.lists(cell, max_size=4).flatmap(
        lambda cells: st.sampled_from([",", ";", "\t", " "]).map(lambda sep: sep.join(cells))
    )
    valid = ["mlii,v5\n" + "\n".join(f"{0.1 * i:.3f},{-0.2 * i:.3f}" for i in range(20))]
    text = st.one_of(
        st.lists(line, max_size=12).map("\n".join),
        mutated([v.encode() for v in valid]).map(lambda b: b.decode("utf-8", "replace")),
        st.text(max_size=200),
    )

    def run(t: str) -> object:
        probe.write_text(t, encoding="utf-8", errors="surrogatepass")
        return read_csv(probe, 360.0)

    return Target("csv", "CSV ECG reader", text, run, (KasminaError,))


def wfdb_target(workdir: Path) -> Target:
    import numpy as np

    from kasmina_edge.ecg.types import Record
    from kasmina_edge.ecg.wfdb_io import read_wfdb, write_wfdb

    src = workdir / "wfdb-src"
    sig = np.sin(np.linspace(0, 20, 720, dtype=np.float32))[:, None].astype(np.float32)
    base = write_wfdb(Record(name="fz", fs=360.0, signal=sig, lead_names=["MLII"]), src)
    hea = base.with_suffix(".hea").read_bytes()
    dat = base.with_suffix(".dat").read_bytes()
    probe = workdir / "wfdb-probe"
    probe.mkdir()
    header_lines = st.lists(st.text(alphabet="fz0123456789 ./-+MLIIabcdx()#\n", max_size=40), min_size=1, max_size=4)

    def run(parts: tuple[bytes, bytes]) -> object:
        for f in probe.iterdir():
            f.unlink()
        (probe / "fz.hea").write_bytes(parts[0])
        (probe / "fz.dat").write_bytes(parts[1])
        return read_wfdb(probe / "fz", fs=360.0, unknown="skip")

    strategy = st.tuples(
        st.one_of(mutated([hea]), header_lines.map(lambda ls: "\n".join(ls).encode())),
        st.one_of(st.just(dat), mutated([dat]), st.binary(max_size=64)),
    )
    return Target("wfdb", "WFDB reader (header and signal)", strategy, run, (KasminaError,))


def mqtt_target(workdir: Path) -> Target:
    from firmware_sim.device import DeviceAddress, EmulatedDevice
    from firmware_sim.ota import OtaReceiver
    from kasmina_edge.contracts.commands import sign, sign_ack
    from kasmina_edge.net.audit import AuditLog
    from kasmina_edge.net.commands import CommandHandler
    from kasmina_edge.net.monitor import Monitor
    from kasmina_edge.net.ota import CHUNK_TAG, FRAGMENT_TAG, OTA_HEADER, OtaServer
    from kasmina_edge.net.packet import Uplink

    key, now = bytes(range(32)), 1_800_000_000.0
    monitor = Monitor()  # no store: in memory
    handler = CommandHandler("patch-01", key, AuditLog(workdir / "audit.jsonl", key=key), {}, clock=lambda: now)

    class _Link:
        def send_control(self, *a: object) -> None:
            pass

    device = EmulatedDevice(DeviceAddress.parse("emu://fuzz", workdir / "devices"))
    receiver = OtaReceiver(device, _Link())
    args = {"session": 7, "bundle_id": "b", "version": 2, "kind": "full", "bytes": 10, "sha256": "0" * 64,
            "mode": "chunks", "piece_bytes": 5, "pieces": 2, "parity": 0, "chunk_sha256": ["0" * 64] * 2}
    server = OtaServer(key, "patch-01", args, b"0123456789", lambda m: None)
    uplinks = [
        Uplink("patch-01", "lorawan-eu868-dr0", 3, 1.0, 2.0, 0.3, b"\x20\x01" + bytes(18), now).to_bytes(),
        Uplink("patch-01", "wifi", 4, 1.0, 1.1, 0.001, {"r": []}, now).to_bytes(),
    ]
    reports = [sign_ack(key, {"session": 7, "status": "receiving"}), {"session": 7, "status": "probation_passed",
                                                                      "final": True}]
    commands = [sign(key, "patch-01", "pause", clock=lambda: now).to_dict()]
    topic = st.one_of(
        st.sampled_from(["kasmina/f1/patch-01/telemetry/batch", "kasmina/f1/patch-01/status",
                         "kasmina/f1/patch-01/telemetry/cmd_ack", "kasmina/f1/patch-01/telemetry/ota_report",
                         "kasmina/f1/other/telemetry/batch", "kasmina/+/#", "kasmina//x"]),
        st.text(max_size=40),
    )
    piece = st.tuples(st.sampled_from([CHUNK_TAG, FRAGMENT_TAG, 0]), st.integers(0, 9), st.integers(0, 3)).map(
        lambda t: OTA_HEADER.pack(*t)
    )
    strategy = st.one_of(
        st.tuples(st.just("monitor"), topic, st.one_of(bytes_input(uplinks, 256), json_text_input(reports))),
        st.tuples(st.just("command"), st.just(""), json_text_input(commands)),
        st.tuples(st.just("ota-piece"), st.just(""), st.tuples(piece, st.binary(max_size=16)).map(b"".join)),
        st.tuples(st.just("ota-report"), st.just(""), json_text_input(reports)),
    )

    def run(msg: tuple[str, str, bytes]) -> object:
        kind, t, payload = msg
        if kind == "monitor":
            return monitor.ingest(t, payload)
        if kind == "command":
            return handler.handle(payload)
        if kind == "ota-piece":
            return receiver.on_downlink(payload, 0.0)
        try:
            body = json.loads(payload)
        except ValueError:
            return None  # the operator's handler drops what is not JSON before this point
        return server.on_report(body) if isinstance(body, dict) else None

    return Target("mqtt", "MQTT handlers (monitor, commands, OTA)", strategy, run, ())


def all_targets(workdir: Path) -> list[Target]:
    return [*codec_targets(), command_target(), bundle_target(workdir), csv_target(workdir), wfdb_target(workdir),
            mqtt_target(workdir)]


# --------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    target: str
    what: str
    inputs: int = 0
    ok: int = 0
    refused: int = 0
    findings: int = 0
    slowest_s: float = 0.0
    hangs: int = 0
    seconds: float = 0.0
    samples: list[dict[str, str]] = field(default_factory=list)  # the first findings

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items()}, "inputs_per_s": round(self.rate, 1)}


def fuzz(target: Target, count: int, *, keep: int = 5) -> Outcome:
    """Run ``count`` generated inputs through ``target`` and classify each (never stops on a finding)."""
    out = Outcome(target.name, target.what)

    def finding(kind: str, data: Any, detail: str) -> None:
        out.findings += 1
        if len(out.samples) < keep:
            out.samples.append({"kind": kind, "input": repr(data)[:300], "detail": detail[-1200:]})

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(target.strategy)
    def one(data: Any) -> None:
        out.inputs += 1
        t = time.perf_counter()
        try:
            target.run(data)
            out.ok += 1
        except target.refusals as exc:
            message = str(exc)
            if "\n" in message.strip() or not message.strip():
                finding("multi-line or empty refusal", data, f"{type(exc).__name__}: {message}")
            else:
                out.refused += 1
        except Exception as exc:  # noqa: BLE001 - every other exception is what the fuzzer looks for
            finding("crash", data, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        spent = time.perf_counter() - t
        if spent > HANG_S:  # timed again: on a loaded machine one slow call is often the scheduler, not the input
            t = time.perf_counter()
            with contextlib.suppress(Exception):  # classified on the first run; only the time matters here
                target.run(data)
            spent = min(spent, time.perf_counter() - t)
        out.slowest_s = max(out.slowest_s, spent)
        if spent > HANG_S:
            out.hangs += 1
            finding("hang", data, f"{spent:.2f} s (twice)")

    t0 = time.perf_counter()
    one()
    out.seconds = time.perf_counter() - t0
    return out


def table(outcomes: list[Outcome]) -> Table:
    t = Table(title=f"fuzzing: generated malformed inputs per parser (hang limit {HANG_S:g} s)")
    for col in ("target", "parser", "inputs", "inputs/s", "accepted", "refused (1 line)", "findings", "slowest"):
        t.add_column(col, justify="left" if col in ("target", "parser") else "right")
    for o in outcomes:
        t.add_row(o.target, o.what, f"{o.inputs:,}", f"{o.rate:,.0f}", f"{o.ok:,}", f"{o.refused:,}",
                  f"[red]{o.findings:,}[/]" if o.findings else "0", f"{1e3 * o.slowest_s:,.1f} ms")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT, help="inputs per target (default 100,000)")
    ap.add_argument("--only", default="", help="comma-separated targets (default: all)")
    ap.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_fuzz.json")
    args = ap.parse_args(argv)
    con = Console()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="kasmina-fuzz-") as tmp:
        targets = all_targets(Path(tmp))
        wanted = {x for x in args.only.split(",") if x}
        unknown = wanted - {t.name for t in targets}
        if unknown:
            con.print(f"[red]unknown targets {sorted(unknown)}[/]; known: {', '.join(t.name for t in targets)}")
            return 2
        for target in targets:
            if wanted and target.name not in wanted:
                continue
            con.print(f"fuzzing {target.name} ({target.what}): {args.count:,} inputs ...")
            outcomes.append(fuzz(target, args.count))
            o = outcomes[-1]
            con.print(f"  {o.inputs:,} inputs in {o.seconds:,.1f} s, {o.findings} findings")
    con.print(table(outcomes))
    for o in outcomes:
        for s in o.samples:
            con.print(f"[red]{o.target}[/] {s['kind']}: {s['detail'].splitlines()[0]} <- {s['input'][:120]}",
                      highlight=False)
    total = sum(o.inputs for o in outcomes)
    ratio = min((o.rate for o in outcomes), default=0.0) / max((o.rate for o in outcomes), default=1.0)
    con.print(f"{total:,} inputs, {sum(o.findings for o in outcomes)} findings; slowest target runs at "
              f"{ratio:.3f}x the fastest's rate")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = args.json.with_name(args.json.name + ".partial")
    tmp_json.write_text(json.dumps({"count": args.count, "hang_s": HANG_S,
                                    "targets": [o.to_dict() for o in outcomes]}, indent=1))
    tmp_json.replace(args.json)
    con.print(f"JSON: {args.json}")
    return 1 if any(o.findings for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
