"""Label-free evidence that a seed kernel helps: how the device judges a kernel it has no labels for.

A device never sees a cardiologist's label, so "does this kernel help?" is answered by comparing the
two paths the executor runs beside each other (the chain with the kernel and the chain without it)
on what the signal itself says about each beat:

* RR consistency: a premature beat (pre-RR well under the running mean) is S or V, a beat on time is
  N; a class that contradicts the rhythm is implausible;
* QRS template correlation: a beat shaped like the wearer's dominant (clean, warm-up) beat is N or S,
  one unlike it is V;
* agreement with the base on its confident beats: overruling a base that was sure costs evidence;
* prediction entropy: a kernel that leaves the model less sure than the base costs a little.

Only beats on which the two paths disagree carry class evidence (a kernel that changes nothing
neither helps nor hurts); entropy and confidence are per window. The sum over a stage is the
kernel's *net evidence*: > 0 the kernel's answers fit the signal better than the base's, < 0 worse.
The lifecycle keeps a kernel live only while its net evidence stays positive (see :mod:`lifecycle`).

Written by hand (a few comparisons per beat): the rules are the textbook beat criteria (prematurity,
QRS morphology) that label-free ECG checks use; no library ships them for a streaming classifier.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kasmina_edge.ecg.windowing import WindowSpec

CLASS_N, CLASS_S, CLASS_V = 0, 1, 2  # AAMI order (ecg.types.AAMI_CLASSES): N, S, V, F, Q
QRS_HALF_S = 0.1  # the QRS region compared with the template: +/- 100 ms around the R peak
_EPS = 1e-12


@dataclass(frozen=True)
class EvidenceConfig:
    premature_ratio: float = 0.85  # pre-RR / running mean below this: premature (S or V)
    template_like: float = 0.8  # QRS correlation with the template at or above this: "like the dominant beat"
    confident: float = 0.9  # the base's top-class probability that counts as sure
    overrule_cost: float = 1.0  # evidence lost when the kernel overrules a sure base
    morphology_weight: float = 0.5  # the template's say beside the rhythm's (noise blurs shapes first)
    entropy_weight: float = 1.0  # per window: (base entropy - kernel entropy), normalised to [0, 1]
    template_beats: int = 12  # valid beats whose median QRS is the template (the warm-up: clean by assumption)
    recent_windows: int = 64  # the sliding window a live kernel is judged on


@dataclass(frozen=True)
class BeatContext:
    """What the signal says about one beat, with no label: its prematurity and its shape."""

    rr_ratio: float  # pre-RR over the running mean RR (the beat's RR feature 3)
    template_corr: float | None  # QRS correlation with the dominant beat; None until there is a template


def plausibility(label: int, ctx: BeatContext, cfg: EvidenceConfig) -> float:
    """How well a class fits the beat's rhythm (weight 1) and shape (``morphology_weight``).

    F (fusion) and Q (unclassifiable) fit nothing a device can check: 0."""
    premature = ctx.rr_ratio < cfg.premature_ratio
    like = None if ctx.template_corr is None else ctx.template_corr >= cfg.template_like
    shape = 0.0
    if label == CLASS_N:
        rhythm = not premature
        shape = float(bool(like)) if like is not None else 0.0
    elif label == CLASS_S:
        rhythm = premature
        shape = float(bool(like)) if like is not None else 0.0
    elif label == CLASS_V:
        rhythm = premature
        shape = float(not like) if like is not None else 0.0
    else:
        return 0.0
    return float(rhythm) + cfg.morphology_weight * shape


def normalised_entropy(probs: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), _EPS, 1.0)
    return float(-(p * np.log(p)).sum() / np.log(p.shape[0])) if p.shape[0] > 1 else 0.0


def window_evidence(
    with_kernel: np.ndarray, without: np.ndarray, ctx: BeatContext | None, cfg: EvidenceConfig
) -> tuple[float, float]:
    """One window's evidence for the kernel: (class evidence, from a disagreement only; entropy evidence).
    > 0: the kernel's answer fits the signal better than the base's."""
    if not (np.all(np.isfinite(with_kernel)) and np.all(np.isfinite(without))):
        return 0.0, 0.0
    ent = cfg.entropy_weight * (normalised_entropy(without) - normalised_entropy(with_kernel))
    yk, yb = int(np.argmax(with_kernel)), int(np.argmax(without))
    cls = 0.0
    if yk != yb:
        if ctx is not None:
            cls += plausibility(yk, ctx, cfg) - plausibility(yb, ctx, cfg)
        if float(np.max(without)) >= cfg.confident:
            cls -= cfg.overrule_cost
    return float(cls), float(ent)


@dataclass
class KernelEvidence:
    """A kernel's evidence through one stage (``total``; ``classes``: the part from disagreements) and
    over the last windows (``recent``)."""

    config: EvidenceConfig = field(default_factory=EvidenceConfig)
    windows: int = 0
    disagreements: int = 0
    total: float = 0.0
    classes: float = 0.0
    _recent: deque[float] = field(default_factory=deque)

    def add(self, with_kernel: np.ndarray | None, without: np.ndarray | None, ctx: BeatContext | None) -> float:
        """Add one window (``None`` probabilities: the comparison did not run, nothing is added)."""
        if with_kernel is None or without is None:
            return 0.0
        cls, ent = window_evidence(with_kernel, without, ctx, self.config)
        ev = cls + ent
        self.windows += 1
        self.disagreements += int(np.argmax(with_kernel) != np.argmax(without))
        self.total += ev
        self.classes += cls
        self._recent.append(ev)
        while len(self._recent) > self.config.recent_windows:
            self._recent.popleft()
        return ev

    @property
    def recent(self) -> float:
        return float(sum(self._recent))

    def restart(self) -> None:
        """A new stage is judged on its own windows (the sliding window goes on)."""
        self.windows, self.disagreements, self.total, self.classes = 0, 0, 0.0, 0.0

    def metrics(self) -> dict[str, float]:
        return {"evidence": round(self.total, 4), "evidence_classes": round(self.classes, 4),
                "evidence_recent": round(self.recent, 4),
                "evidence_windows": float(self.windows), "disagreements": float(self.disagreements)}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + _EPS))


class BeatContextTracker:
    """Per beat, its :class:`BeatContext`: RR ratio from the beatizer's RR features, QRS correlation with a
    template that is the median QRS of the first ``template_beats`` valid beats (the device's warm-up)."""

    def __init__(self, spec: WindowSpec | None = None, config: EvidenceConfig | None = None) -> None:
        self.spec = spec or WindowSpec()
        self.config = config or EvidenceConfig()
        half = int(round(QRS_HALF_S * self.spec.fs))
        self._lo, self._hi = max(0, self.spec.before - half), min(self.spec.length, self.spec.before + half + 1)
        self._collected: list[np.ndarray] = []
        self.template: np.ndarray | None = None

    def observe(self, window: np.ndarray, rr: np.ndarray, valid: bool = True) -> BeatContext:
        qrs = np.asarray(window, dtype=np.float32).reshape(-1)[self._lo : self._hi]
        if self.template is None and valid and np.all(np.isfinite(qrs)):
            self._collected.append(qrs.copy())
            if len(self._collected) >= self.config.template_beats:
                self.template = np.median(np.stack(self._collected), axis=0)
                self._collected = []
        corr = _corr(qrs, self.template) if self.template is not None and valid else None
        r = np.asarray(rr, dtype=np.float64).reshape(-1)
        ratio = float(r[3]) if r.shape[0] > 3 and np.isfinite(r[3]) else 1.0
        return BeatContext(rr_ratio=ratio, template_corr=corr)
