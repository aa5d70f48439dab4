"""The data pruning is judged on: a fixed set of inputs and labels, predicted in batches without side effects.

A KasminaLayer records telemetry into its buffers on every forward; measuring a model must not change it,
or "the weights are what they were" could not be checked bit for bit after a refused prune. Every forward
here runs under :func:`quiet` (telemetry off, eval mode, no gradient), restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.kasmina.layer import KasminaLayer
from kasmina_edge.host.train import class_metrics

METRICS = ("accuracy", "macro_f1")


@contextmanager
def quiet(model: nn.Module) -> Iterator[None]:
    """Eval mode, no gradient, no KasminaLayer telemetry; everything restored on the way out."""
    layers = [m for m in model.modules() if isinstance(m, KasminaLayer)]
    telemetry = [layer.telemetry_enabled for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.telemetry_enabled = False
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for layer, on in zip(layers, telemetry, strict=True):
            layer.telemetry_enabled = on
        model.train(was_training)


@dataclass(frozen=True)
class Validation:
    """Inputs (what ``model(*inputs)`` takes, batch first), labels, and the metric a gate compares."""

    inputs: tuple[torch.Tensor, ...]
    labels: torch.Tensor
    n_classes: int
    metric: str = "accuracy"
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise KasminaError(f"Validation.metric: {self.metric!r}, choose one of {', '.join(METRICS)}")
        n = int(self.labels.shape[0])
        if n == 0 or any(int(t.shape[0]) != n for t in self.inputs):
            raise KasminaError("Validation: every input needs one row per label, and at least one label")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(0, len(self), self.batch_size):
            yield tuple(t[i : i + self.batch_size] for t in self.inputs)

    def logits(self, model: nn.Module) -> torch.Tensor:
        with quiet(model):
            return torch.cat([model(*batch) for batch in self.batches()])

    def predict(self, model: nn.Module) -> np.ndarray:
        return self.logits(model).argmax(dim=1).numpy().astype(np.int64)

    def score(self, pred: np.ndarray) -> float:
        m = class_metrics(self.labels.numpy(), pred, n_classes=self.n_classes)
        return m.accuracy if self.metric == "accuracy" else m.macro_f1

    def evaluate(self, model: nn.Module) -> float:
        return self.score(self.predict(model))

    def nll(self, model: nn.Module) -> float:
        """Mean negative log-likelihood of the true class: a smooth tie-break where the metric does not move."""
        return self.measure(model)[1]

    def measure(self, model: nn.Module) -> tuple[float, float]:
        """(metric, mean negative log-likelihood of the true class) from one pass over the data."""
        logits = self.logits(model)
        logp = torch.log_softmax(logits, dim=1)
        nll = float(-logp.gather(1, self.labels.view(-1, 1).long()).mean())
        return self.score(logits.argmax(dim=1).numpy().astype(np.int64)), nll
