"""FGSM examples against a classifier, two detectors of them, and how a detector is scored.

FGSM (Goodfellow et al. 2015): one step of size ``eps`` along the sign of the loss gradient, clipped to
the pixel range. The detectors score an input (higher: more suspicious):

- *confidence*: one minus the top softmax probability (the baseline every detector must beat);
- *consistency*: how much the prediction falls apart under small Gaussian noise. An FGSM example sits
  just across a decision boundary the step was aimed at, so a little noise often moves it back, while a
  clean input sits inside its class (the idea of "feature squeezing" and of randomized-smoothing tests);
- *squeezing*: how far the prediction moves when the input is squeezed (fewer grey levels, a median
  filter), feature squeezing (Xu et al. 2018);
- *feature distance*: how far the model's site activations (channel means) lie from the clean data's,
  in clean standard deviations (a diagonal Mahalanobis distance, Lee et al. 2018 without the classes).

A detector's threshold is set on clean *validation* scores at a fixed false-alarm rate and then applied
to held-out inputs: the detection rate at that rate and the AUROC are what a stage reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError


def _rr(x: torch.Tensor, n_aux: int) -> torch.Tensor:
    return x.new_zeros((len(x), n_aux))


def fgsm(model: nn.Module, x: np.ndarray, labels: np.ndarray, eps: float, n_aux: int = 0) -> np.ndarray:
    """Adversarial windows (same shape as ``x``, in [0, 1]) one signed-gradient step away."""
    if eps <= 0:
        raise KasminaError(f"fgsm: eps must be > 0, got {eps}")
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xt, _rr(xt, n_aux)), torch.from_numpy(labels).long())
    (grad,) = torch.autograd.grad(loss, xt)
    return (xt.detach() + eps * grad.sign()).clamp(0.0, 1.0).numpy()


@torch.no_grad()
def mean_loss(model: nn.Module, x: np.ndarray, labels: np.ndarray, n_aux: int = 0) -> float:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return float(nn.functional.cross_entropy(model(xt, _rr(xt, n_aux)), torch.from_numpy(labels).long()))


@torch.no_grad()
def consistency_scores(
    model: nn.Module, x: np.ndarray, *, sigma: float = 0.05, draws: int = 16, seed: int = 0, n_aux: int = 0
) -> np.ndarray:
    """1 − the mean probability, under ``draws`` noisy copies, of the class predicted on the input itself."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    rr = _rr(xt, n_aux)
    pred = model(xt, rr).argmax(1)
    gen = torch.Generator().manual_seed(seed)
    kept = torch.zeros(len(xt))
    for _ in range(draws):
        noisy = xt + sigma * torch.randn(xt.shape, generator=gen)
        kept += torch.softmax(model(noisy, rr), 1).gather(1, pred[:, None])[:, 0]
    return (1.0 - kept / draws).numpy()


@torch.no_grad()
def confidence_scores(model: nn.Module, x: np.ndarray, n_aux: int = 0) -> np.ndarray:
    """1 − the top softmax probability (Hendrycks & Gimpel 2017's baseline): one FGSM step tends to land
    just past a boundary, where the model is unsure."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return (1.0 - torch.softmax(model(xt, _rr(xt, n_aux)), 1).amax(1)).numpy()


@torch.no_grad()
def squeeze_scores(
    model: nn.Module, x: np.ndarray, squeezers: list[Callable[[np.ndarray], np.ndarray]], n_aux: int = 0
) -> np.ndarray:
    """Feature squeezing (Xu et al. 2018): the largest L1 distance between the prediction on the input and
    on a squeezed copy (fewer grey levels, a median filter). A clean input's prediction barely moves; an
    FGSM perturbation lives in exactly the fine detail a squeezer removes."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    rr = _rr(xt, n_aux)
    p = torch.softmax(model(xt, rr), 1)
    dists = []
    for squeeze in squeezers:
        xs = torch.from_numpy(np.ascontiguousarray(squeeze(x), dtype=np.float32))
        dists.append((torch.softmax(model(xs, rr), 1) - p).abs().sum(1))
    return torch.stack(dists).amax(0).numpy()


def bit_depth(levels: int) -> Callable[[np.ndarray], np.ndarray]:
    """Round pixel values in [0, 1] to ``levels`` grey levels."""
    return lambda x: np.round(x * (levels - 1)) / (levels - 1)


@dataclass
class FeatureReference:
    """Clean statistics of the pooled site activations (per site, per channel)."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]


@torch.no_grad()
def _pooled(model: nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    model.eval()
    feats = model.features(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))  # type: ignore[operator]
    return {k: v.mean(dim=2).numpy() for k, v in feats.items()}


def feature_reference(model: nn.Module, clean: np.ndarray) -> FeatureReference:
    pooled = _pooled(model, clean)
    return FeatureReference({k: v.mean(0) for k, v in pooled.items()}, {k: v.std(0) + 1e-3 for k, v in pooled.items()})


def feature_distance_scores(model: nn.Module, x: np.ndarray, ref: FeatureReference) -> np.ndarray:
    """The mean, over sites, of the RMS standardised distance of the pooled activations from clean."""
    pooled = _pooled(model, x)
    per_site = [np.sqrt((((pooled[k] - ref.mean[k]) / ref.std[k]) ** 2).mean(1)) for k in ref.mean]
    return np.mean(per_site, axis=0)


def auroc(clean: np.ndarray, suspect: np.ndarray) -> float:
    """The probability that a suspect input scores above a clean one (ties count half): the Mann-Whitney
    form of the ROC area (sklearn's roc_auc_score gives the same; this needs no extra)."""
    if not len(clean) or not len(suspect):
        raise KasminaError("auroc: needs at least one clean and one suspect score")
    both = np.concatenate([clean, suspect])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # average ranks over ties
        tie = both == v
        ranks[tie] = ranks[tie].mean()
    r_suspect = ranks[len(clean) :].sum()
    return float((r_suspect - len(suspect) * (len(suspect) + 1) / 2) / (len(clean) * len(suspect)))


def threshold_at(clean_val: np.ndarray, false_alarm: float) -> float:
    """The score above which at most ``false_alarm`` of the clean validation inputs fall."""
    if not 0.0 < false_alarm < 1.0:
        raise KasminaError(f"false-alarm rate must be in (0, 1), got {false_alarm}")
    return float(np.quantile(clean_val, 1.0 - false_alarm, method="higher"))


@dataclass
class DetectionScore:
    detector: str
    auroc: float
    threshold: float  # set on clean validation scores
    detection_rate: float  # of the held-out adversarial inputs, at that threshold
    detection_rate_fooling: float  # of those among them that changed the model's prediction
    false_alarm: float  # measured on the held-out clean inputs, at that threshold
    target_false_alarm: float


def score_detector(
    name: str, clean_val: np.ndarray, clean_test: np.ndarray, adv_test: np.ndarray, false_alarm: float,
    fooled: np.ndarray | None = None,
) -> DetectionScore:
    """``fooled``: which adversarial inputs changed the prediction (None: all count)."""
    thr = threshold_at(clean_val, false_alarm)
    hit = adv_test > thr
    fooled = np.ones(len(hit), bool) if fooled is None else fooled
    return DetectionScore(
        detector=name, auroc=auroc(clean_test, adv_test), threshold=thr, detection_rate=float(hit.mean()),
        detection_rate_fooling=float(hit[fooled].mean()) if fooled.any() else float("nan"),
        false_alarm=float((clean_test > thr).mean()),
        target_false_alarm=false_alarm,
    )  # fmt: skip
