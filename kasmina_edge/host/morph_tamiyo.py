"""Tamiyo's part of morph: the controller (heuristic, action space, costs, budget), the trials it plans per
condition, and training her policy on the measured outcomes (imitation, then REINFORCE)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kasmina_edge.host.model import BeatClassifier, count_host_parameters, count_macs, example_inputs
from kasmina_edge.host.morph_config import MorphConfig
from kasmina_edge.host.site_observation import Reference
from kasmina_edge.host.tamiyo.heuristic import Decision, HeuristicTamiyo
from kasmina_edge.host.tamiyo.masks import (
    ActionSpace,
    Budget,
    Masks,
    build_masks,
    costs_from_registry,
    default_space,
)
from kasmina_edge.host.tamiyo.reward import RewardWeights

if TYPE_CHECKING:
    from kasmina_edge.host.morph import ConditionOutcome


@dataclass
class Controller:
    """The controller morph asks, with the space, costs and budget its masks come from."""

    heuristic: HeuristicTamiyo
    space: ActionSpace
    costs: dict[tuple[str, str], Any]
    budget: Budget

    def masks(self, security_alert: bool = False) -> Masks:
        return build_masks(self.space, self.costs, self.budget, security_alert=security_alert)


def make_controller(base: BeatClassifier, reference: Reference, cfg: MorphConfig) -> Controller:
    x, rr = example_inputs(base.config)
    base_params, base_macs = count_host_parameters(base), count_macs(base, x, rr)
    budget = Budget(
        target=cfg.target,
        max_params=int(cfg.max_seed_fraction * base_params),
        max_macs=int(cfg.max_mac_fraction * base_macs),
    )
    space = default_space(base.config.site_names)
    costs = costs_from_registry(base.config.site_shapes(), space.blueprints)
    params = {k: c.params for k, c in costs.items()}
    return Controller(HeuristicTamiyo(space, reference.vector, params=params), space, costs, budget)


def plan_trials(ctrl: Controller, obs: np.ndarray, k: int) -> tuple[Decision, list[Decision]]:
    """Tamiyo's decision, and the k best-ranked sites each with the blueprint it would pick there."""
    masks = ctrl.masks()
    first = ctrl.heuristic.decide(obs, masks)
    if not first.act:
        return first, []
    symptom = ctrl.heuristic.dominant_symptom(obs)
    severity = ctrl.heuristic.symptoms(obs)[symptom]
    trials = [first]
    for site in ctrl.heuristic.rank_sites(obs, masks, symptom):
        if len(trials) >= k:
            break
        if site == first.site:
            continue
        bp = ctrl.heuristic.pick_blueprint(site, masks, symptom, severity)
        if bp is not None:
            trials.append(Decision(True, site, bp, first.intensity, first.grafting, first.reason))
    return first, trials


def train_tamiyo(
    ctrl: Controller,
    reference: Reference,
    outcomes: Sequence[ConditionOutcome],
    base: BeatClassifier,
    out: Any,
    *,
    seed: int = 0,
    imitation_steps: int = 300,
    episodes: int = 60,
    weights: RewardWeights | None = None,
) -> dict[str, Any]:
    """Imitate the heuristic around the measured observations, then REINFORCE on measured gains."""
    from pathlib import Path

    from kasmina_edge.host.experiment import atomic_write_bytes
    from kasmina_edge.host.tamiyo.policy import (
        MaskFactory,
        OutcomeTable,
        TamiyoPolicy,
        decision_latency_us,
        imitate,
        jitter_situations,
        reinforce,
        save_policy,
    )
    from kasmina_edge.host.tamiyo.reward import Outcome

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    observed = {"clean": reference.vector.copy(), **{o.condition: np.asarray(o.observation, np.float32) for o in outcomes}}
    for v in observed.values():
        v[:] = v.astype(np.float32)
    factory = MaskFactory(ctrl.masks(False), ctrl.masks(True))
    train = jitter_situations(observed, factory, 800, rng)
    test = jitter_situations(observed, factory, 400, rng)
    policy = TamiyoPolicy(ctrl.space)
    imit = imitate(policy, ctrl.heuristic, train, test, steps=imitation_steps, seed=seed)
    table: dict[tuple[str, str, str], Outcome] = {}
    for o in outcomes:
        for t in o.trials:
            gain = t.gain if t.fossilized else 0.0
            table[(o.condition, t.site, t.blueprint)] = Outcome(gain=gain, params=t.param_count, macs=t.macs)
    x, rr = example_inputs(base.config)
    otable = OutcomeTable(table, {k: (c.params, c.macs) for k, c in ctrl.costs.items()}, count_host_parameters(base),
                          count_macs(base, x, rr), weights or RewardWeights())  # fmt: skip
    eps = [jitter_situations(observed, factory, 64, rng) for _ in range(episodes)]
    rl = reinforce(policy, otable, eps, test, ctrl.heuristic, lr=5e-4, seed=seed)
    latency = decision_latency_us(policy, test)
    buf = __import__("io").BytesIO()
    torch.save(save_policy(policy), buf)
    atomic_write_bytes(Path(out) / "policy.pt", buf.getvalue())
    return {
        "imitation_agreement": imit.agreement,
        "imitation_chance": imit.chance,
        "imitation_majority": imit.majority,
        "reward_heuristic": rl.reward_heuristic,
        "reward_policy_imitation": rl.reward_before,
        "reward_policy_reinforce": rl.reward_after,
        "decision_latency_p50_us": latency["p50_us"],
        "decision_latency_p99_us": latency["p99_us"],
        "policy_params": sum(p.numel() for p in policy.parameters()),
        "space": ctrl.space.to_dict(),
        "reward_weights": (weights or RewardWeights()).to_dict(),
    }
