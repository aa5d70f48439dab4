"""A condition seed with clean twins of its adaptation beats learns to undo the condition at its site:
its site output on noisy beats comes closer to the host's on the same beats clean than a seed trained on
labels alone (feature denoising, MorphConfig.denoise_weight)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat, synthetic_patients
from kasmina_edge.host.condition_trial import TrialResult, run_trial
from kasmina_edge.host.conditions_morph import seeded_model
from kasmina_edge.host.data import CONDITIONS, SPEC, ConditionSplit
from kasmina_edge.host.model import BeatClassifier, count_host_parameters, count_macs, example_inputs
from kasmina_edge.host.morph_config import MORPH_PRESETS
from kasmina_edge.host.tamiyo.masks import Budget
from kasmina_edge.host.train import TRAIN_PRESETS, synthetic_split, train_base

SITE = "site0"
TRIAL = dataclasses.replace(
    MORPH_PRESETS["tiny"], lr=3e-3, blend_steps=2, blend_batches=2, min_gain=-1.0, global_tolerance=1.0,
    max_oscillation=1.0, max_drift=1e9, drift_penalty=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def base() -> BeatClassifier:
    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=3, patients=6, minutes=1.5)
    split = synthetic_split(cfg)
    model = train_base(cfg, split.train, split.val).model.eval()
    for site in model.sites.values():
        site.telemetry_enabled = False
    return model


@pytest.fixture(scope="module")
def twins() -> tuple[BeatDataset, BeatDataset]:
    """Beats of three synthetic patients, clean and with strong noise (the same beats, the same order)."""
    clean = concat([beats_from_record(r, SPEC) for r in synthetic_patients(3, 1.0, seed=21)])
    rng = np.random.default_rng(0)
    noisy = dataclasses.replace(clean, windows=(clean.windows + 0.5 * rng.standard_normal(clean.windows.shape)).astype(np.float32))
    return clean, noisy


def _trial(base: BeatClassifier, clean: BeatDataset, noisy: BeatDataset, weight: float) -> TrialResult:
    x, rr = example_inputs(base.config)
    budget = Budget("edgetpu", int(0.1 * count_host_parameters(base)), int(0.25 * count_macs(base, x, rr)))
    split = ConditionSplit(CONDITIONS["emg"], noisy, noisy, None, [], 0, adapt_clean=clean)
    cfg = dataclasses.replace(TRIAL, denoise_weight=weight)
    return run_trial(base, split, clean, SITE, "bottleneck_adapter", "fixed_ramp", 1.0, budget, cfg, seed=0)


def _distance_to_clean(model: torch.nn.Module, base: BeatClassifier, clean: BeatDataset, noisy: BeatDataset) -> float:
    with torch.no_grad():
        target = base.features(torch.from_numpy(clean.windows))[SITE]
        got = model.features(torch.from_numpy(noisy.windows))[SITE]  # type: ignore[operator]
    return float((got - target).pow(2).mean() / target.var())


def test_denoising_pulls_the_seeded_site_towards_clean(base: BeatClassifier,
                                                       twins: tuple[BeatDataset, BeatDataset]) -> None:  # fmt: skip
    clean, noisy = twins
    labels_only, denoised = _trial(base, clean, noisy, 0.0), _trial(base, clean, noisy, 5.0)
    assert denoised.final_stage == "FOSSILIZED", denoised.reason
    before = _distance_to_clean(base, base, clean, noisy)  # the host alone: noise moves its site this far
    d_denoised = _distance_to_clean(seeded_model(base, denoised), base, clean, noisy)
    assert d_denoised < 0.8 * before, (before, d_denoised)
    if labels_only.state is not None:  # a seed trained on labels alone (here its loss does not fall: G1 culls it)
        assert d_denoised < _distance_to_clean(seeded_model(base, labels_only), base, clean, noisy)


def test_clean_twins_must_match_the_adaptation_beats(base: BeatClassifier,
                                                     twins: tuple[BeatDataset, BeatDataset]) -> None:  # fmt: skip
    clean, noisy = twins
    with pytest.raises(ValueError, match="clean twin of every adaptation beat"):
        _trial(base, clean.subset(np.arange(10)), noisy, 1.0)
