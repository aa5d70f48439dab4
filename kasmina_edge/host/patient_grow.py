"""One patient's seeds through their lifecycle on the host, judged on evidence beyond one slice.

Each seed Tamiyo plans (:mod:`kasmina_edge.host.patient_plan`) has its own :class:`SeedLifecycle`
in one engine; together they are the patient's seed *set*:

* **TRAINING** runs the recipe (:func:`fit_seeds`) on a candidate path beside the host: the frozen
  blocks with every TRAINING seed after its site, so the seeds learn together, end to end, on every
  beat of the window plus the common beats, for a fixed number of epochs (nothing is held out to
  stop early on: the gates have their own evidence). The host's output is untouched, checked bit
  for bit; isolation (no host gradient) is watched per seed; G1 per seed.
* **BLENDING** ramps each seed's alpha by its grafting strategy, fed the in-window metric; G2.
* **SHADOWING** compares with the base's predictions; G3 (interface, export, telemetry).
* **PROBATIONARY → G4** on out-of-fold evidence (:func:`gate_evidence`): the same recipe is run
  once per block of the window with that block held out; the base and the seeds are compared on
  every beat with a paired bootstrap, and the set fossilizes only when the *lower bound* of its
  macro-F1 gain is above ``min_gain`` and that of its N-accuracy change above ``-n_tolerance``:
  a seed is kept when it is unlikely to hurt, not when one slice of a few dozen beats liked it.
  (A bound of exactly 0 is not enough: on DS1 folds the seeds it would add, gains resting on one
  or two beats, hurt as often as they helped.)

``ranges``: each site's int8 range (the base bundle's grids). The device requantizes whatever a
kernel hands on onto its site's grid, so every site is clipped to it here too, in training and in
the gates: a seed cannot lean on values the device would cut off.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import EmbargoPolicy, Stage
from kasmina_edge.ecg.dataset import BeatDataset, concat
from kasmina_edge.host.evidence import GateEvidence, out_of_fold, paired_bootstrap
from kasmina_edge.host.model import BeatClassifier, count_host_parameters
from kasmina_edge.host.patient import (
    GrownSeed,
    PatientConfig,
    PatientSeed,
    PatientWindow,
    _tensors,
    adaptation_set,
    scale_rr,
    site_ranges,
)
from kasmina_edge.host.patient_plan import SeedPlan, plan_patient_seeds
from kasmina_edge.host.train import class_metrics, class_weights, predict_logits

Progress = Callable[[str], None]
Bounds = dict[str, tuple[float, float]]
LIVE_OR_TRAINING = frozenset(
    {Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED}
)


class _Clock:
    """Logical seconds (one per update): reproducible event times."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- the recipe


def _through_blocks(
    frozen: BeatClassifier,
    h: torch.Tensor,
    first: int,
    last: int,
    seeds: dict[str, nn.Module],
    bounds: Bounds,
) -> torch.Tensor:
    """Blocks ``first`` to ``last − 1`` of the frozen base, each seed after its site, each site clipped."""
    names = frozen.config.site_names
    for i in range(first, last):
        h = frozen.blocks[i](h)
        if names[i] in seeds:
            h = seeds[names[i]](h)
        lo, hi = bounds[names[i]]
        if math.isfinite(lo) or math.isfinite(hi):
            h = h.clamp(lo, hi)
    return h


def candidate_logits(
    frozen: BeatClassifier, seeds: dict[str, nn.Module], x: torch.Tensor, rr: torch.Tensor, bounds: Bounds
) -> torch.Tensor:
    """The candidate path: the frozen base with every seed after its site (sites clipped as on the device)."""
    h = _through_blocks(frozen, x, 0, len(frozen.blocks), seeds, bounds)
    return frozen.head(h, rr)  # type: ignore[no-any-return]


def fit_seeds(
    frozen: BeatClassifier,
    seeds: dict[str, nn.Module],
    data: BeatDataset,
    cfg: PatientConfig,
    bounds: Bounds,
    opt: torch.optim.Optimizer,
    *,
    watch: Callable[[], AbstractContextManager[Any]] | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """The recipe: ``cfg.epochs`` epochs of class-weighted cross-entropy over every beat of ``data``,
    through the frozen base with every seed after its site, plus ``cfg.keep_weight`` times
    :func:`keep_loss` on the beats the base already gets right. Returns the loss of every update."""
    x, rr, y = _tensors(data)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(data.labels)) ** cfg.class_weight_power)
    names = frozen.config.site_names
    start = min(names.index(k) for k in seeds)
    with torch.no_grad():  # the blocks before the first seed never change: run them once
        h0 = _through_blocks(frozen, x, 0, start, {}, bounds)
        base_logits = frozen.head(_through_blocks(frozen, h0, start, len(names), {}, bounds), rr)
        base_right = base_logits.argmax(1) == y
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
            opt.zero_grad(set_to_none=True)
            h = _through_blocks(frozen, h0[idx], start, len(names), seeds, bounds)
            logits = frozen.head(h, rr[idx])
            loss = loss_fn(logits, y[idx])
            if cfg.keep_weight > 0:
                loss = loss + cfg.keep_weight * keep_loss(logits, base_logits[idx], base_right[idx])
            with watch() if watch is not None else nullcontext():
                loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            on_epoch(epoch)
    return losses


def keep_loss(logits: torch.Tensor, base_logits: torch.Tensor, base_right: torch.Tensor) -> torch.Tensor:
    """KL(base ‖ seeded) over the beats the base classifies right: what the base already knows
    stays (learning without forgetting, Li & Hoiem 2016), so the seed spends itself on the beats
    the base gets wrong. Without it a seed that learns a patient's F or V beats pays in N beats."""
    if not bool(base_right.any()):
        return logits.sum() * 0.0
    teacher = base_logits[base_right].log_softmax(1)
    student = logits[base_right].log_softmax(1)
    return nn.functional.kl_div(student, teacher, log_target=True, reduction="batchmean")


@torch.no_grad()
def predict_candidate(
    frozen: BeatClassifier, seeds: dict[str, nn.Module], ds: BeatDataset, bounds: Bounds
) -> np.ndarray:
    x, rr, _ = _tensors(ds)
    return candidate_logits(frozen, seeds, x, rr, bounds).argmax(1).numpy()


def fresh_seeds(frozen: BeatClassifier, plans: list[SeedPlan], seed: int) -> dict[str, nn.Module]:
    """New, untrained modules for ``plans`` (the gates' out-of-fold runs)."""
    from kasmina_edge.host.blueprints import create_blueprint

    torch.manual_seed(seed)
    shapes = frozen.config.site_shapes()
    return {p.site: create_blueprint(p.blueprint, *shapes[p.site], **p.params) for p in plans}


def gate_evidence(
    frozen: BeatClassifier,
    plans: list[SeedPlan],
    window: PatientWindow,
    common: BeatDataset | None,
    cfg: PatientConfig,
    bounds: Bounds,
    base_pred: np.ndarray,
) -> tuple[GateEvidence, np.ndarray]:
    """G4's evidence: out-of-fold predictions of the recipe over the window's blocks, against the base."""
    scaled_common = scale_rr(common, window.rr_scale) if common is not None and len(common) else None

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        seeds = fresh_seeds(frozen, plans, cfg.seed + int(test[0]))
        groups = [{"params": list(seeds[p.site].parameters()), "lr": cfg.lr * p.intensity} for p in plans]
        part = window.beats.subset(train)
        data = concat([part, scaled_common]) if scaled_common is not None else part
        fit_seeds(frozen, seeds, data, cfg, bounds, torch.optim.Adam(groups))
        return predict_candidate(frozen, seeds, window.beats.subset(test), bounds)

    oof = out_of_fold(window.blocks, fit_predict, cfg.cv_folds)
    ev = paired_bootstrap(
        window.beats.labels, base_pred, oof, rounds=cfg.gate_rounds, quantile=cfg.gate_quantile,
        min_support=cfg.gate_min_support, seed=cfg.seed,
    )  # fmt: skip
    return ev, oof


def _frozen_copy(base: BeatClassifier) -> BeatClassifier:
    frozen = copy.deepcopy(base).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    for site in frozen.sites.values():
        site.telemetry_enabled = False
    return frozen


def _site_bounds(
    frozen: BeatClassifier,
    window: PatientWindow,
    common: BeatDataset | None,
    cfg: PatientConfig,
    ranges: Bounds | None,
) -> Bounds:
    if ranges:
        return dict(ranges)
    bounds = site_ranges(frozen, common if common is not None and len(common) else window.beats, cfg.headroom)
    if cfg.headroom <= 0:  # no int8 site range to respect (a float target)
        return {k: (-math.inf, math.inf) for k in bounds}
    return bounds


def _gate_scores(truth: np.ndarray, pred: np.ndarray, min_support: int) -> tuple[float, float]:
    m = class_metrics(truth, pred)
    n_acc = float(m.se[0]) if m.support[0] else float("nan")
    return m.macro_f1_at(min_support), n_acc


# --------------------------------------------------------------------------- the lifecycle


def grow_patient_seed(
    base: BeatClassifier,
    window: PatientWindow,
    common: BeatDataset | None,
    cfg: PatientConfig,
    *,
    target: str | None = "edgetpu",
    say: Progress | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
    ranges: Bounds | None = None,
) -> PatientSeed:
    """Plan the patient's seeds with Tamiyo and run them, together, through the lifecycle on a frozen
    copy of the base (see the module's docstring for what each stage does)."""
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
    frozen = _frozen_copy(base)
    plans, decision = plan_patient_seeds(frozen, window, common, cfg, target)
    truth = np.asarray(window.beats.labels)
    base_pred = predict_logits(frozen, window.beats_raw).argmax(1).numpy()
    baseline_val, baseline_n = _gate_scores(truth, base_pred, cfg.gate_min_support)
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
    bounds = _site_bounds(frozen, window, common, cfg, ranges)

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
        for hook in clips:
            hook.remove()
        result.ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in bounds.items()}
        result.seconds = time.perf_counter() - t0
        return result

    growing = alive()
    if not growing:
        return finish()

    # TRAINING: the recipe on the candidate path, the host's output checked bit for bit every epoch.
    say_(f"TRAINING {', '.join(f'{g.plan.blueprint}@{g.plan.site}' for g in growing)} ({cfg.epochs} epochs)")
    sids = [g.seed_id for g in growing]
    opt = torch.optim.Adam(registry.optimizer_param_groups(cfg.lr, sids))
    registry.guard(opt, active=lambda: [g.seed_id for g in alive()])
    modules = {g.plan.site: model.sites[g.plan.site].seed_module(g.seed_id) for g in growing}
    monitors = {
        g.seed_id: IsolationMonitor(list(modules[g.plan.site].parameters()), host_params) for g in growing
    }
    x_all, rr_all, _ = _tensors(window.beats)
    probe_x, probe_rr = x_all[:64], rr_all[:64]
    with torch.no_grad():
        host_probe = model(probe_x, probe_rr)
    exact = True

    @torch.no_grad()
    def check_host(epoch: int) -> None:
        nonlocal exact
        exact = exact and bit_equal(model(probe_x, probe_rr), host_probe)
        clock.now += 1.0
        for g in growing:
            model.sites[g.plan.site].end_epoch()

    def watch() -> AbstractContextManager[Any]:
        stack = ExitStack()
        for mon in monitors.values():
            stack.enter_context(mon.seed_backward())
        return stack

    losses = fit_seeds(frozen, modules, adaptation_set(window, common), cfg, bounds, opt, watch=watch,
                       on_epoch=check_host)  # fmt: skip
    on_event({"event": "trained", "epochs": cfg.epochs, "updates": len(losses), "loss_first": losses[0],
              "loss_last": losses[-1]})  # fmt: skip
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

    # BLENDING: alpha ramps by each seed's grafting strategy; the seeds are live in the model, every site
    # clipped to its range as on the device. TRAINING did the learning: no updates here.
    say_("BLENDING")
    host_stats = {k: site_stats(v) for k, v in site_activations(base, window.beats).items()}

    def drift_of(g: GrownSeed) -> float:
        return site_drift(site_activations(model, window.beats)[g.plan.site], host_stats[g.plan.site])

    def in_window() -> float:
        return _gate_scores(
            truth, predict_logits(model, window.beats).argmax(1).numpy(), cfg.gate_min_support
        )[0]

    clips += [
        model.sites[name].register_forward_hook(lambda _m, _i, out, b=bounds[name]: out.clamp(*b))
        for name in model.config.site_names
    ]
    for _ in range(3 * cfg.blend_steps):
        val = in_window()
        ramped = True
        for g in alive():
            layer = model.sites[g.plan.site]
            norms = monitors[g.seed_id].seed_grad_norms
            signals = GraftSignals(val_metric=val, baseline_metric=baseline_val, drift=drift_of(g),
                                   grad_norm=norms[-1] if norms else None)  # fmt: skip
            alpha = layer.step_alpha(g.seed_id, signals)
            on_event({"event": "blend_step", "seed_id": g.seed_id, "alpha": alpha, "in_window_macro_f1": val,
                      "drift": signals.drift})  # fmt: skip
            ramped = ramped and alpha >= 1.0
        clock.now += 1.0
        if ramped:
            break
    for g in alive():
        layer = model.sites[g.plan.site]
        layer.end_epoch()
        stab = layer.stability_inputs(g.seed_id, max_oscillation=cfg.max_oscillation, max_drift=cfg.max_drift)
        layer.advance(g.seed_id, replace(stab, drift=drift_of(g)))  # G2: a seed that fails it is culled alone
    if not alive():
        return finish()

    # SHADOWING: full alpha, compared with the base's predictions (the path without the seeds).
    say_("SHADOWING")
    live_pred = predict_logits(model, window.beats).argmax(1).numpy()
    result.shadow_agreement = float(np.mean(live_pred == base_pred))
    for g in alive():
        layer = model.sites[g.plan.site]
        on_event({"event": "shadow", "seed_id": g.seed_id, "agreement_with_host": result.shadow_agreement})
        probe = torch.randn(2, g.channels, g.length, generator=gen)
        layer.advance(g.seed_id, layer.interface_inputs(g.seed_id, probe=probe))  # G3
    if not alive():
        return finish()

    # PROBATIONARY: the surviving set is judged (G4) on out-of-fold evidence over the whole window.
    survivors = alive()
    say_(f"PROBATIONARY: out-of-fold evidence over {len(window.beats)} beats ({cfg.cv_folds} folds)")
    for g in survivors:
        g.state = model.sites[g.plan.site].seed_state_dict(g.seed_id)
    ev, oof = gate_evidence(frozen, [g.plan for g in survivors], window, common, cfg, bounds, base_pred)
    result.evidence = ev.to_dict()
    result.seed_val, result.seed_n_acc = _gate_scores(truth, oof, cfg.gate_min_support)
    on_event({"event": "evidence", **result.evidence})
    for g in survivors:
        layer = model.sites[g.plan.site]
        # G4 reads the bootstrap's lower bounds: the gain it must beat and the N accuracy it must keep
        impact = layer.system_impact_inputs(
            g.seed_id, ev.base_macro_f1 + ev.gain_low, baseline_metric=ev.base_macro_f1,
            global_metric=1.0 + ev.n_acc_delta_low, global_reference=1.0, tolerance=cfg.n_tolerance,
            min_gain=cfg.min_gain + 1e-9,
        )  # fmt: skip
        layer.advance(g.seed_id, impact)  # G4
        if engine.stage(g.seed_id) is Stage.FOSSILIZED:
            g.record = layer.seed_record(g.seed_id)
    return finish()
