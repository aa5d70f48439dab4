"""The morphogenetic phase: grow, judge and keep seeds per signal condition (the curriculum).

For each condition of the curriculum: measure the base on it (:mod:`~kasmina_edge.host.site_observation`),
let Tamiyo decide (:mod:`~kasmina_edge.host.morph_tamiyo`: act or wait, site, blueprint, intensity,
grafting), and run each chosen seed through the lifecycle on a fresh copy of the base
(:mod:`~kasmina_edge.host.condition_trial`, walked by the host's one lifecycle driver,
:mod:`~kasmina_edge.host.seed_driver`). The fossilized seeds make the seed library; the measured
outcomes train Tamiyo's policy. A run can be resumed condition by condition (``morph_state.pt``).

The names morph's callers import are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kasmina_edge.host.condition_trial import TrialResult, run_trial
from kasmina_edge.host.experiment import ExperimentLog
from kasmina_edge.host.fine_tune import fine_tune
from kasmina_edge.host.model import BeatClassifier, count_host_parameters
from kasmina_edge.host.morph_config import MORPH_PRESETS, MorphConfig, Progress
from kasmina_edge.host.morph_tamiyo import Controller, make_controller, plan_trials, train_tamiyo
from kasmina_edge.host.seed_driver import LogicalClock, prepare_host
from kasmina_edge.host.site_observation import Reference, measure_reference, observe, site_activations
from kasmina_edge.host.tamiyo.heuristic import PlateauDetector
from kasmina_edge.host.tamiyo.reward import RewardWeights
from kasmina_edge.host.train import evaluate

__all__ = [
    "MORPH_PRESETS", "STATE_FILE", "ConditionOutcome", "Controller", "LogicalClock", "MorphConfig", "MorphResult",
    "Progress", "Reference", "TrialResult", "fine_tune", "library_entry", "load_state", "log_sink",
    "make_controller", "measure_reference", "new_patients", "observe", "plan_trials", "plateau_from_history",
    "prepare_host", "run_morph", "run_trial", "site_activations", "train_tamiyo",
]  # fmt: skip


def new_patients(n_train_patients: int, minutes: float, train_seed: int) -> list[Any]:
    """Patients the base never saw (neither trained nor selected on): the unseen-patient shift."""
    from kasmina_edge.host.data import patient_records

    n = max(3, n_train_patients // 4)
    return patient_records(n, max(minutes, 2.0), train_seed + 1_000_003)


def plateau_from_history(history: Sequence[dict[str, Any]]) -> bool:
    """Whether the base's validation metric had stopped improving when its training ended."""
    det = PlateauDetector(patience=2, min_delta=0.005)
    flat = False
    for h in history:
        flat = det.update(float(h["val_macro_f1"]))
    return flat or len(history) <= 2


def log_sink(log: ExperimentLog | None, condition: str) -> Callable[[dict[str, Any]], None]:
    def sink(ev: dict[str, Any]) -> None:
        if log is not None:
            body = {k: v for k, v in ev.items() if k != "event"}
            log.write(str(ev.get("event", "lifecycle")), condition=condition, **body)

    return sink


# --------------------------------------------------------------------------- the curriculum


@dataclass
class ConditionOutcome:
    condition: str
    observation: list[float]
    decision: dict[str, Any]
    base_val: float
    trials: list[TrialResult]


@dataclass
class MorphResult:
    experiment_id: str
    outcomes: list[ConditionOutcome]
    library: Any  # SeedLibrary
    tamiyo: dict[str, Any]
    seconds: float

    def trials(self) -> list[TrialResult]:
        return [t for o in self.outcomes for t in o.trials]


STATE_FILE = "morph_state.pt"


def _trial_from_dict(d: dict[str, Any]) -> TrialResult:
    d = dict(d)
    d.pop("gain", None)
    return TrialResult(**d)


def _save_state(path: Any, cfg: MorphConfig, experiment_id: str, outcomes: list[ConditionOutcome]) -> None:
    from kasmina_edge.host.experiment import save_checkpoint

    done = {
        o.condition: {
            "observation": o.observation, "decision": o.decision, "base_val": o.base_val,
            "trials": [{**t.summary(), "state": t.state} for t in o.trials],
        }
        for o in outcomes
    }  # fmt: skip
    save_checkpoint(path, {"kind": "morph_state", "config": cfg.to_dict(), "experiment_id": experiment_id, "done": done})


def load_state(path: Any, cfg: MorphConfig) -> tuple[str, dict[str, ConditionOutcome]]:
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.experiment import load_checkpoint

    body = load_checkpoint(path, kind="morph_state")
    mine = {k: v for k, v in cfg.to_dict().items() if k != "conditions"}
    theirs = {k: v for k, v in body["config"].items() if k != "conditions"}
    if {k: list(v) if isinstance(v, tuple) else v for k, v in mine.items()} != theirs:
        diff = sorted(k for k in mine if theirs.get(k) != (list(mine[k]) if isinstance(mine[k], tuple) else mine[k]))
        raise KasminaError(f"{path}: --resume with different settings ({', '.join(diff)}); use the same options")
    done = {
        cond: ConditionOutcome(cond, list(v["observation"]), dict(v["decision"]), float(v["base_val"]),
                               [_trial_from_dict(t) for t in v["trials"]])
        for cond, v in body["done"].items()
    }  # fmt: skip
    return str(body["experiment_id"]), done


def library_entry(t: TrialResult, base_params: int, site_index: int, tags: Sequence[str]) -> Any:
    from kasmina_edge.host.seed_library import LibraryEntry

    assert t.seed_val is not None
    return LibraryEntry(
        key=f"{t.condition}@{t.site}", condition=t.condition, tags=list(tags), site=t.site, site_index=site_index,
        channels=t.channels, length=t.length, blueprint=t.blueprint, blueprint_params=t.blueprint_params,
        grafting=t.grafting, intensity=t.intensity, param_count=t.param_count,
        param_fraction=t.param_count / max(1, base_params), macs=t.macs, baseline_val=t.baseline_val,
        seed_val=t.seed_val, gain=t.gain, clean_host=t.clean_host, clean_seed=t.clean_seed, seed_id=t.seed_id,
        lifecycle=[e for e in t.history if e.get("event") in ("transition", "gate")], kasmina=t.record or {},
        test_base_f1=(t.test_base or {}).get("macro_f1"), test_seed_f1=(t.test_seed or {}).get("macro_f1"),
    )  # fmt: skip


def _controls(cfg: MorphConfig) -> Any:
    """The intensity config's controls for one trial's driver (fresh per trial: they keep that trial's events)."""
    if not cfg.intensity:
        return None
    from kasmina_edge.host.intensity import IntensityControls, resolve

    return IntensityControls(resolve(cfg.intensity))


def _trial(
    base: BeatClassifier, split: Any, clean_val: Any, ctrl: Controller, d: Any, cfg: MorphConfig,
    log: ExperimentLog | None, condition: str, seed: int, say: Progress | None, reference: Reference,
) -> TrialResult:  # fmt: skip
    """One of Tamiyo's planned trials, logged."""
    assert d.site is not None and d.blueprint is not None and d.grafting is not None
    t = run_trial(
        base, split, clean_val, ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint],
        ctrl.space.graftings[d.grafting], ctrl.space.intensities[d.intensity], ctrl.budget, cfg,
        sink=log_sink(log, condition), seed=seed, say=say, clean_sites=reference.sites, controls=_controls(cfg),
    )  # fmt: skip
    if log is not None:
        s = t.summary()
        s.pop("history")
        log.write("trial", **s)
    return t


def _seed_library(
    base: BeatClassifier, ckpt: dict[str, Any], cfg: MorphConfig, ctrl: Controller, experiment_id: str,
    outcomes: Sequence[ConditionOutcome],
) -> Any:  # fmt: skip
    """The fossilized seeds of every condition, with what they were grown under."""
    from kasmina_edge.host.data import CONDITIONS
    from kasmina_edge.host.seed_library import SeedLibrary

    base_params = count_host_parameters(base)
    library = SeedLibrary(
        meta={
            "experiment_id": experiment_id,
            "base_experiment_id": ckpt.get("experiment_id"),
            "model_config": base.config.to_dict(),
            "target": cfg.target,
            "budget": {"max_params": ctrl.budget.max_params, "max_macs": ctrl.budget.max_macs},
            "base_params": base_params,
            "morph_config": cfg.to_dict(),
        }
    )
    site_index = {s: i for i, s in enumerate(base.config.site_names)}
    for o in outcomes:
        for t in o.trials:
            if t.fossilized and t.state is not None:
                library.add(library_entry(t, base_params, site_index[t.site], CONDITIONS[o.condition].tags), t.state)
    return library


def run_morph(
    base: BeatClassifier,
    ckpt: dict[str, Any],
    cfg: MorphConfig,
    out_dir: Any,
    *,
    log: ExperimentLog | None = None,
    say: Progress | None = None,
    resume: bool = False,
    train_policy: bool = True,
) -> MorphResult:
    """The whole curriculum; writes the seed library (and Tamiyo's policy) into ``out_dir``."""
    from pathlib import Path

    from kasmina_edge.host.data import (
        CONDITIONS,
        beats,
        condition_split,
        patient_records,
        split_patients,
    )
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    experiment_id = log.experiment_id if log is not None else "morph"
    done: dict[str, ConditionOutcome] = {}
    if resume and state_path.exists():
        experiment_id, done = load_state(state_path, cfg)
    tcfg = ckpt["train_config"]
    minutes = cfg.minutes or float(tcfg["minutes"])

    def say_(msg: str) -> None:
        if say is not None:
            say(msg)

    # The base's own patients, split exactly as in training (validation patients stay unseen);
    # --patients only thins the training side.
    say_(f"synthesizing the base's {tcfg['patients']} patients × {minutes:g} min (seed {tcfg['seed']})")
    records = patient_records(int(tcfg["patients"]), minutes, int(tcfg["seed"]))
    train_recs, val_recs = split_patients(records, float(tcfg["val_fraction"]), int(tcfg["seed"]))
    if cfg.patients:
        train_recs = train_recs[: max(1, cfg.patients)]
    patients = len(train_recs) + len(val_recs)
    clean_train, clean_val = beats(train_recs), beats(val_recs)
    reference = measure_reference(base, clean_train, clean_val, val_recs)
    ctrl = make_controller(base, reference, cfg)
    plateau = plateau_from_history(ckpt.get("history", []))
    base_params = count_host_parameters(base)
    if log is not None:
        log.write("budget", target=cfg.target, max_params=ctrl.budget.max_params, max_macs=ctrl.budget.max_macs,
                  base_params=base_params, reference=reference.vector.tolist(), plateau=plateau)  # fmt: skip
    outcomes: list[ConditionOutcome] = []
    for k, name in enumerate(cfg.conditions):
        cond = CONDITIONS[name]
        if name in done:
            outcomes.append(done[name])
            say_(f"{name}: resumed from {state_path.name}")
            continue
        say_(f"{name}: building data ({cond.description})")
        split = condition_split(
            cond, train_recs, val_recs, None, seed=cfg.seed + k, calibration_s=cfg.calibration_s,
            replay=clean_train if cfg.replay else None,
            new_patients=new_patients(patients, minutes, int(tcfg["seed"])) if cond.kind == "patient" else None,
        )  # fmt: skip
        obs = observe(base, split.val, split.records, split.lead, reference.template, reference.sites,
                      plateau=plateau, calibration=cond.kind == "patient")  # fmt: skip
        vec = obs.vector()
        base_val = evaluate(base, split.val).macro_f1_at(cfg.gate_min_support)
        decision, plan = plan_trials(ctrl, vec, cfg.sites_per_condition)
        desc = decision.describe(ctrl.space)
        if log is not None:
            log.write("decision", condition=name, observation=vec.tolist(), base_val_macro_f1=base_val,
                      clean_val_macro_f1=evaluate(base, clean_val).macro_f1, decision=desc,
                      trials=[d.describe(ctrl.space) for d in plan])  # fmt: skip
        trials = [
            _trial(base, split, clean_val, ctrl, d, cfg, log, name, cfg.seed * 1000 + k * 10 + j, say, reference)
            for j, d in enumerate(plan)
        ]
        outcomes.append(ConditionOutcome(name, vec.tolist(), desc, base_val, trials))
        _save_state(state_path, cfg, experiment_id, outcomes)

    library = _seed_library(base, ckpt, cfg, ctrl, experiment_id, outcomes)
    tamiyo: dict[str, Any] = {}
    if train_policy:
        say_("Tamiyo: imitation, then REINFORCE on the measured outcomes")
        tamiyo = train_tamiyo(ctrl, reference, outcomes, base, out, seed=cfg.seed,
                              imitation_steps=cfg.tamiyo_imitation_steps, episodes=cfg.tamiyo_episodes,
                              weights=RewardWeights.parse(cfg.reward))  # fmt: skip
        library.meta["tamiyo"] = tamiyo
        if log is not None:
            log.write("tamiyo", **tamiyo)
    library.save(out)
    if log is not None:
        log.write("library", folder=str(out), seeds=sorted(library.entries))
    return MorphResult(experiment_id, outcomes, library, tamiyo, time.perf_counter() - t0)
