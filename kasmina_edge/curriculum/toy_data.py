"""Toy 2-D sets for curriculum stages 0-1: Gaussian clusters, two moons, two spirals, their shifts, and
the lift that turns a point into the window the ECG beat classifier reads.

The lift: a point p becomes ``W`` samples ``cos(w_t · p + b_t)`` with fixed random frequencies ``w_t``
and phases ``b_t`` (random Fourier features, Rahimi & Recht 2007). Why this lift: the classes of all
three sets (spirals included) become close to linearly separable in it, so the small four-site CNN
fits them; the lift is fixed (a "sensor" with its own seed, never trained), so a shift of the points
reaches the network as a change of its input signal, as a new noise or patient does in ECG. The point
is deliberately *not* also passed as auxiliary features (K = 0): the head reads them directly, so a
shift would reach the logits past every seed site, where no seed can correct it.

Shifts (severity ``s`` in [0, 1] scales each, so a stream can drift gradually):
- ``drift_points``: the whole cloud rotated by ``s·angle`` about the origin and moved by ``s·offset``
  (Gaussian clusters whose centres drift);
- ``noisy_windows``: Gaussian sensor noise of standard deviation ``s·sigma`` on the lifted samples
  (moons and spirals read through a noisy sensor).
Every shifted sample keeps its clean twin (the same point, unshifted), which the seeds' feature
denoising pulls towards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kasmina_edge.contracts.optional import require
from kasmina_edge.curriculum.grow import ShiftTask, TaskData

WINDOW = 32  # samples per lifted point (divisible by 2^4: four strided blocks)
LIFT_SEED = 20261207  # the sensor's fixed frequencies: the same in every run and every stage


@dataclass(frozen=True)
class Points:
    xy: np.ndarray  # (n, 2) float64
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Lift:
    """The fixed random Fourier lift of a 2-D point to a ``W``-sample window."""

    freqs: np.ndarray  # (W, 2)
    phases: np.ndarray  # (W,)

    @classmethod
    def make(cls, window: int = WINDOW, scale: float = 1.0, seed: int = LIFT_SEED) -> Lift:
        """``scale``: the length over which the features decorrelate (in the data's units)."""
        rng = np.random.default_rng(seed)
        return cls(rng.normal(0.0, 1.0 / scale, (window, 2)), rng.uniform(0.0, 2 * np.pi, window))

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """(n, 2) points -> (n, 1, W) float32 windows."""
        return np.cos(xy @ self.freqs.T + self.phases)[:, None, :].astype(np.float32)


# -- the sets ----------------------------------------------------------------------------------------------
CLUSTER_CENTRES = np.array([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]])


def gaussian_clusters(n: int, seed: int, std: float = 0.9) -> Points:
    """Four Gaussian clusters on a square (scikit-learn's make_blobs)."""
    datasets = require("sklearn.datasets", "the curriculum's toy stages")
    xy, y = datasets.make_blobs(n_samples=n, centers=CLUSTER_CENTRES, cluster_std=std, random_state=seed)
    return Points(np.asarray(xy, dtype=np.float64), np.asarray(y, dtype=np.int64))


def two_moons(n: int, seed: int, noise: float = 0.12) -> Points:
    """scikit-learn's make_moons, centred on the origin and scaled to about the spirals' size."""
    datasets = require("sklearn.datasets", "the curriculum's toy stages")
    xy, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    return Points((np.asarray(xy) - [0.5, 0.25]) * 2.0, np.asarray(y, dtype=np.int64))


def two_spirals(n: int, seed: int, turns: float = 1.25, noise: float = 0.08) -> Points:
    """Two interleaved spirals (class 1 is class 0 turned by half a turn), radius up to 2.5."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0.02, 1.0, n))  # uniform along the area, not crowded at the centre
    angle = 2 * np.pi * turns * t + np.pi * y
    xy = 2.5 * t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return Points(xy + rng.normal(0.0, noise, xy.shape), y.astype(np.int64))


def moons_and_spirals(n: int, seed: int) -> Points:
    """One 4-class plane: the moons on the left (classes 0, 1), the spirals on the right (classes 2, 3)."""
    moons, spirals = two_moons(n // 2, seed), two_spirals(n - n // 2, seed + 1)
    xy = np.concatenate([moons.xy + [-3.0, 0.0], spirals.xy + [3.0, 0.0]])
    labels = np.concatenate([moons.labels, spirals.labels + 2])
    order = np.random.default_rng(seed + 2).permutation(len(labels))
    return Points(xy[order], labels[order])


# -- the shifts --------------------------------------------------------------------------------------------
def drift_points(xy: np.ndarray, severity: float | np.ndarray, angle: float, offset: tuple[float, float]) -> np.ndarray:
    """Rotate by ``severity·angle`` (radians) about the origin, then move by ``severity·offset``.
    ``severity`` may be one value or one per point (a gradually drifting stream)."""
    s = np.broadcast_to(np.asarray(severity, dtype=np.float64), (len(xy),))
    c, si = np.cos(s * angle), np.sin(s * angle)
    x, y = xy[:, 0], xy[:, 1]
    rotated = np.stack([c * x - si * y, si * x + c * y], axis=1)
    return rotated + s[:, None] * np.asarray(offset, dtype=np.float64)


def noisy_windows(windows: np.ndarray, severity: float | np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian sensor noise of standard deviation ``severity·sigma`` on every sample of each window."""
    s = np.broadcast_to(np.asarray(severity, dtype=np.float64), (len(windows),))
    noise = np.random.default_rng(seed).normal(0.0, 1.0, windows.shape) * (s * sigma)[:, None, None]
    return (windows + noise).astype(np.float32)


@dataclass(frozen=True)
class ToyShift:
    """One shift of a toy set, at full severity; ``apply`` works at any severity (per point or not)."""

    kind: str  # "drift" | "noise"
    angle: float = 0.0  # drift: radians at full severity
    offset: tuple[float, float] = (0.0, 0.0)  # drift: translation at full severity
    sigma: float = 0.0  # noise: standard deviation at full severity

    @property
    def name(self) -> str:
        if self.kind == "drift":
            return f"centre_drift_{np.degrees(self.angle):.0f}deg_{np.hypot(*self.offset):.1f}"
        return f"sensor_noise_{self.sigma:.2f}"

    def apply(self, pts: Points, lift: Lift, severity: float | np.ndarray, seed: int) -> np.ndarray:
        """The shifted windows of ``pts``."""
        if self.kind == "drift":
            return lift(drift_points(pts.xy, severity, self.angle, self.offset))
        return noisy_windows(lift(pts.xy), severity, self.sigma, seed)


# -- a stage's task ----------------------------------------------------------------------------------------
def _data(windows: np.ndarray, labels: np.ndarray) -> TaskData:
    return TaskData(windows, np.zeros((len(labels), 0), np.float32), labels)


@dataclass(frozen=True)
class ToySizes:
    train: int = 2000
    val: int = 600
    adapt: int = 600
    shift_val: int = 600
    shift_test: int = 1000
    clean_test: int = 1000
    replay: float = 0.5  # clean samples mixed into ``adapt``, as a fraction of it (their own clean twins)


Sampler = Callable[[int, int], Points]  # (n, seed) -> points


def toy_task(
    sample: Sampler, n_classes: int, shift: ToyShift, lift: Lift, sizes: ToySizes, seed: int
) -> ShiftTask:
    """Every split drawn independently from ``sample(n, seed)``; the shifted splits at full severity.

    ``adapt`` is the shifted adaptation set plus ``replay`` clean samples (each its own clean twin), so
    a seed learns to undo the shift without moving clean inputs (G4 checks clean data).
    """
    parts = {name: sample(n, seed * 1000 + i) for i, (name, n) in enumerate(
        [("train", sizes.train), ("val", sizes.val), ("adapt", sizes.adapt), ("shift_val", sizes.shift_val),
         ("shift_test", sizes.shift_test), ("clean_test", sizes.clean_test),
         ("replay", int(sizes.replay * sizes.adapt))])}  # fmt: skip
    clean = {k: _data(lift(p.xy), p.labels) for k, p in parts.items()}
    shifted = {k: _data(shift.apply(parts[k], lift, 1.0, seed * 1000 + 50 + i), parts[k].labels)
               for i, k in enumerate(("adapt", "shift_val", "shift_test"))}  # fmt: skip
    rep = clean["replay"]
    labels = np.concatenate([shifted["adapt"].labels, rep.labels])
    adapt = _data(np.concatenate([shifted["adapt"].windows, rep.windows]), labels)
    adapt_clean = _data(np.concatenate([clean["adapt"].windows, rep.windows]), labels)
    return ShiftTask(
        name=shift.name, n_classes=n_classes, train=clean["train"], val=clean["val"], adapt=adapt,
        shift_val=shifted["shift_val"], shift_test=shifted["shift_test"], clean_test=clean["clean_test"],
        adapt_clean=adapt_clean,
    )  # fmt: skip


def purity(pred: np.ndarray, labels: np.ndarray) -> float:
    """Cluster purity of the model's predicted groups: each predicted group counts its most common true
    label; the sum over groups divided by the samples (1.0: every group holds one true label)."""
    pred, labels = np.asarray(pred, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if len(pred) == 0:
        return float("nan")
    table = np.zeros((int(pred.max()) + 1, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(table, (pred, labels), 1)
    return float(table.max(axis=1).sum() / len(pred))
