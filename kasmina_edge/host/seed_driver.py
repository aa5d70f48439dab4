"""The host's one lifecycle driver: a set of seeds walked from germination to FOSSILIZED or CULLED.

  DORMANT ─G0→ GERMINATED → TRAINING ─G1→ BLENDING ─G2→ SHADOWING ─G3→ PROBATIONARY ─G4→ FOSSILIZED
                 (any failed gate: CULLED with its reason → EMBARGOED → RESETTING ─G5→ DORMANT)

:class:`SeedDriver` owns what every walk needs: a frozen copy of the base registered as the host (its
weights can never be updated), one :class:`LifecycleEngine` with a logical clock (reproducible event
times), the parameter registry, the seeds' optimizer and a generator for the G3 probes. It walks the
stages in the same order for one seed (``morph``'s condition trials) or a patient's set of seeds; a
seed that fails a gate is culled alone and the others go on. What differs between them is the
*recipe* (:class:`Recipe`): how the seeds train, what the grafting strategies are fed while alpha
ramps and what is trained between two grafting steps, how G2's drift and G4's impact are measured.

The driver checks what no recipe may skip: a recipe's training that changed the host's output (it
reports it through ``train``'s result) culls every seed with ``health_isolation``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from kasmina_edge.contracts.lifecycle import EmbargoPolicy, Stage
from kasmina_edge.host.model import BeatClassifier
from kasmina_edge.host.tamiyo.masks import Budget

if TYPE_CHECKING:
    from kasmina_edge.host.kasmina import (
        GradientHealthInputs,
        GraftSignals,
        KasminaLayer,
        StabilityInputs,
        SystemImpactInputs,
    )

Sink = Callable[[dict[str, Any]], None]
ISOLATION_REASON = "health_isolation: output changed during TRAINING"
# the stages a seed walks through while the driver still has work for it
LIVE_OR_TRAINING = frozenset(
    {Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED}
)


class LogicalClock:
    """Seconds of morph time: advanced by the recipe's steps, so event times are reproducible."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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


@dataclass(frozen=True)
class SeedSpec:
    """One seed to germinate: where, what, how it blends and how fast it learns."""

    site: str
    blueprint: str
    grafting: str
    lr_scale: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)  # the blueprint's (empty: its defaults)
    graft_options: dict[str, float] = field(default_factory=dict)  # the grafting strategy's


@dataclass(frozen=True)
class DriverLimits:
    """The settings the walk itself reads (the recipes have their own)."""

    lr: float  # the seeds' base learning rate (each seed's lr_scale multiplies it)
    blend_steps: int  # grafting steps from alpha 0 to 1; BLENDING stops after three times as many
    max_oscillation: float  # G2
    max_drift: float  # G2


@dataclass
class DrivenSeed:
    """A seed the driver walks, and where it ended."""

    spec: SeedSpec
    seed_id: str
    channels: int
    length: int
    final_stage: str = Stage.DORMANT.name
    reason: str = ""  # G0's refusal or the cull reason ("" for a seed that fossilized)
    record: dict[str, Any] | None = None  # KasminaLayer.seed_record() of a fossilized seed
    history: list[dict[str, Any]] = field(default_factory=list)  # this seed's events


class Recipe(Protocol):
    """What a caller of the driver decides; every method is called by :meth:`SeedDriver.run` in stage order."""

    def train(self, driver: SeedDriver, seeds: list[DrivenSeed]) -> bool:
        """TRAINING: update the seeds with ``driver.opt``; return whether the host's output stayed bit for bit."""
        ...

    def gradient_health(self, seed: DrivenSeed) -> GradientHealthInputs:
        """G1's inputs for a seed that trained."""
        ...

    def start_blending(self) -> None:
        """Once, before the first grafting step."""
        ...

    def blend_metric(self) -> float:
        """The metric at the current alphas, measured once per grafting step."""
        ...

    def blend_signals(self, seed: DrivenSeed, metric: float) -> GraftSignals:
        """What the seed's grafting strategy reads this step."""
        ...

    def blend_note(self, metric: float, signals: GraftSignals) -> dict[str, Any]:
        """The recipe's fields of a ``blend_step`` event."""
        ...

    def after_blend_step(self) -> None:
        """Between two grafting steps (updates at the new alpha, the clock)."""
        ...

    def stability(self, seed: DrivenSeed, measured: StabilityInputs) -> StabilityInputs:
        """G2's inputs: the layer's measurement, adjusted by the recipe (its own drift)."""
        ...

    def shadow_agreement(self) -> float:
        """SHADOWING: how often the seeded model agrees with the host path."""
        ...

    def impact(self, seeds: list[DrivenSeed]) -> dict[str, SystemImpactInputs]:
        """G4's inputs for the seeds that reached PROBATIONARY, by seed id."""
        ...

    def after_probation(self, seeds: list[DrivenSeed]) -> None:
        """After G4, before anything is released (the model still holds the seeds as judged)."""
        ...


class SeedDriver:
    """One engine, clock, registry and model; the seeds of :meth:`germinate`, walked by :meth:`run`."""

    def __init__(
        self,
        base: BeatClassifier,
        budget: Budget,
        limits: DriverLimits,
        *,
        seed: int,
        watch: Sequence[str],
        sink: Sink | None = None,
        controls: Any = None,
    ) -> None:
        from kasmina_edge.host.kasmina import LifecycleEngine, ParameterRegistry

        self.limits = limits
        self.controls = controls  # an IntensityControls (host.intensity): lr scales, schedule, safety overrides
        self.gen = torch.Generator().manual_seed(seed)  # the recipe's batch orders and the G3 probes
        self.clock = LogicalClock()
        self.embargo = EmbargoPolicy()
        self.events: list[dict[str, Any]] = []
        self._sink = sink
        self.engine = LifecycleEngine(clock=self.clock, embargo=self.embargo, sink=self.emit, keep_events=False)
        self.registry = ParameterRegistry()
        self.model = prepare_host(base, budget, self.engine, self.registry)
        for name, layer in self.model.sites.items():
            layer.telemetry_enabled = name in watch  # type: ignore[assignment]  # only the seeds' sites are watched
        self.seeds: list[DrivenSeed] = []
        self.opt: torch.optim.Optimizer | None = None
        self.bit_exact: bool | None = None  # the host's output unchanged through TRAINING
        self.shadow_agreement: float | None = None

    # -- bookkeeping ---------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Every lifecycle, gate and recipe event goes through here (kept, and handed to the sink)."""
        self.events.append(event)
        if self.controls is not None:
            self.controls.observe(event)
        if self._sink is not None:
            self._sink(event)

    def layer(self, seed: DrivenSeed) -> KasminaLayer:
        return self.model.sites[seed.spec.site]  # type: ignore[return-value]

    def alive(self) -> list[DrivenSeed]:
        """The seeds still in the walk (germinated and neither culled nor refused)."""
        return [
            s for s in self.seeds if self.engine.knows(s.seed_id) and self.engine.stage(s.seed_id) in LIVE_OR_TRAINING
        ]

    # -- the walk --------------------------------------------------------------------------------
    def germinate(self, specs: Sequence[SeedSpec], baseline: float) -> list[DrivenSeed]:
        """G0 for each spec, then GERMINATED → TRAINING with ``baseline`` as the pre-germination metric
        (G4's reference). A refused seed stays DORMANT with G0's reason; the others are not affected."""
        from kasmina_edge.host.kasmina import GerminationRejected, make_grafting

        shapes = self.model.config.site_shapes()
        for spec in specs:
            spec = self.controls.adjust(spec) if self.controls is not None else spec
            layer = self.model.sites[spec.site]
            channels, length = shapes[spec.site]
            seed = DrivenSeed(spec, f"site{layer.site}/all", channels, length)
            self.seeds.append(seed)
            try:
                graft = (self.controls.grafting(spec, self.limits.blend_steps) if self.controls is not None
                         else make_grafting(spec.grafting, steps=self.limits.blend_steps, **spec.graft_options))
                seed.seed_id = layer.germinate(
                    None, spec.blueprint, grafting=graft, lr_scale=spec.lr_scale, **spec.params
                )  # G0
            except GerminationRejected as exc:
                seed.reason = f"gate_G0_failed: {str(exc).split(': ', 2)[-1]}"
                continue
            layer.set_baseline(seed.seed_id, baseline)
            layer.advance(seed.seed_id)  # GERMINATED -> TRAINING (no gate)
        return self.seeds

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the growing seeds' parameters (each at its lr scale), guarded: an update that would
        touch the host, or a seed no longer in the walk, is refused."""
        sids = [s.seed_id for s in self.alive()]
        self.opt = torch.optim.Adam(self.registry.optimizer_param_groups(self.limits.lr, sids))
        self.registry.guard(self.opt, active=lambda: [s.seed_id for s in self.alive()])
        if self.controls is not None:
            self.controls.attach(self, self.opt)
        return self.opt

    def run(self, recipe: Recipe) -> None:
        """TRAINING (G1), BLENDING (G2), SHADOWING (G3), PROBATIONARY (G4) for the germinated seeds;
        stops early once none is left. Then :meth:`finish`."""
        for stage in (self._train, self._blend, self._shadow, self._probation):
            if not self.alive():
                break
            stage(recipe)
        self.finish()

    def _train(self, recipe: Recipe) -> None:
        growing = self.alive()
        self.make_optimizer()
        self.bit_exact = recipe.train(self, growing)
        for s in self.alive():  # a seed whose breaker tripped while training is culled already
            if not self.bit_exact:
                self.layer(s).cull(s.seed_id, ISOLATION_REASON)
                continue
            self.layer(s).advance(s.seed_id, recipe.gradient_health(s))  # G1

    def _blend(self, recipe: Recipe) -> None:
        recipe.start_blending()
        for _ in range(3 * self.limits.blend_steps):
            # each strategy sees the metric at the current alpha and steps; the recipe then works at the new one
            metric = recipe.blend_metric()
            ramped = True
            for s in self.alive():
                signals = recipe.blend_signals(s, metric)
                alpha = self.layer(s).step_alpha(s.seed_id, signals)
                self.emit({"event": "blend_step", "seed_id": s.seed_id, "alpha": alpha,
                           **recipe.blend_note(metric, signals)})  # fmt: skip
                ramped = ramped and alpha >= 1.0
            recipe.after_blend_step()
            if ramped:
                break
        for s in self.alive():
            layer = self.layer(s)
            layer.end_epoch()
            measured = layer.stability_inputs(
                s.seed_id, max_oscillation=self.limits.max_oscillation, max_drift=self.limits.max_drift
            )
            layer.advance(s.seed_id, recipe.stability(s, measured))  # G2: a seed that fails it is culled alone

    def _shadow(self, recipe: Recipe) -> None:
        self.shadow_agreement = recipe.shadow_agreement()
        for s in self.alive():
            self.emit({"event": "shadow", "seed_id": s.seed_id, "agreement_with_host": self.shadow_agreement})
            probe = torch.randn(2, s.channels, s.length, generator=self.gen)
            self.layer(s).advance(s.seed_id, self.layer(s).interface_inputs(s.seed_id, probe=probe))  # G3

    def _probation(self, recipe: Recipe) -> None:
        survivors = self.alive()
        impact = recipe.impact(survivors)
        for s in survivors:
            self.layer(s).advance(s.seed_id, impact[s.seed_id])  # G4
        recipe.after_probation(survivors)
        for s in survivors:
            if self.engine.stage(s.seed_id) is Stage.FOSSILIZED:
                s.record = self.layer(s).seed_record(s.seed_id)

    # -- the end ---------------------------------------------------------------------------------
    def finish(self) -> None:
        """Each seed's final stage (CULLED for one culled or in its embargo), reason and own events."""
        for s in self.seeds:
            if not self.engine.knows(s.seed_id):
                continue
            stage = self.engine.stage(s.seed_id)
            s.final_stage = Stage.CULLED.name if stage in (Stage.CULLED, Stage.EMBARGOED) else stage.name
            s.reason = s.reason or self.engine.lifecycle(s.seed_id).cull_reason or ""
            s.history = [e for e in self.events if e.get("seed_id") == s.seed_id]

    def release_embargoes(self) -> None:
        """Wait out the culled seeds' embargoes (logical time) and reset their slots behind G5."""
        culled = [s for s in self.seeds if s.final_stage == Stage.CULLED.name and s.reason]
        if culled:
            self.clock.advance(max(self.embargo.duration(s.reason) for s in culled) + 1.0)
            self.engine.tick()
