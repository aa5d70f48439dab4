"""The on-device Tamiyo: symptoms against the reference, kernel choice, retiring, the exported policy."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.core.features import INDEX, N_FEATURES
from kasmina_edge.core.symptoms import symptoms_of
from kasmina_edge.runtime.controller import (
    POLICY_FORMAT,
    ExportedPolicy,
    KernelChoice,
    KernelController,
    KernelControllerConfig,
    PolicyError,
)

KERNELS = [
    KernelChoice("emg0", 0, "depthwise_separable", symptoms_of(["emg"]), 0.05),
    KernelChoice("emg2", 2, "depthwise_separable", symptoms_of(["emg"]), 0.20),
    KernelChoice("lead1", 1, "bottleneck_adapter", symptoms_of(["lead"]), 0.05),
]


def _clean() -> np.ndarray:
    v = np.zeros(N_FEATURES, np.float32)
    v[INDEX["noise_power"]] = -1.0
    v[INDEX["baseline_power"]] = -0.5
    v[INDEX["powerline_power"]] = -2.0
    v[INDEX["qrs_template_corr"]] = 0.98
    v[INDEX["pred_entropy"]] = 0.2
    v[INDEX["battery"]] = v[INDEX["link_state"]] = 1.0
    return v


def _controller(**kw: object) -> KernelController:
    c = KernelController(KERNELS, 4, KernelControllerConfig(clear_windows=3, **kw))  # type: ignore[arg-type]
    c.reference = _clean()
    return c


def test_noise_activates_an_emg_kernel_where_noise_is_treated_first() -> None:
    c = _controller()
    assert c.decide(_clean(), {}, {"emg0", "emg2", "lead1"}).action == "wait"
    noisy = _clean()
    noisy[INDEX["noise_power"]] = 0.2  # 24 dB up
    d = c.decide(noisy, {}, {"emg0", "emg2", "lead1"})
    assert d.action == "activate" and d.symptom == "noise"
    assert d.kernel == "emg0" and d.site == 0  # site prior for noise beats emg2's larger gain at site 2
    assert d.alpha_target == 1.0
    assert c.decide(noisy, {"emg0": 0}, {"emg2", "lead1"}).reason == "already_treated"
    assert c.decide(noisy, {}, {"lead1"}).reason == "no_kernel_for_symptom"


def test_a_worse_symptom_without_a_kernel_does_not_hide_a_treatable_one() -> None:
    """Muscle noise also lifts the mains bands: 'powerline' can outrank 'noise' though only noise has kernels."""
    c = _controller()
    obs = _clean()
    obs[INDEX["noise_power"]] = 0.8
    obs[INDEX["powerline_power"]] = 0.5  # severity 2.35 against noise's 1.65
    sev = c.symptoms(obs)
    assert sev["powerline"] > sev["noise"] > 0
    d = c.decide(obs, {}, {"emg0", "emg2", "lead1"})
    assert d.action == "activate" and d.symptom == "noise" and d.kernel == "emg0"
    # with the noise treated, what is left is reported for the worst symptom
    left = c.decide(obs, {"emg0": 0}, {"emg2", "lead1"})
    assert left.action == "wait" and left.symptom == "powerline" and left.reason == "no_kernel_for_symptom"


def test_retire_after_the_condition_cleared_for_a_while() -> None:
    c = _controller()
    actions = [c.decide(_clean(), {"emg0": 0}, set()).action for _ in range(4)]
    assert actions == ["wait", "wait", "retire", "retire"]
    d = c.decide(_clean(), {"emg0": 0}, set())
    assert d.kernel == "emg0" and d.reason == "condition_cleared"


def test_morphology_change_picks_the_lead_kernel_and_security_alert_blocks() -> None:
    c = _controller()
    obs = _clean()
    obs[INDEX["qrs_template_corr"]] = 0.5
    d = c.decide(obs, {}, {"emg0", "lead1"})
    assert d.action == "activate" and d.kernel == "lead1" and d.symptom == "morphology"
    obs[INDEX["security_alert"]] = 1.0
    assert c.decide(obs, {}, {"emg0", "lead1"}).reason == "security_alert"


def test_no_reference_no_decision() -> None:
    c = KernelController(KERNELS, 4)
    assert c.decide(_clean(), {}, {"emg0"}).reason == "warming_up"


def _policy(site_bias: int, blueprint_bias: int, act: bool) -> dict[str, object]:
    h = 8
    return {
        "format": POLICY_FORMAT,
        "sites": ["site0", "site1", "site2", "site3"],
        "blueprints": ["depthwise_separable", "bottleneck_adapter"],
        "trunk": [{"weight": np.zeros((h, N_FEATURES)).tolist(), "bias": np.ones(h).tolist()}],
        "heads": {
            "act": {"weight": np.zeros((2, h)).tolist(), "bias": [0.0, 1.0] if act else [1.0, 0.0]},
            "location": {"weight": np.zeros((4, h)).tolist(), "bias": np.eye(4)[site_bias].tolist()},
            "blueprint": {"weight": np.zeros((2, h)).tolist(), "bias": np.eye(2)[blueprint_bias].tolist()},
        },
    }


def test_exported_policy_chooses_within_the_masks() -> None:
    c = _controller()
    c.policy = ExportedPolicy.from_json(_policy(site_bias=1, blueprint_bias=1, act=True))
    d = c.decide(_clean(), {}, {"emg0", "lead1"})
    assert d.source == "policy" and d.kernel == "lead1" and d.site == 1
    # the policy points at site 3, where no kernel exists: the mask keeps it to real kernels
    c.policy = ExportedPolicy.from_json(_policy(site_bias=3, blueprint_bias=0, act=True))
    assert c.decide(_clean(), {}, {"emg0"}).kernel == "emg0"
    c.policy = ExportedPolicy.from_json(_policy(site_bias=0, blueprint_bias=0, act=False))
    assert c.decide(_clean(), {}, {"emg0"}).action == "wait"


def test_malformed_policy_is_refused() -> None:
    with pytest.raises(PolicyError, match="format"):
        ExportedPolicy.from_json({"format": "other"})
    bad = _policy(0, 0, True)
    bad["trunk"] = [{"weight": np.zeros((8, 3)).tolist(), "bias": np.zeros(8).tolist()}]
    with pytest.raises(PolicyError, match="16 features"):
        ExportedPolicy.from_json(bad)
