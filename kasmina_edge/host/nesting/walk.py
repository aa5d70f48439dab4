"""Training and judging seeds on a small classification task: roots through the host's SeedDriver, nested
children through the same stages and gates on the driver's model.

Both follow the same recipe. TRAINING: the seed learns at alpha 1 off the live path (a root through its
layer's incubator, a child "incubated" in its holder) while the model's live output stays the host's, bit for
bit (checked on a probe). BLENDING: alpha ramps in ``blend_steps`` steps and the seed goes on learning at the
live alpha; G2 reads the ramp, the drift of its site's output and the validation metric. SHADOWING: the seed
alone is run and torch-exported (G3). PROBATIONARY: the gain over the metric before germination (G4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina.gates import (
    GradientHealthInputs,
    InterfaceInputs,
    StabilityInputs,
    SystemImpactInputs,
)
from kasmina_edge.host.kasmina.isolation import bit_equal
from kasmina_edge.host.kasmina.telemetry import TELEMETRY_KEYS
from kasmina_edge.host.model import BeatClassifier

if TYPE_CHECKING:
    from kasmina_edge.host.kasmina import GraftSignals, KasminaLayer
    from kasmina_edge.host.nesting.hierarchy import NestedHierarchy
    from kasmina_edge.host.seed_driver import DrivenSeed, SeedDriver

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TaskData:
    """Inputs (N, 1, W), auxiliary features (N, K) and labels (N,)."""

    x: torch.Tensor
    aux: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Task:
    train: TaskData
    val: TaskData
    test: TaskData
    reference: TaskData | None = None  # what the host was trained on (per-site drift for the controller)


@dataclass(frozen=True)
class WalkSettings:
    lr: float = 1e-2
    train_steps: int = 40  # TRAINING updates
    batch_size: int = 64
    blend_steps: int = 4  # alpha 1/n, 2/n, ... 1
    blend_batches: int = 5  # updates at each alpha
    min_gain: float = 0.0  # G4: gain over the pre-germination metric needed to fossilize
    tolerance: float = 0.01  # G4: how much worse the metric may get
    max_oscillation: float = 0.05  # G2
    max_drift: float = 10.0  # G2, in standard deviations of the site's output
    probe: int = 256  # examples of the gain estimate and the isolation probe


@torch.no_grad()
def accuracy(model: nn.Module, data: TaskData) -> float:
    return float((model(data.x, data.aux).argmax(1) == data.y).float().mean())


def batches(n: int, size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Mini-batch indices forever, reshuffled each epoch."""
    while True:
        order = torch.randperm(n, generator=gen)
        yield from (order[i : i + size] for i in range(0, n, size))


class RootRecipe:
    """The :class:`~kasmina_edge.host.seed_driver.Recipe` of the seeds at sites (roots and flat seeds)."""

    def __init__(self, driver: SeedDriver, task: Task, s: WalkSettings) -> None:
        self.d, self.task, self.s = driver, task, s
        self.model = driver.model
        self.loss_fn = nn.CrossEntropyLoss()
        self.baseline = accuracy(self.model, task.val)
        self.host_pred = self.model(task.val.x, task.val.aux).argmax(1)
        self.probe = (task.train.x[: s.probe], task.train.aux[: s.probe])
        with torch.no_grad():
            self.host_probe = self.model(*self.probe)
        self.batches = batches(len(task.train), s.batch_size, driver.gen)

    def _layer(self, seed: DrivenSeed) -> KasminaLayer:
        return self.d.layer(seed)

    def train(self, driver: SeedDriver, seeds: list[DrivenSeed]) -> bool:
        opt, t = driver.opt, self.task.train
        assert opt is not None
        for _ in range(self.s.train_steps):
            idx = next(self.batches)
            opt.zero_grad(set_to_none=True)
            self.model(t.x[idx], t.aux[idx])
            for seed in driver.alive():  # each seed's loss through the rest of the network from its incubator
                layer = self._layer(seed)
                inc = layer.incubator_output()
                if inc is not None and driver.engine.stage(seed.seed_id) is Stage.TRAINING:
                    layer.seed_backward(self.loss_fn(self.model.downstream(seed.spec.site, inc, t.aux[idx]), t.y[idx]))
            opt.step()
            driver.clock.advance(1.0)
        with torch.no_grad():
            return bit_equal(self.model(*self.probe), self.host_probe)

    def gradient_health(self, seed: DrivenSeed) -> GradientHealthInputs:
        layer = self._layer(seed)
        return layer.gradient_health_inputs(seed.seed_id, window=len(layer.gradient_health_inputs(seed.seed_id).seed_losses))

    def start_blending(self) -> None:
        return None

    def blend_metric(self) -> float:
        return accuracy(self.model, self.task.val)

    def blend_signals(self, seed: DrivenSeed, metric: float) -> GraftSignals:
        from kasmina_edge.host.kasmina import GraftSignals

        return GraftSignals(val_metric=metric, baseline_metric=self.baseline)

    def blend_note(self, metric: float, signals: GraftSignals) -> dict[str, Any]:
        return {"val_accuracy_before": metric}

    def after_blend_step(self) -> None:
        live_updates(self.model, self.d.opt, self.task.train, self.batches, self.s.blend_batches, self.loss_fn)
        self.d.clock.advance(float(self.s.blend_batches))

    def stability(self, seed: DrivenSeed, measured: StabilityInputs) -> StabilityInputs:
        return measured

    def shadow_agreement(self) -> float:
        with torch.no_grad():
            seeded = self.model(self.task.val.x, self.task.val.aux).argmax(1)
        return float((seeded == self.host_pred).float().mean())

    def impact(self, seeds: list[DrivenSeed]) -> dict[str, SystemImpactInputs]:
        val = accuracy(self.model, self.task.val)
        return {
            s.seed_id: self._layer(s).system_impact_inputs(
                s.seed_id, val, tolerance=self.s.tolerance, min_gain=self.s.min_gain
            )
            for s in seeds
        }

    def after_probation(self, seeds: list[DrivenSeed]) -> None:
        return None


def live_updates(
    model: nn.Module, opt: torch.optim.Optimizer | None, data: TaskData, order: Iterator[torch.Tensor], n: int,
    loss_fn: nn.Module,
) -> None:  # fmt: skip
    """``n`` updates of whatever ``opt`` holds, on the live output."""
    assert opt is not None
    for _ in range(n):
        idx = next(order)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(data.x[idx], data.aux[idx]), data.y[idx]).backward()
        opt.step()


def site_output_drift(model: BeatClassifier, site: str, x: torch.Tensor, h: NestedHierarchy, seed_id: str) -> float:
    """How far the child moves its site's output: the largest channel-mean shift, in the site's std."""
    with torch.no_grad():
        on = model.features(x)[site]
        with h.muted(seed_id):
            off = model.features(x)[site]
    shift = (on.mean(dim=(0, 2)) - off.mean(dim=(0, 2))).abs()
    return float((shift / (off.std() + 1e-6)).max())


class ChildWalker:
    """Walks one nested child at a time from GERMINATED to FOSSILIZED (or culled by a gate)."""

    def __init__(
        self, driver: SeedDriver, site: str, h: NestedHierarchy, task: Task, s: WalkSettings, emit: Emit,
    ) -> None:  # fmt: skip
        self.d, self.site, self.h, self.task, self.s, self.emit = driver, site, h, task, s, emit
        self.model = driver.model
        self.loss_fn = nn.CrossEntropyLoss()
        self.batches = batches(len(task.train), s.batch_size, driver.gen)
        self.probe = (task.train.x[: s.probe], task.train.aux[: s.probe], task.train.y[: s.probe])

    def _params(self, seed_id: str) -> list[nn.Parameter]:
        return self.h.child(seed_id).node.own_parameters()

    def _step(self, seed_id: str, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> tuple[float, float]:
        idx = next(self.batches)
        t = self.task.train
        loss = self.loss_fn(self.model(t.x[idx], t.aux[idx]), t.y[idx])
        grads = torch.autograd.grad(loss, params)  # only this child's own weights learn
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        self.d.clock.advance(1.0)
        return float(loss.detach()), float(torch.sqrt(sum((g.pow(2).sum() for g in grads), torch.zeros(()))))

    def estimate_gain(self, seed_id: str) -> float:
        """First-order estimate of what the child would gain: the squared gradient norm of the task loss
        w.r.t. its own weights at alpha 1 (the loss decrease per unit step), on a fixed probe batch."""
        x, aux, y = self.probe
        params = self._params(seed_id)
        with self.h.incubate(seed_id):
            grads = torch.autograd.grad(self.loss_fn(self.model(x, aux), y), params)
        return float(sum(float(g.pow(2).sum()) for g in grads))

    def walk(self, seed_id: str) -> Stage:
        h, s, val = self.h, self.s, self.task.val
        child = h.child(seed_id)
        child.baseline = accuracy(self.model, val)
        h.advance(seed_id)  # GERMINATED -> TRAINING
        params = self._params(seed_id)
        opt = torch.optim.Adam(params, lr=s.lr)
        with torch.no_grad():
            host_probe = self.model(self.probe[0], self.probe[1])
        losses, norms = [], []
        with h.incubate(seed_id):
            for _ in range(s.train_steps):
                loss, norm = self._step(seed_id, opt, params)
                losses.append(loss)
                norms.append(norm)
        with torch.no_grad():
            exact = bit_equal(self.model(self.probe[0], self.probe[1]), host_probe)
        self.emit({"event": "train", "seed_id": seed_id, "steps": s.train_steps, "bit_exact": exact,
                   "loss_first": losses[0], "loss_last": losses[-1]})  # fmt: skip
        h.advance(seed_id, GradientHealthInputs(0 if exact else 1, False, losses, norms, window=len(losses)))  # G1
        if h.stage(seed_id) is not Stage.BLENDING:
            return h.stage(seed_id)
        metrics = []
        for k in range(1, s.blend_steps + 1):
            h.set_alpha(seed_id, k / s.blend_steps)
            for _ in range(s.blend_batches):
                self._step(seed_id, opt, params)
            metrics.append(accuracy(self.model, val))
        drift = site_output_drift(self.model, self.site, val.x, h, seed_id)
        stab = StabilityInputs(tuple(child.alpha_history), drift, tuple(metrics), max_drift=s.max_drift,
                               max_oscillation=s.max_oscillation)  # fmt: skip
        h.advance(seed_id, stab)  # G2
        if h.stage(seed_id) is not Stage.SHADOWING:
            return h.stage(seed_id)
        h.advance(seed_id, self.interface(seed_id))  # G3
        if h.stage(seed_id) is not Stage.PROBATIONARY:
            return h.stage(seed_id)
        metric = accuracy(self.model, val)
        child.gain = metric - child.baseline
        h.advance(seed_id, SystemImpactInputs(metric, child.baseline, tolerance=s.tolerance, min_gain=s.min_gain))  # G4
        return h.stage(seed_id)

    def interface(self, seed_id: str) -> InterfaceInputs:
        """G3: the child alone on a probe of its site's shape, torch-exported; its layer's telemetry."""
        node = self.h.child(seed_id).node
        layer = self.model.sites[self.site]
        channels, length = self.model.config.site_shapes()[self.site]
        probe = torch.randn(2, channels, length, generator=self.d.gen)
        with torch.no_grad():
            y = node(probe)
        try:
            torch.export.export(node, (probe,))
            ok, err = True, ""
        except Exception as exc:  # noqa: BLE001 - any export failure is the gate's finding
            ok, err = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        tel = layer.telemetry()  # type: ignore[operator]
        return InterfaceInputs(
            tuple(probe.shape), tuple(y.shape), str(probe.dtype), str(y.dtype), ok, err,
            tuple(k for k in TELEMETRY_KEYS if k not in tel), all(bool(torch.isfinite(v).all()) for v in tel.values()),
        )  # fmt: skip

    def ablation_gain(self, seed_id: str) -> float:
        """What the child adds now: the metric with it minus the metric with it (and its subtree) muted."""
        with_it = accuracy(self.model, self.task.val)
        with self.h.muted(seed_id):
            without = accuracy(self.model, self.task.val)
        return with_it - without


