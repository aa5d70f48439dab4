"""Patient-specific seeds: a new wearer's first minutes of annotated beats → a small seed of their own.

The base model is shared; each patient grows a seed on the first ``minutes`` of their own recording
(the window the patient-adaptable standard allows to be labelled), while the base stays frozen:

1. **Data.** The annotated beats of the window, cut into 30 s blocks; every fifth block (spread
   over the window) is the validation slice the gates judge on, the rest is what the seed trains
   on, mixed with the base's *common beats* (a few per class from the patients the base was
   trained on), so that a class the window lacks is not forgotten (Kiranyaz et al. 2016 and de
   Chazal's local + global training use the same idea).
2. **Per-patient RR normalisation.** The three RR intervals (pre, post, local mean, seconds) are
   rescaled by the population's mean RR over the patient's median RR from the window: a patient
   whose sinus rate is fast no longer looks premature to a base trained on slower hearts (the
   ratio feature is left as it is). The scale travels in the bundle; the device applies it while
   the patient's kernel is live.
3. **Tamiyo decides.** The observation is taken with the calibration flag set (annotated beats of
   the wearer at hand): the symptom is a patient shift, sites are ranked by their drift from the
   population and the shift's prior (late sites first), the blueprint is the first on the shift's
   list that the target runs within the per-seed budget (≤ ``max_seed_fraction`` of the base's
   parameters, all of the patient's seeds together). The budget then buys capacity: the
   blueprint's width (rank, expansion, hidden units) is the largest that fits.
4. **Lifecycle.** Each seed has its own :class:`SeedLifecycle` in one engine and goes
   G0 → TRAINING (behind the straight-through incubator: the host's output unchanged, checked bit for
   bit) → G1 → BLENDING (alpha by its grafting strategy) → G2 → SHADOWING → G3 → PROBATIONARY → G4 →
   FOSSILIZED. G4 is judged on the validation slice: the gain in macro-F1 over the base as it runs
   before germination (population RR), and N-beat accuracy no worse than the base's by more than
   ``n_tolerance``. A seed set without gain is CULLED, and the bundle says so.

The host's weights never change: they are frozen and registered as the host; the parameter
registry refuses any update that would touch them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import EmbargoPolicy, Stage
from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat
from kasmina_edge.ecg.records import crop
from kasmina_edge.ecg.types import AAMI_CLASSES, Record
from kasmina_edge.host.data import SPEC
from kasmina_edge.host.model import BeatClassifier, count_host_parameters
from kasmina_edge.host.train import class_metrics, class_weights, predict_logits

Progress = Callable[[str], None]
PATIENT_KIND = "patient_seed"
WIDTH_PARAMS = ("rank", "expansion", "hidden")  # the blueprint parameter that sets its capacity
MIN_WINDOW_BEATS = 60


class PatientError(KasminaError):
    """A patient record the seed cannot be grown from (too short, no annotations, too few beats)."""


@dataclass(frozen=True)
class PatientConfig:
    minutes: float = 5.0  # the adaptation window: the first minutes of the record, annotated
    block_s: float = 30.0  # validation: every ``val_every``-th block of this length
    val_every: int = 5
    max_seed_fraction: float = 0.10  # all the patient's seeds together, of the base's parameters
    max_mac_fraction: float = 0.25
    sites: int = 4  # seeds Tamiyo may grow (one per site, her best-ranked sites)
    common_per_class: int = 50  # common beats per class from the base's own training patients
    rr_normalise: bool = True
    train_steps: int = 800  # TRAINING updates (batches of ``batch_size``)
    blend_steps: int = 5  # grafting steps from alpha 0 to 1
    blend_batches: int = 5  # live updates between two grafting steps ...
    blend_lr_factor: float = 0.1  # ... at this fraction of the learning rate: TRAINING did the learning
    blend_tolerance: float = 0.15  # performance-linked grafting: a half-applied seed may cost this much
    batch_size: int = 64
    lr: float = 1e-2  # Adam; the gradients reaching an early site are small, Adam's steps are not
    class_weight_power: float = 1.0  # inverse class frequency (the common beats keep every class present)
    min_gain: float = 0.0  # G4: macro-F1 gain over the pre-germination baseline needed (> this)
    n_tolerance: float = 0.01  # G4: N-beat accuracy may drop at most this much on the validation slice ...
    n_slack_beats: int = 2  # ... or this many of its N beats, whichever is more (a slice of ~60 N beats)
    # Measured on MIT-BIH (fold-0 base, record 208): a penalty on drift, or clipping each site to its int8
    # range, costs most of the seeds' gain (F beats 92 % -> 0-20 % Se); off by default, G2's bound is loose
    # and the drift every seed reaches is in its trace (see the issue-11 note: int8 site grids).
    drift_penalty: float = 0.0  # penalty on the shift a seed adds to its channel means (host std)
    headroom: float = 0.0  # > 0: clip each site to the base's activation range widened by this; 0: no clip
    max_oscillation: float = 0.08  # G2: a small validation slice moves a few points per step
    max_drift: float = 1000.0  # G2: the seeded site's mean activation vs the host's, in host std
    gate_min_support: int = 3  # gates judge macro-F1 over classes with at least this many beats
    finetune_steps: int = 400  # the full fine-tuning baseline (benchmarks)
    finetune_lr: float = 1e-3
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- data


@dataclass
class PatientWindow:
    """One patient's adaptation window, split for the seed and its gates."""

    record: str
    minutes: float
    fit: BeatDataset  # the seed trains on these (with the patient's RR scale applied)
    val: BeatDataset  # the gates judge on these (RR scale applied)
    val_raw: BeatDataset  # the same beats as the base sees them before the seed (population RR)
    rr_scale: np.ndarray  # (4,) multipliers of the RR features
    calibration: Record  # the window itself (Tamiyo's signal features)

    def counts(self) -> dict[str, dict[str, int]]:
        return {"fit": self.fit.class_counts(), "val": self.val.class_counts()}


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
    block = (beats.r_peaks / (cfg.block_s * record.fs)).astype(np.int64)
    is_val = (block % cfg.val_every) == (cfg.val_every // 2)  # the middle block of every group of five
    fit_raw, val_raw = beats.subset(np.flatnonzero(~is_val)), beats.subset(np.flatnonzero(is_val))
    if len(val_raw) == 0 or len(fit_raw) == 0:
        raise PatientError(
            f"{record.name}: the {cfg.minutes:g}-minute window is too short to hold a validation slice"
        )
    scale = rr_scale_for(base, fit_raw, cfg.rr_normalise)
    return PatientWindow(record.name, cfg.minutes, scale_rr(fit_raw, scale), scale_rr(val_raw, scale), val_raw,
                         scale, window)  # fmt: skip


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


# --------------------------------------------------------------------------- Tamiyo's plan


@dataclass(frozen=True)
class SeedPlan:
    site: str
    blueprint: str
    params: dict[str, Any]
    param_count: int
    macs: int
    grafting: str
    intensity: float


def _width_param(defaults: dict[str, Any]) -> str | None:
    return next((k for k in WIDTH_PARAMS if isinstance(defaults.get(k), int)), None)


def size_blueprint(blueprint: str, channels: int, length: int, budget: int, max_macs: int) -> dict[str, Any]:
    """The blueprint's defaults with its width parameter raised to the largest value within the budget."""
    from kasmina_edge.host.blueprints import get_blueprint

    spec = get_blueprint(blueprint)
    params = dict(spec.defaults)
    key = _width_param(params)
    if key is None:
        return params
    best = None
    for width in range(1, 4 * channels + 1):
        trial = {**params, key: width}
        if spec.param_count(channels, **trial) > budget or spec.macs(channels, length, **trial) > max_macs:
            break
        best = width
    if best is not None:
        params[key] = best
    return params


def plan_patient_seeds(
    base: BeatClassifier,
    window: PatientWindow,
    common: BeatDataset | None,
    cfg: PatientConfig,
    target: str | None,
) -> tuple[list[SeedPlan], dict[str, Any]]:
    """Tamiyo's decision for this patient: sites, blueprints (sized to the budget), grafting, intensity."""
    from kasmina_edge.host.blueprints import get_blueprint
    from kasmina_edge.host.morph import (
        MorphConfig,
        Reference,
        make_controller,
        observe,
        plan_trials,
        site_activations,
    )
    from kasmina_edge.host.tamiyo.features import reference_template, site_stats

    cal = window.calibration
    assert cal.beats is not None
    template = reference_template(cal.lead(0), cal.fs, cal.beats.samples)
    population = common if common is not None and len(common) else window.fit
    ref_sites = {k: site_stats(v) for k, v in site_activations(base, population).items()}
    ref_vec = observe(base, population, [cal], 0, template, ref_sites, plateau=True).vector()
    ctrl = make_controller(
        base, Reference(template, ref_sites, ref_vec),
        MorphConfig(target=target, max_seed_fraction=cfg.max_seed_fraction, max_mac_fraction=cfg.max_mac_fraction),
    )  # fmt: skip
    obs = observe(base, window.fit, [cal], 0, template, ref_sites, plateau=True, calibration=True).vector()
    first, decisions = plan_trials(ctrl, obs, cfg.sites)
    desc: dict[str, Any] = {
        "decision": first.describe(ctrl.space),
        "observation": [round(float(v), 4) for v in obs],
        "budget": {"target": target, "max_params": ctrl.budget.max_params, "max_macs": ctrl.budget.max_macs},
    }
    if not first.act:
        return [], desc
    shapes = base.config.site_shapes()
    share = ctrl.budget.max_params // max(1, len(decisions))  # the seeds share the patient's budget
    plans: list[SeedPlan] = []
    for d in decisions:
        assert d.site is not None and d.blueprint is not None and d.grafting is not None
        site, bp = ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint]
        channels, length = shapes[site]
        params = size_blueprint(bp, channels, length, share, ctrl.budget.max_macs)
        spec = get_blueprint(bp)
        plans.append(SeedPlan(site, bp, params, spec.param_count(channels, **params), spec.macs(channels, length, **params),
                              ctrl.space.graftings[d.grafting], float(ctrl.space.intensities[d.intensity])))  # fmt: skip
    desc["seeds"] = [asdict(p) for p in plans]
    return plans, desc


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
    baseline_val: float  # gate macro-F1 of the base on the validation slice (population RR)
    seed_val: float | None  # with the seeds and the patient's RR scale
    baseline_n_acc: float
    seed_n_acc: float | None
    bit_exact_training: bool | None
    shadow_agreement: float | None
    counts: dict[str, dict[str, int]]
    seconds: float
    config: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # the sites' int8 ranges it grew under

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
            return f"fossilized: gain {self.gain:+.4f} macro-F1 on the validation slice"
        culled = next((s for s in self.seeds if not s.fossilized), self.seeds[0])
        return f"culled: {culled.reason}"

    def summary(self) -> dict[str, Any]:
        return {
            "record": self.record, "minutes": self.minutes, "target": self.target, "outcome": self.outcome,
            "fossilized": self.fossilized, "param_count": self.param_count, "param_fraction": self.param_fraction,
            "base_params": self.base_params, "rr_scale": [float(v) for v in self.rr_scale],
            "baseline_val_macro_f1": self.baseline_val, "seed_val_macro_f1": self.seed_val, "gain": self.gain,
            "baseline_n_accuracy": self.baseline_n_acc, "seed_n_accuracy": self.seed_n_acc,
            "bit_exact_training": self.bit_exact_training, "shadow_agreement": self.shadow_agreement,
            "counts": self.counts, "seconds": self.seconds, "decision": self.decision,
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
    from kasmina_edge.host.morph import site_activations

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


def _tensors(ds: BeatDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(ds.windows, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ds.rr, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ds.labels, dtype=np.int64)),
    )


class _Clock:
    """Logical seconds (one per update): reproducible event times."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def adaptation_set(window: PatientWindow, common: BeatDataset | None, rr_scale: np.ndarray) -> BeatDataset:
    """The patient's training beats and the common beats, both RR-normalised with the patient's scale."""
    if common is None or len(common) == 0:
        return window.fit
    return concat([window.fit, scale_rr(common, rr_scale)])


def grow_patient_seed(
    base: BeatClassifier,
    window: PatientWindow,
    common: BeatDataset | None,
    cfg: PatientConfig,
    *,
    target: str | None = "edgetpu",
    say: Progress | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> PatientSeed:
    """Plan the patient's seeds with Tamiyo and run them, together, through the lifecycle on a frozen
    copy of the base. Each seed keeps its own lifecycle; they are the patient's seed *set*:

    * TRAINING learns on a candidate path beside the host: the frozen blocks with every TRAINING
      seed after its site, so the seeds learn together, end to end (a seed's layer alone would feed
      each seed the host's activation and leave its neighbours out). The host's output is untouched,
      checked bit for bit; isolation (no host gradient) is watched per seed; G1 per seed.
    * BLENDING ramps each seed's alpha by its grafting strategy, the seeds live in the model; G2 per seed.
    * SHADOWING compares with the base's predictions; G3 per seed (interface, export, telemetry).
    * PROBATIONARY: G4 on the validation slice for the surviving set, against the base as it ran
      before germination (population RR): gain > ``min_gain`` and N accuracy within ``n_tolerance``.

    ``ranges``: each site's int8 range (the base bundle's grids). The device requantizes whatever a
    kernel hands on onto its site's grid, so every site is clipped to it here too, in training and in
    the gates: a seed cannot lean on values the device would cut off. Default: the range of the base's
    activations on the common beats (what a base built without seeds calibrates its grids on).
    """
    from contextlib import ExitStack

    from kasmina_edge.host.kasmina import (
        GerminationRejected,
        GradientHealthInputs,
        GraftSignals,
        IsolationMonitor,
        LifecycleEngine,
        ParameterRegistry,
        bit_equal,
        make_grafting,
    )
    from kasmina_edge.host.morph import prepare_host, site_activations
    from kasmina_edge.host.tamiyo.features import site_drift, site_stats
    from kasmina_edge.host.tamiyo.masks import Budget

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    events: list[dict[str, Any]] = []

    def on_event(ev: dict[str, Any]) -> None:
        events.append(ev)
        if sink is not None:
            sink(ev)

    def say_(msg: str) -> None:
        if say is not None:
            say(f"{window.record}: {msg}")

    say_("Tamiyo: observing the window")
    plans, decision = plan_patient_seeds(base, window, common, cfg, target)
    baseline_val, baseline_n = _metrics(base, window.val_raw, cfg.gate_min_support)
    result = PatientSeed(
        record=window.record, minutes=window.minutes, target=target, base_params=count_host_parameters(base),
        rr_scale=window.rr_scale, seeds=[], decision=decision, baseline_val=baseline_val, seed_val=None,
        baseline_n_acc=baseline_n, seed_n_acc=None, bit_exact_training=None, shadow_agreement=None,
        counts=window.counts(), seconds=0.0, config=cfg.to_dict(), events=events,
    )  # fmt: skip
    clock = _Clock()
    engine = LifecycleEngine(clock=clock, embargo=EmbargoPolicy(), sink=on_event, keep_events=False)
    registry = ParameterRegistry()
    budget = Budget(target=target, max_params=int(decision["budget"]["max_params"]),
                    max_macs=int(decision["budget"]["max_macs"]))  # fmt: skip
    model = prepare_host(base, budget, engine, registry)
    share = budget.max_params // max(1, len(plans))  # each seed's share of the patient's budget: G0 checks it
    for layer in model.sites.values():
        layer.max_params = share
        layer.telemetry_enabled = False
    shapes = model.config.site_shapes()
    site_index = {name: i for i, name in enumerate(model.config.site_names)}
    host_params = list(registry.host_parameters())
    bounds = ranges or site_ranges(
        base, common if common is not None and len(common) else window.fit, cfg.headroom
    )
    if not ranges and cfg.headroom <= 0:  # no int8 site range to respect (a float target)
        bounds = {k: (-math.inf, math.inf) for k in bounds}

    for p in plans:
        channels, length = shapes[p.site]
        g = GrownSeed(p, f"{p.site}/all", site_index[p.site], channels, length, Stage.DORMANT.name, "")
        result.seeds.append(g)
        layer = model.sites[p.site]
        layer.telemetry_enabled = True
        try:
            extra: dict[str, float] = {}
            if p.grafting == "drift_controlled":
                extra = {"max_drift": cfg.max_drift}
            elif p.grafting == "performance_linked":
                extra = {"tolerance": cfg.blend_tolerance}
            graft = make_grafting(p.grafting, steps=cfg.blend_steps, **extra)
            g.seed_id = layer.germinate(
                None, p.blueprint, grafting=graft, lr_scale=p.intensity, **p.params
            )  # G0
        except GerminationRejected as exc:
            g.final_stage, g.reason = Stage.CULLED.name, f"gate_G0_failed: {str(exc).split(': ', 2)[-1]}"
            continue
        layer.set_baseline(g.seed_id, baseline_val)
        layer.advance(g.seed_id)  # GERMINATED -> TRAINING

    def alive() -> list[GrownSeed]:
        return [
            g for g in result.seeds if engine.knows(g.seed_id) and engine.stage(g.seed_id) in LIVE_OR_TRAINING
        ]

    clips: list[Any] = []

    def finish() -> PatientSeed:
        for g in result.seeds:
            if engine.knows(g.seed_id):
                st = engine.stage(g.seed_id)
                g.final_stage = Stage.CULLED.name if st in (Stage.CULLED, Stage.EMBARGOED) else st.name
                g.reason = g.reason or engine.lifecycle(g.seed_id).cull_reason or g.final_stage.lower()
                g.history = [e for e in events if e.get("seed_id") == g.seed_id]
        if any(g.fossilized for g in result.seeds):
            result.seed_val, result.seed_n_acc = _metrics(model, window.val, cfg.gate_min_support)
        for hook in clips:
            hook.remove()
        result.ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in bounds.items()}
        result.seconds = time.perf_counter() - t0
        return result

    growing = alive()
    if not growing:
        return finish()
    data = adaptation_set(window, common, window.rr_scale)
    x, rr, y = _tensors(data)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(data.labels)) ** cfg.class_weight_power)
    sids = [g.seed_id for g in growing]
    opt = torch.optim.Adam(registry.optimizer_param_groups(cfg.lr, sids))
    registry.guard(opt, active=lambda: [g.seed_id for g in alive()])
    modules = {g.plan.site: model.sites[g.plan.site].seed_module(g.seed_id) for g in growing}
    monitors = {
        g.seed_id: IsolationMonitor(list(modules[g.plan.site].parameters()), host_params) for g in growing
    }
    losses: list[float] = []
    probe_x, probe_rr = x[:64], rr[:64]
    with torch.no_grad():
        host_probe = model(probe_x, probe_rr)

    def batch() -> torch.Tensor:
        return torch.randint(0, len(y), (min(cfg.batch_size, len(y)),), generator=gen)

    # G2 bounds how far a seed may move its site (and the device's int8 grid is the host's range): a small
    # penalty on the shift the seed adds to its channel means, in the host's std, keeps it where both follow
    ref = {
        k: site_stats(v)
        for k, v in site_activations(
            base, common if common is not None and len(common) else window.fit
        ).items()
    }
    ref_sd = {k: float(v.std.mean()) + 1e-6 for k, v in ref.items()}

    def candidate(xb: torch.Tensor, rb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, drift penalty) of the frozen blocks with every TRAINING seed after its site."""
        h, pen = xb, xb.new_zeros(())
        for name, block in zip(model.config.site_names, model.blocks, strict=True):
            h = block(h)
            if name in modules:
                moved = modules[name](h)
                pen = pen + ((moved - h).mean(dim=(0, 2)) / ref_sd[name]).pow(2).mean()
                h = moved
            h = h.clamp(*bounds[name])
        return model.head(h, rb), pen

    # TRAINING
    say_(f"TRAINING {', '.join(f'{g.plan.blueprint}@{g.plan.site}' for g in growing)}")
    exact = True
    check_every = max(1, cfg.train_steps // 8)
    vx, vrr, vy = _tensors(window.val)
    n_val = int(np.sum(window.val.labels == 0))
    n_floor = baseline_n - max(cfg.n_tolerance, cfg.n_slack_beats / max(1, n_val))

    def candidate_score() -> float:
        """Gate macro-F1 of the candidate path on the validation slice; N accuracy below G4's floor loses."""
        with torch.no_grad():
            pred = candidate(vx, vrr)[0].argmax(1).numpy()
        m = class_metrics(vy.numpy(), pred)
        n_ok = not m.support[0] or float(m.se[0]) >= n_floor
        return m.macro_f1_at(cfg.gate_min_support) - (0.0 if n_ok else 1.0)

    # the candidate path's best state on the validation slice is what TRAINING hands on (early stopping)
    best_score, best_states = -math.inf, {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}
    for step in range(cfg.train_steps):
        idx = batch()
        opt.zero_grad(set_to_none=True)
        logits, pen = candidate(x[idx], rr[idx])
        loss = loss_fn(logits, y[idx])
        with ExitStack() as stack:
            for mon in monitors.values():
                stack.enter_context(mon.seed_backward())
            (loss + cfg.drift_penalty * pen).backward()  # type: ignore[no-untyped-call]
        losses.append(float(loss.detach()))
        opt.step()
        clock.now += 1.0
        if (step + 1) % check_every == 0:
            with torch.no_grad():
                exact = exact and bit_equal(model(probe_x, probe_rr), host_probe)
            for g in growing:
                model.sites[g.plan.site].end_epoch()
            score = candidate_score()
            on_event({"event": "train_check", "step": step + 1, "val_score": score, "loss": losses[-1]})
            if score > best_score:
                best_score, best_states = (
                    score,
                    {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()},
                )
    with torch.no_grad():
        for k, m in modules.items():
            m.load_state_dict(best_states[k])
    result.bit_exact_training = exact
    for g in growing:
        layer = model.sites[g.plan.site]
        mon = monitors[g.seed_id]
        if not exact:
            layer.cull(g.seed_id, "health_isolation: output changed during TRAINING")
            continue
        health = GradientHealthInputs(mon.violations, mon.tripped, tuple(losses), tuple(mon.seed_grad_norms),
                                      window=len(losses))  # fmt: skip
        layer.advance(g.seed_id, health)  # G1
    if not alive():
        return finish()

    # BLENDING: alpha ramps by each seed's grafting strategy while the seeds train on the live output.
    say_("BLENDING")
    host_stats = {k: site_stats(v) for k, v in site_activations(base, window.val).items()}

    def drift_of(g: GrownSeed) -> float:
        """How far the seeds move this site's mean activation on the validation slice, in host std."""
        return site_drift(site_activations(model, window.val)[g.plan.site], host_stats[g.plan.site])

    # from here on the seeds are live in the model: every site clipped to its range, as on the device
    clips += [
        model.sites[name].register_forward_hook(lambda _m, _i, out, b=bounds[name]: out.clamp(*b))
        for name in model.config.site_names
    ]
    for group in opt.param_groups:
        group["lr"] *= cfg.blend_lr_factor
    for _ in range(3 * cfg.blend_steps):
        val = _metrics(model, window.val, cfg.gate_min_support)[0]
        ramped = True
        for g in alive():
            layer = model.sites[g.plan.site]
            norms = monitors[g.seed_id].seed_grad_norms
            signals = GraftSignals(val_metric=val, baseline_metric=baseline_val, drift=drift_of(g),
                                   grad_norm=norms[-1] if norms else None)  # fmt: skip
            alpha = layer.step_alpha(g.seed_id, signals)
            on_event({"event": "blend_step", "seed_id": g.seed_id, "alpha": alpha, "val_macro_f1_before": val,
                      "drift": signals.drift})  # fmt: skip
            ramped = ramped and alpha >= 1.0
        for _b in range(cfg.blend_batches):
            idx = batch()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx], rr[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
            opt.step()
            clock.now += 1.0
        if ramped:
            break
    for g in alive():
        layer = model.sites[g.plan.site]
        layer.end_epoch()
        moved = drift_of(g)
        on_event({"event": "drift", "seed_id": g.seed_id, "seeded_vs_host": moved})
        stab = layer.stability_inputs(g.seed_id, max_oscillation=cfg.max_oscillation, max_drift=cfg.max_drift)
        layer.advance(g.seed_id, replace(stab, drift=moved))  # G2: a seed that fails it is culled alone
    if not alive():
        return finish()

    # SHADOWING: full alpha, compared with the base's predictions (the path without the seeds).
    say_("SHADOWING")
    host_pred = predict_logits(base, window.val_raw).argmax(1)
    result.shadow_agreement = float((predict_logits(model, window.val).argmax(1) == host_pred).float().mean())
    for g in alive():
        layer = model.sites[g.plan.site]
        on_event({"event": "shadow", "seed_id": g.seed_id, "agreement_with_host": result.shadow_agreement})
        probe = torch.randn(2, g.channels, g.length, generator=gen)
        layer.advance(g.seed_id, layer.interface_inputs(g.seed_id, probe=probe))  # G3
    if not alive():
        return finish()

    # PROBATIONARY: the surviving set is judged (G4) on the validation slice, each seed on the same figures.
    say_("PROBATIONARY")
    survivors = alive()
    for g in survivors:
        g.state = model.sites[g.plan.site].seed_state_dict(g.seed_id)
    val, n_acc = _metrics(model, window.val, cfg.gate_min_support)
    n_beats = int(np.sum(window.val.labels == 0))
    tolerance = max(cfg.n_tolerance, cfg.n_slack_beats / max(1, n_beats))
    for g in survivors:
        layer = model.sites[g.plan.site]
        impact = layer.system_impact_inputs(
            g.seed_id, val, global_metric=n_acc, global_reference=baseline_n, tolerance=tolerance,
            min_gain=cfg.min_gain + 1e-9,
        )  # fmt: skip
        layer.advance(g.seed_id, impact)  # G4
        if engine.stage(g.seed_id) is Stage.FOSSILIZED:
            g.record = layer.seed_record(g.seed_id)
    return finish()


LIVE_OR_TRAINING = frozenset(
    {Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED}
)


# --------------------------------------------------------------------------- models to compare


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
    """The upper bound: every weight of the base trained on the same beats (best step on the validation slice)."""
    # trained on the RR-scaled beats with a unit scale, then given the patient's scale for raw beats
    model = PatientModel(base, {}, np.ones(4, np.float32))
    params = list(model.base.host_parameters())
    for p in params:
        p.requires_grad_(True)
    data = adaptation_set(window, common, window.rr_scale)
    x, rr, y = _tensors(data)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(data.labels)) ** cfg.class_weight_power)
    opt = torch.optim.Adam(params, lr=cfg.finetune_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state = _metrics(model, window.val, cfg.gate_min_support)[0], copy.deepcopy(model.state_dict())
    every = max(1, cfg.finetune_steps // 8)
    for step in range(cfg.finetune_steps):
        model.train()
        idx = torch.randint(0, len(y), (min(cfg.batch_size, len(y)),), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx], rr[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if (step + 1) % every == 0:
            f1 = _metrics(model, window.val, cfg.gate_min_support)[0]
            if f1 > best:
                best, best_state = f1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    for p in params:
        p.requires_grad_(False)
    with torch.no_grad():
        model.rr_scale.copy_(torch.as_tensor(window.rr_scale))
    return model.eval()


def classes_of(model: nn.Module, ds: BeatDataset) -> list[str]:
    return [AAMI_CLASSES[int(k)] for k in predict_logits(model, ds).argmax(1).numpy()]


def library_entries(seed: PatientSeed) -> Sequence[tuple[Any, dict[str, torch.Tensor]]]:
    """The patient's seeds as seed-library entries (what the build exports as kernels), weights included."""
    from kasmina_edge.host.seed_library import LibraryEntry

    out = []
    for s in seed.seeds:
        if s.state is None:
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
