"""A drift early warning: two-sample Kolmogorov-Smirnov distances on a sliding window of unlabelled inputs.

The features watched: every sample of the input window and every channel mean of every seed site (the
per-site activations the device already summarises for Tamiyo). The statistic over the last ``window``
samples is the largest KS distance of any feature from its clean reference distribution (univariate
KS tests over inputs and representations, as in Rabanser et al. 2019, "Failing loudly"). The threshold
is set on clean validation data only: the largest statistic over many random clean windows of the
same size, times a margin, so it has no nominal p-value to trust across many steps and features. The
warning reads no labels (which the device does not have), so it can fire before the accuracy falls.

Why not Tamiyo's per-site mean drift alone (:func:`kasmina_edge.host.tamiyo.features.site_drift`):
zero-mean sensor noise barely moves channel *means*; in a first stage-1 run it fired only at severity 0.92
of the ramped stream. A KS distance sees the spread as well as the location.

:func:`evaluate_warning` runs it on two streams: a clean one (every alarm is a false alarm) and one
whose shift severity ramps from 0 to 1; it reports the step the warning fires, the step the base's
metric over the same sliding window first falls below the target, and the lead between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from kasmina_edge.contracts.optional import require
from kasmina_edge.host.model import BeatClassifier

Metric = Callable[[np.ndarray, np.ndarray], float]  # (pred, labels) -> higher is better


@torch.no_grad()
def watched_features(model: BeatClassifier, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, W + sum of site channels) features per sample, and the model's predicted class, in one pass."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    acts = model.features(x)
    pred = model.head(acts[list(acts)[-1]], torch.zeros(len(x), model.config.n_rr)).argmax(1).numpy()
    feats = [x.flatten(1)] + [a.mean(dim=2) for a in acts.values()]
    return torch.cat(feats, dim=1).numpy().astype(np.float64), pred


def ks_statistic(reference: np.ndarray, window: np.ndarray) -> float:
    """The largest two-sample KS distance of any feature (column) between a window and the reference."""
    stats = require("scipy.stats", "the drift early warning")
    return float(np.max(stats.ks_2samp(reference, window, axis=0).statistic))


@dataclass
class DriftDetector:
    reference: np.ndarray  # (n_ref, F) clean features
    threshold: float
    window: int  # samples per sliding window

    def statistic(self, feats: np.ndarray) -> float:
        return ks_statistic(self.reference, feats)


def calibrate(
    model: BeatClassifier, reference_windows: np.ndarray, clean_windows: np.ndarray, *, window: int = 200,
    draws: int = 100, margin: float = 1.5, seed: int = 0,
) -> DriftDetector:  # fmt: skip
    """The reference: clean training inputs; the threshold: random windows of clean validation inputs (held
    out from the reference, so the threshold sees how far a fresh clean window lands from it)."""
    ref, _ = watched_features(model, reference_windows)
    held, _ = watched_features(model, clean_windows)
    rng = np.random.default_rng(seed)
    size = min(window, len(held) // 2)  # windows of a small validation set must still differ from draw to draw
    peak = max(ks_statistic(ref, held[rng.choice(len(held), size=size, replace=False)]) for _ in range(draws))
    return DriftDetector(ref, margin * peak, window)


@dataclass
class WarningResult:
    steps: int
    step_samples: int
    fire_step: int | None  # first step the warning is on (ramped stream)
    drop_step: int | None  # first step the base's windowed metric is below the target
    lead_steps: int | None  # drop_step - fire_step (positive: warned ahead); None when either never happened
    false_alarms: int  # steps with the warning on, clean stream
    fire_severity: float | None
    drop_severity: float | None
    statistic: list[float]  # the ramped stream's statistic over its threshold, per step
    metric: list[float]  # the base's windowed metric per step (ramped stream)

    @property
    def warned_ahead(self) -> bool:
        return self.fire_step is not None and (self.drop_step is None or self.fire_step < self.drop_step)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warned_ahead"] = self.warned_ahead
        return d


def _walk(
    det: DriftDetector, feats: np.ndarray, pred: np.ndarray, labels: np.ndarray, step: int, metric: Metric
) -> tuple[list[float], list[float]]:
    """Per step: the statistic over its threshold and the metric, both over the trailing window."""
    ratio, score = [], []
    for end in range(step, len(labels) + 1, step):
        lo = max(0, end - det.window)
        ratio.append(det.statistic(feats[lo:end]) / det.threshold)
        score.append(metric(pred[lo:end], labels[lo:end]))
    return ratio, score


def evaluate_warning(
    model: BeatClassifier, det: DriftDetector, clean: tuple[np.ndarray, np.ndarray],
    ramped: tuple[np.ndarray, np.ndarray, np.ndarray], *, step: int, target: float, metric: Metric,
) -> WarningResult:  # fmt: skip
    """``clean``: (windows, labels) in stream order; ``ramped``: (windows, labels, severity per sample)."""
    c_feats, c_pred = watched_features(model, clean[0])
    c_ratio, _ = _walk(det, c_feats, c_pred, clean[1], step, metric)
    r_feats, r_pred = watched_features(model, ramped[0])
    ratio, score = _walk(det, r_feats, r_pred, ramped[1], step, metric)
    # a window is full only from step window/step on: before it, fewer samples make the statistic noisier
    first = max(0, -(-det.window // step) - 1)
    fire = next((i for i, r in enumerate(ratio) if i >= first and r > 1.0), None)
    drop = next((i for i, m in enumerate(score) if i >= first and m < target), None)
    sev = ramped[2]
    at = lambda i: None if i is None else float(sev[min(len(sev) - 1, (i + 1) * step - 1)])  # noqa: E731
    return WarningResult(
        steps=len(ratio), step_samples=step, fire_step=fire, drop_step=drop,
        lead_steps=None if fire is None or drop is None else drop - fire,
        false_alarms=sum(1 for i, r in enumerate(c_ratio) if i >= first and r > 1.0),
        fire_severity=at(fire), drop_severity=at(drop), statistic=ratio, metric=score,
    )  # fmt: skip
