"""Intensity control: how fast a seed learns and blends in, and when safety overrides stop it.

An :class:`IntensityConfig` is read from a TOML file (the maintained library is
``kasmina_edge/host/configs/intensity/*.toml``; :func:`library` lists it) and validated with pydantic; a bad
file fails in one line naming the file and the field. It holds:

- ``[lr]``: a learning-rate scale per blueprint (``default`` for the others), multiplied with Tamiyo's
  intensity and clamped by ``safety.max_lr_scale``;
- ``[schedule]``: the activation schedule alpha follows while BLENDING (linear, cosine or step, after
  ``warmup_steps`` grafting steps at alpha 0); the seed's grafting strategy still decides *whether* each
  step is taken, the schedule decides *where* it lands;
- ``[safety]``: overrides the lifecycle's gates know nothing about: freeze a seed (its learning rate to 0)
  or abort it (cull) when an epoch's loss spikes above ``loss_spike_factor`` × its best, or when a step's
  gradient norm exceeds ``max_grad_norm``; ``forced_cull`` culls any seed of a listed blueprint or site.

:class:`IntensityControls` applies a config to a :class:`~kasmina_edge.host.seed_driver.SeedDriver`
(``SeedDriver(..., controls=...)``, ``run_trial(..., controls=...)``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina.grafting import GraftingStrategy, GraftSignals, make_grafting

if TYPE_CHECKING:
    import torch

    from kasmina_edge.host.seed_driver import DrivenSeed, SeedDriver, SeedSpec

LIBRARY_PACKAGE = "kasmina_edge.host.configs.intensity"


class IntensityError(KasminaError):
    """A bad intensity config file, an unknown library name, or a setting the run cannot honour."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LrScales(_Strict):
    default: float = Field(default=1.0, gt=0)
    per_blueprint: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive(self) -> LrScales:
        bad = [k for k, v in self.per_blueprint.items() if not (v > 0 and math.isfinite(v))]
        if bad:
            raise ValueError(f"per_blueprint.{bad[0]} must be a positive number")
        return self


class ActivationSchedule(_Strict):
    kind: Literal["linear", "cosine", "step"] = "linear"
    warmup_steps: int = Field(default=0, ge=0)  # grafting steps at alpha 0 before the ramp starts
    ramp_steps: int | None = Field(default=None, ge=1)  # None: the run's blend_steps
    levels: int = Field(default=4, ge=1)  # step: alpha climbs in this many equal jumps

    def alpha(self, step: int, ramp_steps: int) -> float:
        """Alpha after ``step`` grafting steps; exactly 0 before the ramp and 1 at its end."""
        t = min(1.0, max(0.0, (step - self.warmup_steps) / max(1, ramp_steps)))
        if t in (0.0, 1.0):
            return t
        if self.kind == "cosine":
            return 0.5 - 0.5 * math.cos(math.pi * t)
        if self.kind == "step":
            return math.floor(t * self.levels) / self.levels
        return t


class SafetyOverrides(_Strict):
    max_lr_scale: float = Field(default=4.0, gt=0)
    loss_spike_factor: float | None = Field(default=None, gt=1)  # None: no loss check
    max_grad_norm: float | None = Field(default=None, gt=0)  # None: no gradient check
    action: Literal["freeze", "abort"] = "freeze"
    forced_cull: list[str] = Field(default_factory=list)  # blueprint names or "site:<name>"


class IntensityConfig(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    lr: LrScales = LrScales()
    schedule: ActivationSchedule = ActivationSchedule()
    safety: SafetyOverrides = SafetyOverrides()

    def lr_scale(self, blueprint: str, intensity: float = 1.0) -> float:
        """The seed's learning-rate scale: Tamiyo's intensity × the blueprint's scale, clamped by safety."""
        scale = intensity * self.lr.per_blueprint.get(blueprint, self.lr.default)
        return min(scale, self.safety.max_lr_scale)

    def forced(self, spec: SeedSpec) -> bool:
        return spec.blueprint in self.safety.forced_cull or f"site:{spec.site}" in self.safety.forced_cull


# --------------------------------------------------------------------------- files and the library


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_config(text: str, source: str) -> IntensityConfig:
    """TOML text → config; any error is one line naming ``source`` and the field."""
    try:
        body = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IntensityError(f"{source}: not TOML ({exc})") from None
    try:
        return IntensityConfig.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise IntensityError(f"{source}: {_field_path(err['loc'])}: {err['msg']}{more}") from None


def load_config(path: Path) -> IntensityConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IntensityError(f"{path}: no such intensity config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntensityError(f"{path}: not readable ({type(exc).__name__})") from None
    return parse_config(text, str(path))


def library() -> dict[str, Path]:
    """The maintained configs by name (file stem), sorted."""
    folder = resources.files(LIBRARY_PACKAGE)
    found = {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}
    return dict(sorted(found.items()))


def resolve(name_or_path: str) -> IntensityConfig:
    """A library name (``cautious``) or a path to a TOML file."""
    lib = library()
    if name_or_path in lib:
        cfg = load_config(lib[name_or_path])
        if cfg.name != name_or_path:
            raise IntensityError(f"{lib[name_or_path]}: name: {cfg.name!r} differs from the file's name")
        return cfg
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_config(Path(name_or_path))
    raise IntensityError(f"intensity config {name_or_path!r}: not in the library ({', '.join(lib)}) nor a .toml path")


# --------------------------------------------------------------------------- applying it


class ScheduledGrafting(GraftingStrategy):
    """A grafting strategy whose alpha follows an activation schedule; ``inner`` still gates each step."""

    def __init__(self, inner: GraftingStrategy, schedule: ActivationSchedule, ramp_steps: int) -> None:
        self.inner, self.schedule, self.ramp_steps = inner, schedule, ramp_steps
        self.name = inner.name  # type: ignore[misc]
        self.strategy_id = inner.strategy_id  # type: ignore[misc]
        super().__init__(steps=schedule.warmup_steps + ramp_steps, curve="linear")

    @property
    def alpha(self) -> float:
        return self.schedule.alpha(self.progress, self.ramp_steps)

    def may_advance(self, signals: GraftSignals) -> bool:
        # warm-up steps are time, not evidence: they are always taken
        return self.progress < self.schedule.warmup_steps or self.inner.may_advance(signals)


@dataclass
class SafetyEvent:
    seed_id: str
    action: str  # "freeze", "abort" or "forced_cull"
    reason: str


@dataclass
class IntensityControls:
    """What a config does to one driver's seeds: their lr scales, their grafting, the safety overrides."""

    config: IntensityConfig
    events: list[SafetyEvent] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)
    _best_loss: dict[str, float] = field(default_factory=dict)
    _pending: dict[str, str] = field(default_factory=dict)  # aborts waiting for a safe point, with reasons
    _driver: SeedDriver | None = None

    # -- called by SeedDriver.germinate ------------------------------------------------------------
    def adjust(self, spec: SeedSpec) -> SeedSpec:
        import dataclasses

        return dataclasses.replace(spec, lr_scale=self.config.lr_scale(spec.blueprint, spec.lr_scale))

    def grafting(self, spec: SeedSpec, blend_steps: int) -> GraftingStrategy:
        sched = self.config.schedule
        ramp = sched.ramp_steps or blend_steps
        if sched.warmup_steps + ramp > 3 * blend_steps:
            raise IntensityError(
                f"intensity {self.config.name}: schedule.warmup_steps + ramp_steps = {sched.warmup_steps + ramp} "
                f"exceeds the {3 * blend_steps} grafting steps BLENDING allows"
            )
        inner = make_grafting(spec.grafting, steps=ramp, **spec.graft_options)
        return ScheduledGrafting(inner, sched, ramp)

    # -- called by SeedDriver.make_optimizer -------------------------------------------------------
    def attach(self, driver: SeedDriver, opt: torch.optim.Optimizer) -> None:
        """Forced culls now; the gradient check before every optimizer step; the loss check on each epoch."""
        self._driver = driver
        for s in driver.alive():
            if self.config.forced(s.spec):
                self._act(s, "forced_cull", f"safety_override: forced cull by intensity config {self.config.name}")
        if self.config.safety.max_grad_norm is not None:
            opt.register_step_pre_hook(lambda o, _a, _k: self._check_grads(o))
        for layer in {id(driver.layer(s)): driver.layer(s) for s in driver.alive()}.values():
            self._wrap_seed_backward(layer)

    def _wrap_seed_backward(self, layer: Any) -> None:
        """An abort decided while TRAINING is carried out right after the seed's next backward, the point where
        the recipe checks for a culled seed (as after the isolation breaker): never in the middle of a step."""
        if getattr(layer, "_intensity_wrapped", False):
            return
        original = layer.seed_backward

        def seed_backward(loss: Any) -> float:
            out = original(loss)
            self._flush()
            return float(out)

        layer.seed_backward = seed_backward
        layer._intensity_wrapped = True

    def _flush(self) -> None:
        assert self._driver is not None
        for sid, reason in list(self._pending.items()):
            del self._pending[sid]
            seed = self._seed(sid)
            if seed is not None:
                self._driver.layer(seed).cull(sid, reason)

    def observe(self, event: dict[str, Any]) -> None:
        """Every driver event (``SeedDriver.emit``): an epoch's loss feeds the spike check."""
        if event.get("event") == "blend_step" and self._pending:
            self._flush()  # BLENDING: between two grafting steps is a safe point
        factor = self.config.safety.loss_spike_factor
        sid, loss = event.get("seed_id"), event.get("loss")
        if factor is None or event.get("event") != "train_epoch" or sid is None or loss is None:
            return
        best = self._best_loss.get(sid, math.inf)
        if not math.isfinite(loss) or (math.isfinite(best) and loss > factor * best):
            seed = self._seed(sid)
            if seed is not None and sid not in self.frozen and sid not in self._pending:
                self._act(seed, self.config.safety.action,
                          f"safety_override: loss {loss:.4g} > {factor:g} x best {best:.4g}")  # fmt: skip
        self._best_loss[sid] = min(best, loss) if math.isfinite(loss) else best

    # -- the checks ----------------------------------------------------------------------------------
    def _seed(self, sid: str) -> DrivenSeed | None:
        assert self._driver is not None
        return next((s for s in self._driver.alive() if s.seed_id == sid), None)

    def _check_grads(self, opt: torch.optim.Optimizer) -> None:
        import torch

        bound = self.config.safety.max_grad_norm
        assert bound is not None
        for group in opt.param_groups:
            sid = group.get("seed_id")
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if sid is None or sid in self.frozen or not grads:
                continue
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            if not math.isfinite(norm) or norm > bound:
                seed = self._seed(sid)
                if seed is not None and sid not in self._pending:
                    self._act(seed, self.config.safety.action,
                              f"safety_override: gradient norm {norm:.4g} > {bound:g}")  # fmt: skip
            if sid in self.frozen or self._seed(sid) is None:
                for p in group["params"]:
                    p.grad = None  # this step leaves a frozen (or just aborted) seed as it is

    def _act(self, seed: DrivenSeed, action: str, reason: str) -> None:
        driver = self._driver
        assert driver is not None
        self.events.append(SafetyEvent(seed.seed_id, action, reason))
        driver.emit({"event": "safety_override", "seed_id": seed.seed_id, "action": action, "reason": reason})
        if action == "abort" and driver.engine.stage(seed.seed_id) is not Stage.TRAINING:
            driver.layer(seed).cull(seed.seed_id, reason)
            return
        # freeze; an abort while TRAINING also freezes at once and culls at the next safe point
        self.frozen.add(seed.seed_id)
        if action != "freeze":
            self._pending[seed.seed_id] = reason
        if driver.opt is not None:
            for group in driver.opt.param_groups:
                if group.get("seed_id") == seed.seed_id:
                    group["lr"] = 0.0
