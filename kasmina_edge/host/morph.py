"""The morphogenetic phase: grow, judge and keep seeds per signal condition.

For each condition of the curriculum: measure the base on it, let Tamiyo decide (act or wait,
site, blueprint, intensity, grafting), and run each chosen seed through the lifecycle on a
fresh copy of the base:

  DORMANT ─G0→ GERMINATED → TRAINING ─G1→ BLENDING ─G2→ SHADOWING ─G3→ PROBATIONARY ─G4→ FOSSILIZED
                 (any failed gate: CULLED with its reason → EMBARGOED → RESETTING ─G5→ DORMANT)

TRAINING learns behind the straight-through incubator: the model's output stays the host's,
bit for bit (checked on a probe batch), while the seed's loss is the task loss computed
through the rest of the (frozen) network from the layer's incubator output. BLENDING trains
the seed on the live output while its grafting strategy ramps alpha; SHADOWING compares the
seeded model with the host path; PROBATIONARY judges the gain over the pre-germination
baseline (G4). The host's weights never change: they are frozen and registered as the host
with the parameter registry, whose guard rejects any update that would touch them.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import EmbargoPolicy, Stage
from kasmina_edge.core.features import N_SITES, SiteStats, prediction_entropy, signal_features
from kasmina_edge.host.data import ConditionSplit
from kasmina_edge.host.experiment import ExperimentLog
from kasmina_edge.host.model import BeatClassifier, count_host_parameters, count_macs, example_inputs
from kasmina_edge.host.tamiyo.features import Observation, reference_template, site_drift, site_stats
from kasmina_edge.host.tamiyo.heuristic import Decision, HeuristicTamiyo, PlateauDetector
from kasmina_edge.host.tamiyo.masks import (
    ActionSpace,
    Budget,
    Masks,
    build_masks,
    costs_from_registry,
    default_space,
)
from kasmina_edge.host.tamiyo.reward import RewardWeights
from kasmina_edge.host.train import Beats, class_weights, evaluate, predict_logits

Progress = Callable[[str], None]  # one line of what is happening now


@dataclass(frozen=True)
class MorphConfig:
    conditions: tuple[str, ...] = ("emg", "baseline", "motion", "lead", "patient")
    target: str | None = "edgetpu"
    max_seed_fraction: float = 0.10  # parameters per seed, as a fraction of the base
    max_mac_fraction: float = 0.25  # MACs per seed (the latency budget), as a fraction of the base
    sites_per_condition: int = 2  # Tamiyo's best-ranked sites, each tried with its own seed
    train_epochs: int = 6  # TRAINING: passes over the adaptation data
    min_train_steps: int = 150  # ... but at least this many updates (small calibration sets)
    blend_steps: int = 6  # grafting steps from alpha 0 to 1
    blend_batches: int = 12  # seed updates between two grafting steps
    batch_size: int = 128
    lr: float = 1e-3  # seeds' base learning rate (Tamiyo's intensity multiplies it)
    min_gain: float = 0.01  # G4: macro-F1 gain over the pre-germination baseline needed to fossilize
    global_tolerance: float = 0.05  # G4: how much worse clean data may get with the seed in
    max_oscillation: float = 0.05  # G2: macro-F1 with rare classes moves a few points per step
    max_drift: float = 3.0  # G2: output drift, in reference standard deviations
    drift_penalty: float = 0.05  # weight of the seed's activation-drift penalty while it trains
    gate_min_support: int = 25  # gates judge macro-F1 over classes with at least this many beats
    replay: bool = True  # mix clean training beats into the adaptation data
    tamiyo_imitation_steps: int = 300
    tamiyo_episodes: int = 60  # REINFORCE episodes of 64 situations each
    reward: str = ""  # Tamiyo's reward weights, e.g. "accuracy=0.2,params=2" (see tamiyo.reward)
    calibration_s: float = 90.0  # patient shift: seconds of each new patient used to adapt
    patients: int | None = None  # default: the base checkpoint's
    minutes: float | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MORPH_PRESETS: dict[str, MorphConfig] = {
    "default": MorphConfig(),
    "tiny": MorphConfig(
        conditions=("emg", "lead"), sites_per_condition=1, train_epochs=3, blend_steps=4, blend_batches=4,
        batch_size=64, calibration_s=40.0, min_train_steps=60, tamiyo_imitation_steps=200, tamiyo_episodes=30,
    ),
}


# --------------------------------------------------------------------------- observation


@dataclass
class Reference:
    """What 'normal' looks like, measured once on clean training data with the base."""

    template: np.ndarray
    sites: dict[str, SiteStats]
    vector: np.ndarray  # the feature vector of clean validation data


@torch.no_grad()
def site_activations(model: BeatClassifier, ds: Beats, limit: int = 1024) -> dict[str, np.ndarray]:
    x = torch.from_numpy(np.ascontiguousarray(ds.windows[:limit], dtype=np.float32))
    model.eval()
    return {k: v.numpy() for k, v in model.features(x).items()}


def observe(
    model: BeatClassifier,
    ds: Beats,
    records: Sequence[Any],
    lead: int,
    template: np.ndarray | None,
    ref_sites: dict[str, SiteStats] | None,
    *,
    plateau: bool,
    calibration: bool = False,
    limit_records: int = 4,
) -> Observation:
    """Tamiyo's features on a condition: signal (raw records), entropy and per-site drift (model)."""
    feats = [
        signal_features(r.lead(lead), r.fs, r.beats.samples, template)
        for r in list(records)[:limit_records]
        if r.beats is not None and len(r.beats) > 3
    ]
    sig = type(feats[0])(*(float(np.mean([getattr(f, k) for f in feats])) for k in feats[0].__dataclass_fields__))
    probs = torch.softmax(predict_logits(model, ds), dim=1).numpy()
    acts = site_activations(model, ds)
    drift = tuple(site_drift(acts[s], ref_sites[s]) if ref_sites else 0.0 for s in list(acts)[:N_SITES])
    return Observation(sig, prediction_entropy(probs), drift, plateau=plateau, calibration=calibration)


def measure_reference(model: BeatClassifier, clean_train: Beats, clean_val: Beats, records: Sequence[Any]) -> Reference:
    first = next(r for r in records if r.beats is not None and len(r.beats) > 3)
    template = reference_template(first.lead(0), first.fs, first.beats.samples)
    sites = {k: site_stats(v) for k, v in site_activations(model, clean_train).items()}
    vec = observe(model, clean_val, records, 0, template, sites, plateau=True).vector()
    return Reference(template, sites, vec)


# --------------------------------------------------------------------------- one seed's life


@dataclass
class TrialResult:
    condition: str
    site: str
    blueprint: str
    blueprint_params: dict[str, Any]
    grafting: str
    intensity: float
    seed_id: str
    final_stage: str
    reason: str
    param_count: int
    macs: int
    baseline_val: float  # host alone, condition validation, gate macro-F1 (pre-germination baseline)
    seed_val: float | None = None  # with the seed, same data
    clean_host: float | None = None
    clean_seed: float | None = None
    test_base: dict[str, Any] | None = None
    test_seed: dict[str, Any] | None = None
    bit_exact_training: bool | None = None
    shadow_agreement: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, torch.Tensor] | None = None  # the seed module's weights (fossilized only)
    record: dict[str, Any] | None = None  # the KasminaLayer's own description of the seed (fossilized only)
    channels: int = 0
    length: int = 0
    seconds: float = 0.0

    @property
    def fossilized(self) -> bool:
        return self.final_stage == Stage.FOSSILIZED.name

    @property
    def gain(self) -> float:
        return (self.seed_val - self.baseline_val) if self.seed_val is not None else 0.0

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("state")
        d["gain"] = self.gain
        return d


class LogicalClock:
    """Seconds of morph time: advanced by the engine's steps, so event times are reproducible."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _tensors(ds: Beats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(ds.windows, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ds.rr, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ds.labels, dtype=np.int64)),
    )


def prepare_host(base: BeatClassifier, budget: Budget, engine: Any, registry: Any) -> BeatClassifier:
    """A copy of the base with its weights frozen, registered as the host, sites sharing one engine."""
    from kasmina_edge.host.kasmina.layer import freeze_host

    model = copy.deepcopy(base)
    freeze_host(model)
    for site in model.sites.values():
        site.attach(engine, registry, target=budget.target, max_params=budget.max_params, max_macs=budget.max_macs)
    registry.register_host(model.blocks, prefix="blocks.")
    registry.register_host(model.head, prefix="head.")
    model.eval()
    return model


def run_trial(
    base: BeatClassifier,
    split: ConditionSplit,
    clean_val: Beats,
    site: str,
    blueprint: str,
    grafting: str,
    intensity: float,
    budget: Budget,
    cfg: MorphConfig,
    *,
    sink: Callable[[dict[str, Any]], None] | None = None,
    seed: int = 0,
    say: Progress | None = None,
    clean_sites: dict[str, SiteStats] | None = None,
) -> TrialResult:
    """One seed from germination to FOSSILIZED or CULLED (then through embargo back to DORMANT).

    ``clean_sites``: the host's activation statistics on clean data. When given, G2's drift is
    the distance the seed *adds* between its site's activations and clean ones, beyond the
    distance the condition already put there (0 for a seed that brings them closer). The
    layer's own reference is taken at germination on the degraded signal, so it would count
    a seed that restores clean activations as drifting.
    """
    from kasmina_edge.host.blueprints import get_blueprint
    from kasmina_edge.host.kasmina import (
        GerminationRejected,
        GraftSignals,
        LifecycleEngine,
        ParameterRegistry,
        bit_equal,
        make_grafting,
    )

    t_start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    clock = LogicalClock()
    embargo = EmbargoPolicy()
    history: list[dict[str, Any]] = []

    def on_event(ev: dict[str, Any]) -> None:
        history.append(ev)
        if sink is not None:
            sink(ev)

    engine = LifecycleEngine(clock=clock, embargo=embargo, sink=on_event, keep_events=False)
    registry = ParameterRegistry()
    model = prepare_host(base, budget, engine, registry)
    layer = model.sites[site]
    for name, other in model.sites.items():
        other.telemetry_enabled = name == site  # only the trial's site is watched: a third of the cost
    channels, length = model.config.site_shapes()[site]
    spec = get_blueprint(blueprint)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(split.adapt.labels)))
    x, rr, y = _tensors(split.adapt)
    def metric(ds: Beats) -> float:
        return evaluate(model, ds).macro_f1_at(cfg.gate_min_support)

    baseline = metric(split.val)
    clean_host = metric(clean_val)
    host_val_pred = predict_logits(model, split.val).argmax(1)
    host_val_act = site_activations(model, split.val)[site]
    test_base = evaluate(model, split.test).to_dict() if split.test is not None else None
    probe_x, probe_rr = x[:64], rr[:64]
    with torch.no_grad():
        host_probe = model(probe_x, probe_rr)
    result = TrialResult(
        condition=split.condition.name, site=site, blueprint=blueprint, blueprint_params=dict(spec.defaults),
        grafting=grafting, intensity=intensity, seed_id="", final_stage=Stage.DORMANT.name, reason="",
        param_count=spec.param_count(channels), macs=spec.macs(channels, length), baseline_val=baseline,
        clean_host=clean_host, history=history, channels=channels, length=length,
    )  # fmt: skip

    def finish(reason: str) -> TrialResult:
        result.final_stage = engine.stage(result.seed_id).name if result.seed_id else Stage.DORMANT.name
        result.reason = reason
        result.seconds = time.perf_counter() - t_start
        return result

    def culled() -> bool:
        return engine.stage(sid) in (Stage.CULLED, Stage.EMBARGOED)

    def release(reason: str) -> TrialResult:
        """After a cull: wait out the embargo (logical time) and reset the slot behind G5."""
        final = finish(reason)
        result.final_stage = Stage.CULLED.name
        clock.advance(embargo.duration(reason) + 1.0)
        engine.tick()
        return final

    def say_(msg: str) -> None:
        if say is not None:
            say(f"{split.condition.name} · {site} · {blueprint}: {msg}")

    # G0: germination (registered, finite, within the budget, the target can run it).
    try:
        graft = make_grafting(grafting, steps=cfg.blend_steps)
        sid = layer.germinate(None, blueprint, grafting=graft, lr_scale=intensity)
    except GerminationRejected as exc:
        result.seed_id = f"site{layer.site}/all"
        return finish(f"gate_G0_failed: {str(exc).split(': ', 2)[-1]}")
    result.seed_id = sid
    layer.set_baseline(sid, baseline)
    layer.advance(sid)  # GERMINATED -> TRAINING (no gate)
    opt = torch.optim.Adam(registry.optimizer_param_groups(cfg.lr, [sid]))
    registry.guard(opt, active=lambda: [sid])

    # A seed should bring its site's activations towards clean ones, not wander off: a small
    # penalty on the batch's channel means against the host's clean statistics (G2 measures it).
    if clean_sites is not None and cfg.drift_penalty > 0:
        ref_mu = torch.as_tensor(clean_sites[site].mean, dtype=torch.float32)
        ref_sd = float(clean_sites[site].std.mean()) + 1e-6

        def drift_penalty(act: torch.Tensor) -> torch.Tensor:
            return cfg.drift_penalty * ((act.mean(dim=(0, 2)) - ref_mu) / ref_sd).pow(2).mean()
    else:

        def drift_penalty(act: torch.Tensor) -> torch.Tensor:
            return act.new_zeros(())

    captured: list[torch.Tensor] = [torch.zeros(())]
    layer.register_forward_hook(lambda _m, _i, out: captured.__setitem__(0, out))

    # TRAINING: the host's output is untouched; the seed learns from the incubator output.
    say_("TRAINING")
    exact = True
    per_epoch = max(1, -(-len(y) // cfg.batch_size))
    epochs = max(cfg.train_epochs, -(-cfg.min_train_steps // per_epoch))
    for epoch in range(epochs):
        for idx in _batches(len(y), cfg.batch_size, gen):
            opt.zero_grad(set_to_none=True)
            model(x[idx], rr[idx])
            inc = layer.incubator_output()
            assert inc is not None
            loss = loss_fn(model.downstream(site, inc, rr[idx]), y[idx]) + drift_penalty(inc)
            layer.seed_backward(loss)
            if culled():
                break
            opt.step()
            clock.advance(1.0)
        if culled():
            break
        with torch.no_grad():
            exact = exact and bit_equal(model(probe_x, probe_rr), host_probe)
        layer.end_epoch()
        on_event({"event": "train_epoch", "seed_id": sid, "epoch": epoch + 1, "bit_exact": exact,
                  "loss": float(loss.detach())})  # fmt: skip
    result.bit_exact_training = exact
    if culled():
        return release(engine.lifecycle(sid).cull_reason or "culled in TRAINING")
    if not exact:
        layer.cull(sid, "health_isolation: output changed during TRAINING")
        return release("health_isolation: output changed during TRAINING")
    n_losses = len(layer.gradient_health_inputs(sid).seed_losses)
    layer.advance(sid, layer.gradient_health_inputs(sid, window=n_losses))  # G1
    if culled():
        return release(engine.lifecycle(sid).cull_reason or "G1")

    # BLENDING: the grafting strategy ramps alpha while the seed trains on the live output.
    say_("BLENDING")
    model.train(False)
    batches = iter(())  # type: ignore[var-annotated]
    for _ in range(3 * cfg.blend_steps):
        # The strategy sees the metric at the current alpha, steps, then the seed trains at the new alpha.
        val = metric(split.val)
        grad = layer.gradient_health_inputs(sid).grad_norms
        alpha = layer.step_alpha(sid, GraftSignals(val_metric=val, baseline_metric=baseline,
                                                   grad_norm=grad[-1] if grad else None))  # fmt: skip
        on_event({"event": "blend_step", "seed_id": sid, "alpha": alpha, "val_macro_f1_before": val})
        for _b in range(cfg.blend_batches):
            idx = next(batches, None)
            if idx is None:
                batches = iter(_batches(len(y), cfg.batch_size, gen))
                idx = next(batches)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx], rr[idx]), y[idx]) + drift_penalty(captured[0])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            clock.advance(1.0)
        if alpha >= 1.0:
            break
    layer.end_epoch()
    stability = layer.stability_inputs(sid, max_oscillation=cfg.max_oscillation, max_drift=cfg.max_drift)
    if clean_sites is not None:
        seeded_vs_clean = site_drift(site_activations(model, split.val)[site], clean_sites[site])
        host_vs_clean = site_drift(host_val_act, clean_sites[site])
        added = max(0.0, seeded_vs_clean - host_vs_clean)  # what the seed adds to the condition's own drift
        on_event({"event": "drift", "seed_id": sid, "layer_reference": stability.drift,
                  "seeded_vs_clean": seeded_vs_clean, "host_vs_clean": host_vs_clean, "added": added})  # fmt: skip
        stability = dataclasses.replace(stability, drift=added)
    layer.advance(sid, stability)  # G2
    if culled():
        return release(engine.lifecycle(sid).cull_reason or "G2")

    # SHADOWING: full alpha, the host path computed beside it for comparison.
    say_("SHADOWING")
    seeded = predict_logits(model, split.val).argmax(1)
    result.shadow_agreement = float((seeded == host_val_pred).float().mean())
    on_event({"event": "shadow", "seed_id": sid, "agreement_with_host": result.shadow_agreement})
    layer.advance(sid, layer.interface_inputs(sid, probe=torch.randn(2, channels, length, generator=gen)))  # G3
    if culled():
        return release(engine.lifecycle(sid).cull_reason or "G3")

    # PROBATIONARY: live and watched; G4 against the pre-germination baseline and clean data.
    say_("PROBATIONARY")
    result.seed_val = metric(split.val)
    result.clean_seed = metric(clean_val)
    impact = layer.system_impact_inputs(
        sid, result.seed_val, global_metric=result.clean_seed, global_reference=clean_host,
        tolerance=cfg.global_tolerance, min_gain=cfg.min_gain,
    )  # fmt: skip
    layer.advance(sid, impact)  # G4
    if split.test is not None:
        result.test_seed = evaluate(model, split.test).to_dict()
        result.test_base = test_base
    if culled():
        return release(engine.lifecycle(sid).cull_reason or "G4")
    result.state = layer.seed_state_dict(sid)
    result.record = layer.seed_record(sid)
    return finish(f"fossilized: gain {result.gain:+.4f} macro-F1 over the pre-germination baseline")


# --------------------------------------------------------------------------- full fine-tuning


def fine_tune(
    base: BeatClassifier, split: ConditionSplit, epochs: int, lr: float, batch_size: int, seed: int, min_support: int = 25
) -> BeatClassifier:
    """The upper bound: every host weight trained on the same adaptation data (best epoch on val)."""
    from kasmina_edge.host.train import train_epoch

    model = copy.deepcopy(base)
    params = model.host_parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(split.adapt.labels)))
    data = _tensors(split.adapt)
    best, best_state = evaluate(model, split.val).macro_f1_at(min_support), copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        train_epoch(model, opt, data, loss_fn, batch_size=batch_size, seed=seed, epoch=epoch, params=params)
        f1 = evaluate(model, split.val).macro_f1_at(min_support)
        if f1 > best:
            best, best_state = f1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model


# --------------------------------------------------------------------------- Tamiyo's part


@dataclass
class Controller:
    """The controller morph asks, with the space, costs and budget its masks come from."""

    heuristic: HeuristicTamiyo
    space: ActionSpace
    costs: dict[tuple[str, str], Any]
    budget: Budget

    def masks(self, security_alert: bool = False) -> Masks:
        return build_masks(self.space, self.costs, self.budget, security_alert=security_alert)


def make_controller(base: BeatClassifier, reference: Reference, cfg: MorphConfig) -> Controller:
    x, rr = example_inputs(base.config)
    base_params, base_macs = count_host_parameters(base), count_macs(base, x, rr)
    budget = Budget(
        target=cfg.target,
        max_params=int(cfg.max_seed_fraction * base_params),
        max_macs=int(cfg.max_mac_fraction * base_macs),
    )
    space = default_space(base.config.site_names)
    costs = costs_from_registry(base.config.site_shapes(), space.blueprints)
    params = {k: c.params for k, c in costs.items()}
    return Controller(HeuristicTamiyo(space, reference.vector, params=params), space, costs, budget)


def plan_trials(ctrl: Controller, obs: np.ndarray, k: int) -> tuple[Decision, list[Decision]]:
    """Tamiyo's decision, and the k best-ranked sites each with the blueprint it would pick there."""
    masks = ctrl.masks()
    first = ctrl.heuristic.decide(obs, masks)
    if not first.act:
        return first, []
    symptom = ctrl.heuristic.dominant_symptom(obs)
    severity = ctrl.heuristic.symptoms(obs)[symptom]
    trials = [first]
    for site in ctrl.heuristic.rank_sites(obs, masks, symptom):
        if len(trials) >= k:
            break
        if site == first.site:
            continue
        bp = ctrl.heuristic.pick_blueprint(site, masks, symptom, severity)
        if bp is not None:
            trials.append(Decision(True, site, bp, first.intensity, first.grafting, first.reason))
    return first, trials


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
    from kasmina_edge.host.seed_library import SeedLibrary

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
        trials: list[TrialResult] = []
        for j, d in enumerate(plan):
            assert d.site is not None and d.blueprint is not None and d.grafting is not None
            t = run_trial(
                base, split, clean_val, ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint],
                ctrl.space.graftings[d.grafting], ctrl.space.intensities[d.intensity], ctrl.budget, cfg,
                sink=log_sink(log, name), seed=cfg.seed * 1000 + k * 10 + j, say=say, clean_sites=reference.sites,
            )  # fmt: skip
            trials.append(t)
            if log is not None:
                s = t.summary()
                s.pop("history")
                log.write("trial", **s)
        outcomes.append(ConditionOutcome(name, vec.tolist(), desc, base_val, trials))
        _save_state(state_path, cfg, experiment_id, outcomes)

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


def train_tamiyo(
    ctrl: Controller,
    reference: Reference,
    outcomes: Sequence[ConditionOutcome],
    base: BeatClassifier,
    out: Any,
    *,
    seed: int = 0,
    imitation_steps: int = 300,
    episodes: int = 60,
    weights: RewardWeights | None = None,
) -> dict[str, Any]:
    """Imitate the heuristic around the measured observations, then REINFORCE on measured gains."""
    from pathlib import Path

    from kasmina_edge.host.experiment import atomic_write_bytes
    from kasmina_edge.host.tamiyo.policy import (
        MaskFactory,
        OutcomeTable,
        TamiyoPolicy,
        decision_latency_us,
        imitate,
        jitter_situations,
        reinforce,
        save_policy,
    )
    from kasmina_edge.host.tamiyo.reward import Outcome

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    observed = {"clean": reference.vector.copy(), **{o.condition: np.asarray(o.observation, np.float32) for o in outcomes}}
    for v in observed.values():
        v[:] = v.astype(np.float32)
    factory = MaskFactory(ctrl.masks(False), ctrl.masks(True))
    train = jitter_situations(observed, factory, 800, rng)
    test = jitter_situations(observed, factory, 400, rng)
    policy = TamiyoPolicy(ctrl.space)
    imit = imitate(policy, ctrl.heuristic, train, test, steps=imitation_steps, seed=seed)
    table: dict[tuple[str, str, str], Outcome] = {}
    for o in outcomes:
        for t in o.trials:
            gain = t.gain if t.fossilized else 0.0
            table[(o.condition, t.site, t.blueprint)] = Outcome(gain=gain, params=t.param_count, macs=t.macs)
    x, rr = example_inputs(base.config)
    otable = OutcomeTable(table, {k: (c.params, c.macs) for k, c in ctrl.costs.items()}, count_host_parameters(base),
                          count_macs(base, x, rr), weights or RewardWeights())  # fmt: skip
    eps = [jitter_situations(observed, factory, 64, rng) for _ in range(episodes)]
    rl = reinforce(policy, otable, eps, test, ctrl.heuristic, lr=5e-4, seed=seed)
    latency = decision_latency_us(policy, test)
    buf = __import__("io").BytesIO()
    torch.save(save_policy(policy), buf)
    atomic_write_bytes(Path(out) / "policy.pt", buf.getvalue())
    return {
        "imitation_agreement": imit.agreement,
        "imitation_chance": imit.chance,
        "imitation_majority": imit.majority,
        "reward_heuristic": rl.reward_heuristic,
        "reward_policy_imitation": rl.reward_before,
        "reward_policy_reinforce": rl.reward_after,
        "decision_latency_p50_us": latency["p50_us"],
        "decision_latency_p99_us": latency["p99_us"],
        "policy_params": sum(p.numel() for p in policy.parameters()),
        "space": ctrl.space.to_dict(),
        "reward_weights": (weights or RewardWeights()).to_dict(),
    }
