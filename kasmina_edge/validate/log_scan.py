"""Reading a logs folder for what the checks look for: raw ECG, patient data in plain text, audit logs, bundles.

A raw ECG is a list of at least ``RAW_MIN_SAMPLES`` numbers under a signal-like key (``samples``, ``signal``,
``ecg``, ``strip``, ``raw``, ``waveform``), or such a run of numbers in a plain-text line. An encrypted strip
(``iv`` + ``ciphertext``, as ``net.commands.seal_strip`` makes it) is allowed when it answers a request (it
carries the request's ``nonce``). Patient data is a beat record, a telemetry record or a raw ECG.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kasmina_edge.validate.log_crypto import SUFFIX, is_envelope

RAW_MIN_SAMPLES = 64
RAW_KEYS = frozenset({"samples", "signal", "ecg", "strip", "raw", "waveform", "data"})
TEXT_SUFFIXES = (".jsonl", ".json", ".log", ".txt", ".csv", ".ndjson")
_NUMBER_RUN = re.compile(r"(?:-?\d+(?:\.\d+)?(?:[eE]-?\d+)?\s*[,;\s]\s*){" + str(RAW_MIN_SAMPLES) + ",}")


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def log_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name.endswith(SUFFIX)))


def _objects(path: Path) -> Iterator[tuple[int, Any, str]]:
    """(line number, parsed JSON or None, raw line) of a text file; a whole-file JSON document as line 1."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if path.suffix == ".json" or path.name.endswith(SUFFIX):
        try:
            yield 1, json.loads(text), text[:2000]
            return
        except ValueError:
            pass
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            obj: Any = json.loads(line)
        except ValueError:
            obj = None
        yield n, obj, line


def _raw_arrays(obj: Any, key: str = "") -> Iterator[str]:
    """Where ``obj`` holds a plain raw ECG (the key path), skipping encrypted envelopes."""
    if isinstance(obj, dict):
        if is_envelope(obj) or {"iv", "ciphertext"} <= obj.keys():
            return
        for k, v in obj.items():
            yield from _raw_arrays(v, f"{key}.{k}" if key else str(k))
    elif isinstance(obj, list):
        last = key.rsplit(".", 1)[-1].lower()
        numbers = sum(1 for v in obj if isinstance(v, int | float) and not isinstance(v, bool))
        if last in RAW_KEYS and numbers >= RAW_MIN_SAMPLES:
            yield f"{key}: {numbers} samples in plain text"
        else:
            for i, v in enumerate(obj[:64]):
                yield from _raw_arrays(v, f"{key}[{i}]")


def _unrequested_strips(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        if {"iv", "ciphertext"} <= obj.keys() and not is_envelope(obj) and not obj.get("nonce"):
            yield "an encrypted strip no request asked for (no request nonce)"
        for v in obj.values():
            yield from _unrequested_strips(v)
    elif isinstance(obj, list):
        for v in obj[:64]:
            yield from _unrequested_strips(v)


def raw_ecg(path: Path) -> list[Finding]:
    if path.name.endswith(SUFFIX):
        return []
    out: list[Finding] = []
    for n, obj, line in _objects(path):
        if obj is not None:
            out += [Finding(path, n, w) for w in (*_raw_arrays(obj), *_unrequested_strips(obj))]
        elif _NUMBER_RUN.search(line):
            out.append(Finding(path, n, f"a run of {RAW_MIN_SAMPLES}+ numbers in plain text"))
        if len(out) >= 20:
            break
    return out


def _patient_data(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if obj.get("event") == "beat" or ("class" in obj and "sample" in obj):
        return "beat classes"
    if "record" in obj and "kind" in obj and "device" in obj:
        return f"telemetry ({obj.get('kind')})"
    return None


def plain_patient_data(path: Path) -> Finding | None:
    """The first line of ``path`` that holds patient data in plain text (None: none, or the file is sealed)."""
    for n, obj, _line in _objects(path):
        if n == 1 and is_envelope(obj):
            return None
        what = _patient_data(obj) or (next(iter(_raw_arrays(obj)), None) if obj is not None else None)
        if what:
            return Finding(path, n, f"{what} in plain text")
    return None


def audit_logs(files: list[Path]) -> list[Path]:
    """The keyed hash-chain logs (``net.audit``) among ``files``: JSON lines with ``hash`` and ``prev``."""
    out = []
    for p in files:
        if p.suffix != ".jsonl":
            continue
        try:
            with p.open(encoding="utf-8") as f:
                first = json.loads(f.readline() or "{}")
        except (ValueError, OSError, UnicodeDecodeError):
            continue
        if isinstance(first, dict) and "hash" in first and "prev" in first:
            out.append(p)
    return out
