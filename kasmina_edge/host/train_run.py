"""One base training run from the user's options (what ``kasmina-edge train`` does, without the printing).

:func:`plan_training` checks every option and settles the configuration before anything is read,
trained or written: which options go with which data (synthetic patients or a WFDB folder), the
resume rules (the checkpoint's own configuration, its data and records), the patient-wise split.
:func:`run_training` reads the data, trains (progress through :class:`TrainProgress`), and for real
records stores the data's provenance and the common beats patient seeds mix in beside the weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import AAMI_CLASSES

if TYPE_CHECKING:
    from kasmina_edge.host.experiment import ExperimentLog
    from kasmina_edge.host.records import DataSpec, RecordSplit, SplitPlan
    from kasmina_edge.host.train import TrainConfig, TrainResult

COMMON_BEATS_PER_CLASS = 200  # stored in a real-record checkpoint; a patient seed draws its own from them


@dataclass(frozen=True)
class TrainOptions:
    """The options of ``kasmina-edge train`` (None: not given)."""

    config: str = "default"
    patients: int | None = None
    minutes: float | None = None
    epochs: int | None = None
    seed: int | None = None
    out: Path = Path("runs/base.pt")
    resume: Path | None = None
    log: Path | None = None
    data: str | None = None
    records: str | None = None
    val_records: str | None = None
    lead: str = "0"
    skip_unknown_symbols: bool = False


@dataclass
class TrainPlan:
    """Everything settled before any work: the configuration, the resumed checkpoint, the data."""

    options: TrainOptions
    cfg: TrainConfig
    resumed: dict[str, Any] | None
    spec: DataSpec
    split: SplitPlan | None  # None: synthetic patients

    @property
    def log_path(self) -> Path:
        return self.options.log or self.options.out.with_suffix(".jsonl")

    def describe(self) -> str:
        if self.split is None:
            return f"{self.cfg.patients} synthetic patients × {self.cfg.minutes:g} min"
        return f"{len(self.split.train)} training + {len(self.split.val)} validation records from {self.spec.text}"


@dataclass
class TrainProgress:
    """What a caller is told while the run works (every hook optional)."""

    loading: Callable[[str, int | None], None] | None = None  # (what, records to read or None)
    record: Callable[[int, int, str], None] | None = None  # (done, total, name) while reading records
    loaded: Callable[[int, int, int, int], None] | None = None  # (train beats, val beats, batches/epoch, epochs done)
    batch: Callable[[int, int, int, float], None] | None = None  # (epoch, batch, batches, loss)


@dataclass
class TrainRun:
    """A finished run: the result, the data it trained on, the time it took."""

    result: TrainResult
    split: RecordSplit | None  # None: synthetic patients
    train_names: list[str]
    val_names: list[str]
    seconds: float


def _check_data_options(o: TrainOptions, spec: DataSpec) -> None:
    if spec.synthetic:
        real_only = [flag for flag, v in (("--records", o.records), ("--val-records", o.val_records),
                     ("--lead", None if o.lead == "0" else o.lead),
                     ("--skip-unknown-symbols", o.skip_unknown_symbols or None)) if v is not None]  # fmt: skip
        if real_only:
            raise KasminaError(f"{', '.join(real_only)}: only with real records (--data wfdb:DIR)")
        return
    synth_only = [f"--{k}" for k, v in (("patients", o.patients), ("minutes", o.minutes)) if v is not None]
    if synth_only:
        raise KasminaError(f"{', '.join(synth_only)}: only for synthetic patients, not with --data {spec.text}")


def _plan_records(o: TrainOptions, spec: DataSpec, cfg: TrainConfig, resumed: dict[str, Any] | None) -> SplitPlan:
    """The patient-wise split of a WFDB folder; a resumed run must name the same folder and records."""
    from kasmina_edge.host.records import RECORD_SETS, parse_record_names, plan_split

    folder = str(spec.folder.resolve()) if spec.folder is not None else None
    if resumed is not None and resumed.get("data_folder", folder) != folder:
        raise KasminaError(f"--resume: the checkpoint was trained on --data {resumed['data']}, not {spec.text}")
    try:
        plan = plan_split(
            spec, records=parse_record_names(o.records, "--records"),
            val_records=parse_record_names(o.val_records, "--val-records"), seed=cfg.seed, lead=o.lead,
            unknown="skip" if o.skip_unknown_symbols else "error",
        )  # fmt: skip
    except KasminaError as exc:
        if "is not in" not in str(exc):
            raise
        raise KasminaError(f"{exc}; or a named set: {', '.join(RECORD_SETS)}") from None
    if resumed is not None and resumed.get("train_records") not in (None, plan.train):
        raise KasminaError("--resume: the checkpoint was trained on other records (give the same --records)")
    return plan


def plan_training(o: TrainOptions) -> TrainPlan:
    """Check every option and settle the configuration; every user error is raised here, before any work."""
    from kasmina_edge.host.records import parse_data_spec
    from kasmina_edge.host.train import for_real_records, resolve_train_config

    spec = parse_data_spec(o.data)
    _check_data_options(o, spec)
    overrides = {"patients": o.patients, "minutes": o.minutes, "epochs": o.epochs, "seed": o.seed}
    cfg, resumed = resolve_train_config(o.config, o.resume, overrides, spec.synthetic)
    if not spec.synthetic and resumed is None:
        cfg = for_real_records(cfg)
    if spec.synthetic:
        if resumed is not None and resumed.get("data_folder"):
            raise KasminaError(f"--resume: the checkpoint was trained on --data {resumed['data']}: give it again")
        return TrainPlan(o, cfg, resumed, spec, None)
    return TrainPlan(o, cfg, resumed, spec, _plan_records(o, spec, cfg, resumed))


def open_log(plan: TrainPlan) -> ExperimentLog:
    """The run's JSON-lines experiment log (a resumed run keeps its experiment id)."""
    from kasmina_edge.host.experiment import ExperimentLog

    o = plan.options
    return ExperimentLog(
        plan.log_path, command="train", config={**plan.cfg.to_dict(), "data": plan.spec.text}, seed=plan.cfg.seed,
        experiment_id=(plan.resumed or {}).get("experiment_id") or None, resumed=o.resume is not None,
    )  # fmt: skip


def store_provenance(out: Path, split: RecordSplit, seed: int) -> None:
    """The data a real-record base was trained on, and the common beats its patient seeds mix in."""
    from kasmina_edge.host.experiment import load_checkpoint, save_checkpoint
    from kasmina_edge.host.patient import COMMON_KEY, common_beats, common_beats_to_checkpoint
    from kasmina_edge.host.train import BASE_KIND

    ckpt = load_checkpoint(out, kind=BASE_KIND)
    ckpt["data"] = split.plan.spec.text
    ckpt["data_folder"] = str(split.plan.folder.resolve())  # what --resume compares, wherever it runs from
    ckpt["data_lead"] = split.plan.lead
    ckpt["train_records"] = list(split.train_records)
    ckpt["val_records"] = list(split.val_records)
    ckpt["record_classes"] = {n: ds.class_counts() for n, ds in split.per_record.items()}
    ckpt[COMMON_KEY] = common_beats_to_checkpoint(common_beats(split.train, COMMON_BEATS_PER_CLASS, seed=seed))
    save_checkpoint(out, ckpt)


def run_training(plan: TrainPlan, xlog: ExperimentLog, progress: TrainProgress | None = None) -> TrainRun:
    """Read the data, train the base (checkpoint every epoch), store the real data's provenance."""
    from kasmina_edge.host.records import read_split
    from kasmina_edge.host.train import synthetic_split, train_base

    p = progress or TrainProgress()
    cfg, o = plan.cfg, plan.options
    t0 = time.perf_counter()
    split = None
    if plan.split is None:
        if p.loading is not None:
            p.loading("synthesizing patients", None)
        synth = synthetic_split(cfg)
        train_ds, val_ds = synth.train, synth.val
        train_names, val_names = [r.name for r in synth.train_records], [r.name for r in synth.val_records]
    else:
        if p.loading is not None:
            p.loading("reading records", len(plan.split.train) + len(plan.split.val))
        split = read_split(plan.split, p.record)
        train_ds, val_ds = split.train, split.val
        train_names, val_names = list(split.train_records), list(split.val_records)
    counts = {c: int((train_ds.labels == i).sum()) for i, c in enumerate(AAMI_CLASSES)}
    n_batches = max(1, (len(train_ds) + cfg.batch_size - 1) // cfg.batch_size)
    if p.loaded is not None:
        p.loaded(len(train_ds), len(val_ds), n_batches, int(plan.resumed["epochs_done"]) if plan.resumed else 0)
    xlog.write("data", source=plan.spec.text, train_beats=len(train_ds), val_beats=len(val_ds), train_classes=counts,
               train_patients=train_names, val_patients=val_names)  # fmt: skip
    result = train_base(cfg, train_ds, val_ds, out=o.out, resume=o.resume, log=xlog, on_batch=p.batch)
    seconds = time.perf_counter() - t0
    if split is not None:
        store_provenance(o.out, split, cfg.seed)
    return TrainRun(result, split, train_names, val_names, seconds)


def train_from_options(options: TrainOptions, progress: TrainProgress | None = None) -> TrainRun:
    """Plan, log and run in one call (benchmarks and scripts: no console)."""
    from kasmina_edge.host.train import set_threads

    plan = plan_training(options)
    set_threads()
    return run_training(plan, open_log(plan), progress)
