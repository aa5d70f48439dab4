"""ECG sources: fixed-size sample chunks from synthetic scenarios, WFDB or CSV.

Spec strings (``open_source``):

- ``synthetic:NAME[?minutes=M&seed=S&LEVEL=dB...]`` a named scenario (default 5 minutes, seed 0)
- ``wfdb:PATH[?leads=MLII,V1]`` a WFDB record, path without extension, resampled to ``fs``
- ``csv:PATH[?fs=HZ]`` one column per lead, optional header row of lead names; ``fs`` is the
  file's rate (default: the model rate); resampled to the model rate when it differs

A bare path is taken as WFDB when ``PATH.hea`` exists and as CSV when it ends in ``.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.records import crop
from kasmina_edge.ecg.types import DEFAULT_FS, Record
from kasmina_edge.ecg.wfdb_io import check_fs

SCHEMES: tuple[str, ...] = ("synthetic", "wfdb", "csv")
DEFAULT_SYNTH_MINUTES = 5.0


@runtime_checkable
class EcgSource(Protocol):
    """What the runtime and the tools read ECG from."""

    fs: float
    n_leads: int
    name: str

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """float32 (size, n_leads) chunks in order; the last one may be shorter."""
        ...

    def record(self) -> Record | None:
        """The whole record with its ground truth (beats, conditions) where the source has one."""
        ...


class RecordSource:
    """A source backed by a record in memory (synthetic, WFDB and CSV all are)."""

    def __init__(self, record: Record, name: str | None = None) -> None:
        sig = np.asarray(record.signal)
        if sig.ndim != 2 or sig.shape[0] == 0:
            raise KasminaError(f"source {name or record.name!r} has no samples")
        bad = ~np.isfinite(sig)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise KasminaError(
                f"source {name or record.name!r}: NaN/inf sample at {row / record.fs:.3f} s "
                f"(sample {row}) in lead {record.lead_names[col] if col < len(record.lead_names) else col}"
            )
        self._record = record
        self.fs = float(record.fs)
        self.n_leads = int(sig.shape[1])
        self.name = name or record.name

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        if size < 1:
            raise KasminaError(f"chunk size must be >= 1 sample, got {size}")
        sig = self._record.signal
        for i in range(0, sig.shape[0], size):
            yield np.ascontiguousarray(sig[i: i + size], dtype=np.float32)

    def record(self) -> Record | None:
        return self._record


def _options(query: str, allowed: set[str] | None, spec: str) -> dict[str, str]:
    """``a=1&b=2`` -> dict; options outside ``allowed`` (None: any) are an error naming them."""
    opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    unknown = sorted(set(opts) - allowed) if allowed is not None else []
    if unknown:
        known = ", ".join(sorted(allowed or [])) or "none"
        raise KasminaError(f"source {spec!r}: unknown option(s) {', '.join(unknown)} (options: {known})")
    return opts


def _float(opts: dict[str, str], key: str, default: float, spec: str) -> float:
    if key not in opts:
        return default
    try:
        return float(opts[key])
    except ValueError as exc:
        raise KasminaError(f"source {spec!r}: option {key}={opts[key]!r} is not a number") from exc


def open_synthetic(name: str, query: str, fs: float, spec: str) -> RecordSource:
    from kasmina_edge.ecg.scenarios import make_scenario

    opts = _options(query, None, spec)  # scenario levels are checked by make_scenario
    minutes = _float(opts, "minutes", DEFAULT_SYNTH_MINUTES, spec)
    seed_f = _float(opts, "seed", 0.0, spec)
    if seed_f != int(seed_f) or seed_f < 0:
        raise KasminaError(f"source {spec!r}: seed must be a non-negative integer")
    levels = {k: _float(opts, k, 0.0, spec) for k in opts if k not in ("minutes", "seed")}
    rec = make_scenario(name, minutes, fs=fs, seed=int(seed_f), **levels)
    return RecordSource(rec, f"synthetic:{name}")


def open_wfdb(path: str, query: str, fs: float) -> RecordSource:
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    opts = _options(query, {"leads"}, path)
    leads: list[str] | list[int] | None = None
    if opts.get("leads"):
        raw = [x.strip() for x in opts["leads"].split(",") if x.strip()]
        leads = [int(x) for x in raw] if all(x.isdigit() for x in raw) else raw
    return RecordSource(read_wfdb(path, fs=fs, leads=leads), f"wfdb:{path}")


def read_csv(path: str | Path, file_fs: float, fs: float = DEFAULT_FS) -> Record:
    """One column per lead (comma, semicolon or whitespace separated), optional header row."""
    p = Path(path)
    if not p.exists():
        raise KasminaError(f"CSV file not found: {p}")
    file_fs = check_fs(file_fs, f"{p}: sample rate")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    rows: list[list[str]] = []
    for line in lines:
        if line.strip():
            rows.append([c.strip() for c in line.replace(";", ",").replace("\t", ",").split(",")]
                        if ("," in line or ";" in line or "\t" in line) else line.split())
    if not rows:
        raise KasminaError(f"CSV file is empty: {p}")
    header: list[str] | None = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
    if not rows:
        raise KasminaError(f"CSV file has a header but no samples: {p}")
    width = len(rows[0])
    data = np.empty((len(rows), width), dtype=np.float64)
    first_line = 2 if header is not None else 1
    for i, row in enumerate(rows):
        if len(row) != width:
            raise KasminaError(f"{p}: line {i + first_line} has {len(row)} columns, expected {width}")
        try:
            data[i] = [float(c) for c in row]
        except ValueError as exc:
            raise KasminaError(f"{p}: line {i + first_line}: not a number ({exc})") from exc
    bad = ~np.isfinite(data)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise KasminaError(f"{p}: NaN/inf sample at line {row + first_line}, column {col + 1}")
    names = header if header is not None and len(header) == width else [f"lead{i}" for i in range(width)]
    ratio = Fraction(fs / file_fs).limit_denominator(1000)
    if ratio != 1:
        from scipy.signal import resample_poly

        data = resample_poly(data, ratio.numerator, ratio.denominator, axis=0)
    return Record(name=p.stem, fs=float(fs), signal=data.astype(np.float32), lead_names=names)


def open_csv(path: str, query: str, fs: float) -> RecordSource:
    opts = _options(query, {"fs"}, path)
    file_fs = _float(opts, "fs", fs, path)
    return RecordSource(read_csv(path, file_fs, fs), f"csv:{path}")


def open_source(spec: str, fs: float = DEFAULT_FS, start_s: float = 0.0, seconds: float | None = None
                ) -> EcgSource:
    """Open a source from its spec string (see the module doc), cropped to [start_s, start_s + seconds)."""
    fs = check_fs(fs, "model rate")
    scheme, sep, rest = spec.partition(":")
    if not sep or len(scheme) == 1:  # no scheme (or a Windows drive letter): guess from the path
        rest, scheme = spec, ""
        if spec.lower().endswith(".csv"):
            scheme = "csv"
        elif Path(spec + ".hea").exists() or spec.endswith(".hea"):
            scheme = "wfdb"
        else:
            raise KasminaError(
                f"cannot tell what source {spec!r} is: use synthetic:NAME, wfdb:PATH or csv:PATH.csv"
            )
    target, _, query = rest.partition("?")
    if not target:
        raise KasminaError(f"source {spec!r} names nothing after '{scheme}:'")
    if scheme == "synthetic":
        src = open_synthetic(target, query, fs, spec)
    elif scheme == "wfdb":
        src = open_wfdb(target, query, fs)
    elif scheme == "csv":
        src = open_csv(target, query, fs)
    else:
        raise KasminaError(f"unknown source scheme {scheme!r} in {spec!r} (known: {', '.join(SCHEMES)})")
    if start_s or seconds is not None:
        rec = src.record()
        assert rec is not None
        src = RecordSource(crop(rec, start_s, seconds), src.name)
    return src


def paced(chunks: Iterable[np.ndarray], fs: float, realtime: bool) -> Iterator[np.ndarray]:
    """Yield chunks as fast as possible, or each once its last sample would have been recorded."""
    if not realtime:
        yield from chunks
        return
    t0 = time.monotonic()
    sent = 0
    for chunk in chunks:
        sent += int(np.asarray(chunk).shape[0])
        delay = t0 + sent / fs - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk
