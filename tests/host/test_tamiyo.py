"""Tamiyo: features, masks, heuristic, policy imitation, REINFORCE, decision latency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kasmina_edge.core.features import (
    FEATURE_NAMES,
    INDEX,
    N_FEATURES,
    SignalFeatures,
    prediction_entropy,
    signal_features,
)
from kasmina_edge.host.tamiyo.features import Observation, reference_template, site_drift, site_stats
from kasmina_edge.host.tamiyo.heuristic import HeuristicTamiyo, PlateauDetector
from kasmina_edge.host.tamiyo.masks import ACT, Budget, build_masks, costs_from_registry, default_space
from kasmina_edge.host.tamiyo.policy import (
    MaskFactory,
    OutcomeTable,
    TamiyoPolicy,
    decide,
    decision_latency_us,
    imitate,
    jitter_situations,
    reinforce,
)
from kasmina_edge.host.tamiyo.reward import Outcome, RewardWeights, reward

SHAPES = {"site0": (16, 128), "site1": (32, 64), "site2": (32, 32), "site3": (48, 16)}
FS = 360.0


def _beats(n: int = 40, width: float = 0.012, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A crude pulse train: Gaussian 'QRS' every 0.8 s (enough for band powers and templates)."""
    t = np.arange(int(n * 0.8 * FS)) / FS
    peaks = (np.arange(1, n - 1) * 0.8 * FS).astype(np.int64)
    sig = np.zeros_like(t)
    for p in peaks:
        sig += np.exp(-0.5 * ((t - p / FS) / width) ** 2)
    return sig.astype(np.float32), peaks


def _reference() -> np.ndarray:
    return Observation(SignalFeatures(-1.0, -1.0, -2.0, 1.0, 0.99), 0.2, (0.1, 0.1, 0.1, 0.1)).vector()


def _conditions() -> dict[str, np.ndarray]:
    ref = _reference()
    out = {"clean": ref.copy()}
    v = ref.copy()
    v[INDEX["noise_power"]] += 0.8
    v[INDEX["drift_site0"]] = 0.6
    out["emg"] = v
    v = ref.copy()
    v[INDEX["baseline_power"]] += 0.9
    v[INDEX["drift_site1"]] = 0.5
    out["baseline"] = v
    v = ref.copy()
    v[INDEX["qrs_template_corr"]] = 0.4
    v[INDEX["drift_site2"]] = 0.7
    out["lead"] = v
    v = ref.copy()
    v[INDEX["calibration"]] = 1.0
    v[INDEX["drift_site3"]] = 0.4
    out["patient"] = v
    return out


def test_feature_vector_has_documented_fixed_order() -> None:
    assert N_FEATURES == len(FEATURE_NAMES) == 16
    obs = Observation(SignalFeatures(0.1, 0.2, 0.3, 0.4, 0.5), 0.6, (4.0, 8.0), battery=0.7, security_alert=True)
    v = obs.vector()
    assert v[INDEX["noise_power"]] == pytest.approx(0.1)
    assert v[INDEX["pred_entropy"]] == pytest.approx(0.6)
    assert v[INDEX["drift_site0"]] == pytest.approx(1.0) and v[INDEX["drift_site1"]] == pytest.approx(2.0)
    assert v[INDEX["drift_site3"]] == 0.0  # absent sites read as no drift
    assert v[INDEX["battery"]] == pytest.approx(0.7) and v[INDEX["security_alert"]] == 1.0


def test_signal_features_respond_to_the_artifact_they_name() -> None:
    rng = np.random.default_rng(0)
    clean, peaks = _beats()
    tmpl = reference_template(clean, FS, peaks)
    base = signal_features(clean, FS, peaks, tmpl)
    noisy = signal_features(clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32), FS, peaks, tmpl)
    t = np.arange(clean.shape[0]) / FS
    wander = signal_features(clean + 1.0 * np.sin(2 * np.pi * 0.2 * t).astype(np.float32), FS, peaks, tmpl)
    mains = signal_features(clean + 0.3 * np.sin(2 * np.pi * 50 * t).astype(np.float32), FS, peaks, tmpl)
    wide, _ = _beats(width=0.04)
    shape = signal_features(-wide, FS, peaks, tmpl)
    assert noisy.noise_power > base.noise_power + 0.5
    assert noisy.beat_consistency < base.beat_consistency
    assert wander.baseline_power > base.baseline_power + 0.5
    assert mains.powerline_power > base.powerline_power + 0.5
    assert base.qrs_template_corr > 0.99 and shape.qrs_template_corr < 0.5


def test_entropy_and_drift() -> None:
    assert prediction_entropy(np.array([[1.0, 0, 0, 0, 0]])) < 1e-6
    assert prediction_entropy(np.full((3, 5), 0.2)) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    act = rng.standard_normal((64, 8, 16))
    ref = site_stats(act)
    assert site_drift(act, ref) == pytest.approx(0.0, abs=1e-9)
    assert site_drift(act + 2.0, ref) == pytest.approx(2.0 / ref.std.mean(), rel=0.2)


def test_edgetpu_mask_forbids_blueprints_it_cannot_run_even_when_the_policy_prefers_them() -> None:
    space = default_space(SHAPES)
    costs = costs_from_registry(SHAPES)
    masks = build_masks(space, costs, Budget(target="edgetpu", max_params=3000))
    for name in ("mini_attention", "sparse_topk"):
        j = space.blueprints.index(name)
        assert not masks.blueprint[:, j].any(), name
        assert "edgetpu" not in costs[("site1", name)].targets
    x86 = build_masks(space, costs, Budget(target="x86", max_params=3000))
    assert x86.blueprint[:, space.blueprints.index("mini_attention")].any()
    # Over budget is masked too.
    big = space.blueprints.index("residual_mlp")
    assert not masks.blueprint[3, big] and costs[("site3", "residual_mlp")].params > 3000
    policy = TamiyoPolicy(space)
    with torch.no_grad():
        policy.blueprint.bias.fill_(0.0)
        policy.blueprint.bias[space.blueprints.index("mini_attention")] = 100.0
        policy.act.bias[:] = torch.tensor([-100.0, 100.0])
    d = decide(policy, _conditions()["emg"], masks)
    assert d.act and d.blueprint is not None and d.site is not None
    assert masks.blueprint[d.site, d.blueprint]
    assert space.blueprints[d.blueprint] != "mini_attention"


def test_security_alert_forces_noop_in_heuristic_and_policy() -> None:
    space = default_space(SHAPES)
    costs = costs_from_registry(SHAPES)
    masks = build_masks(space, costs, Budget(target="edgetpu"), security_alert=True)
    assert masks.act.tolist() == [True, False]
    v = _conditions()["emg"].copy()
    v[INDEX["security_alert"]] = 1.0
    heur = HeuristicTamiyo(space, _reference())
    assert not heur.decide(v, masks).act
    policy = TamiyoPolicy(space)
    with torch.no_grad():
        policy.act.bias[:] = torch.tensor([-100.0, 100.0])  # wants to act at any price
    assert not decide(policy, v, masks).act


def test_heuristic_matches_symptom_to_site_and_waits_when_clean() -> None:
    space = default_space(SHAPES)
    masks = build_masks(space, costs_from_registry(SHAPES), Budget(target="edgetpu", max_params=3000))
    heur = HeuristicTamiyo(space, _reference())
    cond = _conditions()
    assert not heur.decide(cond["clean"], masks).act
    emg = heur.decide(cond["emg"], masks)
    patient = heur.decide(cond["patient"], masks)
    assert emg.act and patient.act and emg.site is not None and patient.site is not None
    assert emg.site < patient.site  # artifacts early, patient shift late
    still = cond["emg"].copy()
    still[INDEX["plateau"]] = 0.0
    assert heur.decide(still, masks).reason == "still_improving"


def test_plateau_detector() -> None:
    p = PlateauDetector(patience=2, min_delta=0.01)
    assert not any(p.update(v) for v in (0.5, 0.6, 0.7))
    assert not p.update(0.75)
    p.update(0.752)
    assert p.update(0.751)


def test_imitation_agrees_with_heuristic_above_chance_and_reinforce_does_not_lose_reward() -> None:
    space = default_space(SHAPES)
    costs = costs_from_registry(SHAPES)
    budget = Budget(target="edgetpu", max_params=3000)
    factory = MaskFactory(
        build_masks(space, costs, budget), build_masks(space, costs, budget, security_alert=True)
    )
    heur = HeuristicTamiyo(space, _reference())
    rng = np.random.default_rng(0)
    train = jitter_situations(_conditions(), factory, 600, rng)
    test = jitter_situations(_conditions(), factory, 300, rng)
    torch.manual_seed(0)
    policy = TamiyoPolicy(space)
    rep = imitate(policy, heur, train, test, steps=250, seed=0)
    assert rep.agreement > rep.chance + 0.3
    assert rep.agreement > rep.majority + 0.1
    assert rep.agreement > 0.8

    # Outcomes: what the heuristic chose pays for the noise conditions; acting on a clean signal costs.
    outcomes = {}
    for cond, v in _conditions().items():
        v = v.copy()
        v[INDEX["plateau"]] = 1.0
        d = heur.decide(v, factory(False))
        if d.act and cond != "clean":
            assert d.site is not None and d.blueprint is not None
            site, bp = space.sites[d.site], space.blueprints[d.blueprint]
            outcomes[(cond, site, bp)] = Outcome(gain=0.08, params=costs[(site, bp)].params, macs=costs[(site, bp)].macs)
    table = OutcomeTable(outcomes, {k: (c.params, c.macs) for k, c in costs.items()}, 33_000, 1_250_000)
    episodes = [jitter_situations(_conditions(), factory, 64, rng) for _ in range(40)]
    rl = reinforce(policy, table, episodes, test, heur, lr=5e-4, seed=0)
    assert rl.reward_heuristic > 0
    assert rl.reward_after >= rl.reward_before - 0.05
    lat = decision_latency_us(policy, test, repeats=100)
    assert 0 < lat["p50_us"] <= lat["p99_us"] < 50_000


def test_reward_terms() -> None:
    w = RewardWeights()
    assert reward(Outcome(0.05, 0, 0), 1000, 1000, w) == pytest.approx(0.5)
    assert reward(Outcome(0.0, 100, 0), 1000, 1000, w) == pytest.approx(-0.1)
    assert reward(Outcome(0.05, 0, 0, violations=1), 1000, 1000, w) < 0
    assert RewardWeights.parse("accuracy=0.2, safety=1").accuracy == 0.2
    assert ACT == 1
