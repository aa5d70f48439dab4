"""WFDB records in and out, MIT-BIH beat symbols mapped to AAMI classes.

``wfdb`` is an optional extra, imported only when a function here is called.

Symbol rule: MIT-BIH beat symbols map to AAMI classes per :data:`MITBIH_TO_AAMI` (the
AAMI EC57 grouping); beat symbols of other PhysioNet databases per :data:`EXTRA_TO_AAMI`;
non-beat annotations (:data:`NON_BEAT`: rhythm changes, noise, comments, waves) are skipped.
Any other symbol is an error by default (``unknown="error"``), or labelled Q
(``unknown="q"``), or skipped (``unknown="skip"``).

Files this module writes beside the standard ``.hea``/``.dat``/``.atr``: ``.cnd`` (signal
conditions such as ``emg`` at an SNR, as ``(``/``)`` pairs), ``.evt`` (anomaly spans of a
synthetic record, same form) and ``.art`` (runs of the artifact mask), all ordinary WFDB annotation files, so that a synthetic record read back
carries every label it was written with.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.optional import require
from kasmina_edge.ecg.types import AAMI_CLASSES, AAMI_INDEX, DEFAULT_FS, Beats, Interval, Record

# MIT-BIH beat symbol -> AAMI class letter (AAMI EC57).
MITBIH_TO_AAMI: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}
# Beat symbols that MIT-BIH does not use but other PhysioNet databases do, grouped the AAMI way:
# B (bundle branch block, unspecified) like L/R, n (supraventricular escape) like e/j,
# r (R-on-T premature ventricular) like V, ? (unclassified) as Q.
EXTRA_TO_AAMI: dict[str, str] = {"B": "N", "n": "N", "r": "V", "?": "Q"}
# Annotations that are not beats (WFDB's standard table).
NON_BEAT: frozenset[str] = frozenset(
    ["[", "]", "!", "x", "(", ")", "p", "t", "u", "`", "'", "^", "|", "~", "+", "s", "T", "*", "D", "=", '"', "@"]
)
# AAMI class -> the symbol written for a beat whose source symbol is unknown.
AAMI_TO_SYMBOL: dict[str, str] = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}

MIN_FS, MAX_FS = 50.0, 10_000.0
ADC_GAIN = 1000.0  # adu per mV when writing: 1 uV resolution, +/-32.7 mV range in format 16
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5, "24": 3.0, "32": 4.0,
                     "310": 4 / 3, "311": 4 / 3}

Unknown = Literal["error", "q", "skip"]


def check_fs(fs: float, what: str = "sample rate") -> float:
    if not isinstance(fs, int | float) or not math.isfinite(fs) or not MIN_FS <= fs <= MAX_FS:
        raise KasminaError(f"{what} {fs} Hz is not supported (need {MIN_FS:g}..{MAX_FS:g} Hz)")
    return float(fs)


def _strip_ext(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix in {".hea", ".dat", ".atr"}:
        p = p.with_suffix("")
    return p


def _wfdb() -> Any:
    return require("wfdb", "reading and writing WFDB records")


def _check_data_files(base: Path, header: Any) -> None:
    """Empty or truncated .dat files -> one clear line naming the file."""
    files: dict[str, list[int]] = {}
    for i, fname in enumerate(header.file_name or []):
        files.setdefault(fname, []).append(i)
    for fname, idx in files.items():
        dat = base.parent / fname
        if not dat.exists():
            raise KasminaError(f"WFDB data file not found: {dat}")
        size = dat.stat().st_size
        if size == 0:
            raise KasminaError(f"WFDB data file is empty: {dat}")
        fmt = str(header.fmt[idx[0]])
        per = _BYTES_PER_SAMPLE.get(fmt)
        sig_len = header.sig_len or 0
        if per is None or not sig_len:
            continue
        offset = int((header.byte_offset or [0] * (idx[0] + 1))[idx[0]] or 0)
        frames = sum(int((header.samps_per_frame or [1] * len(header.fmt))[i] or 1) for i in idx)
        expected = offset + math.floor(sig_len * frames * per)
        if size < expected:
            raise KasminaError(
                f"WFDB data file is truncated: {dat} has {size} bytes, the header needs {expected}"
            )


def _resolve_leads(header: Any, leads: list[str] | list[int] | None, hea: Path) -> list[int]:
    names = list(header.sig_name or [])
    if leads is None:
        return list(range(header.n_sig))
    out: list[int] = []
    for lead in leads:
        if isinstance(lead, int):
            if not 0 <= lead < header.n_sig:
                raise KasminaError(f"{hea}: lead index {lead} out of range (record has {header.n_sig} leads)")
            out.append(lead)
        elif lead in names:
            out.append(names.index(lead))
        else:
            raise KasminaError(f"{hea}: no lead named {lead!r} (leads: {', '.join(names)})")
    return out


def symbol_to_class(symbol: str, unknown: Unknown = "error", where: str = "") -> int | None:
    """AAMI class index of a beat symbol; None for non-beat annotations (and unknown='skip')."""
    if symbol in MITBIH_TO_AAMI:
        return AAMI_INDEX[MITBIH_TO_AAMI[symbol]]
    if symbol in EXTRA_TO_AAMI:
        return AAMI_INDEX[EXTRA_TO_AAMI[symbol]]
    if symbol in NON_BEAT:
        return None
    if unknown == "q":
        return AAMI_INDEX["Q"]
    if unknown == "skip":
        return None
    raise KasminaError(f"{where}unknown annotation symbol {symbol!r} (use unknown='q' to label it Q)")


def _aux(ann: Any, i: int) -> str:
    notes = ann.aux_note or []
    return (notes[i] if i < len(notes) else "").rstrip("\x00").strip()


def _read_ann(wfdb: Any, base: Path, ext: str) -> Any | None:
    """The whole annotation file (spans are cut by the callers: a rhythm begun before the span still holds)."""
    path = base.parent / f"{base.name}.{ext}"
    if not path.exists():
        return None
    try:
        return wfdb.rdann(str(base), ext)
    except Exception as exc:  # wfdb raises many kinds on a damaged file
        raise KasminaError(f"cannot read WFDB annotations {path}: {exc}") from exc


def read_wfdb(
    path: str | Path,
    fs: float = DEFAULT_FS,
    leads: list[str] | list[int] | None = None,
    start_s: float = 0.0,
    seconds: float | None = None,
    unknown: Unknown = "error",
) -> Record:
    """Read a WFDB record (path without extension), resampled to ``fs``, with AAMI beat labels."""
    fs = check_fs(fs, "target rate")
    base = _strip_ext(path)
    hea = base.parent / f"{base.name}.hea"
    if not hea.exists():
        raise KasminaError(f"WFDB header not found: {hea}")
    wfdb = _wfdb()
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:
        raise KasminaError(f"bad WFDB header {hea}: {exc}") from exc
    if not header.n_sig or not header.fs:
        raise KasminaError(f"bad WFDB header {hea}: no signals or no sampling frequency")
    src_fs = check_fs(float(header.fs), f"{hea}: sampling frequency")
    _check_data_files(base, header)
    channels = _resolve_leads(header, leads, hea)
    sig_len = int(header.sig_len or 0)
    if sig_len <= 0:
        raise KasminaError(f"{hea}: the header gives no signal length")
    if start_s < 0 or (seconds is not None and seconds <= 0):
        raise KasminaError(f"bad span: start {start_s} s, length {seconds} s")
    sampfrom = int(round(start_s * src_fs))
    if sampfrom >= sig_len:
        raise KasminaError(f"{hea}: start {start_s} s is past the end ({sig_len / src_fs:.1f} s)")
    sampto = sig_len if seconds is None else min(sig_len, sampfrom + int(round(seconds * src_fs)))
    try:
        rec = wfdb.rdrecord(str(base), sampfrom=sampfrom, sampto=sampto, channels=channels, physical=True)
    except Exception as exc:
        raise KasminaError(f"cannot read WFDB signals of {hea}: {exc}") from exc
    signal = np.asarray(rec.p_signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] == 0:
        raise KasminaError(f"WFDB record {base} has no samples in the requested span")
    bad = ~np.isfinite(signal)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise KasminaError(
            f"{base}: invalid sample (NaN/inf) at {(sampfrom + row) / src_fs:.3f} s in lead {rec.sig_name[col]}"
        )

    ratio = Fraction(fs / src_fs).limit_denominator(1000)
    if ratio != 1:
        from scipy.signal import resample_poly

        signal = resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)
    n_out = signal.shape[0]

    def rescale(samples: np.ndarray) -> np.ndarray:
        """Source sample offsets -> output sample offsets, within [0, n_out]."""
        s = np.asarray(samples, dtype=np.float64) * fs / src_fs
        return np.clip(np.round(s).astype(np.int64), 0, n_out)

    beats, rhythms = _beats_and_rhythms(wfdb, base, sampfrom, sampto, unknown, rescale, n_out)
    conditions = _read_intervals(wfdb, base, "cnd", sampfrom, sampto, rescale)
    anomalies = _read_intervals(wfdb, base, "evt", sampfrom, sampto, rescale)
    mask = _read_mask(wfdb, base, sampfrom, sampto, rescale, n_out)
    return Record(
        name=base.name,
        fs=fs,
        signal=signal.astype(np.float32),
        lead_names=[str(rec.sig_name[i]) for i in range(len(channels))],
        beats=beats,
        artifact_mask=mask,
        rhythms=rhythms,
        conditions=conditions,
        anomalies=anomalies,
    )


def _beats_and_rhythms(
    wfdb: Any, base: Path, sampfrom: int, sampto: int, unknown: Unknown, rescale: Any, n_out: int
) -> tuple[Beats | None, list[Interval]]:
    ann = _read_ann(wfdb, base, "atr")
    if ann is None:
        return None, []
    samples: list[int] = []
    classes: list[int] = []
    symbols: list[str] = []
    changes: list[tuple[int, str]] = []
    where = f"{base}.atr: "
    for i, (s_abs, sym) in enumerate(zip(ann.sample, ann.symbol, strict=False)):
        s = int(s_abs) - sampfrom
        if s_abs >= sampto:
            break
        if sym == "+":
            note = _aux(ann, i)
            if note.startswith("("):
                if s <= 0:  # the rhythm in effect when the span begins
                    changes = [(0, note[1:])]
                else:
                    changes.append((s, note[1:]))
            continue
        if s < 0:
            continue
        cls = symbol_to_class(sym, unknown, where=f"{where}at sample {int(s_abs)}: ")
        if cls is None:
            continue
        samples.append(s)
        classes.append(cls)
        symbols.append(str(sym))
    out_samples = np.minimum(rescale(np.asarray(samples, dtype=np.int64)), n_out - 1)
    beats = Beats(samples=out_samples, classes=np.asarray(classes, dtype=np.int8), symbols=symbols)
    rhythms: list[Interval] = []
    starts = rescale(np.asarray([c[0] for c in changes], dtype=np.int64)) if changes else []
    for j, (_, label) in enumerate(changes):
        end = int(starts[j + 1]) if j + 1 < len(changes) else n_out
        rhythms.append(Interval(int(starts[j]), end, label))
    return beats, rhythms


def _read_intervals(wfdb: Any, base: Path, ext: str, sampfrom: int, sampto: int, rescale: Any) -> list[Interval]:
    """Labelled spans written by :func:`_write_intervals` ('(' ... ')' pairs matched by an id)."""
    ann = _read_ann(wfdb, base, ext)
    if ann is None:
        return []
    opened: dict[str, tuple[int, str, float | None, str]] = {}
    out: list[tuple[int, Interval]] = []
    for i, (s, sym) in enumerate(zip(ann.sample, ann.symbol, strict=False)):
        parts = _aux(ann, i).split("|")
        if sym == "(" and len(parts) >= 2:
            level = float(parts[2]) if len(parts) > 2 and parts[2] else None
            opened[parts[0]] = (int(s), parts[1], level, parts[3] if len(parts) > 3 else "")
        elif sym == ")" and parts[0] in opened:
            s0, label, level, source = opened.pop(parts[0])
            lo, hi = max(s0, sampfrom), min(int(s), sampto)
            if hi > lo:
                a, b = rescale(np.array([lo - sampfrom, hi - sampfrom]))
                out.append((int(parts[0]) if parts[0].isdigit() else len(out), Interval(int(a), int(b), label, level, source)))
    return [iv for _, iv in sorted(out, key=lambda e: e[0])]  # in the order they were written


def _read_mask(wfdb: Any, base: Path, sampfrom: int, sampto: int, rescale: Any, n_out: int) -> np.ndarray | None:
    ann = _read_ann(wfdb, base, "art")
    if ann is None:
        return None
    mask = np.zeros(n_out, dtype=np.uint8)
    start: tuple[int, int] | None = None
    for i, (s, sym) in enumerate(zip(ann.sample, ann.symbol, strict=False)):
        if sym == "(":
            start = (int(s), int(_aux(ann, i) or 0))
        elif sym == ")" and start is not None:
            lo, hi = max(start[0], sampfrom), min(int(s), sampto)
            if hi > lo:
                a, b = rescale(np.array([lo - sampfrom, hi - sampfrom]))
                mask[a:b] |= np.uint8(start[1])
            start = None
    return mask


_NAME_RE = re.compile(r"[^A-Za-z0-9_-]")


def _record_name(name: str) -> str:
    clean = _NAME_RE.sub("_", name).strip("_-") or "record"
    return clean


def _mask_runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    m = np.asarray(mask, dtype=np.int64)
    change = np.flatnonzero(np.diff(np.concatenate([[0], m, [0]])) != 0)
    runs: list[tuple[int, int, int]] = []
    for a, b in zip(change[:-1], change[1:], strict=False):
        if m[a]:
            runs.append((int(a), int(b), int(m[a])))
    return runs


def write_wfdb(record: Record, out_dir: str | Path) -> Path:
    """Write ``record`` as WFDB (format 16, 1 uV) with .atr beats/rhythms, .cnd and .art; returns the base path.

    Every file is written to a temporary folder first and moved into ``out_dir`` at the end.
    """
    wfdb = _wfdb()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = _record_name(record.name)
    sig = np.asarray(record.signal, dtype=np.float64)
    if sig.ndim != 2 or sig.shape[0] == 0:
        raise KasminaError(f"record {record.name!r} has no samples to write")
    if not np.all(np.isfinite(sig)):
        raise KasminaError(f"record {record.name!r} has NaN/inf samples: cannot write WFDB")
    limit = 32767 / ADC_GAIN
    sig = np.clip(sig, -limit, limit)
    n_leads = sig.shape[1]
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    try:
        wfdb.wrsamp(
            name, fs=float(record.fs), units=["mV"] * n_leads,
            sig_name=[str(x) for x in record.lead_names], p_signal=sig, fmt=["16"] * n_leads,
            adc_gain=[ADC_GAIN] * n_leads, baseline=[0] * n_leads,
            comments=["written by kasmina-edge"], write_dir=str(tmp),
        )
        _write_atr(wfdb, record, name, tmp)
        _write_intervals(wfdb, record.conditions, record.fs, name, "cnd", tmp)
        _write_intervals(wfdb, record.anomalies, record.fs, name, "evt", tmp)
        if record.artifact_mask is not None and np.any(record.artifact_mask):
            runs = _mask_runs(record.artifact_mask)
            samples = [s for a, b, _ in runs for s in (a, b)]
            symbols = [sym for _ in runs for sym in ("(", ")")]
            aux = [note for _, _, bits in runs for note in (str(bits), "")]
            wfdb.wrann(name, "art", np.asarray(samples, dtype=np.int64), symbol=symbols, aux_note=aux,
                       fs=float(record.fs), write_dir=str(tmp))
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    except KasminaError:
        raise
    except Exception as exc:
        raise KasminaError(f"cannot write WFDB record {out / name}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / name


def _write_atr(wfdb: Any, record: Record, name: str, tmp: Path) -> None:
    entries: list[tuple[int, int, str, str]] = []  # (sample, order, symbol, aux)
    for iv in record.rhythms:
        entries.append((int(iv.start), 0, "+", f"({iv.label}"))
    if record.beats is not None and len(record.beats):
        syms = record.beats.symbols
        for i, (s, c) in enumerate(zip(record.beats.samples, record.beats.classes, strict=True)):
            sym = syms[i] if syms is not None else AAMI_TO_SYMBOL[AAMI_CLASSES[int(c)]]
            entries.append((int(s), 1, sym, ""))
    if not entries:
        return
    entries.sort(key=lambda e: (e[0], e[1]))
    wfdb.wrann(
        name, "atr", np.asarray([e[0] for e in entries], dtype=np.int64), symbol=[e[2] for e in entries],
        aux_note=[e[3] for e in entries], fs=float(record.fs), write_dir=str(tmp),
    )


def _write_intervals(wfdb: Any, intervals: list[Interval], fs: float, name: str, ext: str, tmp: Path) -> None:
    """Spans as '(' at the start (aux 'id|label|level|source') and ')' at the end (aux 'id')."""
    if not intervals:
        return
    entries: list[tuple[int, int, str, str]] = []
    for i, iv in enumerate(intervals):
        level = "" if iv.level_db is None else repr(float(iv.level_db))
        entries.append((int(iv.start), 1, "(", f"{i}|{iv.label}|{level}|{iv.source}"))
        entries.append((int(iv.end), 0, ")", f"{i}"))
    entries.sort(key=lambda e: (e[0], e[1]))
    wfdb.wrann(
        name, ext, np.asarray([e[0] for e in entries], dtype=np.int64), symbol=[e[2] for e in entries],
        aux_note=[e[3] for e in entries], fs=float(fs), write_dir=str(tmp),
    )
