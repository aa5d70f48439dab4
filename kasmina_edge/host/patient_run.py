"""One patient's seed from the user's options (what ``kasmina-edge morph --patient`` does, without the printing).

:func:`prepare_patient` checks the options and reads everything before any training: the record
(an annotated source), the base, the adaptation window, the device's site grids and the common
beats. :func:`grow` runs the patient's seeds through their lifecycle, logged; :func:`write_bundle`
turns the fossilized ones into a signed kernel-only bundle. :func:`morph_patient` does all three.

The host does not build bundles (compile sits above it): the device's site grids and the bundle are
made by the functions the caller hands in, ``kasmina_edge.compile.patient_bundle``'s
``device_site_ranges`` and ``patient_bundle``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kasmina_edge.contracts.errors import KasminaError

if TYPE_CHECKING:
    from kasmina_edge.ecg.dataset import BeatDataset
    from kasmina_edge.ecg.types import Record
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.model import BeatClassifier
    from kasmina_edge.host.patient import PatientConfig, PatientSeed, PatientWindow

Bounds = dict[str, tuple[float, float]]
# compile.patient_bundle.device_site_ranges(checkpoint, target, base_bundle, keys, site_names)
RangesFn = Callable[[Path, str, "Path | None", "Path | None", list[str]], Bounds]
BundleFn = Callable[..., Any]  # compile.patient_bundle.patient_bundle(seed, *, checkpoint, out, target, ...)


@dataclass(frozen=True)
class PatientRequest:
    """The options of ``kasmina-edge morph --patient``."""

    patient: str  # an annotated source, e.g. wfdb:PATH
    checkpoint: Path
    out: Path | None = None  # the bundle (default seed-<record>.kedge)
    minutes: float = 5.0
    target: str = "edgetpu"
    base_bundle: Path | None = None
    keys: Path | None = None
    seed: int = 0
    log: Path | None = None


@dataclass
class PatientRun:
    """Everything read and checked before the seeds grow."""

    request: PatientRequest
    cfg: PatientConfig
    record: Record
    base: BeatClassifier
    ckpt: dict[str, Any]
    window: PatientWindow
    ranges: Bounds  # the device's site grids
    common: BeatDataset | None  # the base's common beats (None: the checkpoint names no training patients)
    out: Path
    xlog: ExperimentLog
    started: float = field(default_factory=time.perf_counter)

    @property
    def log_path(self) -> Path:
        return self.request.log or self.out.with_suffix(".jsonl")

    def describe(self) -> str:
        counts = self.window.counts()
        return (
            f"patient {self.record.name}: first {self.request.minutes:g} min, {sum(counts.values())} beats "
            f"({', '.join(f'{c} {n:,}' for c, n in counts.items())}), judged out of "
            f"fold over {self.cfg.cv_folds} blocks of {self.cfg.cv_block_s:g} s; RR scale {self.window.rr_scale[0]:.3f}"
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class PatientBundle:
    built: Any  # what compile's patient_bundle returned
    kernel_bytes: int
    seconds: float  # since the run started


def prepare_patient(req: PatientRequest, device_ranges: RangesFn) -> PatientRun:
    """Check the options and read the record, the base, the window and the device's site grids; every user
    error (no device target, no checkpoint, a record too short or unannotated, another base's bundle, a
    base whose sites get no gradient) is raised here, before any training."""
    import dataclasses

    from kasmina_edge.ecg.sources import open_source
    from kasmina_edge.host.blueprints import TARGETS
    from kasmina_edge.host.experiment import ExperimentLog

    # looked up at call time: tests replace the module's PatientConfig to set the gates
    from kasmina_edge.host.patient import PatientConfig, common_beats_of, patient_window
    from kasmina_edge.host.site_gradients import refuse_gradient_free_base
    from kasmina_edge.host.train import load_base, set_threads

    started = time.perf_counter()
    if req.target not in TARGETS:
        raise KasminaError(f"--target: a kernel-only bundle needs a device target, one of: {', '.join(TARGETS)}")
    if not req.checkpoint.exists():
        raise KasminaError(f"{req.checkpoint}: base checkpoint not found (train one, or pass --checkpoint)")
    cfg = dataclasses.replace(PatientConfig(), minutes=req.minutes, seed=req.seed)
    record = open_source(req.patient).record()
    if record is None:
        raise KasminaError(f"--patient {req.patient}: the source holds no record")
    base, ckpt = load_base(req.checkpoint)
    window = patient_window(record, base, cfg)  # the bad-input checks, before any work
    # the device's site grids (another base's or target's bundle is refused here, before any training): the
    # seeds grow clipped to them, since the device saturates every site at its grid
    ranges = device_ranges(req.checkpoint, req.target, req.base_bundle, req.keys, base.config.site_names)
    refuse_gradient_free_base(base, window.beats, ranges, req.checkpoint, record.name)
    out = req.out or Path(f"seed-{record.name}.kedge")
    set_threads()
    log_path = req.log or out.with_suffix(".jsonl")
    xlog = ExperimentLog(log_path, command="morph --patient", config={**cfg.to_dict(), "patient": req.patient,
                         "checkpoint": str(req.checkpoint), "target": req.target}, seed=req.seed)  # fmt: skip
    common = common_beats_of(ckpt, cfg.common_per_class, req.seed)
    return PatientRun(req, cfg, record, base, ckpt, window, ranges, common, out, xlog, started)


def grow(run: PatientRun, say: Callable[[str], None] | None = None) -> PatientSeed:
    """The patient's seeds through their lifecycle (every event into the run's log)."""
    from kasmina_edge.host.patient_grow import grow_patient_seed

    def sink(ev: dict[str, Any]) -> None:
        run.xlog.write(str(ev.get("event", "lifecycle")), **{k: v for k, v in ev.items() if k != "event"})

    result = grow_patient_seed(run.base, run.window, run.common, run.cfg, target=run.request.target,
                               ranges=run.ranges, say=say, sink=sink)  # fmt: skip
    run.xlog.write("patient_seed", **result.summary())
    return result


def write_bundle(run: PatientRun, seed: PatientSeed, bundle: BundleFn, con: Any = None) -> PatientBundle:
    """The fossilized seeds as a signed kernel-only bundle at ``run.out``; the kernels' int8 grids are
    calibrated on the beats they will see: the patient's, RR-scaled."""
    from kasmina_edge.host.patient import adaptation_set

    if not seed.fossilized:
        raise KasminaError(f"{run.record.name}: no seed fossilized: a culled seed never reaches a bundle")
    req = run.request
    built = bundle(seed, checkpoint=req.checkpoint, out=run.out, target=req.target, keys=req.keys,
                   base_bundle=req.base_bundle, con=con, beats=adaptation_set(run.window, run.common))  # fmt: skip
    kernel_bytes = sum(len(v) for k, v in built.files.items() if k.startswith("artifacts/"))
    seconds = run.elapsed()
    run.xlog.write("bundle", path=str(run.out), kernel_bytes=kernel_bytes, seconds=seconds)
    return PatientBundle(built, kernel_bytes, seconds)


def morph_patient(
    req: PatientRequest, *, device_ranges: RangesFn, bundle: BundleFn, say: Callable[[str], None] | None = None
) -> tuple[PatientSeed, Any]:
    """Prepare, grow and (when a seed fossilized) write the bundle: the seed and what the build returned
    (None: no seed earned its place, no bundle written)."""
    run = prepare_patient(req, device_ranges)
    seed = grow(run, say)
    if not seed.fossilized:
        return seed, None
    return seed, write_bundle(run, seed, bundle).built
