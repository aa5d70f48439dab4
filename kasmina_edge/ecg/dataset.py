"""Beat datasets for training: windows, RR features and AAMI labels from records.

Windows come from exactly the path the runtime uses (:class:`Preprocessor` then
:func:`extract_windows`), so a model trained here sees what it will see on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.anomalies import (
    PAC,
    PVC,
    Anomaly,
    AtrialFibrillation,
    BundleBranchBlock,
    Fusion,
    Paced,
    SupraventricularTachycardia,
    VentricularTachycardia,
)
from kasmina_edge.ecg.artifacts import add_noise, canonical_kind
from kasmina_edge.ecg.qrs import detect_qrs
from kasmina_edge.ecg.synth import random_patient, synthesize
from kasmina_edge.ecg.types import AAMI_CLASSES, Record
from kasmina_edge.ecg.windowing import Preprocessor, WindowSpec, extract_windows

UNLABELLED = -1  # a detected beat in a record without reference annotations
LABEL_WINDOW_S = 0.15


@dataclass
class BeatDataset:
    """One row per beat. ``records`` names the record of each beat (for leave-records-out splits)."""

    windows: np.ndarray  # float32 (n, 1, L)
    rr: np.ndarray  # float32 (n, 4)
    labels: np.ndarray  # int64 (n,) index into AAMI_CLASSES, or UNLABELLED
    records: np.ndarray  # str (n,)
    r_peaks: np.ndarray  # int64 (n,) sample of each R peak in its record

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> BeatDataset:
        return BeatDataset(self.windows[index], self.rr[index], self.labels[index], self.records[index],
                           self.r_peaks[index])

    def class_counts(self) -> dict[str, int]:
        return {c: int(np.sum(self.labels == i)) for i, c in enumerate(AAMI_CLASSES)}

    def record_names(self) -> list[str]:
        return sorted({str(r) for r in self.records})


def empty(spec: WindowSpec | None = None) -> BeatDataset:
    length = (spec or WindowSpec()).length
    return BeatDataset(np.zeros((0, 1, length), np.float32), np.zeros((0, 4), np.float32),
                       np.zeros(0, np.int64), np.zeros(0, dtype=str), np.zeros(0, np.int64))


def nearest_labels(ref_samples: np.ndarray, ref_classes: np.ndarray, peaks: np.ndarray, fs: float,
                   window_s: float = LABEL_WINDOW_S) -> np.ndarray:
    """The class of the nearest reference beat within the window, UNLABELLED where none.

    A labelling rule for windows, not a scoring one: many to one (two detections near one reference beat
    both take its class), where scoring pairs one to one by the EC57 rule (:mod:`beat_match`)."""
    ref = np.asarray(ref_samples, dtype=np.int64)
    out = np.full(peaks.shape[0], UNLABELLED, dtype=np.int64)
    if ref.size == 0 or peaks.size == 0:
        return out
    order = np.argsort(ref)
    ref, cls = ref[order], np.asarray(ref_classes)[order]
    pos = np.clip(np.searchsorted(ref, peaks), 1, ref.size - 1) if ref.size > 1 else np.zeros_like(peaks)
    left = np.maximum(pos - 1, 0)
    pick = np.where(np.abs(ref[pos] - peaks) < np.abs(ref[left] - peaks), pos, left)
    close = np.abs(ref[pick] - peaks) <= int(round(window_s * fs))
    out[close] = cls[pick[close]]
    return out


def beats_from_record(
    record: Record, spec: WindowSpec | None = None, lead: int = 0, use_annotations: bool = True
) -> BeatDataset:
    """Windows of every beat of a record whose window fits inside it.

    R peaks: the reference annotations when ``use_annotations`` and the record has them,
    else the QRS detector's; detected beats take the class of the nearest annotation within
    150 ms and are dropped where there is none (kept as UNLABELLED when the record has no
    annotations at all).
    """
    spec = spec or WindowSpec()  # the model's: 360 Hz
    if abs(spec.fs - record.fs) > 1e-9:
        raise KasminaError(f"{record.name}: record is {record.fs} Hz but the window spec is {spec.fs} Hz "
                           "(read it with fs=spec.fs to resample)")
    if not 0 <= lead < record.signal.shape[1]:
        raise KasminaError(f"{record.name}: lead {lead} out of range ({record.signal.shape[1]} leads)")
    x = record.lead(lead)
    aligned = Preprocessor(record.fs).apply(x)
    has_ref = record.beats is not None and len(record.beats) > 0
    if use_annotations and has_ref:
        assert record.beats is not None
        peaks = np.asarray(record.beats.samples, dtype=np.int64)
        labels = record.beats.classes.astype(np.int64)
    else:
        peaks = detect_qrs(x, record.fs)
        if has_ref:
            assert record.beats is not None
            labels = nearest_labels(record.beats.samples, record.beats.classes, peaks, record.fs)
        else:
            labels = np.full(peaks.shape[0], UNLABELLED, dtype=np.int64)
    bw = extract_windows(aligned, peaks, spec)
    keep = bw.valid & ((labels != UNLABELLED) | (not has_ref))
    n = int(keep.sum())
    return BeatDataset(
        windows=bw.windows[keep],
        rr=bw.rr[keep],
        labels=labels[keep],
        records=np.full(n, record.name),
        r_peaks=peaks[keep],
    )


def concat(datasets: Sequence[BeatDataset]) -> BeatDataset:
    if not datasets:
        return empty()
    lengths = {d.windows.shape[-1] for d in datasets}
    if len(lengths) > 1:
        raise KasminaError(f"cannot concatenate beat datasets of window lengths {sorted(lengths)}")
    return BeatDataset(
        windows=np.concatenate([d.windows for d in datasets]),
        rr=np.concatenate([d.rr for d in datasets]),
        labels=np.concatenate([d.labels for d in datasets]),
        records=np.concatenate([d.records.astype(str) for d in datasets]),
        r_peaks=np.concatenate([d.r_peaks for d in datasets]),
    )


def parse_condition(condition: str) -> tuple[str, float | None]:
    """'clean', 'emg' (6 dB) or 'emg@0' (kind@SNR dB)."""
    kind, _, level = condition.partition("@")
    if kind == "clean":
        return "clean", None
    kind = canonical_kind(kind)
    try:
        return kind, float(level) if level else 6.0
    except ValueError as exc:
        raise KasminaError(f"bad condition {condition!r}: SNR after '@' must be a number of dB") from exc


def _patient_events(seconds: float, rng: np.random.Generator) -> list[Anomaly]:
    """A realistic mix per patient: mostly sinus N; S and V ectopy at patient-specific rates,
    fusion beats beside PVCs, now and then a run, a block, AF or pacing (Q)."""
    events: list[Anomaly] = []
    pvc_rate = float(rng.choice([0.0, 2.0, 5.0, 12.0], p=[0.25, 0.3, 0.25, 0.2]))
    pac_rate = float(rng.choice([0.0, 0.5, 2.0, 4.0], p=[0.35, 0.35, 0.2, 0.1]))
    if pvc_rate:
        events.append(PVC(0.0, seconds, per_minute=pvc_rate))
        if rng.random() < 0.6:
            events.append(Fusion(0.0, seconds, per_minute=max(0.5, pvc_rate / 4)))
    if pac_rate:
        events.append(PAC(0.0, seconds, per_minute=pac_rate))
    span = min(seconds, 60.0)

    def somewhere(length: float) -> tuple[float, float]:
        a = float(rng.uniform(0.0, max(seconds - length, 0.0)))
        return a, min(seconds, a + length)

    if rng.random() < 0.15:
        events.append(VentricularTachycardia(*somewhere(min(4.0, span))))
    if rng.random() < 0.15:
        events.append(SupraventricularTachycardia(*somewhere(min(8.0, span))))
    if rng.random() < 0.1:
        events.append(AtrialFibrillation(*somewhere(min(seconds / 2, 120.0))))
    if rng.random() < 0.1:
        events.append(BundleBranchBlock(0.0, seconds, side=str(rng.choice(["L", "R"]))))
    if rng.random() < 0.08:
        events.append(Paced(*somewhere(min(seconds / 4, 30.0))))
    return events


def synthetic_patients(
    n_patients: int, minutes: float, seed: int = 0, conditions: Sequence[str] = ("clean",)
) -> list[Record]:
    """One record per patient and condition (patient-major), for host training.

    Each patient (seeded by ``(seed, i)``) has its own rate, HRV, morphology and class mix;
    the conditions of one patient share the same clean ECG ('clean', 'emg', 'emg@0',
    'baseline_wander@6', ... kind@SNR dB, 6 dB when omitted).
    Names: ``syn<seed>-p<i>`` plus ``-<condition>`` for the noisy copies.
    """
    if n_patients < 1 or not np.isfinite(minutes) or minutes <= 0:
        raise KasminaError(f"need n_patients >= 1 and minutes > 0 (got {n_patients}, {minutes})")
    parsed = [(c, parse_condition(c)) for c in conditions]
    seconds = float(minutes) * 60.0
    out: list[Record] = []
    for i in range(n_patients):
        rng = np.random.default_rng([seed, i])
        base_name = f"syn{seed}-p{i:03d}"
        clean = synthesize(random_patient(rng), seconds, rng=rng, events=_patient_events(seconds, rng),
                           name=base_name)
        for text, (kind, level) in parsed:
            if kind == "clean":
                out.append(clean)
            else:
                assert level is not None
                noisy = add_noise(clean, kind, level, np.random.default_rng([seed, i, len(out)]))
                noisy.name = f"{base_name}-{text.replace('@', '_')}"
                out.append(noisy)
    return out
