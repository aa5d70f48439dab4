"""Real recordings for base training: a folder of annotated WFDB records, split patient-wise.

A record is one patient: it sits wholly on the training or on the validation side, never on
both: the inter-patient setting of de Chazal, O'Dwyer and Reilly (IEEE TBME 51(7):1196-1206, 2004), since
beats of one patient on both sides overstate what a model does for a patient it never saw. Everything a user can get wrong (a
missing record, a record on both sides, no ``.atr``, symbols outside the AAMI mapping, no beat
left) is checked from the headers and annotation files by :func:`plan_split`, before any
signal is read or any training starts; :func:`read_split` then reads the beats.

Symbols: MIT-BIH beat symbols (and the other PhysioNet ones) map to the AAMI classes by the
ECG layer's tables (:mod:`kasmina_edge.ecg.wfdb_io`); non-beat annotations (rhythm, noise,
waves) are skipped. A symbol in neither table is refused by default, with its count and first
time, because guessing the class of a beat one cannot name would put wrong labels into a
medical model silently; ``unknown="skip"`` leaves such beats out and counts them.

Default validation split (:func:`choose_validation`): about 20 % of the records (at least one,
and at least one left to train on). The records, sorted by name, are shuffled by the seed; the
first record in that order holding V beats (at least 2 % of them all) goes to validation, then (if
there is room) the first holding S beats the same way; the shuffled order fills the rest. A record moves to validation only while the
training side keeps at least half of every class's beats (MIT-BIH 208 holds 90 % of DS1's F
beats: it stays in training). So the best epoch is chosen on ectopic beats whenever the data has
them, and training does not lose a class to validation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.optional import require
from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat
from kasmina_edge.ecg.types import AAMI_CLASSES, AAMI_INDEX
from kasmina_edge.ecg.wfdb_io import (
    EXTRA_TO_AAMI,
    MITBIH_TO_AAMI,
    NON_BEAT,
    Unknown,
    read_wfdb,
    symbol_to_class,
)
from kasmina_edge.host.data import SPEC

VAL_FRACTION = 0.2
MAX_SHARE_LOST = 0.5  # the default split leaves training at least half of every class's beats
MIN_SHARE_HELD = 0.02  # and validates V (then S) on a record with at least 2 % of that class's beats
# de Chazal et al. 2004, the inter-patient training set (paced records excluded): `--records ds1`.
DS1: tuple[str, ...] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)  # fmt: skip
RECORD_SETS: dict[str, tuple[str, ...]] = {"ds1": DS1}
SYNTHETIC = "synthetic"


# --------------------------------------------------------------------------- the --data spec


@dataclass(frozen=True)
class DataSpec:
    """What ``--data`` names: synthetic patients, or a folder of WFDB records."""

    text: str
    kind: str  # "synthetic" | "wfdb"
    folder: Path | None = None

    @property
    def synthetic(self) -> bool:
        return self.kind == SYNTHETIC


def parse_data_spec(text: str | None) -> DataSpec:
    """``None``/``synthetic`` → synthetic patients; ``wfdb:DIR`` → every record in DIR.

    A ``csv:`` source holds samples only (the ECG layer's CSV has no beat annotations), so it is
    refused here in one line rather than failing later for lack of labels.
    """
    if text is None or text.strip() in (SYNTHETIC, f"{SYNTHETIC}:"):
        return DataSpec(SYNTHETIC, SYNTHETIC)
    scheme, sep, rest = text.partition(":")
    if scheme == SYNTHETIC:
        raise KasminaError(
            f"--data {text!r}: synthetic training takes no name; set the patients with --patients and --minutes"
        )
    if scheme == "csv":
        raise KasminaError(
            f"--data {text!r}: a CSV source holds samples only, no reference beat annotations; training needs "
            "annotated beats (a folder of WFDB records with .atr files: --data wfdb:DIR)"
        )
    if scheme != "wfdb" or not sep:
        raise KasminaError(f"--data {text!r}: expected wfdb:DIR (a folder of WFDB records) or synthetic")
    folder = Path(rest.partition("?")[0])
    if rest.partition("?")[2]:
        raise KasminaError(f"--data {text!r}: wfdb:DIR takes no options here (the lead is set with --lead)")
    if not folder.is_dir():
        if folder.with_name(folder.name + ".hea").exists():
            raise KasminaError(
                f"--data {text!r}: that is one record; training needs the folder of records for a patient-wise "
                f"split: --data wfdb:{folder.parent} --records {folder.name},..."
            )
        raise KasminaError(f"--data {text!r}: no such folder")
    return DataSpec(text, "wfdb", folder)


def list_records(folder: Path) -> list[str]:
    """The record names in ``folder`` (every ``NAME.hea``), sorted."""
    names = sorted(p.stem for p in folder.glob("*.hea") if p.is_file())
    if not names:
        raise KasminaError(f"{folder}: no WFDB records (NAME.hea) in this folder")
    return names


def parse_record_names(text: str | None, option: str) -> list[str] | None:
    """``"101,106"`` → ["101", "106"]; ``ds1`` expands to the DS1 records; a name twice is an error."""
    if text is None:
        return None
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            names.extend(RECORD_SETS.get(part.lower(), (part,)))
    if not names:
        raise KasminaError(f"{option}: give at least one record name")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise KasminaError(f"{option}: record {n} is named twice")
        seen.add(n)
    return names


# --------------------------------------------------------------------------- annotation checks


def _known(symbol: str) -> bool:
    return symbol in MITBIH_TO_AAMI or symbol in EXTRA_TO_AAMI or symbol in NON_BEAT


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:04.1f}"


@dataclass(frozen=True)
class RecordSummary:
    """What the header and ``.atr`` of a record say, read without its signal."""

    name: str
    fs: float  # the file's sampling rate (resampled to the model's when it differs)
    lead: str  # the lead's name in the header
    annotated: tuple[int, ...]  # annotated beats per AAMI class
    unknown: dict[str, int] = field(default_factory=dict)  # symbols outside the tables -> count

    def has(self, cls: str) -> bool:
        return self.annotated[AAMI_INDEX[cls]] > 0


def _lead_name(header: Any, lead: str, name: str) -> str:
    names = [str(n) for n in (header.sig_name or [])]
    if lead.isdigit():
        i = int(lead)
        if not 0 <= i < len(names):
            raise KasminaError(f"record {name}: no lead {i} (it has {len(names)}: {', '.join(names)})")
        return names[i]
    if lead not in names:
        raise KasminaError(f"record {name}: no lead named {lead!r} (leads: {', '.join(names)})")
    return lead


def scan_record(folder: Path, name: str, lead: str = "0", unknown: Unknown = "error") -> RecordSummary:
    """Header and annotations of one record: one-line errors for whatever makes it untrainable."""
    wfdb = require("wfdb", "reading WFDB records")
    base = folder / name
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises many kinds on a damaged header
        raise KasminaError(f"record {name}: bad WFDB header {base}.hea: {exc}") from exc
    if not header.fs or not header.n_sig:
        raise KasminaError(f"record {name}: bad WFDB header {base}.hea: no signals or no sampling frequency")
    lead_name = _lead_name(header, lead, name)
    atr = folder / f"{name}.atr"
    if not atr.exists():
        raise KasminaError(
            f"{name}: no reference beat annotations ({atr.name}): training needs annotated beats"
        )
    try:
        ann = wfdb.rdann(str(base), "atr")
    except Exception as exc:
        raise KasminaError(f"{name}: cannot read the annotations {atr}: {exc}") from exc
    counts = np.zeros(len(AAMI_CLASSES), dtype=np.int64)
    strange: dict[str, int] = {}
    first: dict[str, int] = {}
    for s, sym in zip(ann.sample, ann.symbol, strict=False):
        sym = str(sym)
        if not _known(sym):
            strange[sym] = strange.get(sym, 0) + 1
            first.setdefault(sym, int(s))
            continue
        cls = symbol_to_class(sym)
        if cls is not None:
            counts[cls] += 1
    fs = float(header.fs)
    if strange and unknown == "error":
        listed = ", ".join(
            f"{sym!r} ×{n} (first at {_clock(first[sym] / fs)})" for sym, n in sorted(strange.items())
        )
        raise KasminaError(
            f"{name}: {sum(strange.values())} annotation(s) with symbols outside the AAMI beat mapping: {listed}; "
            "training will not guess their class (--skip-unknown-symbols leaves them out)"
        )
    if unknown == "q":
        counts[AAMI_INDEX["Q"]] += sum(strange.values())
    if counts.sum() == 0:
        seen = sorted({str(s) for s in ann.symbol})
        raise KasminaError(
            f"{name}: its annotations hold no beat of the AAMI classes {'/'.join(AAMI_CLASSES)} "
            f"(symbols: {' '.join(seen) or 'none'}): nothing to train on"
        )
    return RecordSummary(name, fs, lead_name, tuple(int(c) for c in counts), strange)


# --------------------------------------------------------------------------- the patient-wise split


def choose_validation(
    summaries: Sequence[RecordSummary], seed: int, fraction: float = VAL_FRACTION
) -> tuple[list[str], list[str]]:
    """(training, validation) record names: the deterministic default split (see the module doc)."""
    names = sorted(s.name for s in summaries)
    if len(names) < 2:
        raise KasminaError(
            f"training needs at least 2 records (one to train on, one to validate on); got {len(names)}: "
            f"{', '.join(names)}"
        )
    by_name = {s.name: s for s in summaries}
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_val = min(len(names) - 1, max(1, int(round(fraction * len(names)))))
    val: list[str] = []
    totals = np.sum([s.annotated for s in summaries], axis=0)

    def share_lost(name: str) -> float:
        """The largest share of any class's beats that training would lose with ``name`` in validation."""
        held = np.sum([by_name[n].annotated for n in [*val, name]], axis=0)
        present = totals > 0
        return float(np.max(held[present] / totals[present]))

    for cls in ("V", "S"):
        k = AAMI_INDEX[cls]
        enough = max(1.0, MIN_SHARE_HELD * float(totals[k]))  # a handful of beats would not judge the class
        holders = [n for n in order if by_name[n].annotated[k] >= enough]
        if len(val) < n_val and not set(holders) & set(val):
            val.extend([n for n in holders if n not in val and share_lost(n) <= MAX_SHARE_LOST][:1])
    for n in order:
        if len(val) < n_val and n not in val and share_lost(n) <= MAX_SHARE_LOST:
            val.append(n)
    if not val:  # no record can go without costing training most of a class: the one that costs least
        val.append(min(order, key=share_lost))
    return [n for n in names if n not in val], sorted(val)


@dataclass(frozen=True)
class SplitPlan:
    """The checked split: which records train, which validate, what their annotations hold."""

    spec: DataSpec
    train: list[str]
    val: list[str]
    summaries: dict[str, RecordSummary]
    lead: str
    unknown: Unknown

    @property
    def folder(self) -> Path:
        assert self.spec.folder is not None
        return self.spec.folder


def plan_split(
    spec: DataSpec,
    *,
    records: Sequence[str] | None = None,
    val_records: Sequence[str] | None = None,
    seed: int = 0,
    lead: str = "0",
    unknown: Unknown = "error",
) -> SplitPlan:
    """Every check that needs no signal: names, sides, headers, annotations. Raises one-line errors.

    ``records``: the records to train on (default: every record in the folder not in
    ``val_records``); ``val_records``: the validation records. Without ``val_records``, the
    validation side is chosen from ``records`` by :func:`choose_validation`.
    """
    if spec.folder is None:
        raise KasminaError("real-record training needs --data wfdb:DIR")
    available = list_records(spec.folder)
    for option, names in (("--records", records), ("--val-records", val_records)):
        missing = [n for n in names or [] if n not in available]
        if missing:
            shown = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
            raise KasminaError(
                f"{option}: record {missing[0]} is not in {spec.folder} (no {missing[0]}.hea); records there: {shown}"
            )
    if records is not None and val_records is not None:
        both = [n for n in records if n in set(val_records)]
        if both:
            raise KasminaError(f"record {both[0]} is in both the training and the validation split")
    val_set = set(val_records or [])
    train_names = list(records) if records is not None else [n for n in available if n not in val_set]
    pool = [*train_names, *(val_records or [])]
    summaries = {n: scan_record(spec.folder, n, lead, unknown) for n in pool}
    if val_records is None:
        train, val = choose_validation([summaries[n] for n in train_names], seed)
    else:
        if not train_names:
            raise KasminaError("no record left to train on: every record in the folder is in --val-records")
        train, val = sorted(train_names), sorted(val_records)
    return SplitPlan(spec, train, val, summaries, lead, unknown)


# --------------------------------------------------------------------------- reading the beats


@dataclass
class RecordSplit:
    """Beats of the training and validation records (lead as planned, at the model's 360 Hz)."""

    plan: SplitPlan
    per_record: dict[str, BeatDataset]
    train: BeatDataset
    val: BeatDataset

    @property
    def train_records(self) -> list[str]:
        return self.plan.train

    @property
    def val_records(self) -> list[str]:
        return self.plan.val

    def counts(self, names: Sequence[str]) -> dict[str, int]:
        total = dict.fromkeys(AAMI_CLASSES, 0)
        for n in names:
            for c, k in self.per_record[n].class_counts().items():
                total[c] += k
        return total

    def resampled(self) -> dict[str, float]:
        """Records whose file rate differs from the model's (name -> file rate)."""
        return {n: s.fs for n, s in self.plan.summaries.items() if abs(s.fs - SPEC.fs) > 1e-9}

    def skipped(self) -> dict[str, int]:
        """Beats left out per record for symbols outside the tables (``unknown="skip"``)."""
        return {n: sum(s.unknown.values()) for n, s in self.plan.summaries.items() if s.unknown}


def record_beats(folder: Path, summary: RecordSummary, unknown: Unknown = "error") -> BeatDataset:
    """One record's beat windows on its planned lead, resampled to the model's rate by the reader."""
    rec = read_wfdb(folder / summary.name, fs=SPEC.fs, leads=[summary.lead], unknown=unknown)
    ds = beats_from_record(rec, SPEC, lead=0)
    if len(ds) == 0:
        raise KasminaError(
            f"{summary.name}: no annotated beat has a whole {SPEC.length}-sample window in the record"
        )
    return ds


def read_split(plan: SplitPlan, on_record: Callable[[int, int, str], None] | None = None) -> RecordSplit:
    """Read every planned record's beats; ``on_record(done, total, name)`` before each and at the end."""
    names = [*plan.train, *plan.val]
    per: dict[str, BeatDataset] = {}
    for i, n in enumerate(names):
        if on_record is not None:
            on_record(i, len(names), n)
        per[n] = record_beats(plan.folder, plan.summaries[n], plan.unknown)
    if on_record is not None:
        on_record(len(names), len(names), "")
    return RecordSplit(plan, per, concat([per[n] for n in plan.train]), concat([per[n] for n in plan.val]))
