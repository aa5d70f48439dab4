"""What Tamiyo observes on a condition, and the reference it is compared with: the signal's features on the
raw records, the base's prediction entropy, and each site's drift from its activations on clean data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kasmina_edge.core.features import N_SITES, SiteStats, prediction_entropy, signal_features
from kasmina_edge.host.model import BeatClassifier
from kasmina_edge.host.tamiyo.features import Observation, reference_template, site_drift, site_stats
from kasmina_edge.host.train import Beats, predict_logits


@dataclass
class Reference:
    """What 'normal' looks like, measured once on clean training data with the base."""

    template: np.ndarray
    sites: dict[str, SiteStats]
    vector: np.ndarray  # the feature vector of clean validation data


@torch.no_grad()
def site_activations(model: BeatClassifier, ds: Beats, limit: int = 1024) -> dict[str, np.ndarray]:
    x = torch.from_numpy(np.ascontiguousarray(ds.windows[:limit], dtype=np.float32))
    model.eval()
    return {k: v.numpy() for k, v in model.features(x).items()}


def observe(
    model: BeatClassifier,
    ds: Beats,
    records: Sequence[Any],
    lead: int,
    template: np.ndarray | None,
    ref_sites: dict[str, SiteStats] | None,
    *,
    plateau: bool,
    calibration: bool = False,
    limit_records: int = 4,
) -> Observation:
    """Tamiyo's features on a condition: signal (raw records), entropy and per-site drift (model)."""
    feats = [
        signal_features(r.lead(lead), r.fs, r.beats.samples, template)
        for r in list(records)[:limit_records]
        if r.beats is not None and len(r.beats) > 3
    ]
    sig = type(feats[0])(*(float(np.mean([getattr(f, k) for f in feats])) for k in feats[0].__dataclass_fields__))
    probs = torch.softmax(predict_logits(model, ds), dim=1).numpy()
    acts = site_activations(model, ds)
    drift = tuple(site_drift(acts[s], ref_sites[s]) if ref_sites else 0.0 for s in list(acts)[:N_SITES])
    return Observation(sig, prediction_entropy(probs), drift, plateau=plateau, calibration=calibration)


def measure_reference(model: BeatClassifier, clean_train: Beats, clean_val: Beats, records: Sequence[Any]) -> Reference:
    first = next(r for r in records if r.beats is not None and len(r.beats) > 3)
    template = reference_template(first.lead(0), first.fs, first.beats.samples)
    sites = {k: site_stats(v) for k, v in site_activations(model, clean_train).items()}
    vec = observe(model, clean_val, records, 0, template, sites, plateau=True).vector()
    return Reference(template, sites, vec)
