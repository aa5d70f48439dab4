"""Signal conditions on real records: real NSTDB noise mixed in at set SNRs, and a lead change.

What morph grows condition seeds on when it is given real records (``--data wfdb:DIR``):

* **Noise** (``emg`` = NSTDB ``ma``, ``baseline`` = NSTDB ``bw``) is mixed in the way the NSTDB's
  own noisy records were made (:mod:`kasmina_edge.ecg.noise`): clean for the first 5 minutes, then
  2-minute noisy stretches alternating with 2-minute clean ones, the noise scaled once per record
  so that its power over the noisy stretches meets the SNR against the record's QRS amplitude.
  A condition's beats are the beats in the noisy stretches; the same beats without the noise are
  its clean reference, so "the base loses X points" compares the base with itself on one set of
  beats.
* **Lead change**: the record's other lead (MIT-BIH: V1, V2, V4 or V5 instead of MLII), every beat.

Leave-noise-out as well as leave-records-out: the noise record is cut in two halves in time, and
the records a seed is grown and gated on get noise from the first half, the records it is tested
on from the second (:class:`NoiseBank`). ``nstdb_mix`` adds the noise at the same times to every
record (as nstdbgen does), so training and test records would share noise samples; here the
schedule and the SNR rule are nstdb_mix's (:func:`noisy_stretches`, :func:`qrs_signal_power`,
:func:`scale_to_snr`) and only the source of the excerpt differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat
from kasmina_edge.ecg.noise import FIRST_CLEAN_S, STRETCH_S, mix_noise, read_noise_record
from kasmina_edge.ecg.types import Record
from kasmina_edge.host.data import SPEC, Condition

DEFAULT_SNRS: tuple[float, ...] = (12.0, 6.0, 0.0, -6.0)
REAL_CONDITIONS = ("emg", "baseline", "lead")
_NOISE = {"emg": ("ma", "emg"), "baseline": ("bw", "baseline_wander")}  # name -> (NSTDB record, artifact kind)
NOISE_PARTS = ("seed", "test")  # first half of the noise record: grow and gate; second half: test
BASE_LEAD = "MLII"  # MIT-BIH's first lead almost everywhere (114: V5 first); what the fold bases trained on


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class RealCondition:
    """One cell of the condition table: a noise at one SNR, or the lead change."""

    name: str  # "emg" | "baseline" | "lead"
    snr_db: float | None = None

    @property
    def noise(self) -> str | None:
        """The NSTDB record mixed in (``ma`` / ``bw``); None for the lead change."""
        return _NOISE[self.name][0] if self.name in _NOISE else None

    @property
    def key(self) -> str:
        """A name for files, library keys and kernels: ``emg-6dB``, ``baseline+12dB``, ``lead``."""
        return self.name if self.snr_db is None else f"{self.name}{self.snr_db:+g}dB"

    @property
    def label(self) -> str:
        return "lead change" if self.snr_db is None else f"{self.name} {self.snr_db:g} dB"

    def as_condition(self) -> Condition:
        """The host's :class:`Condition` (what run_trial and the seed library read)."""
        if self.noise is None:
            return Condition(self.key, "lead change: the record's other lead (MIT-BIH V1/V2/V4/V5)", "lead", lead=1,
                             tags=("lead", "second_lead"))  # fmt: skip
        kind = _NOISE[self.name][1]
        return Condition(
            self.key, f"real NSTDB '{self.noise}' noise at {self.snr_db:g} dB SNR, NSTDB schedule", "artifact",
            kind, self.snr_db, tags=("artifact", kind, f"nstdb_{self.noise}", f"snr{self.snr_db:+g}dB"),
        )  # fmt: skip


def parse_snrs(text: str | None) -> tuple[float, ...]:
    """``"12,6,0,-6"`` → (12.0, 6.0, 0.0, -6.0); None → the default four."""
    if text is None:
        return DEFAULT_SNRS
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            v = float(part.removesuffix("dB").removesuffix("db"))
        except ValueError:
            raise KasminaError(f"--snr: {part!r} is not a number of dB") from None
        if not -30.0 <= v <= 60.0:
            raise KasminaError(f"--snr: {v:g} dB is outside -30..60 dB")
        if v not in out:
            out.append(v)
    if not out:
        raise KasminaError("--snr: give at least one SNR in dB, e.g. 12,6,0,-6")
    return tuple(out)


def parse_real_conditions(text: str | None, snrs: Sequence[float] = DEFAULT_SNRS) -> list[RealCondition]:
    """The cells for ``--conditions``: each noise at every SNR, the lead change once."""
    names = [n.strip() for n in (text or ",".join(REAL_CONDITIONS)).split(",") if n.strip()]
    if not names:
        raise KasminaError("--conditions: give at least one of " + ", ".join(REAL_CONDITIONS))
    unknown = [n for n in names if n not in REAL_CONDITIONS]
    if unknown:
        why = {"motion": "no real electrode-motion noise (NSTDB 'em' is not in the data)",
               "patient": "one patient's seed is --patient wfdb:PATH"}  # fmt: skip
        hint = "; ".join(why[n] for n in unknown if n in why)
        raise KasminaError(f"--conditions with --data: {', '.join(unknown)} not on real records "
                           f"(known: {', '.join(REAL_CONDITIONS)}){'; ' + hint if hint else ''}")  # fmt: skip
    cells: list[RealCondition] = []
    for n in dict.fromkeys(names):
        cells.extend([RealCondition(n)] if n == "lead" else [RealCondition(n, float(s)) for s in snrs])
    return cells


# --------------------------------------------------------------------------- records


def read_two_leads(folder: Path, name: str, base_lead: str = BASE_LEAD) -> Record:
    """A record with its leads ordered [the base's lead, the other lead], at the model's rate.

    ``base_lead``: a lead name (a record without it is refused) or an index ("0").
    """
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rec = read_wfdb(folder / name, fs=SPEC.fs)
    leads = list(rec.lead_names)
    if base_lead.isdigit():
        first = int(base_lead)
        if first >= len(leads):
            raise KasminaError(f"record {name}: no lead {first} (it has {len(leads)}: {', '.join(leads)})")
    elif base_lead in leads:
        first = leads.index(base_lead)
    else:
        raise KasminaError(f"record {name}: no lead named {base_lead!r} (leads: {', '.join(leads)})")
    if len(leads) < 2:
        raise KasminaError(f"record {name}: one lead only ({leads[0]}); the lead change needs a second")
    other = next(i for i in range(len(leads)) if i != first)
    return replace(rec, signal=np.ascontiguousarray(rec.signal[:, [first, other]]),
                   lead_names=[leads[first], leads[other]])  # fmt: skip


# --------------------------------------------------------------------------- noise


@dataclass(frozen=True)
class NoiseBank:
    """Real noise records (NSTDB ``bw``, ``ma``) from one folder, each cut in two halves in time."""

    folder: Path

    def part(self, noise: str, part: str, fs: float = SPEC.fs) -> np.ndarray:
        """(samples, channels) of the first (``seed``) or second (``test``) half of the noise record."""
        if part not in NOISE_PARTS:
            raise KasminaError(f"noise part must be one of {', '.join(NOISE_PARTS)}, got {part!r}")
        sig = read_noise_record(str(self.folder), noise, float(fs))
        half = sig.shape[0] // 2
        return sig[:half] if part == "seed" else sig[half:]

    def require(self, names: Sequence[str]) -> None:
        """One line, before any work, for a noise record the folder lacks."""
        for name in names:
            if not (self.folder / f"{name}.hea").exists():
                raise KasminaError(f"NSTDB noise record {self.folder / name}.hea not found (the noise folder must "
                                   "hold bw and ma: --noise DIR)")  # fmt: skip


def default_noise_folder() -> Path:
    from kasmina_edge.ecg.data import data_root

    return data_root() / "nstdb"


# --------------------------------------------------------------------------- beats


@dataclass
class ConditionBeats:
    """Beats of some records under a condition, and the very same beats clean (the base's lead)."""

    condition: BeatDataset
    clean: BeatDataset
    records: list[Record] = field(default_factory=list)  # the records as the condition left them
    lead: int = 0  # the lead of ``records`` the condition's beats are on

    def __len__(self) -> int:
        return len(self.condition)


def _salt(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def condition_beats(
    records: Sequence[Record],
    cond: RealCondition,
    *,
    noise: NoiseBank | None = None,
    part: str = "seed",
    seed: int = 0,
    clean_cache: dict[str, BeatDataset] | None = None,
    first_clean_s: float = FIRST_CLEAN_S,
    stretch_s: float = STRETCH_S,
    phases: int = 1,
) -> ConditionBeats:
    """Each record under ``cond`` (noise from ``part`` of the noise record), its beats there, and
    those beats clean. Records are two-lead ([base lead, other lead], :func:`read_two_leads`).

    The noise of record ``r`` is drawn from a generator seeded by (seed, part, r, cond, phase): the
    same call gives the same beats. ``first_clean_s`` / ``stretch_s``: the NSTDB schedule (5 min,
    2 min). ``phases=2`` mixes each record twice, the second time with the stretches moved by one
    stretch (noisy where the first was clean), and takes each beat from the mix where it is noisy:
    every beat after the first clean minutes is judged in noise once, twice the beats of one mix.
    """
    if not records:
        raise KasminaError(f"{cond.label}: no records")
    if phases not in (1, 2):
        raise KasminaError(f"phases must be 1 or 2, got {phases}")
    cache = clean_cache if clean_cache is not None else {}
    cond_parts: list[BeatDataset] = []
    clean_parts: list[BeatDataset] = []
    under: list[Record] = []
    for rec in records:
        if rec.name not in cache:
            cache[rec.name] = beats_from_record(rec, SPEC, lead=0)
        clean = cache[rec.name]
        if cond.noise is None:
            if rec.signal.shape[1] < 2:
                raise KasminaError(f"record {rec.name}: one lead only; the lead change needs a second")
            other = beats_from_record(rec, SPEC, lead=1)
            keep = np.isin(clean.r_peaks, other.r_peaks)
            cond_parts.append(other.subset(np.flatnonzero(np.isin(other.r_peaks, clean.r_peaks))))
            clean_parts.append(clean.subset(np.flatnonzero(keep)))
            under.append(rec)
            continue
        if noise is None:
            raise KasminaError(f"{cond.label}: needs the NSTDB noise records (a NoiseBank)")
        kind = _NOISE[cond.name][1]
        assert cond.snr_db is not None
        for phase in range(phases):
            rng = np.random.default_rng([seed, NOISE_PARTS.index(part), _salt(rec.name), _salt(cond.key), phase])
            mixed = mix_noise(rec, noise.part(cond.noise, part), kind, cond.snr_db, rng, lead=0,
                              first_clean_s=first_clean_s + phase * stretch_s, stretch_s=stretch_s,
                              source=f"nstdb:{cond.noise}:{part}")  # fmt: skip
            noisy = beats_from_record(mixed, SPEC, lead=0)
            assert mixed.artifact_mask is not None
            on = np.flatnonzero(mixed.artifact_mask[noisy.r_peaks] > 0)
            if not np.array_equal(noisy.r_peaks, clean.r_peaks):  # both take the annotated beats whose window fits
                raise KasminaError(f"record {rec.name}: noisy and clean beats differ (windowing changed)")
            cond_parts.append(noisy.subset(on))
            clean_parts.append(clean.subset(on))
            under.append(mixed)
    return ConditionBeats(concat(cond_parts), concat(clean_parts), under, 0 if cond.noise else 1)


def thin_normal(ds: BeatDataset, max_beats: int | None, seed: int) -> BeatDataset:
    """At most ``max_beats`` beats, drawn at random: each ectopic class (S, V, F, Q) keeps up to a
    quarter of them, normal beats fill the rest.

    What seeds and fine-tuning train on: normal beats are most of every record and the cheapest to
    leave out; the rare classes are what macro-F1 turns on.
    """
    if max_beats is None or len(ds) <= max_beats:
        return ds
    rng = np.random.default_rng(seed)
    labels = np.asarray(ds.labels)
    keep: list[np.ndarray] = []
    for cls in np.unique(labels[labels != 0]):
        idx = np.flatnonzero(labels == cls)
        keep.append(rng.choice(idx, size=min(idx.size, max_beats // 4), replace=False))
    taken = sum(k.size for k in keep)
    normal = np.flatnonzero(labels == 0)
    keep.append(rng.choice(normal, size=min(normal.size, max(0, max_beats - taken)), replace=False))
    return ds.subset(np.sort(np.concatenate(keep)))
