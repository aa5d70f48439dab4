"""The edge stages' shared path: a tiny base trained on the host, one condition seed grown on it, the
model built per target, flashed to an emulated device and streamed.

Every piece is the project's own: ``host.train`` (the base), ``host.condition_trial.run_trial`` (the seed,
walked through the lifecycle), ``host.fine_tune`` (the upper bound), ``compile.pipeline.build`` (bundles),
``firmware_sim`` (flash, boot, stream, the kernel store) and ``firmware_sim.score`` (beats scored against the
record's annotations). This module only wires them with the sizes of a quick or a full run and reads the
budgets of each hardware profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.curriculum.stage import Say

if TYPE_CHECKING:
    from kasmina_edge.compile.pipeline import BuildResult
    from kasmina_edge.ecg.types import Record
    from kasmina_edge.host.condition_trial import TrialResult
    from kasmina_edge.host.data import Condition, ConditionSplit
    from kasmina_edge.host.model import BeatClassifier
    from kasmina_edge.host.train import Beats

# Muscle noise at -6 dB (the morph condition ``emg``): the tiny base loses S beats under it on synthetic
# patients (macro-F1 0.655 -> 0.615 measured, 12 patients x 2 min), the condition the edge seed is grown for.
CONDITION_NAME = "emg"
# The seed: a denoising autoencoder right after the first block, the site where a filter sees the raw
# waveform's features. Measured on the tiny base (emg -6 dB): site0 denoising_autoencoder fossilized
# (+0.011 macro-F1); site0 residual_mlp and site1 bottleneck_adapter were culled at G4.
SEED_SITE = "site0"
SEED_BLUEPRINT = "denoising_autoencoder"
# A stage's target: the on-device metric under the condition within this much of the same base on clean
# signal (what the device would do with a clean lead).
TOLERANCE = 0.02
# macro-F1 over the classes with at least this many beats in the span scored (one S beat in a span would
# otherwise move the metric by a third)
MIN_SUPPORT = 5
TARGET_PROFILES = {"edgetpu": "coral-usb", "cortex-m": "stm32h743", "linux-arm": "rpi4", "x86": "x86-64-host"}


@dataclass(frozen=True)
class EdgePlan:
    """How big an edge run is (quick: tests and CI's slow tier; full: the stage as reported)."""

    quick: bool
    seed: int = 0
    patients: int = 24
    minutes: float = 3.0
    epochs: int = 12
    trial_epochs: int = 6
    targets: tuple[str, ...] = ("x86", "edgetpu", "cortex-m", "linux-arm")
    stream_minutes: float = 10.0  # streaming is cheap (~1 ms a beat on this host); short spans lack S and V beats
    snr_db: float = -6.0

    @property
    def profiles(self) -> dict[str, str]:
        return {t: TARGET_PROFILES[t] for t in self.targets}


def edge_plan(quick: bool, seed: int = 0) -> EdgePlan:
    if quick:  # x86 (ONNX, ~10 s to build) and the strictest budget, the MCU (TFLite Micro, ~50 s)
        # 12 patients, 10 epochs: on 8 patients x 6 epochs the base ignored the noise (and any seed)
        return EdgePlan(True, seed, patients=12, minutes=2.0, epochs=10, trial_epochs=3, targets=("x86", "cortex-m"),
                        stream_minutes=4.0)  # fmt: skip
    return EdgePlan(False, seed)


def condition(plan: EdgePlan) -> Condition:
    from kasmina_edge.host.data import CONDITIONS

    return dataclasses.replace(CONDITIONS[CONDITION_NAME], snr_db=plan.snr_db)


# ------------------------------------------------------------------------------------------- host


@dataclass
class HostModels:
    """What the host hands the device: the base, its seed (when one fossilized) and fine-tuning."""

    checkpoint: Path
    seeds: Path | None  # the seed library folder; None when the seed was culled
    ft_checkpoint: Path | None
    base: BeatClassifier
    trial: TrialResult
    split: ConditionSplit
    clean_val: Beats
    base_params: int
    ft_params: int
    host: dict[str, float] = field(default_factory=dict)  # macro-F1 on the held-out patients, per arm

    @property
    def lifecycle(self) -> list[dict[str, Any]]:
        return [e for e in self.trial.history if e.get("event") in ("transition", "gate")]


def save_base_checkpoint(path: Path, model: BeatClassifier, meta: dict[str, Any] | None = None) -> None:
    """A model as a base checkpoint (what ``load_base`` and the build read)."""
    from kasmina_edge.host.experiment import save_checkpoint

    save_checkpoint(path, {"kind": "base", "model_config": model.config.to_dict(), "state": model.state_dict(),
                           "experiment_id": path.stem, **(meta or {})})  # fmt: skip


def train_edge_base(plan: EdgePlan, out: Path) -> tuple[BeatClassifier, Any]:
    """The tiny base on synthetic patients (checkpoint at ``out``); returns it and the patient split."""
    from kasmina_edge.host.train import TRAIN_PRESETS, set_threads, synthetic_split, train_base

    set_threads(2)
    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], patients=plan.patients, minutes=plan.minutes,
                              epochs=plan.epochs, seed=plan.seed)  # fmt: skip
    split = synthetic_split(cfg)
    result = train_base(cfg, split.train, split.val, out=out)
    return result.model.eval(), split


def morph_settings(plan: EdgePlan) -> Any:
    from kasmina_edge.host.morph_config import MORPH_PRESETS

    quick: dict[str, Any] = {"train_epochs": plan.trial_epochs}
    # G4's gain threshold: half a point of macro-F1 (the tiny base on a few patients moves in small steps)
    return dataclasses.replace(MORPH_PRESETS["tiny"], target=None, min_gain=0.005, seed=plan.seed,
                               **(quick if plan.quick else {}))  # fmt: skip


def grow_seed(base: BeatClassifier, split: ConditionSplit, clean_val: Beats, plan: EdgePlan) -> TrialResult:
    """The condition seed at its site, through the lifecycle (FOSSILIZED or CULLED)."""
    from kasmina_edge.host.condition_trial import run_trial
    from kasmina_edge.host.tamiyo.masks import Budget

    return run_trial(base, split, clean_val, SEED_SITE, SEED_BLUEPRINT, "fixed_ramp", 1.0, Budget(),
                     morph_settings(plan), seed=plan.seed)  # fmt: skip


def write_library(trial: TrialResult, base: BeatClassifier, folder: Path, tags: tuple[str, ...]) -> Path | None:
    """The fossilized seed as a one-entry seed library (None when it was culled)."""
    from kasmina_edge.host.model import count_host_parameters
    from kasmina_edge.host.morph import library_entry
    from kasmina_edge.host.seed_library import SeedLibrary

    if not trial.fossilized or trial.state is None:
        return None
    params = count_host_parameters(base)
    lib = SeedLibrary(meta={"model_config": base.config.to_dict(), "base_params": params, "kind": "edge"})
    lib.add(library_entry(trial, params, base.config.site_names.index(trial.site), tags), trial.state)
    lib.save(folder)
    return folder


def prepare_host(plan: EdgePlan, folder: Path, say: Say, *, fine_tune_arm: bool = True) -> HostModels:
    """Train the base, grow the seed on the condition, fine-tune every weight on the same data."""
    from kasmina_edge.host.conditions_morph import seeded_model
    from kasmina_edge.host.data import condition_split
    from kasmina_edge.host.fine_tune import fine_tune
    from kasmina_edge.host.model import count_host_parameters
    from kasmina_edge.host.train import evaluate

    folder.mkdir(parents=True, exist_ok=True)
    cond = condition(plan)
    say(f"host: tiny base on {plan.patients} synthetic patients x {plan.minutes:g} min, {plan.epochs} epochs")
    base, sp = train_edge_base(plan, folder / "base.pt")
    split = condition_split(cond, sp.train_records, sp.val_records, seed=plan.seed + 1)
    split.adapt_clean = sp.train  # synthetic patients have clean twins: the seed is pulled towards them
    say(f"host: {SEED_BLUEPRINT} seed at {SEED_SITE} on {cond.description.split(',')[0]} at {plan.snr_db:g} dB")
    trial = grow_seed(base, split, sp.val, plan)
    seeds = write_library(trial, base, folder / "seeds", cond.tags)
    host = {"base_clean": evaluate(base, sp.val).macro_f1, "base_condition": evaluate(base, split.val).macro_f1}
    if trial.fossilized:
        host["seeded_condition"] = evaluate(seeded_model(base, trial), split.val).macro_f1
    ft_path = None
    if fine_tune_arm:
        say("host: full fine-tuning on the same adaptation data (the upper bound)")
        ft = fine_tune(base, split, epochs=2 if plan.quick else 4, lr=1e-3, batch_size=64, seed=plan.seed)
        host["fine_tuned_condition"] = evaluate(ft, split.val).macro_f1
        ft_path = folder / "fine_tuned.pt"
        save_base_checkpoint(ft_path, ft)
    params = count_host_parameters(base)
    return HostModels(folder / "base.pt", seeds, ft_path, base, trial, split, sp.val, params, params, host)


# ------------------------------------------------------------------------------------------- build


def build_bundle(plan: EdgePlan, checkpoint: Path, seeds: Path | None, target: str, keys: Path, out: Path,
                 **extra: Any) -> BuildResult:  # fmt: skip
    """The project's build with the run's sizes (quick: a few calibration patients, few parity windows)."""
    from kasmina_edge.compile.pipeline import BuildRequest, build

    sizes: dict[str, Any] = (
        {"calibration_patients": 3, "heldout_patients": 2, "minutes": 1.0, "parity_windows": 200, "qat_steps": 20}
        if plan.quick else {"heldout_patients": 6}
    )  # fmt: skip
    return build(BuildRequest(checkpoint=checkpoint, seeds=seeds, target=target, keys=keys, out=out,
                              **sizes, **extra))  # fmt: skip


def kernel_bundle(plan: EdgePlan, checkpoint: Path, seeds: Path, base_bundle: Path, target: str, keys: Path,
                  out: Path) -> BuildResult:  # fmt: skip
    """The seed alone, as a signed kernel-only bundle for the base already on the device (its grids, its
    segments: the kernel is checked in the chain the device runs)."""
    from kasmina_edge.compile.patient_bundle import base_grids
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.core.pack4 import artifact_payload

    grids, logit = base_grids(checkpoint, target, base_bundle, keys)
    b = read_bundle(base_bundle, keys)
    segments = {e.name: artifact_payload(b, e) for e in b.manifest.artifacts if e.kind == "segment"}
    return build_bundle(plan, checkpoint, seeds, target, keys, out, site_grids=grids, logit_grid=logit,
                        kernels_only=True, base_segments=segments)  # fmt: skip


# ------------------------------------------------------------------------------------------- device


@dataclass
class DeviceRun:
    """One stream through an emulated device, scored against the record's annotations."""

    macro_f1: float
    beats: int
    beat_sensitivity: float
    device_us_per_beat: float  # the profile's emulated time per window
    host_us_per_beat: float
    swaps: int
    decision_ms_p99: float | None
    activation_ms: dict[str, float]  # per installed kernel: decision + G0 check + swap on the profile
    transitions: list[dict[str, Any]]
    parts: dict[str, float] = field(default_factory=dict)  # macro-F1 of named spans (clean / noisy halves)
    boot_notes: list[str] = field(default_factory=list)  # e.g. a stored kernel bundle the boot skipped, and why

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stream(device: Any, record: Record, log: Path, *, mode: str,
           spans: dict[str, tuple[float, float | None]] | None = None, activation: bool = False) -> DeviceRun:
    """Boot ``device`` and stream ``record``. ``mode``: ``base`` (no kernel live, none swapped in), ``seeded``
    (the bundle's kernels live from boot, the controller idle) or ``adaptive`` (the controller decides);
    ``spans``: named [start, end) seconds scored on their own; ``activation``: boot it once more to read the
    emulator's per-kernel activation estimate (decision + G0 check + swap on the profile)."""
    import json

    from firmware_sim.runner import RunOptions, boot_runtime, run_stream
    from firmware_sim.score import score_run
    from firmware_sim.timing import EmulatedTiming
    from kasmina_edge.ecg.sources import RecordSource
    from kasmina_edge.runtime.engine import RuntimeConfig

    configs = {"base": RuntimeConfig(adapt=False, boot_kernels=False), "seeded": RuntimeConfig(adapt=False),
               "adaptive": RuntimeConfig()}  # fmt: skip
    if mode not in configs:
        from kasmina_edge.contracts.errors import KasminaError

        raise KasminaError(f"stream mode {mode!r}: choose one of {', '.join(configs)}")
    config = configs[mode]
    options = RunOptions(runtime=config, keep_predictions=True)
    log.unlink(missing_ok=True)
    s = run_stream(device, RecordSource(record), out=log, options=options)
    beats = max(1, int(s.status["beats"]))
    score = score_run(s.predictions, record)
    parts = {k: score_run(s.predictions, record, start_s=a, end_s=b).macro_f1(MIN_SUPPORT)
             for k, (a, b) in (spans or {}).items()}  # fmt: skip
    lat = sorted(s.decision_latency_s)
    p99 = 1e3 * float(np.percentile(lat, 99)) if lat else None
    timing: EmulatedTiming | None = boot_runtime(device, options=options).timing if activation else None
    act = {k: 1e3 * v for k, v in (timing.activation_s.items() if timing else [])}
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    moves = [e for e in events if e.get("event") in ("transition", "decision", "kernel_refused")]
    return DeviceRun(score.macro_f1(MIN_SUPPORT), int(s.status["beats"]), score.sensitivity, 1e6 * s.device_infer_s / beats,
                     1e6 * s.host_infer_s / beats, int(s.status["swaps"]), p99, act, moves, parts,
                     list(s.fallbacks))  # fmt: skip


def open_emulator(root: Path, name: str) -> Any:
    from firmware_sim.device import open_device

    return open_device(f"emu://{name}", root)


def stream_record(plan: EdgePlan, *, noisy: bool, salt: int = 0) -> Record:
    """A patient none of the models saw, ``plan.stream_minutes`` long; ``noisy``: the condition throughout."""
    from kasmina_edge.ecg.artifacts import add_noise
    from kasmina_edge.ecg.dataset import synthetic_patients

    rec = synthetic_patients(1, plan.stream_minutes, seed=plan.seed + 7_001 + salt)[0]
    if not noisy:
        return rec
    return add_noise(rec, "emg", plan.snr_db, np.random.default_rng(plan.seed + 31 + salt))


def switch_record(plan: EdgePlan, salt: int = 0) -> Record:
    """Clean first half, the condition second half (the device must notice and adapt)."""
    from kasmina_edge.ecg.artifacts import add_noise

    rec = stream_record(plan, noisy=False, salt=salt)
    return add_noise(rec, "emg", plan.snr_db, np.random.default_rng(plan.seed + 37 + salt),
                     start=rec.n_samples // 2, end=rec.n_samples)  # fmt: skip


@dataclass
class Budgets:
    """A bundle against its hardware profile: flash for two A/B slots, RAM (TFLite Micro arenas in SRAM, the
    artifacts in DRAM elsewhere) and the emulated time per beat."""

    profile: str
    flash_need: int
    flash_limit: int  # 0: the profile keeps no model of its own (a host)
    ram_need: int
    ram_limit: int  # 0: not limited by the profile
    ram_kind: str
    per_beat_us: float
    per_beat_budget_us: float

    @property
    def flash_ok(self) -> bool:
        return self.flash_limit == 0 or self.flash_need <= self.flash_limit

    @property
    def ram_ok(self) -> bool:
        return self.ram_limit == 0 or self.ram_need <= self.ram_limit

    @property
    def latency_ok(self) -> bool:
        return self.per_beat_us <= self.per_beat_budget_us

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"flash_ok": self.flash_ok, "ram_ok": self.ram_ok,
                                           "latency_ok": self.latency_ok}  # fmt: skip


def budgets(bundle_path: Path, keys: Path, profile_name: str, per_beat_us: float) -> Budgets:
    from firmware_sim.fit import bundle_report, runnable_bytes
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.core.catalog import hardware
    from kasmina_edge.profiler.report import PER_BEAT_BUDGET_S

    bundle = read_bundle(bundle_path, keys)
    profile = hardware(profile_name)
    need = runnable_bytes(bundle)
    mem = profile.memory
    if profile.runtime == "tflite-micro":
        arenas = (bundle_report(bundle).get("memory") or {}).get("arenas") or {}
        ram_need, ram_limit, kind = sum(int(v) for v in arenas.values()), mem.sram_bytes, "SRAM (TFLite Micro arenas)"
    else:
        ram_need, ram_limit, kind = need, mem.dram_bytes, "DRAM (artifacts)"
    return Budgets(profile.name, 2 * need, mem.flash_bytes, ram_need, ram_limit, kind, per_beat_us,
                   PER_BEAT_BUDGET_S * 1e6)  # fmt: skip
