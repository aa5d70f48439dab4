"""One condition seed's trial: a seed at one site, grown on a condition's adaptation data and walked through
the lifecycle by the host's driver (:mod:`kasmina_edge.host.seed_driver`) on a fresh copy of the base.

The recipe (:class:`ConditionRecipe`): TRAINING learns behind the straight-through incubator, so the
model's output stays the host's, bit for bit (checked on a probe batch every epoch), while the seed's
loss is the task loss computed through the rest of the (frozen) network from the layer's incubator
output. BLENDING trains the seed on the live output between two grafting steps while its strategy
ramps alpha; G2's drift is what the seed *adds* to the condition's own distance from clean
activations; SHADOWING compares the seeded model with the host path; PROBATIONARY judges the gain
over the pre-germination baseline and clean data (G4). A culled seed waits out its embargo (logical
time) and its slot is reset behind G5.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.core.features import SiteStats
from kasmina_edge.host.data import ConditionSplit, to_tensors
from kasmina_edge.host.model import BeatClassifier
from kasmina_edge.host.morph_config import MorphConfig, Progress
from kasmina_edge.host.seed_driver import DrivenSeed, DriverLimits, SeedDriver, SeedSpec
from kasmina_edge.host.site_observation import site_activations
from kasmina_edge.host.tamiyo.features import site_drift
from kasmina_edge.host.tamiyo.masks import Budget
from kasmina_edge.host.train import Beats, class_weights, evaluate, predict_logits

if TYPE_CHECKING:
    from kasmina_edge.host.kasmina import (
        GradientHealthInputs,
        GraftSignals,
        StabilityInputs,
        SystemImpactInputs,
    )


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


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _drift_penalty(
    clean_sites: dict[str, SiteStats] | None, site: str, weight: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A seed should bring its site's activations towards clean ones, not wander off: a small penalty on
    the batch's channel means against the host's clean statistics (G2 measures it)."""
    if clean_sites is None or weight <= 0:
        return lambda act: act.new_zeros(())
    ref_mu = torch.as_tensor(clean_sites[site].mean, dtype=torch.float32)
    ref_sd = float(clean_sites[site].std.mean()) + 1e-6
    return lambda act: weight * ((act.mean(dim=(0, 2)) - ref_mu) / ref_sd).pow(2).mean()


def _clean_site_outputs(model: BeatClassifier, clean: Beats, site: str) -> tuple[torch.Tensor, float]:
    """The host's output at ``site`` on each clean twin (before any seed), and its variance (the scale)."""
    x = torch.from_numpy(np.ascontiguousarray(clean.windows, dtype=np.float32))
    model.eval()
    with torch.no_grad():
        out = torch.cat([model.features(x[i : i + 1024])[site] for i in range(0, len(x), 1024)])
    return out, float(out.var()) + 1e-6


class ConditionRecipe:
    """How one condition seed trains, blends and is judged (the driver walks the stages)."""

    def __init__(
        self, driver: SeedDriver, split: ConditionSplit, clean_val: Beats, site: str, cfg: MorphConfig,
        result: TrialResult, clean_sites: dict[str, SiteStats] | None, say: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.d, self.split, self.clean_val, self.site, self.cfg = driver, split, clean_val, site, cfg
        self.result, self.clean_sites, self.say = result, clean_sites, say
        self.model, self.layer = driver.model, driver.model.sites[site]
        self.loss_fn = nn.CrossEntropyLoss(
            weight=class_weights(np.asarray(split.adapt.labels), n_classes=self.model.config.n_classes)
        )
        self.x, self.rr, self.y = to_tensors(split.adapt)
        # the host alone, measured before germination (the layer's reference is taken from these forwards)
        self.baseline = self.metric(split.val)
        self.clean_host = self.metric(clean_val)
        self.host_val_pred = predict_logits(self.model, split.val).argmax(1)
        self.host_val_act = site_activations(self.model, split.val)[site]
        self.test_base = evaluate(self.model, split.test).to_dict() if split.test is not None else None
        self.probe_x, self.probe_rr = self.x[:64], self.rr[:64]
        with torch.no_grad():
            self.host_probe = self.model(self.probe_x, self.probe_rr)
        self.batches: Any = iter(())
        self.captured: list[torch.Tensor] = [torch.zeros(())]
        # Feature denoising: where the adaptation beats have clean twins, the seed's site output on a
        # beat in the condition is pulled towards the host's site output on the same beat clean. A seed
        # learns to undo the condition rather than to fit the training records' labels, which carries to
        # patients it never saw (consistency training, e.g. Hendrycks et al. 2020, AugMix).
        self.clean_out: tuple[torch.Tensor, float] | None = None
        if cfg.denoise_weight > 0 and split.adapt_clean is not None:
            if len(split.adapt_clean) != len(self.y):
                raise ValueError("adapt_clean must hold the clean twin of every adaptation beat")
            self.clean_out = _clean_site_outputs(self.model, split.adapt_clean, site)

    def denoise(self, act: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.clean_out is None:
            return act.new_zeros(())
        target, scale = self.clean_out
        return self.cfg.denoise_weight * (act - target[idx]).pow(2).mean() / scale

    def metric(self, ds: Beats) -> float:
        return evaluate(self.model, ds).macro_f1_at(self.cfg.gate_min_support)

    def train(self, driver: SeedDriver, seeds: list[DrivenSeed]) -> bool:
        """TRAINING: the host's output is untouched; the seed learns from the incubator output."""
        from kasmina_edge.host.kasmina import bit_equal

        (seed,) = seeds
        opt, cfg, layer, sid = driver.opt, self.cfg, self.layer, seed.seed_id
        assert opt is not None
        self.penalty = _drift_penalty(self.clean_sites, self.site, cfg.drift_penalty)
        layer.register_forward_hook(lambda _m, _i, out: self.captured.__setitem__(0, out))
        self.say("TRAINING")
        exact = True
        per_epoch = max(1, -(-len(self.y) // cfg.batch_size))
        epochs = max(cfg.train_epochs, -(-cfg.min_train_steps // per_epoch))
        culled = lambda: driver.engine.stage(sid) in (Stage.CULLED, Stage.EMBARGOED)  # noqa: E731
        for epoch in range(epochs):
            for idx in batches(len(self.y), cfg.batch_size, driver.gen):
                opt.zero_grad(set_to_none=True)
                self.model(self.x[idx], self.rr[idx])
                inc = layer.incubator_output()
                assert inc is not None
                loss = (self.loss_fn(self.model.downstream(self.site, inc, self.rr[idx]), self.y[idx])
                        + self.penalty(inc) + self.denoise(inc, idx))
                layer.seed_backward(loss)
                if culled():  # the isolation breaker tripped
                    break
                opt.step()
                driver.clock.advance(1.0)
            if culled():
                break
            with torch.no_grad():
                exact = exact and bit_equal(self.model(self.probe_x, self.probe_rr), self.host_probe)
            layer.end_epoch()
            driver.emit({"event": "train_epoch", "seed_id": sid, "epoch": epoch + 1, "bit_exact": exact,
                         "loss": float(loss.detach())})  # fmt: skip
        self.result.bit_exact_training = exact
        return exact

    def gradient_health(self, seed: DrivenSeed) -> GradientHealthInputs:
        n_losses = len(self.layer.gradient_health_inputs(seed.seed_id).seed_losses)
        return self.layer.gradient_health_inputs(seed.seed_id, window=n_losses)

    def start_blending(self) -> None:
        self.say("BLENDING")  # the grafting strategy ramps alpha while the seed trains on the live output
        self.model.train(False)

    def blend_metric(self) -> float:
        return self.metric(self.split.val)

    def blend_signals(self, seed: DrivenSeed, metric: float) -> GraftSignals:
        from kasmina_edge.host.kasmina import GraftSignals

        grad = self.layer.gradient_health_inputs(seed.seed_id).grad_norms
        return GraftSignals(val_metric=metric, baseline_metric=self.baseline, grad_norm=grad[-1] if grad else None)

    def blend_note(self, metric: float, signals: GraftSignals) -> dict[str, Any]:
        return {"val_macro_f1_before": metric}

    def after_blend_step(self) -> None:
        """The seed trains at the new alpha, on the live output."""
        opt, cfg, d = self.d.opt, self.cfg, self.d
        assert opt is not None
        for _b in range(cfg.blend_batches):
            idx = next(self.batches, None)
            if idx is None:
                self.batches = iter(batches(len(self.y), cfg.batch_size, d.gen))
                idx = next(self.batches)
            opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(self.x[idx], self.rr[idx]), self.y[idx])
            loss = loss + self.penalty(self.captured[0]) + self.denoise(self.captured[0], idx)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            d.clock.advance(1.0)

    def stability(self, seed: DrivenSeed, measured: StabilityInputs) -> StabilityInputs:
        """With the host's clean statistics, G2's drift is what the seed adds to the condition's own."""
        if self.clean_sites is None:
            return measured
        ref = self.clean_sites[self.site]
        seeded_vs_clean = site_drift(site_activations(self.model, self.split.val)[self.site], ref)
        host_vs_clean = site_drift(self.host_val_act, ref)
        added = max(0.0, seeded_vs_clean - host_vs_clean)  # what the seed adds to the condition's own drift
        self.d.emit({"event": "drift", "seed_id": seed.seed_id, "layer_reference": measured.drift,
                     "seeded_vs_clean": seeded_vs_clean, "host_vs_clean": host_vs_clean, "added": added})  # fmt: skip
        return dataclasses.replace(measured, drift=added)

    def shadow_agreement(self) -> float:
        self.say("SHADOWING")  # full alpha, the host path computed beside it for comparison
        seeded = predict_logits(self.model, self.split.val).argmax(1)
        return float((seeded == self.host_val_pred).float().mean())

    def impact(self, seeds: list[DrivenSeed]) -> dict[str, SystemImpactInputs]:
        """G4 against the pre-germination baseline and clean data."""
        self.say("PROBATIONARY")
        r, cfg = self.result, self.cfg
        r.seed_val = self.metric(self.split.val)
        r.clean_seed = self.metric(self.clean_val)
        return {
            s.seed_id: self.layer.system_impact_inputs(
                s.seed_id, r.seed_val, global_metric=r.clean_seed, global_reference=self.clean_host,
                tolerance=cfg.global_tolerance, min_gain=cfg.min_gain,
            )  # fmt: skip
            for s in seeds
        }

    def after_probation(self, seeds: list[DrivenSeed]) -> None:
        if self.split.test is not None:  # judged as G4 left it
            self.result.test_seed = evaluate(self.model, self.split.test).to_dict()
            self.result.test_base = self.test_base


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
    controls: Any = None,
) -> TrialResult:
    """One seed from germination to FOSSILIZED or CULLED (then through embargo back to DORMANT).

    ``clean_sites``: the host's activation statistics on clean data. When given, G2's drift is
    the distance the seed *adds* between its site's activations and clean ones, beyond the
    distance the condition already put there (0 for a seed that brings them closer). The
    layer's own reference is taken at germination on the degraded signal, so it would count
    a seed that restores clean activations as drifting.

    ``controls``: an :class:`~kasmina_edge.host.intensity.IntensityControls` (lr scale per blueprint,
    activation schedule, safety overrides), handed to the driver.
    """
    from kasmina_edge.host.blueprints import get_blueprint

    t_start = time.perf_counter()
    torch.manual_seed(seed)
    limits = DriverLimits(cfg.lr, cfg.blend_steps, cfg.max_oscillation, cfg.max_drift)
    driver = SeedDriver(base, budget, limits, seed=seed, watch=[site], sink=sink, controls=controls)  # one site watched: a third of the cost
    channels, length = driver.model.config.site_shapes()[site]
    spec = get_blueprint(blueprint)
    result = TrialResult(
        condition=split.condition.name, site=site, blueprint=blueprint, blueprint_params=dict(spec.defaults),
        grafting=grafting, intensity=intensity, seed_id="", final_stage=Stage.DORMANT.name, reason="",
        param_count=spec.param_count(channels), macs=spec.macs(channels, length), baseline_val=0.0,
        history=driver.events, channels=channels, length=length,
    )  # fmt: skip

    def say_(msg: str) -> None:
        if say is not None:
            say(f"{split.condition.name} · {site} · {blueprint}: {msg}")

    recipe = ConditionRecipe(driver, split, clean_val, site, cfg, result, clean_sites, say_)
    result.baseline_val, result.clean_host = recipe.baseline, recipe.clean_host
    (grown,) = driver.germinate([SeedSpec(site, blueprint, grafting, intensity)], recipe.baseline)  # G0
    driver.run(recipe)
    result.seed_id, result.final_stage = grown.seed_id, grown.final_stage
    result.shadow_agreement = driver.shadow_agreement
    if grown.final_stage == Stage.FOSSILIZED.name:
        result.state = driver.layer(grown).seed_state_dict(grown.seed_id)
        result.record = grown.record
        result.reason = f"fossilized: gain {result.gain:+.4f} macro-F1 over the pre-germination baseline"
    else:
        result.reason = grown.reason
    result.seconds = time.perf_counter() - t_start
    driver.release_embargoes()  # a culled seed waits out its embargo; its slot is reset behind G5
    return result
