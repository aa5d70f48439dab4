"""Every command with bad values (the new-user review's list and more): refused before any work in one line
on stderr, exit 2, no traceback, no file written or left half-written (issue 17, item 2)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)

# (argv, text the one error line must hold)
BAD: list[tuple[list[str], str]] = [
    # the review's tracebacks
    (["run", "--seconds", "nan", "--device", "dir:.", "--ecg", "synthetic:clean"], "--seconds"),
    (["broker", "--port", "99999"], "--port"),
    (["ecg", "synth", "--out", "/proc/nope", "--minutes", "0.1"], "/proc/nope"),
    (["evaluate", "synthetic:clean", "--predictions", "strip.png"], "not a JSON-lines run log"),
    (["monitor", "--store", "strip.png", "--seconds", "1"], "not a JSON-lines file"),
    # the review's values accepted with exit 0
    (["train", "--epochs", "0", "--out", "x.pt"], "--epochs"),
    (["train", "--epochs", "-1", "--out", "x.pt"], "--epochs"),
    (["morph", "--checkpoint", "base.pt", "--patients", "0"], "--patients"),
    (["monitor", "--seconds", "-1"], "--seconds"),
    (["send", "patch-01", "pause", "--timeout", "-1"], "--timeout"),
    (["send", "patch-01", "set", "bogus=1"], "set bogus: not a setting the device accepts"),
    (["send", "patch-01", "set", "summary_every_s=abc"], "must be a number in [60, 86400]"),
    (["flash", "strip.png", "--device", "dir:TYPO"], "TYPO does not exist"),
    # the review's checked-too-late
    (["train", "--minutes", "0", "--out", "x.pt"], "--minutes"),
    (["evaluate", "synthetic:clean", "--predictions", "run.jsonl", "--plot", "x.bmp2"], ".png"),
    (["ecg", "stats", "synthetic:clean?minutes=0.2", "--fs", "0"], "--fs"),
    # nan, inf and negatives elsewhere
    (["run", "--seconds", "inf", "--device", "dir:.", "--ecg", "synthetic:clean"], "not a finite number"),
    (["run", "--from", "-5", "--device", "dir:.", "--ecg", "synthetic:clean"], "--from"),
    (["broker", "--port", "0"], "--port"),
    (["broker", "--seconds", "-1"], "--seconds"),
    (["ecg", "synth", "--minutes", "nan", "--out", "rec"], "--minutes"),
    (["ecg", "plot", "synthetic:clean", "--seconds", "-3", "--out", "s.png"], "--seconds"),
    (["evaluate", "synthetic:clean", "--predictions", "run.jsonl", "--from", "nan"], "--from"),
    (["morph", "--checkpoint", "base.pt", "--minutes", "-1"], "--minutes"),
    (["ota", "strip.png", "--device", "p", "--timeout", "nan"], "--timeout"),
    (["profile", "model.tflite", "--heart-rate", "nan"], "--heart-rate"),
    (["profile", "model.tflite", "--runs", "0"], "--runs"),
    # enum choices
    (["run", "--kernels", "fast", "--device", "dir:.", "--ecg", "synthetic:clean"], "--kernels"),
    (["train", "--preset", "huge"], "unknown preset 'huge'"),
    (["morph", "--checkpoint", "base.pt", "--target", "tpu"], "unknown target 'tpu'"),
    (["build", "--checkpoint", "base.pt", "--target", "tpu"], "--target"),
    (["build", "--checkpoint", "base.pt", "--target", "edgetpu", "--bits", "5"], "--bits"),
    (["ecg", "synth", "--scenario", "nope", "--out", "rec"], "unknown scenario 'nope'"),
    (["send", "patch-01", "launch"], "unknown command 'launch'"),
    (["send", "patch-01", "pause", "now=1"], "takes no arguments"),
    (["send", "patch-01", "request-strip", "seconds=9"], "seconds=9"),
    (["targets", "show", "nope"], "nope"),
    (["profiles", "show", "nope"], "nope"),
    # files: missing, or of the wrong kind
    (["build", "--target", "edgetpu", "--out", "b.kedge"], "Missing option '--checkpoint'"),
    (["build", "--checkpoint", "nope.pt", "--target", "edgetpu"], "nope.pt: no such file"),
    (["build", "--checkpoint", "base.pt", "--target", "edgetpu", "--seeds", "strip.png"], "not a folder"),
    (["build", "--checkpoint", "base.pt", "--target", "edgetpu", "--out", "b.zip"], ".kedge"),
    (["train", "--resume", "nope.pt"], "nope.pt: no such file"),
    (["flash", "nope.kedge", "--device", "emu://p"], "nope.kedge: no such file"),
    (["flash", "strip.png", "--device", "ftp://x"], "emu://NAME"),
    (["run", "--device", "emu://never-flashed", "--ecg", "synthetic:clean"], "flash a bundle to it first"),
    (["ota", "nope.kedge", "--device", "p"], "nope.kedge: no such file"),
    (["evaluate", "synthetic:clean", "--predictions", "nope.jsonl"], "nope.jsonl: no such file"),
    (["ecg", "synth", "--out", "strip.png"], "not a folder"),
    (["ecg", "plot", "synthetic:clean", "--out", "x.bmp2"], ".png"),
    (["profile", "model.tflite"], "not a TFLite or ONNX model (it is a PNG image)"),
    (["profile", "strip.png"], "not .png"),
    (["profile", "fake.kedge"], "not a bundle"),
    (["morph", "--patient", "synthetic:clean", "--checkpoint", "base.pt", "--out", "seed.zip"], ".kedge"),
    (["morph", "--checkpoint", "base.pt", "--base-bundle", "nope.kedge"], "nope.kedge: no such file"),
    (["morph", "--checkpoint", "base.pt", "--base-bundle", "strip.png"], "only with --patient"),
    (["build", "--checkpoint", "strip.png", "--target", "edgetpu"], "strip.png: not a checkpoint"),
    (["morph", "--checkpoint", "strip.png"], "strip.png: not a checkpoint"),
    (["train", "--resume", "strip.png"], "strip.png: not a checkpoint"),
    (["keys", "init", "--dir", "strip.png"], "not a folder"),
    (["run", "--device", "dir:.", "--ecg", "csv:strip.png"], "strip.png"),
    (["evaluate", "csv:strip.png", "--predictions", "run.jsonl"], "strip.png"),
    (["ota", "strip.png", "--device", "p", "--link", "nope"], "nope"),
    (["monitor", "--mqtt", "http://x", "--seconds", "1"], "mqtt://HOST"),
    (["train", "--data", "bogus:x"], "--data"),
    (["morph", "--checkpoint", "base.pt", "--reward", "bogus=1"], "unknown term 'bogus'"),
    (["send", "patch-01", "pause", "--key", "nope.key"], "nope.key: no such file"),
    (["monitor", "--ca", "nope.pem"], "nope.pem: no such file"),
    (["run", "--device", "dir:.", "--ecg", "synthetic:clean", "--password-file", "nope"], "nope: no such file"),
    (["ota", "strip.png", "--device", "p", "--keys", "nope"], "nope: no such file or folder"),
    (["build", "--checkpoint", "base.pt", "--target", "edgetpu", "--version", "0"], "--version"),
]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def workdir(home: Path) -> Path:
    work = Path.cwd()
    (work / "strip.png").write_bytes(PNG)
    (work / "model.tflite").write_bytes(PNG)
    (work / "fake.kedge").write_bytes(PNG)
    with zipfile.ZipFile(work / "base.pt", "w") as z:  # looks like a torch checkpoint (a zip) to the checks
        z.writestr("base/data.pkl", b"not really a checkpoint")
    (work / "run.jsonl").write_text(json.dumps({"event": "beat", "sample": 100, "class": "N"}) + "\n")
    return work


@pytest.mark.parametrize(("argv", "text"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_value_is_one_line_before_any_work(argv: list[str], text: str, workdir: Path, kasmina) -> None:  # type: ignore[no-untyped-def]
    root = workdir.parent  # the work folder and KASMINA_HOME
    before = _files(root)
    got = kasmina(*argv)
    assert got.code == 2, (got.code, got.err, got.out[-500:])
    assert "Traceback" not in got.err + got.out
    assert len(got.err_lines) == 1, got.err
    line = got.err_lines[0]
    assert line.startswith("error:"), line
    assert text in line, line
    assert _files(root) == before, "a refused command wrote a file"
