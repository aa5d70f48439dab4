"""Patient-specific seeds: a new wearer's first minutes of annotated beats → a small seed of their own.

The base model is shared; each patient grows a seed on the first ``minutes`` of their own recording
(the window the patient-adaptable standard allows to be labelled), while the base stays frozen.
This module holds the data side and the results; :mod:`kasmina_edge.host.patient_plan` holds
Tamiyo's plan and :mod:`kasmina_edge.host.patient_grow` the seeds' lifecycle and gates.

1. **Data.** Every annotated beat of the window trains the seed, mixed with the base's *common
   beats* (a few per class from the patients the base was trained on), so that a class the window
   lacks is not forgotten (Kiranyaz et al. 2016 and de Chazal's local + global training use the
   same idea). The gates do not judge on a held-out slice of a few dozen beats: the same recipe is
   run once per 30-s block with that block held out (:mod:`kasmina_edge.host.evidence`), so
   every beat of the window is judged by a seed that never saw it.
2. **Per-patient RR normalisation.** The three RR intervals (pre, post, local mean, seconds) are
   rescaled by the population's mean RR over the patient's median RR from the window: a patient
   whose sinus rate is fast no longer looks premature to a base trained on slower hearts (the
   ratio feature is left as it is). The scale travels in the bundle; the device applies it while
   the patient's kernel is live.

The host's weights never change: they are frozen and registered as the host; the parameter
registry refuses any update that would touch them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat
from kasmina_edge.ecg.records import crop
from kasmina_edge.ecg.types import AAMI_CLASSES, Record
from kasmina_edge.host.data import SPEC, to_tensors
from kasmina_edge.host.model import BeatClassifier
from kasmina_edge.host.patient_plan import SeedPlan
from kasmina_edge.host.train import class_metrics, class_weights, predict_logits

Progress = Callable[[str], None]
PATIENT_KIND = "patient_seed"
MIN_WINDOW_BEATS = 60


class PatientError(KasminaError):
    """A patient record the seed cannot be grown from (too short, no annotations, too few beats)."""


@dataclass(frozen=True)
class PatientConfig:
    minutes: float = 5.0  # the adaptation window: the first minutes of the record, annotated
    max_seed_fraction: float = 0.10  # all the patient's seeds together, of the base's parameters
    max_mac_fraction: float = 0.25
    sites: int = 2  # seeds Tamiyo may grow (one per site, her best-ranked sites)
    common_per_class: int = 50  # common beats per class from the base's own training patients
    rr_normalise: bool = True
    # The recipe (TRAINING): every window beat, a fixed number of epochs, no early stopping on a
    # slice. Tuned on DS1 leave-records-out folds (four folds, all 22 records, minutes 5-30), never on
    # one record: bottleneck adapters at sites 2 and 3 reached macro-F1 75.7 against full
    # fine-tuning's 75.6 (base 48.9) with the square root of inverse class frequency; with full
    # inverse frequency 70.8, and normal beats flagged on 7 records instead of 4.
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3  # Adam, times Tamiyo's intensity
    class_weight_power: float = 0.5  # square root of inverse class frequency (common beats keep every class)
    # The keep loss's weight: the base's answers on the beats it gets right stay. DS1 folds, seeds
    # ungated: 1 record of 22 worse than its base instead of 4 (N accuracy on F-heavy 208: −0.3
    # points instead of −3.6), at 1.7 points of gross macro-F1 (S beats).
    keep_weight: float = 1.0
    blend_steps: int = 5  # grafting steps from alpha 0 to 1 (TRAINING did the learning)
    blend_tolerance: float = 0.15  # performance-linked grafting: a half-applied seed may cost this much
    # Gates: out-of-fold evidence over blocks of the window, judged on paired-bootstrap lower bounds.
    # 30-s blocks, 10 folds: each out-of-fold seed trains on 90 % of the window, closer to the seed
    # that ships than 60-s blocks in 5 folds (DS1 folds: 10 seeds kept instead of 7, none worse).
    cv_block_s: float = 30.0
    cv_folds: int = 10
    gate_quantile: float = 0.1  # G4 reads the 10th percentile of the bootstrap: "unlikely to hurt"
    gate_rounds: int = 400
    min_gain: float = 0.0  # G4: the lower bound of the macro-F1 gain must be above this ...
    n_tolerance: float = 0.01  # ... and that of the N-accuracy change above minus this
    headroom: float = 0.0  # > 0: clip each site to the base's activation range widened by this; 0: no clip
    max_oscillation: float = 0.08  # G2: the in-window metric may move this much between grafting steps
    max_drift: float = 1000.0  # G2: the seeded site's mean activation vs the host's, in host std
    gate_min_support: int = 3  # gates judge macro-F1 over classes with at least this many beats
    finetune_lr: float = 1e-3  # the full fine-tuning baseline (benchmarks): same data and epochs
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- data


@dataclass
class PatientWindow:
    """One patient's adaptation window: its annotated beats and the time block of each."""

    record: str
    minutes: float
    beats: BeatDataset  # the seed trains on these (with the patient's RR scale applied)
    beats_raw: BeatDataset  # the same beats as the base sees them before the seed (population RR)
    blocks: np.ndarray  # the ``cv_block_s`` block of each beat: the gates' out-of-fold folds
    rr_scale: np.ndarray  # (4,) multipliers of the RR features
    calibration: Record  # the window itself (Tamiyo's signal features)

    def counts(self) -> dict[str, int]:
        return self.beats.class_counts()


def scale_rr(ds: BeatDataset, scale: np.ndarray) -> BeatDataset:
    rr = (np.asarray(ds.rr, dtype=np.float32) * np.asarray(scale, dtype=np.float32)[None, :]).astype(
        np.float32
    )
    return BeatDataset(ds.windows, rr, ds.labels, ds.records, ds.r_peaks)


def rr_scale_for(base: BeatClassifier, beats: BeatDataset, enabled: bool = True) -> np.ndarray:
    """Per-patient RR normalisation: pre, post and local RR times population mean RR / patient median RR."""
    scale = np.ones(4, dtype=np.float32)
    if not enabled or len(beats) == 0:
        return scale
    population = float(base.head.rr_mean[0])  # type: ignore[index]
    patient = float(np.median(beats.rr[:, 0]))
    if population > 0 and patient > 0 and math.isfinite(population / patient):
        scale[:3] = population / patient
    return scale


def patient_window(record: Record, base: BeatClassifier, cfg: PatientConfig) -> PatientWindow:
    """The first ``cfg.minutes`` of ``record``: annotated beats, split, RR-normalised. One clear error
    when the record is shorter than the window, has no annotations or too few beats in it."""
    seconds = cfg.minutes * 60.0
    if not math.isfinite(seconds) or seconds <= 0:
        raise PatientError(
            f"--minutes {cfg.minutes}: the adaptation window must be a positive number of minutes"
        )
    if record.beats is None or len(record.beats) == 0:
        raise PatientError(
            f"{record.name}: no reference beat annotations (.atr): a patient seed trains on annotated beats"
        )
    if record.seconds < seconds:
        raise PatientError(
            f"{record.name}: the record is {record.seconds:.0f} s long, shorter than the {cfg.minutes:g}-minute "
            f"adaptation window ({seconds:.0f} s)"
        )
    window = crop(record, 0.0, seconds)
    beats = beats_from_record(window, SPEC)
    if len(beats) < MIN_WINDOW_BEATS:
        raise PatientError(
            f"{record.name}: only {len(beats)} annotated beats in the first {cfg.minutes:g} min "
            f"(need at least {MIN_WINDOW_BEATS})"
        )
    from kasmina_edge.host.evidence import time_blocks

    blocks = time_blocks(beats.r_peaks, record.fs, cfg.cv_block_s)
    if len(np.unique(blocks)) < 2:
        raise PatientError(
            f"{record.name}: the {cfg.minutes:g}-minute window is too short for out-of-fold gates "
            f"(needs at least two {cfg.cv_block_s:g}-s blocks)"
        )
    scale = rr_scale_for(base, beats, cfg.rr_normalise)
    return PatientWindow(record.name, cfg.minutes, scale_rr(beats, scale), beats, blocks, scale, window)


def common_beats(beats: BeatDataset, per_class: int, seed: int = 0, n_classes: int = 4) -> BeatDataset:
    """Up to ``per_class`` beats of each of the first ``n_classes`` AAMI classes, spread over the records."""
    rng = np.random.default_rng(seed)
    pick: list[np.ndarray] = []
    for k in range(n_classes):
        idx = np.flatnonzero(beats.labels == k)
        if idx.size:
            pick.append(rng.choice(idx, size=min(per_class, idx.size), replace=False))
    if not pick:
        return beats.subset(np.zeros(0, dtype=np.int64))
    return beats.subset(np.sort(np.concatenate(pick)))


COMMON_KEY = "common_beats"


def common_beats_to_checkpoint(beats: BeatDataset) -> dict[str, Any]:
    """The common beats as plain tensors (a checkpoint stays loadable with ``weights_only``)."""
    return {
        "windows": torch.from_numpy(np.ascontiguousarray(beats.windows, np.float32)),
        "rr": torch.from_numpy(np.ascontiguousarray(beats.rr, np.float32)),
        "labels": torch.from_numpy(np.ascontiguousarray(beats.labels, np.int64)),
        "records": sorted({str(r) for r in beats.records}),
    }


def common_beats_of(ckpt: dict[str, Any], per_class: int, seed: int = 0) -> BeatDataset | None:
    """The base's common beats: stored in its checkpoint, else drawn again from the synthetic patients
    ``kasmina-edge train`` used (same seed, same split); None when neither is known."""
    stored = ckpt.get(COMMON_KEY)
    if stored:
        labels = stored["labels"].numpy()
        ds = BeatDataset(stored["windows"].numpy(), stored["rr"].numpy(), labels, np.full(labels.shape[0], "common"),
                         np.zeros(labels.shape[0], np.int64))  # fmt: skip
        return common_beats(ds, per_class, seed)
    tcfg = ckpt.get("train_config") or {}
    if not {"patients", "minutes", "seed", "val_fraction"} <= set(tcfg):
        return None
    from kasmina_edge.host.data import beats, patient_records, split_patients

    records = patient_records(int(tcfg["patients"]), float(tcfg["minutes"]), int(tcfg["seed"]))
    train_recs, _ = split_patients(records, float(tcfg["val_fraction"]), int(tcfg["seed"]))
    return common_beats(beats(train_recs), per_class, seed)


# --------------------------------------------------------------------------- the seeds' life


@dataclass
class GrownSeed:
    """One of the patient's seeds after its lifecycle (weights kept for every seed that got through TRAINING)."""

    plan: SeedPlan
    seed_id: str
    site_index: int
    channels: int
    length: int
    final_stage: str
    reason: str
    state: dict[str, torch.Tensor] | None = None
    record: dict[str, Any] = field(default_factory=dict)  # KasminaLayer.seed_record()
    bit_exact: bool | None = None  # the host's output unchanged through TRAINING
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fossilized(self) -> bool:
        return self.final_stage == Stage.FOSSILIZED.name

    def module(self) -> nn.Module:
        from kasmina_edge.host.blueprints import create_blueprint

        if self.state is None:
            raise PatientError(f"seed {self.seed_id}: no weights (it never finished TRAINING)")
        m = create_blueprint(self.plan.blueprint, self.channels, self.length, **self.plan.params)
        m.load_state_dict(self.state)
        return m.eval()


@dataclass
class PatientSeed:
    """What ``grow_patient_seed`` returns: the seeds, the gates' figures and the whole trace."""

    record: str
    minutes: float
    target: str | None
    base_params: int
    rr_scale: np.ndarray
    seeds: list[GrownSeed]
    decision: dict[str, Any]
    baseline_val: float  # gate macro-F1 of the base on the window's beats (population RR)
    seed_val: float | None  # out of fold: each beat by a seed that never trained on its block
    baseline_n_acc: float
    seed_n_acc: float | None
    bit_exact_training: bool | None
    shadow_agreement: float | None
    counts: dict[str, int]
    seconds: float
    config: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # the sites' int8 ranges it grew under
    evidence: dict[str, Any] | None = None  # G4's out-of-fold, bootstrapped figures (GateEvidence)

    @property
    def fossilized(self) -> bool:
        return any(s.fossilized for s in self.seeds)

    @property
    def param_count(self) -> int:
        return sum(s.plan.param_count for s in self.seeds)

    @property
    def param_fraction(self) -> float:
        return self.param_count / max(1, self.base_params)

    @property
    def gain(self) -> float:
        return (self.seed_val - self.baseline_val) if self.seed_val is not None else 0.0

    @property
    def outcome(self) -> str:
        if not self.seeds:
            return f"no seed: {self.decision.get('decision', {}).get('reason', 'Tamiyo did not act')}"
        if self.fossilized:
            low = (self.evidence or {}).get("gain_low")
            bound = f" (lower bound {low:+.4f})" if isinstance(low, float) else ""
            return f"fossilized: out-of-fold gain {self.gain:+.4f} macro-F1{bound} over the window's beats"
        culled = next((s for s in self.seeds if not s.fossilized), self.seeds[0])
        ev = self.evidence
        if ev and "gate_G4_failed" in culled.reason:  # say what G4 read: bounds, not the point estimates
            pct = round(100 * float(ev["quantile"]))
            return (
                f"culled by G4: out of fold over {ev['n_beats']} beats the macro-F1 gain is {ev['gain']:+.3f} but "
                f"its {pct}th-percentile bound is {ev['gain_low']:+.3f} (needs > {self.config.get('min_gain', 0.0):g}); "
                f"N accuracy {ev['n_acc_delta']:+.3f}, bound {ev['n_acc_delta_low']:+.3f} (needs ≥ "
                f"{-float(self.config.get('n_tolerance', 0.01)):+g})"
            )
        return f"culled: {culled.reason}"

    def summary(self) -> dict[str, Any]:
        return {
            "record": self.record, "minutes": self.minutes, "target": self.target, "outcome": self.outcome,
            "fossilized": self.fossilized, "param_count": self.param_count, "param_fraction": self.param_fraction,
            "base_params": self.base_params, "rr_scale": [float(v) for v in self.rr_scale],
            "baseline_val_macro_f1": self.baseline_val, "seed_val_macro_f1": self.seed_val, "gain": self.gain,
            "baseline_n_accuracy": self.baseline_n_acc, "seed_n_accuracy": self.seed_n_acc,
            "bit_exact_training": self.bit_exact_training, "shadow_agreement": self.shadow_agreement,
            "counts": self.counts, "seconds": self.seconds, "decision": self.decision, "evidence": self.evidence,
            "seeds": [
                {"seed_id": s.seed_id, "site": s.plan.site, "blueprint": s.plan.blueprint, "params": s.plan.params,
                 "param_count": s.plan.param_count, "macs": s.plan.macs, "grafting": s.plan.grafting,
                 "intensity": s.plan.intensity, "final_stage": s.final_stage, "reason": s.reason}
                for s in self.seeds
            ],
        }  # fmt: skip


class PatientModel(nn.Module):
    """The base with the patient's seeds after their sites and the patient's RR scale: what the device
    runs once the kernels are live (and the float reference for its int8 result)."""

    def __init__(
        self, base: BeatClassifier, seeds: dict[str, nn.Module], rr_scale: np.ndarray,
        ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.base = copy.deepcopy(base).eval()
        for site in self.base.sites.values():
            site.telemetry_enabled = False
        self.seeds = nn.ModuleDict(seeds)
        self.ranges = dict(ranges or {})  # each site clipped to its int8 range, as the device does
        self.register_buffer("rr_scale", torch.as_tensor(np.asarray(rr_scale, np.float32)))

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        h = x
        for (name, site), block in zip(self.base.sites.items(), self.base.blocks, strict=True):
            h = site(block(h))
            if name in self.seeds:
                h = self.seeds[name](h)
            if name in self.ranges:
                h = h.clamp(*self.ranges[name])
        return self.base.head(h, rr * self.rr_scale)  # type: ignore[no-any-return]


def site_ranges(
    base: BeatClassifier, beats: BeatDataset, headroom: float = 1.0
) -> dict[str, tuple[float, float]]:
    """(low, high) of the base's activation at each site over ``beats`` (low never above 0), widened by
    ``headroom``: the int8 range a base built to take patient kernels reserves at its sites."""
    from kasmina_edge.host.site_observation import site_activations

    acts = site_activations(base, beats, limit=4096)
    out: dict[str, tuple[float, float]] = {}
    for k, v in acts.items():
        lo, hi = min(0.0, float(v.min())), float(v.max())
        # headroom on both sides: a seed's residual may push an activation below the ReLU's zero
        out[k] = (
            (lo - (headroom - 1.0) * (hi - lo), hi + (headroom - 1.0) * (hi - lo))
            if headroom > 1
            else (lo, hi)
        )
    return out


def _metrics(model: nn.Module, ds: BeatDataset, min_support: int) -> tuple[float, float]:
    """(gate macro-F1 over classes with >= min_support beats, N-beat accuracy)."""
    m = class_metrics(np.asarray(ds.labels), predict_logits(model, ds).argmax(1).numpy())
    n_acc = float(m.se[0]) if m.support[0] else float("nan")
    return m.macro_f1_at(min_support), n_acc


# --------------------------------------------------------------------------- models to compare


def adaptation_set(window: PatientWindow, common: BeatDataset | None) -> BeatDataset:
    """The patient's beats and the common beats, both RR-normalised with the patient's scale."""
    if common is None or len(common) == 0:
        return window.beats
    return concat([window.beats, scale_rr(common, window.rr_scale)])


def seeded_model(base: BeatClassifier, seed: PatientSeed, *, include_culled: bool = False) -> PatientModel:
    """The base with the patient's fossilized seeds (or, to look at them, culled ones too) and RR scale."""
    mods = {
        s.plan.site: s.module()
        for s in seed.seeds
        if s.state is not None and (s.fossilized or include_culled)
    }
    if not mods:
        return PatientModel(base, {}, np.ones(4, np.float32))
    return PatientModel(base, mods, seed.rr_scale, seed.ranges)


def fine_tune_patient(
    base: BeatClassifier, window: PatientWindow, common: BeatDataset | None, cfg: PatientConfig
) -> PatientModel:
    """The upper bound: every weight of the base trained on the same beats, for the same epochs."""
    # trained on the RR-scaled beats with a unit scale, then given the patient's scale for raw beats
    model = PatientModel(base, {}, np.ones(4, np.float32))
    params = list(model.base.host_parameters())
    for p in params:
        p.requires_grad_(True)
    data = adaptation_set(window, common)
    x, rr, y = to_tensors(data)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(data.labels)) ** cfg.class_weight_power)
    opt = torch.optim.Adam(params, lr=cfg.finetune_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _epoch in range(cfg.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx], rr[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
    for p in params:
        p.requires_grad_(False)
    with torch.no_grad():
        model.rr_scale.copy_(torch.as_tensor(window.rr_scale))
    return model.eval()


def classes_of(model: nn.Module, ds: BeatDataset) -> list[str]:
    return [AAMI_CLASSES[int(k)] for k in predict_logits(model, ds).argmax(1).numpy()]


def library_entries(seed: PatientSeed) -> Sequence[tuple[Any, dict[str, torch.Tensor]]]:
    """The patient's fossilized seeds as seed-library entries (what the build exports as kernels), weights included."""
    from kasmina_edge.host.seed_library import LibraryEntry

    out = []
    for s in seed.seeds:
        if s.state is None or not s.fossilized:  # a culled seed never reaches a bundle
            continue
        lifecycle = [e for e in s.history if e.get("event") in ("transition", "gate")]
        out.append((LibraryEntry(
            key=f"patient-{seed.record}@{s.plan.site}", condition="patient", tags=[f"record:{seed.record}"],
            site=s.plan.site, site_index=s.site_index, channels=s.channels, length=s.length, blueprint=s.plan.blueprint,
            blueprint_params=dict(s.plan.params), grafting=s.plan.grafting, intensity=s.plan.intensity,
            param_count=s.plan.param_count, param_fraction=s.plan.param_count / max(1, seed.base_params),
            macs=s.plan.macs, baseline_val=seed.baseline_val, seed_val=float(seed.seed_val or 0.0), gain=seed.gain,
            clean_host=seed.baseline_n_acc, clean_seed=seed.seed_n_acc, seed_id=s.seed_id, lifecycle=lifecycle,
            kasmina=s.record,
        ), s.state))  # fmt: skip
    return out
