"""Condition seeds on real records: grown on some records, gated on others, judged on records nobody saw.

For a base trained on real records (its checkpoint names its training and validation records),
each condition cell (:mod:`kasmina_edge.host.conditions`: a real noise at one SNR, or the lead
change) goes through:

1. **Is there anything to recover?** The base on the *gate* records (the base's validation
   records: it never trained on them) clean and under the condition. Where it loses less than
   ``min_drop`` macro-F1 (3 points) the cell is culled before any seed grows: "nothing to recover".
2. **Grow.** Tamiyo plans the seeds (site, blueprint, grafting); each runs the lifecycle of
   :func:`kasmina_edge.host.morph.run_trial` on the base's *training* records under the condition
   (noise from the first half of the noise record), mixed with as many clean beats, gated (G1-G4)
   on the gate records.
3. **Ship only what helped on held-out records.** The best fossilized seed is compared with the
   base on the gate records' condition beats by a paired bootstrap
   (:func:`kasmina_edge.host.evidence.paired_bootstrap`, whole records resampled); it ships only when
   the lower bound of its gain is above zero.
4. **Judge** on the *test* records (records in the folder neither the base nor the seed ever
   saw, noise from the second half of the noise record): the base clean, the base in the
   condition, the base + the shipped seed (the base itself where none shipped), and full
   fine-tuning of every weight on the same adaptation beats (the upper bound); recovery =
   (seed − base) / (fine-tune − base).

Nothing at step 4 feeds back into steps 1-3: the test records are for the table only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import BeatDataset, concat
from kasmina_edge.ecg.types import Record
from kasmina_edge.host.conditions import (
    ConditionBeats,
    NoiseBank,
    RealCondition,
    condition_beats,
    thin_normal,
)
from kasmina_edge.host.data import ConditionSplit
from kasmina_edge.host.evidence import GateEvidence, paired_bootstrap
from kasmina_edge.host.model import BeatClassifier, count_host_parameters
from kasmina_edge.host.morph import (
    MorphConfig,
    TrialResult,
    fine_tune,
    library_entry,
    make_controller,
    measure_reference,
    observe,
    plan_trials,
    run_trial,
)
from kasmina_edge.host.train import class_metrics, predict_logits

Progress = Callable[[str], None]
REPORTED = (0, 1, 2, 3)  # N, S, V, F: macro-F1 over those the truth holds (Q: 8 beats in all of DS1)


@dataclass(frozen=True)
class ConditionsConfig:
    """What morph on real records needs beyond :class:`MorphConfig` (which drives each seed's lifecycle)."""

    min_drop: float = 0.03  # the base must lose at least this much macro-F1 on the gate records
    recovery_target: float = 0.70  # item 2: the seed recovers this much of fine-tuning's gain ...
    max_param_fraction: float = 0.10  # ... with at most this share of the base's parameters
    max_adapt_beats: int | None = 4000  # condition beats a seed (and fine-tuning) train on; as many clean
    first_that_helps: bool = True  # stop at the first of Tamiyo's sites whose seed helped on the gate records
    phases: int = 2  # noise schedules per record (2: the second moved by a stretch; every beat once in noise)
    finetune: bool = True  # the upper bound, for the table's recovery
    finetune_epochs: int = 6
    finetune_lr: float = 1e-3
    bootstrap_rounds: int = 400
    bootstrap_quantile: float = 0.1  # a seed ships when this quantile of its gain is above zero
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONDITIONS_PRESETS: dict[str, ConditionsConfig] = {
    "default": ConditionsConfig(),
    "tiny": ConditionsConfig(max_adapt_beats=1200, finetune_epochs=3, bootstrap_rounds=200),
}


# --------------------------------------------------------------------------- metrics and verdicts


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over N, S, V, F, each class the truth holds (gross, as de Chazal et al. 2004 report)."""
    m = class_metrics(np.asarray(truth), np.asarray(pred))
    f1, present = m.f1[list(REPORTED)], m.support[list(REPORTED)] > 0
    return float(np.mean(f1[present])) if present.any() else float("nan")


def recovery(base: float, seed: float, finetune: float | None, min_gap: float = 0.005) -> float | None:
    """(seed − base) / (fine-tune − base); None where fine-tuning gains less than ``min_gap``."""
    if finetune is None or finetune - base < min_gap:
        return None
    return (seed - base) / (finetune - base)


def lost(drop: float) -> str:
    """'loses only 1.2 points', or 'loses no macro-F1 (+0.4 points)' where the condition helped it."""
    if drop >= 0.0005:
        return f"loses only {100 * drop:.1f} points"
    return f"loses no macro-F1 ({100 * max(0.0, -drop):+.1f} points)"


@dataclass(frozen=True)
class Verdict:
    """Whether a cell's seed ships, and why (one line for the user)."""

    code: str  # shipped | nothing_to_recover | no_seed | culled | did_not_help
    reason: str

    @property
    def ships(self) -> bool:
        return self.code == "shipped"


def verdict(
    drop: float,
    cfg: ConditionsConfig,
    *,
    trials: Sequence[TrialResult] = (),
    chosen: TrialResult | None = None,
    evidence: GateEvidence | None = None,
    plan_reason: str = "",
    gate_records: Sequence[str] = (),
) -> Verdict:
    """The cell's decision, from what the gate records show (never from the test records)."""
    if drop < cfg.min_drop:
        return Verdict("nothing_to_recover", f"nothing to recover: the base {lost(drop)} in this condition "
                       f"(< {100 * cfg.min_drop:g} points macro-F1)")  # fmt: skip
    if not trials:
        return Verdict("no_seed", f"Tamiyo grew no seed ({plan_reason or 'no plan'})")
    if chosen is None:
        reasons = "; ".join(dict.fromkeys(t.reason.split(":")[0] for t in trials))
        return Verdict("culled", f"every seed culled by its gates ({reasons})")
    if evidence is None or evidence.gain_low <= 0.0:
        gain = 0.0 if evidence is None else evidence.gain
        low = 0.0 if evidence is None else evidence.gain_low
        return Verdict("did_not_help", f"did not help on held-out records: {100 * gain:+.1f} points, "
                       f"{100 * cfg.bootstrap_quantile:g} % bound {100 * low:+.1f}")  # fmt: skip
    where = f" {', '.join(gate_records)}" if gate_records else ""
    return Verdict("shipped", f"helped on held-out records{where}: {100 * evidence.gain:+.1f} points "
                   f"({100 * cfg.bootstrap_quantile:g} % bound {100 * evidence.gain_low:+.1f})")  # fmt: skip


@dataclass(frozen=True)
class Judgement:
    """Issue 15 item 2 for one cell, on held-out figures: met or not, and the line that says so."""

    met: bool
    text: str


def judge(figures: Mapping[str, Any], shipped_fractions: Sequence[float], culled_for_nothing: int, cells: int,
          cfg: ConditionsConfig) -> Judgement:  # fmt: skip
    """Where the base loses ≥ ``min_drop``: the seed recovers ≥ ``recovery_target`` of fine-tuning's
    gain with ≤ ``max_param_fraction`` of the base's parameters. Where it loses less: no seed ships."""
    drop = float(figures["drop"])
    fraction = max(shipped_fractions, default=0.0)
    if drop < cfg.min_drop:
        if shipped_fractions:
            return Judgement(False, f"the base {lost(drop)}, yet {len(shipped_fractions)} seed(s) shipped")
        why = f"culled: nothing to recover ({culled_for_nothing} of {cells})" if culled_for_nothing else "culled"
        return Judgement(True, f"{why}; the base {lost(drop)}")
    rec = figures.get("recovery")
    if not shipped_fractions:
        return Judgement(False, f"loses {100 * drop:.1f} points; no seed shipped")
    if rec is None:
        ft = figures.get("finetune")
        gain = "-" if ft is None else f"{100 * (ft - figures['base']):+.1f}"
        return Judgement(False, f"fine-tuning gains {gain} points: no gain to recover")
    small = fraction <= cfg.max_param_fraction
    met = rec >= cfg.recovery_target and small
    return Judgement(met, f"recovers {100 * rec:.0f} % (target {100 * cfg.recovery_target:.0f} %) with "
                     f"{100 * fraction:.1f} % of the base's parameters")  # fmt: skip


# --------------------------------------------------------------------------- records' roles


@dataclass(frozen=True)
class RecordRoles:
    """adapt: the base's training records (seeds grow on them); gate: its validation records (gates
    and the ship decision); test: records neither the base nor a seed saw (the table)."""

    adapt: tuple[str, ...]
    gate: tuple[str, ...]
    test: tuple[str, ...]


def roles_from_checkpoint(ckpt: Mapping[str, Any], available: Sequence[str], test: Sequence[str] | None,
                          where: str) -> RecordRoles:  # fmt: skip
    """The roles of a real-record base's records: training and validation records from its checkpoint,
    test records the given ones (default: every other record in the folder)."""
    train, val = ckpt.get("train_records"), ckpt.get("val_records")
    if not train or not val:
        raise KasminaError("--data: the checkpoint names no training records (a base trained on synthetic "
                           "patients?); give a base from `kasmina-edge train --data wfdb:DIR`")  # fmt: skip
    seen = {*train, *val}
    missing = [n for n in [*train, *val] if n not in set(available)]
    if missing:
        raise KasminaError(f"--data {where}: the base's record {missing[0]} is not in that folder (no {missing[0]}.hea); "
                           "seeds grow on the base's own training records")  # fmt: skip
    if test is None:
        chosen = [n for n in available if n not in seen]
    else:
        chosen = list(test)
        absent = [n for n in chosen if n not in set(available)]
        if absent:
            raise KasminaError(f"--records: record {absent[0]} is not in {where} (no {absent[0]}.hea)")
        used = [n for n in chosen if n in seen]
        if used:
            raise KasminaError(f"--records: record {used[0]} trained or validated the base: not a held-out record")
    if not chosen:
        raise KasminaError(f"--data {where}: no record the base never saw (all trained or validated it); the "
                           "table judges seeds on held-out records only")  # fmt: skip
    return RecordRoles(tuple(train), tuple(val), tuple(chosen))


# --------------------------------------------------------------------------- one cell


@dataclass
class HeldOut:
    """Predicted classes of the test records' condition beats (and the same beats clean)."""

    truth: np.ndarray
    records: np.ndarray
    base_clean: np.ndarray
    base: np.ndarray
    seed: np.ndarray  # the base + the shipped seed; the base's own where none shipped
    seed_clean: np.ndarray
    finetune: np.ndarray | None

    @staticmethod
    def pool(parts: Sequence[HeldOut]) -> HeldOut:
        """Gross: every fold's held-out beats together (each judged by its own fold's models)."""
        def cat(key: str) -> np.ndarray:
            return np.concatenate([getattr(p, key) for p in parts])

        ft = [p.finetune for p in parts]
        return HeldOut(cat("truth"), cat("records"), cat("base_clean"), cat("base"), cat("seed"), cat("seed_clean"),
                       None if any(f is None for f in ft) else np.concatenate([f for f in ft if f is not None]))  # fmt: skip

    def figures(self) -> dict[str, Any]:
        f: dict[str, Any] = {k: macro_f1(self.truth, getattr(self, k)) for k in ("base_clean", "base", "seed", "seed_clean")}
        f["finetune"] = None if self.finetune is None else macro_f1(self.truth, self.finetune)
        f["drop"] = f["base_clean"] - f["base"]
        f["recovery"] = recovery(f["base"], f["seed"], f["finetune"])
        f["beats"] = int(self.truth.size)
        f["support"] = [int(v) for v in np.bincount(self.truth, minlength=5)[:5]]
        return f


@dataclass
class CellResult:
    cell: RealCondition
    gate_records: list[str]
    test_records: list[str]
    gate_clean: float  # the base on the gate records' condition beats without the condition (gate metric)
    gate_base: float  # ... and under it
    verdict: Verdict
    decision: dict[str, Any] = field(default_factory=dict)
    trials: list[TrialResult] = field(default_factory=list)
    chosen: TrialResult | None = None
    evidence: GateEvidence | None = None
    held_out: HeldOut | None = None
    base_params: int = 0
    adapt_beats: int = 0
    seconds: float = 0.0

    @property
    def drop(self) -> float:
        return self.gate_clean - self.gate_base

    @property
    def shipped(self) -> TrialResult | None:
        return self.chosen if self.verdict.ships else None

    @property
    def param_fraction(self) -> float | None:
        s = self.shipped
        return None if s is None else s.param_count / max(1, self.base_params)

    def summary(self) -> dict[str, Any]:
        s = self.shipped
        trials = []
        for t in self.trials:
            d = t.summary()
            d["history"] = [e for e in d["history"] if e.get("event") in ("transition", "gate")]
            trials.append(d)
        return {
            "cell": self.cell.key, "condition": self.cell.name, "snr_db": self.cell.snr_db,
            "gate_records": self.gate_records, "test_records": self.test_records, "gate_clean": self.gate_clean,
            "gate_base": self.gate_base, "gate_drop": self.drop, "verdict": asdict(self.verdict),
            "ships": self.verdict.ships, "decision": self.decision, "trials": trials,
            "seed": None if s is None else {"site": s.site, "blueprint": s.blueprint, "params": s.param_count,
                                            "param_fraction": self.param_fraction, "seed_id": s.seed_id},
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
            "held_out": None if self.held_out is None else self.held_out.figures(),
            "adapt_beats": self.adapt_beats, "seconds": self.seconds,
        }  # fmt: skip


def seeded_model(base: nn.Module, trial: TrialResult) -> nn.Module:
    """A copy of ``base`` with a fossilized seed in place of its site (as the seed library applies it)."""
    from kasmina_edge.host.blueprints import create_blueprint

    if trial.state is None:
        raise KasminaError(f"seed {trial.seed_id}: no weights (only fossilized seeds keep theirs)")
    module = create_blueprint(trial.blueprint, trial.channels, trial.length, **trial.blueprint_params)
    module.load_state_dict(trial.state)
    model = copy.deepcopy(base)
    model.sites[trial.site] = module.eval()  # type: ignore[index, operator, assignment]
    return model.eval()


def _pred(model: nn.Module, ds: BeatDataset) -> np.ndarray:
    return predict_logits(model, ds).argmax(1).numpy().astype(np.int64)


def _gate_metric(truth: np.ndarray, pred: np.ndarray, min_support: int) -> float:
    return class_metrics(truth, pred).macro_f1_at(min_support)


@dataclass
class FoldData:
    """One base's records by role, with what every cell shares (clean beats, replay, Tamiyo's reference)."""

    records: Mapping[str, Record]
    roles: RecordRoles
    noise: NoiseBank | None
    clean_cache: dict[str, BeatDataset]
    replay: BeatDataset  # clean beats of the adaptation records
    clean_gate: BeatDataset  # clean beats of the gate records (G4's "global" metric)
    schedule: Mapping[str, float] = field(default_factory=dict)  # the noise schedule (default: NSTDB's)

    def recs(self, names: Sequence[str]) -> list[Record]:
        return [self.records[n] for n in names]


def fold_data(records: Mapping[str, Record], roles: RecordRoles, noise: NoiseBank | None,
              schedule: Mapping[str, float] | None = None) -> FoldData:  # fmt: skip
    from kasmina_edge.ecg.dataset import beats_from_record
    from kasmina_edge.host.data import SPEC

    cache: dict[str, BeatDataset] = {}
    for n in (*roles.adapt, *roles.gate, *roles.test):
        cache[n] = beats_from_record(records[n], SPEC, lead=0)
    return FoldData(records, roles, noise, cache, concat([cache[n] for n in roles.adapt]),
                    concat([cache[n] for n in roles.gate]), dict(schedule or {}))  # fmt: skip


def grow_cell(
    base: BeatClassifier,
    cell: RealCondition,
    data: FoldData,
    ctrl: Any,
    reference: Any,
    mcfg: MorphConfig,
    cfg: ConditionsConfig,
    *,
    index: int = 0,
    say: Progress | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
) -> CellResult:
    """Steps 1-4 of the module doc for one cell."""
    t0 = time.perf_counter()
    seed = cfg.seed * 1000 + index

    def say_(msg: str) -> None:
        if say is not None:
            say(f"{cell.key}: {msg}")

    say_("mixing the condition into the records")
    roles = data.roles
    adapt = condition_beats(data.recs(roles.adapt), cell, noise=data.noise, part="seed", seed=seed,
                            clean_cache=data.clean_cache, phases=cfg.phases, **data.schedule)  # fmt: skip
    gate = condition_beats(data.recs(roles.gate), cell, noise=data.noise, part="seed", seed=seed + 1,
                           clean_cache=data.clean_cache, phases=cfg.phases, **data.schedule)  # fmt: skip
    test = condition_beats(data.recs(roles.test), cell, noise=data.noise, part="test", seed=seed + 2,
                           clean_cache=data.clean_cache, phases=cfg.phases, **data.schedule)  # fmt: skip
    truth_g = np.asarray(gate.condition.labels)
    base_g = _pred(base, gate.condition)
    gate_clean = _gate_metric(truth_g, _pred(base, gate.clean), mcfg.gate_min_support)
    gate_base = _gate_metric(truth_g, base_g, mcfg.gate_min_support)
    cond_part = thin_normal(adapt.condition, cfg.max_adapt_beats, seed)
    clean_twins = thin_normal(adapt.clean, cfg.max_adapt_beats, seed)  # the same draw: the labels are the same
    assert np.array_equal(cond_part.r_peaks, clean_twins.r_peaks)
    replay = thin_normal(data.replay, len(cond_part), seed + 7)
    split = ConditionSplit(cell.as_condition(), concat([cond_part, replay]), gate.condition, None,
                           gate.records[:4], gate.lead, adapt_clean=concat([clean_twins, replay]))  # fmt: skip
    result = CellResult(cell, list(roles.gate), list(roles.test), gate_clean, gate_base,
                        Verdict("nothing_to_recover", ""), base_params=count_host_parameters(base),
                        adapt_beats=len(split.adapt))  # fmt: skip
    result.verdict = verdict(result.drop, cfg)
    if result.verdict.code != "nothing_to_recover":
        obs = observe(base, gate.condition, gate.records, gate.lead, reference.template, reference.sites, plateau=True)
        decision, plan = plan_trials(ctrl, obs.vector(), mcfg.sites_per_condition)
        result.decision = decision.describe(ctrl.space)
        # Tamiyo's sites in her order; the next one only while none has helped (each costs a seed's training).
        for j, d in enumerate(plan):
            assert d.site is not None and d.blueprint is not None and d.grafting is not None
            t = run_trial(
                base, split, data.clean_gate, ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint],
                ctrl.space.graftings[d.grafting], ctrl.space.intensities[d.intensity], ctrl.budget, mcfg,
                sink=sink, seed=seed * 10 + j, say=say, clean_sites=reference.sites,
            )  # fmt: skip
            result.trials.append(t)
            if not t.fossilized or (result.chosen is not None and t.gain <= result.chosen.gain):
                continue
            result.chosen = t  # the best fossil on the gate records, and its paired evidence there
            result.evidence = paired_bootstrap(
                truth_g, base_g, _pred(seeded_model(base, t), gate.condition), rounds=cfg.bootstrap_rounds,
                quantile=cfg.bootstrap_quantile, min_support=mcfg.gate_min_support, seed=seed,
                groups=np.asarray(gate.condition.records),  # whole records resampled: beats of one are not independent
            )  # fmt: skip
            if cfg.first_that_helps and result.evidence.gain_low > 0:
                break
        result.verdict = verdict(result.drop, cfg, trials=result.trials, chosen=result.chosen,
                                 evidence=result.evidence, plan_reason=str(result.decision.get("reason", "")),
                                 gate_records=roles.gate)  # fmt: skip
    say_(result.verdict.reason)
    ft = None
    if cfg.finetune:
        say_("full fine-tuning (the upper bound)")
        torch.manual_seed(seed)
        ft = fine_tune(base, split, cfg.finetune_epochs, cfg.finetune_lr, mcfg.batch_size, seed, mcfg.gate_min_support)
    result.held_out = held_out(base, test, result.shipped, ft)
    result.seconds = time.perf_counter() - t0
    return result


def held_out(base: nn.Module, test: ConditionBeats, shipped: TrialResult | None, ft: nn.Module | None) -> HeldOut:
    """Every model's classes on the test records' condition beats (and the base's and seed's on them clean)."""
    b, bc = _pred(base, test.condition), _pred(base, test.clean)
    model = seeded_model(base, shipped) if shipped is not None else None
    return HeldOut(
        truth=np.asarray(test.condition.labels, dtype=np.int64), records=np.asarray(test.condition.records),
        base_clean=bc, base=b, seed=b if model is None else _pred(model, test.condition),
        seed_clean=bc if model is None else _pred(model, test.clean),
        finetune=None if ft is None else _pred(ft, test.condition),
    )  # fmt: skip


# --------------------------------------------------------------------------- a base's cells


@dataclass
class ConditionsMorph:
    cells: list[CellResult]
    roles: RecordRoles
    library: Any  # SeedLibrary of the shipped seeds
    seconds: float


def morph_on_records(
    base: BeatClassifier,
    ckpt: Mapping[str, Any],
    records: Mapping[str, Record],
    roles: RecordRoles,
    cells: Sequence[RealCondition],
    mcfg: MorphConfig,
    cfg: ConditionsConfig,
    noise: NoiseBank | None,
    *,
    say: Progress | None = None,
    log: Any = None,
    schedule: Mapping[str, float] | None = None,
) -> ConditionsMorph:
    """Every cell for one base; the shipped seeds make the seed library (``library.save`` writes it).

    ``schedule``: ``first_clean_s`` / ``stretch_s`` of the noise schedule (default NSTDB's 5 min, 2 min).
    """
    from kasmina_edge.host.morph import log_sink
    from kasmina_edge.host.seed_library import SeedLibrary

    t0 = time.perf_counter()
    for layer in base.sites.values():
        layer.telemetry_enabled = False  # type: ignore[assignment]  # the base alone: nothing to watch
    data = fold_data(records, roles, noise, schedule)
    reference = measure_reference(base, data.replay, data.clean_gate, data.recs(roles.gate))
    ctrl = make_controller(base, reference, mcfg)
    base_params = count_host_parameters(base)
    if log is not None:
        log.write("roles", adapt=list(roles.adapt), gate=list(roles.gate), test=list(roles.test),
                  max_params=ctrl.budget.max_params, base_params=base_params)  # fmt: skip
    results: list[CellResult] = []
    for i, cell in enumerate(cells):
        r = grow_cell(base, cell, data, ctrl, reference, mcfg, cfg, index=i, say=say, sink=log_sink(log, cell.key))
        results.append(r)
        if log is not None:
            log.write("cell", **r.summary())
    library = SeedLibrary(meta={
        "experiment_id": getattr(log, "experiment_id", "morph"), "base_experiment_id": ckpt.get("experiment_id"),
        "model_config": base.config.to_dict(), "target": mcfg.target,
        "budget": {"max_params": ctrl.budget.max_params, "max_macs": ctrl.budget.max_macs},
        "base_params": base_params, "morph_config": mcfg.to_dict(), "conditions_config": cfg.to_dict(),
        "records": asdict(roles), "data": "real records",
    })  # fmt: skip
    site_index = {s: i for i, s in enumerate(base.config.site_names)}
    for r in results:
        s = r.shipped
        if s is not None and s.state is not None:
            library.add(library_entry(s, base_params, site_index[s.site], r.cell.as_condition().tags), s.state)
    return ConditionsMorph(results, roles, library, time.perf_counter() - t0)


def load_records(folder: Path, names: Sequence[str], base_lead: str,
                 on_record: Callable[[int, int, str], None] | None = None) -> dict[str, Record]:  # fmt: skip
    """The named records, two leads each ([base lead, other]), at the model's rate."""
    from kasmina_edge.host.conditions import read_two_leads

    out: dict[str, Record] = {}
    for i, n in enumerate(names):
        if on_record is not None:
            on_record(i, len(names), n)
        out[n] = read_two_leads(folder, n, base_lead)
    if on_record is not None:
        on_record(len(names), len(names), "")
    return out


# --------------------------------------------------------------------------- `morph --data wfdb:DIR`


def report(result: ConditionsMorph, cfg: ConditionsConfig) -> dict[str, Any]:
    """What ``morph --data`` writes beside the library (``conditions.json``): every cell, judged."""
    cells = []
    for c in result.cells:
        s = c.summary()
        fig = s["held_out"]
        if fig is not None:
            shipped = [] if c.param_fraction is None else [c.param_fraction]
            nothing = int(c.verdict.code == "nothing_to_recover")
            s["item2"] = asdict(judge(fig, shipped, nothing, 1, cfg))
        cells.append(s)
    return {"roles": asdict(result.roles), "config": cfg.to_dict(), "cells": cells, "seconds": result.seconds,
            "shipped": sorted(result.library.entries)}  # fmt: skip


def run_conditions_morph(
    base: BeatClassifier,
    ckpt: Mapping[str, Any],
    folder: Path,
    cells: Sequence[RealCondition],
    mcfg: MorphConfig,
    cfg: ConditionsConfig,
    out: Path,
    *,
    noise_folder: Path | None = None,
    test_records: Sequence[str] | None = None,
    log: Any = None,
    say: Progress | None = None,
    on_record: Callable[[int, int, str], None] | None = None,
) -> ConditionsMorph:
    """Read the records, grow and judge every cell, write the library of shipped seeds and
    ``conditions.json`` into ``out``. Every check a user can fail runs before the records are read."""
    from kasmina_edge.host.conditions import BASE_LEAD, default_noise_folder
    from kasmina_edge.host.experiment import atomic_write_json
    from kasmina_edge.host.records import list_records

    roles = roles_from_checkpoint(ckpt, list_records(folder), test_records, str(folder))
    bank = NoiseBank(noise_folder or default_noise_folder())
    bank.require(sorted({c.noise for c in cells if c.noise is not None}))
    lead = str(ckpt.get("data_lead") or BASE_LEAD)
    records = load_records(folder, [*roles.adapt, *roles.gate, *roles.test], lead, on_record)
    result = morph_on_records(base, ckpt, records, roles, cells, mcfg, cfg, bank, say=say, log=log)
    result.library.meta["data"] = f"wfdb:{folder}"
    result.library.save(out)
    atomic_write_json(out / "conditions.json", report(result, cfg))
    return result
