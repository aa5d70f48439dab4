"""Training and morphing data from the ECG layer: synthetic patients, patient-wise splits, conditions.

Beats of one patient never sit on both sides of a split (the inter-patient setting of de Chazal et al.,
IEEE TBME 51(7):1196-1206, 2004: a patient on both sides overstates what a model does for a new one). Signal conditions are what morph grows seeds for; each is applied to whole
records by the ECG layer (real NSTDB noise where the data is present), so a condition is
the same thing on the host and in the device's signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat, synthetic_patients
from kasmina_edge.ecg.types import Record
from kasmina_edge.ecg.windowing import WindowSpec

SPEC = WindowSpec()  # 360 Hz, 90 samples before the R peak, 166 after: 256-sample windows


@dataclass(frozen=True)
class Condition:
    """A signal condition morph grows seeds for.

    kind: ``artifact`` (noise added at ``snr_db`` by the ECG layer), ``lead`` (the record's
    second lead instead of the first) or ``patient`` (patients the base never saw, adapted on
    their own first minutes of annotated beats, tested on the rest).
    """

    name: str
    description: str
    kind: str
    artifact: str | None = None
    snr_db: float | None = None
    lead: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)


# Levels are chosen where the base is *shown* to be hurt (bench_morph reports the drop): real
# muscle noise (NSTDB 'ma') puts most of its power outside the 0.5-40 Hz band the base sees, so at 6 dB it
# barely hurts after the band-pass; EMG is taken lower.
CONDITIONS: dict[str, Condition] = {
    "emg": Condition("emg", "muscle (EMG) noise, NSTDB 'ma', -6 dB SNR", "artifact", "emg", -6.0, tags=("artifact", "emg")),
    "baseline": Condition(
        "baseline", "baseline wander, NSTDB 'bw', -12 dB SNR", "artifact", "baseline_wander", -12.0,
        tags=("artifact", "baseline_wander"),
    ),
    "motion": Condition(
        "motion", "electrode motion (synthetic), 6 dB SNR", "artifact", "electrode_motion", 6.0,
        tags=("artifact", "electrode_motion"),
    ),
    "lead": Condition("lead", "lead change: second lead (V1), different morphology", "lead", lead=1, tags=("lead", "V1")),
    "patient": Condition("patient", "unseen-patient shift: new patients, adapted on their first minutes", "patient",
                         tags=("patient",)),
}  # fmt: skip


def parse_conditions(text: str) -> list[Condition]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise KasminaError("--conditions: give at least one of " + ", ".join(CONDITIONS))
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise KasminaError(f"--conditions: unknown condition(s) {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
    return [CONDITIONS[n] for n in names]


def patient_records(n_patients: int, minutes: float, seed: int) -> list[Record]:
    if n_patients < 2:
        raise KasminaError(f"--patients: need at least 2 (one to train, one to validate), got {n_patients}")
    if minutes <= 0:
        raise KasminaError(f"--minutes: must be positive, got {minutes}")
    return list(synthetic_patients(n_patients, minutes, seed=seed))


def split_patients(records: Sequence[Record], val_fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Patient-wise split: a shuffled list of whole records, at least one on each side."""
    if not 0.0 < val_fraction < 1.0:
        raise KasminaError(f"validation fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = min(len(records) - 1, max(1, int(round(val_fraction * len(records)))))
    val = [records[i] for i in sorted(order[:n_val])]
    train = [records[i] for i in sorted(order[n_val:])]
    return train, val


def beats(records: Sequence[Record], lead: int = 0) -> BeatDataset:
    """Annotated beat windows of all records (one lead), concatenated."""
    if not records:
        raise KasminaError("no records to take beats from")
    return concat([beats_from_record(r, SPEC, lead=lead) for r in records])


def apply_condition(record: Record, cond: Condition, seed: int) -> Record:
    """The record as it looks under ``cond`` (artifacts added; leads and patients are chosen elsewhere)."""
    if cond.kind != "artifact":
        return record
    from kasmina_edge.ecg.artifacts import add_noise

    assert cond.artifact is not None and cond.snr_db is not None
    return add_noise(record, cond.artifact, cond.snr_db, np.random.default_rng(seed))


def time_split(record: Record, seconds: float) -> tuple[Record, Record]:
    """(first ``seconds``, the rest) of a record, labels re-based: a patient's calibration and test."""
    import dataclasses

    cut = int(round(seconds * record.fs))

    def part(a: int, b: int, suffix: str) -> Record:
        beats_ = record.beats
        if beats_ is not None:
            sel = (beats_.samples >= a) & (beats_.samples < b)
            beats_ = dataclasses.replace(
                beats_,
                samples=beats_.samples[sel] - a,
                classes=beats_.classes[sel],
                symbols=[s for s, k in zip(beats_.symbols, sel, strict=True) if k] if beats_.symbols else None,
            )
        mask = record.artifact_mask[a:b] if record.artifact_mask is not None else None
        return dataclasses.replace(
            record, name=f"{record.name}{suffix}", signal=record.signal[a:b], beats=beats_, artifact_mask=mask,
            rhythms=[], conditions=[],
        )

    return part(0, cut, "_cal"), part(cut, record.n_samples, "_test")


def to_tensors(ds: BeatDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(ds.windows, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ds.rr, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ds.labels, dtype=np.int64)),
    )


def class_counts(ds: BeatDataset, n_classes: int = 5) -> list[int]:
    return [int(v) for v in np.bincount(np.asarray(ds.labels, dtype=np.int64), minlength=n_classes)[:n_classes]]


@dataclass
class ConditionSplit:
    """The data one condition is morphed (and benchmarked) on.

    ``adapt``: what a seed (or, as the upper bound, full fine-tuning) trains on;
    ``val``: what gates judge it on (G4's pre-germination baseline and gain);
    ``test``: held-out beats for the benchmark (None in morph);
    ``records``: the raw records under the condition, for Tamiyo's signal features;
    ``adapt_clean``: the very beats of ``adapt`` without the condition, in the same order, where they
    exist (real records with noise mixed in): what a seed's site output is pulled towards.
    """

    condition: Condition
    adapt: BeatDataset
    val: BeatDataset
    test: BeatDataset | None
    records: list[Record]
    lead: int
    adapt_clean: BeatDataset | None = None


def condition_split(
    cond: Condition,
    adapt_records: Sequence[Record],
    val_records: Sequence[Record],
    test_records: Sequence[Record] | None = None,
    *,
    seed: int = 0,
    calibration_s: float = 90.0,
    replay: BeatDataset | None = None,
    new_patients: Sequence[Record] | None = None,
) -> ConditionSplit:
    """Artifact and lead conditions: adapt on the training patients under the condition, judge on
    the validation patients, test on held-out ones. Patient shift: patients the base never saw
    (the test patients, or in morph the validation ones), each adapted on its first
    ``calibration_s`` seconds (70 % to train, 30 % to judge) and tested on the rest.

    ``replay``: clean training beats mixed into ``adapt`` (as many as the condition's beats), so
    a seed learns the condition without forgetting clean data (G4 checks both).
    """
    rng = np.random.default_rng(seed)

    def with_replay(ds: BeatDataset) -> BeatDataset:
        if replay is None or len(replay) == 0:
            return ds
        pick = np.sort(rng.choice(len(replay), size=min(len(replay), len(ds)), replace=False))
        return concat([ds, replay.subset(pick)])

    if cond.kind == "patient":
        patients = list(test_records) if test_records else list(new_patients or val_records)
        too_short = [r.name for r in patients if r.seconds <= calibration_s + 10]
        if too_short:
            raise KasminaError(
                f"condition patient: records {', '.join(too_short[:3])} are not longer than the "
                f"{calibration_s:g} s calibration (+10 s)"
            )
        cal, rest = zip(*(time_split(r, calibration_s) for r in patients), strict=True)
        fit, check = zip(*(time_split(c, 0.7 * calibration_s) for c in cal), strict=True)
        return ConditionSplit(
            cond, with_replay(beats(fit)), beats(check), beats(rest) if test_records else None, list(cal), 0
        )

    def under(records: Sequence[Record], salt: int) -> list[Record]:
        return [apply_condition(r, cond, seed * 7919 + salt * 1009 + i) for i, r in enumerate(records)]

    val_c = under(val_records, 2)
    test = beats(under(test_records, 3), cond.lead) if test_records else None
    adapt = with_replay(beats(under(adapt_records, 1), cond.lead))
    return ConditionSplit(cond, adapt, beats(val_c, cond.lead), test, val_c, cond.lead)
