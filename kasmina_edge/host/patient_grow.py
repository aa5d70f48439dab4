"""One patient's seeds through their lifecycle on the host, judged on evidence beyond one slice.

Each seed Tamiyo plans (:mod:`kasmina_edge.host.patient_plan`) has its own :class:`SeedLifecycle`
in one engine; together they are the patient's seed *set*, walked by the host's lifecycle driver
(:mod:`kasmina_edge.host.seed_driver`) with this module's recipe (:class:`PatientRecipe`):

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

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.ecg.dataset import BeatDataset, concat
from kasmina_edge.host.data import to_tensors
from kasmina_edge.host.evidence import GateEvidence, out_of_fold, paired_bootstrap
from kasmina_edge.host.model import BeatClassifier, count_host_parameters
from kasmina_edge.host.patient import (
    GrownSeed,
    PatientConfig,
    PatientSeed,
    PatientWindow,
    adaptation_set,
    scale_rr,
    site_ranges,
)
from kasmina_edge.host.patient_plan import SeedPlan, plan_patient_seeds
from kasmina_edge.host.seed_driver import DrivenSeed, DriverLimits, SeedDriver, SeedSpec
from kasmina_edge.host.train import class_metrics, class_weights, predict_logits

Progress = Callable[[str], None]
Bounds = dict[str, tuple[float, float]]

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
    x, rr, y = to_tensors(data)
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
    x, rr, _ = to_tensors(ds)
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


class PatientRecipe:
    """How a patient's seed set trains, blends and is judged (the driver walks the stages)."""

    def __init__(
        self, driver: SeedDriver, base: BeatClassifier, frozen: BeatClassifier, window: PatientWindow,
        common: BeatDataset | None, cfg: PatientConfig, bounds: Bounds, result: PatientSeed,
        say: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.d, self.base, self.frozen, self.window, self.common = driver, base, frozen, window, common
        self.cfg, self.bounds, self.result, self.say = cfg, bounds, result, say
        self.model = driver.model
        self.truth = np.asarray(window.beats.labels)
        self.base_pred = predict_logits(frozen, window.beats_raw).argmax(1).numpy()
        self.grown: dict[str, GrownSeed] = {}  # by seed id
        self.clips: list[Any] = []
        self.losses: list[float] = []
        self.monitors: dict[str, Any] = {}

    def train(self, driver: SeedDriver, seeds: list[DrivenSeed]) -> bool:
        """TRAINING: the recipe on the candidate path, the host's output checked bit for bit every epoch."""
        from kasmina_edge.host.kasmina import IsolationMonitor, bit_equal

        cfg, model = self.cfg, self.model
        self.say(f"TRAINING {', '.join(f'{s.spec.blueprint}@{s.spec.site}' for s in seeds)} ({cfg.epochs} epochs)")
        assert driver.opt is not None
        host_params = list(driver.registry.host_parameters())
        modules = {s.spec.site: model.sites[s.spec.site].seed_module(s.seed_id) for s in seeds}
        self.monitors = {
            s.seed_id: IsolationMonitor(list(modules[s.spec.site].parameters()), host_params) for s in seeds
        }
        x_all, rr_all, _ = to_tensors(self.window.beats)
        probe_x, probe_rr = x_all[:64], rr_all[:64]
        with torch.no_grad():
            host_probe = model(probe_x, probe_rr)
        exact = True

        @torch.no_grad()
        def check_host(epoch: int) -> None:
            nonlocal exact
            exact = exact and bit_equal(model(probe_x, probe_rr), host_probe)
            driver.clock.advance(1.0)
            for s in seeds:
                model.sites[s.spec.site].end_epoch()

        def watch() -> AbstractContextManager[Any]:
            stack = ExitStack()
            for mon in self.monitors.values():
                stack.enter_context(mon.seed_backward())
            return stack

        self.losses = fit_seeds(self.frozen, modules, adaptation_set(self.window, self.common), cfg, self.bounds,
                                driver.opt, watch=watch, on_epoch=check_host)  # fmt: skip
        driver.emit({"event": "trained", "epochs": cfg.epochs, "updates": len(self.losses),
                     "loss_first": self.losses[0], "loss_last": self.losses[-1]})  # fmt: skip
        self.result.bit_exact_training = exact
        return exact

    def gradient_health(self, seed: DrivenSeed) -> Any:
        from kasmina_edge.host.kasmina import GradientHealthInputs

        mon = self.monitors[seed.seed_id]
        return GradientHealthInputs(mon.violations, mon.tripped, tuple(self.losses), tuple(mon.seed_grad_norms),
                                    window=len(self.losses))  # fmt: skip

    def start_blending(self) -> None:
        """The seeds are live in the model, every site clipped to its range as on the device. TRAINING did
        the learning: no updates while alpha ramps."""
        from kasmina_edge.host.site_observation import site_activations
        from kasmina_edge.host.tamiyo.features import site_stats

        self.say("BLENDING")
        self.host_stats = {k: site_stats(v) for k, v in site_activations(self.base, self.window.beats).items()}
        self.clips += [
            self.model.sites[name].register_forward_hook(lambda _m, _i, out, b=self.bounds[name]: out.clamp(*b))
            for name in self.model.config.site_names
        ]

    def drift(self, seed: DrivenSeed) -> float:
        from kasmina_edge.host.site_observation import site_activations
        from kasmina_edge.host.tamiyo.features import site_drift

        acts = site_activations(self.model, self.window.beats)[seed.spec.site]
        return site_drift(acts, self.host_stats[seed.spec.site])

    def blend_metric(self) -> float:
        pred = predict_logits(self.model, self.window.beats).argmax(1).numpy()
        return _gate_scores(self.truth, pred, self.cfg.gate_min_support)[0]

    def blend_signals(self, seed: DrivenSeed, metric: float) -> Any:
        from kasmina_edge.host.kasmina import GraftSignals

        norms = self.monitors[seed.seed_id].seed_grad_norms
        return GraftSignals(val_metric=metric, baseline_metric=self.result.baseline_val, drift=self.drift(seed),
                            grad_norm=norms[-1] if norms else None)  # fmt: skip

    def blend_note(self, metric: float, signals: Any) -> dict[str, Any]:
        return {"in_window_macro_f1": metric, "drift": signals.drift}

    def after_blend_step(self) -> None:
        self.d.clock.advance(1.0)

    def stability(self, seed: DrivenSeed, measured: Any) -> Any:
        return replace(measured, drift=self.drift(seed))  # the seeded site against the host's own statistics

    def shadow_agreement(self) -> float:
        self.say("SHADOWING")  # full alpha, compared with the base's predictions (the path without the seeds)
        live_pred = predict_logits(self.model, self.window.beats).argmax(1).numpy()
        self.result.shadow_agreement = float(np.mean(live_pred == self.base_pred))
        return self.result.shadow_agreement

    def impact(self, seeds: list[DrivenSeed]) -> dict[str, Any]:
        """The surviving set is judged (G4) on out-of-fold evidence over the whole window."""
        cfg, r = self.cfg, self.result
        self.say(f"PROBATIONARY: out-of-fold evidence over {len(self.window.beats)} beats ({cfg.cv_folds} folds)")
        for s in seeds:
            self.grown[s.seed_id].state = self.model.sites[s.spec.site].seed_state_dict(s.seed_id)
        plans = [self.grown[s.seed_id].plan for s in seeds]
        ev, oof = gate_evidence(self.frozen, plans, self.window, self.common, cfg, self.bounds, self.base_pred)
        r.evidence = ev.to_dict()
        r.seed_val, r.seed_n_acc = _gate_scores(self.truth, oof, cfg.gate_min_support)
        self.d.emit({"event": "evidence", **r.evidence})
        # G4 reads the bootstrap's lower bounds: the gain it must beat and the N accuracy it must keep
        return {
            s.seed_id: self.model.sites[s.spec.site].system_impact_inputs(
                s.seed_id, ev.base_macro_f1 + ev.gain_low, baseline_metric=ev.base_macro_f1,
                global_metric=1.0 + ev.n_acc_delta_low, global_reference=1.0, tolerance=cfg.n_tolerance,
                min_gain=cfg.min_gain + 1e-9,
            )  # fmt: skip
            for s in seeds
        }

    def after_probation(self, seeds: list[DrivenSeed]) -> None:
        pass


def _seed_spec(p: SeedPlan, cfg: PatientConfig) -> SeedSpec:
    extra: dict[str, float] = {}
    if p.grafting == "drift_controlled":
        extra = {"max_drift": cfg.max_drift}
    elif p.grafting == "performance_linked":
        extra = {"tolerance": cfg.blend_tolerance}
    return SeedSpec(p.site, p.blueprint, p.grafting, p.intensity, dict(p.params), extra)


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
    from kasmina_edge.host.tamiyo.masks import Budget

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)

    def say_(msg: str) -> None:
        if say is not None:
            say(f"{window.record}: {msg}")

    say_("Tamiyo: observing the window")
    frozen = _frozen_copy(base)
    plans, decision = plan_patient_seeds(frozen, window, common, cfg, target)
    budget = Budget(target=target, max_params=int(decision["budget"]["max_params"]),
                    max_macs=int(decision["budget"]["max_macs"]))  # fmt: skip
    result = PatientSeed(
        record=window.record, minutes=window.minutes, target=target, base_params=count_host_parameters(base),
        rr_scale=window.rr_scale, seeds=[], decision=decision, baseline_val=0.0, seed_val=None,
        baseline_n_acc=0.0, seed_n_acc=None, bit_exact_training=None, shadow_agreement=None,
        counts=window.counts(), seconds=0.0, config=cfg.to_dict(),
    )  # fmt: skip
    limits = DriverLimits(cfg.lr, cfg.blend_steps, cfg.max_oscillation, cfg.max_drift)
    driver = SeedDriver(base, budget, limits, seed=cfg.seed, watch=[p.site for p in plans], sink=sink)
    result.events = driver.events
    share = budget.max_params // max(1, len(plans))  # each seed's share of the patient's budget: G0 checks it
    for layer in driver.model.sites.values():
        layer.max_params = share
    bounds = _site_bounds(frozen, window, common, cfg, ranges)
    recipe = PatientRecipe(driver, base, frozen, window, common, cfg, bounds, result, say_)
    result.baseline_val, result.baseline_n_acc = _gate_scores(recipe.truth, recipe.base_pred, cfg.gate_min_support)
    driven = driver.germinate([_seed_spec(p, cfg) for p in plans], result.baseline_val)  # G0
    site_index = {name: i for i, name in enumerate(driver.model.config.site_names)}
    for p, s in zip(plans, driven, strict=True):
        g = GrownSeed(p, s.seed_id, site_index[p.site], s.channels, s.length, Stage.DORMANT.name, "")
        recipe.grown[s.seed_id] = g
        result.seeds.append(g)
    driver.run(recipe)
    for g, s in zip(result.seeds, driven, strict=True):
        g.final_stage, g.reason, g.history = s.final_stage, s.reason or s.final_stage.lower(), s.history
        if s.record is not None:
            g.record = s.record
    for hook in recipe.clips:
        hook.remove()
    result.ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in bounds.items()}
    result.seconds = time.perf_counter() - t0
    return result
