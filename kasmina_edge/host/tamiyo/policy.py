"""The learned Tamiyo: a small MLP over the fixed feature vector with five heads.

Heads: act/wait, location (seed site), blueprint, intensity (seed learning-rate multiplier)
and grafting strategy. The safety and hardware masks are applied to the logits before any
choice, so a masked choice has probability zero, whatever the weights say; a security alert
leaves only "wait".

Training: first behaviour cloning of :class:`HeuristicTamiyo` on curriculum situations, then
REINFORCE (with a running-mean baseline and an entropy bonus) on episodes whose outcomes are
the gains and costs that morph measured for each (condition, site, blueprint) it tried.
Small enough to export (≈ 6 k parameters) and to run in well under a millisecond.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from kasmina_edge.core.features import INDEX, N_FEATURES
from kasmina_edge.host.tamiyo.heuristic import Decision, HeuristicTamiyo, agreement
from kasmina_edge.host.tamiyo.masks import ACT, ActionSpace, Masks
from kasmina_edge.host.tamiyo.reward import Outcome, RewardWeights, reward

HEADS = ("act", "location", "blueprint", "intensity", "grafting")
_NEG = -1e9


class TamiyoPolicy(nn.Module):
    def __init__(self, space: ActionSpace, hidden: int = 64) -> None:
        super().__init__()
        self.space = space
        self.trunk = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.act = nn.Linear(hidden, 2)
        self.location = nn.Linear(hidden, len(space.sites))
        self.blueprint = nn.Linear(hidden, len(space.blueprints))
        self.intensity = nn.Linear(hidden, len(space.intensities))
        self.grafting = nn.Linear(hidden, len(space.graftings))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {name: getattr(self, name)(h) for name in HEADS}


@dataclass
class MaskBatch:
    act: torch.Tensor  # (N, 2) bool
    location: torch.Tensor  # (N, S) bool
    blueprint: torch.Tensor  # (N, S, B) bool

    @classmethod
    def stack(cls, masks: Sequence[Masks]) -> MaskBatch:
        return cls(
            act=torch.from_numpy(np.stack([m.act for m in masks])),
            location=torch.from_numpy(np.stack([m.location for m in masks])),
            blueprint=torch.from_numpy(np.stack([m.blueprint for m in masks])),
        )


def _masked(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~mask, _NEG)


@dataclass
class Sampled:
    decisions: list[Decision]
    log_prob: torch.Tensor  # (N,)
    entropy: torch.Tensor  # (N,)


def _categorical(logits: torch.Tensor, mask: torch.Tensor) -> torch.distributions.Categorical:
    return torch.distributions.Categorical(logits=_masked(logits, mask))


def act_on(
    policy: TamiyoPolicy, obs: torch.Tensor, masks: MaskBatch, *, sample: bool, generator: torch.Generator | None = None
) -> Sampled:
    """Masked decisions for a batch; sampled (for REINFORCE) or greedy (for deployment)."""
    out = policy(obs)
    n = obs.shape[0]

    def choose(dist: torch.distributions.Categorical) -> torch.Tensor:
        if sample:
            return torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
        return dist.probs.argmax(dim=1)

    d_act = _categorical(out["act"], masks.act)
    a = choose(d_act)
    d_loc = _categorical(out["location"], masks.location | ~masks.location.any(1, keepdim=True))
    loc = choose(d_loc)
    bp_mask = masks.blueprint[torch.arange(n), loc]
    d_bp = _categorical(out["blueprint"], bp_mask | ~bp_mask.any(1, keepdim=True))
    bp = choose(d_bp)
    d_int = torch.distributions.Categorical(logits=out["intensity"])
    inten = choose(d_int)
    d_gr = torch.distributions.Categorical(logits=out["grafting"])
    gr = choose(d_gr)
    acting = (a == ACT).float()
    log_prob = d_act.log_prob(a) + acting * (
        d_loc.log_prob(loc) + d_bp.log_prob(bp) + d_int.log_prob(inten) + d_gr.log_prob(gr)
    )
    entropy = d_act.entropy() + acting * (d_loc.entropy() + d_bp.entropy() + d_int.entropy() + d_gr.entropy())
    decisions = [
        Decision(True, int(loc[i]), int(bp[i]), int(inten[i]), int(gr[i]), reason="policy")
        if int(a[i]) == ACT
        else Decision(False, reason="policy_wait")
        for i in range(n)
    ]
    return Sampled(decisions, log_prob, entropy)


def decide(policy: TamiyoPolicy, obs: np.ndarray, masks: Masks) -> Decision:
    """One greedy, masked decision (what the device does): masked argmax per head, no sampling."""
    with torch.no_grad():
        out = policy(torch.from_numpy(np.asarray(obs, dtype=np.float32)[None, :]))
    act_logits = out["act"][0].numpy()
    if not masks.act[ACT] or act_logits[ACT] <= act_logits[1 - ACT] and masks.act[1 - ACT]:
        return Decision(False, reason="policy_wait")
    loc = np.where(masks.location, out["location"][0].numpy(), -np.inf)
    site = int(np.argmax(loc))
    bp = np.where(masks.blueprint[site], out["blueprint"][0].numpy(), -np.inf)
    return Decision(
        True,
        site,
        int(np.argmax(bp)),
        int(out["intensity"][0].argmax()),
        int(out["grafting"][0].argmax()),
        reason="policy",
    )


@contextmanager
def single_thread() -> Iterator[None]:
    """Tiny MLPs run faster on one thread than split over two busy cores."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


# --------------------------------------------------------------------------- situations


@dataclass(frozen=True)
class Situation:
    """One decision point of a curriculum episode."""

    condition: str  # "clean" or a condition name
    obs: np.ndarray
    masks: Masks


def jitter_situations(
    base: Mapping[str, np.ndarray],
    make_masks: MaskFactory,
    n: int,
    rng: np.random.Generator,
    *,
    security_rate: float = 0.1,
    noise: float = 0.03,
) -> list[Situation]:
    """Situations around measured observations: sensor noise, random battery, link, plateau, alerts."""
    names = sorted(base)
    out: list[Situation] = []
    for _ in range(n):
        cond = names[int(rng.integers(len(names)))]
        v = base[cond].astype(np.float32).copy()
        v[: INDEX["battery"]] += rng.normal(0.0, noise, INDEX["battery"]).astype(np.float32)
        v[INDEX["battery"]] = float(rng.uniform(0.05, 1.0))
        v[INDEX["link_state"]] = float(rng.choice([0.0, 0.5, 1.0]))
        alert = bool(rng.random() < security_rate)
        v[INDEX["security_alert"]] = float(alert)
        v[INDEX["live_seeds"]] = float(rng.choice([0.0, 0.25]))
        v[INDEX["plateau"]] = float(rng.random() < 0.8)
        if rng.random() < 0.1:  # now and then a calibration session, whatever the signal
            v[INDEX["calibration"]] = 1.0 - v[INDEX["calibration"]]
        out.append(Situation(cond, v, make_masks(alert)))
    return out


class MaskFactory:
    """Masks for a situation, given whether a security alert is raised."""

    def __init__(self, normal: Masks, alert: Masks) -> None:
        self.normal, self.alert = normal, alert

    def __call__(self, security_alert: bool) -> Masks:
        return self.alert if security_alert else self.normal


# --------------------------------------------------------------------------- imitation


@dataclass
class ImitationReport:
    steps: int
    final_loss: float
    agreement: float  # policy vs heuristic on held-out situations
    chance: float  # a uniformly random masked policy vs the heuristic on the same situations
    majority: float  # always answering the heuristic's most frequent decision


def _targets(decisions: Sequence[Decision]) -> dict[str, torch.Tensor]:
    return {
        "act": torch.tensor([int(d.act) for d in decisions]),
        "location": torch.tensor([d.site if d.act and d.site is not None else 0 for d in decisions]),
        "blueprint": torch.tensor([d.blueprint if d.act and d.blueprint is not None else 0 for d in decisions]),
        "intensity": torch.tensor([d.intensity for d in decisions]),
        "grafting": torch.tensor([d.grafting if d.act and d.grafting is not None else 0 for d in decisions]),
    }


def imitation_loss(policy: TamiyoPolicy, obs: torch.Tensor, masks: MaskBatch, tgt: dict[str, torch.Tensor]) -> torch.Tensor:
    out = policy(obs)
    ce = nn.functional.cross_entropy
    n = obs.shape[0]
    loss = ce(_masked(out["act"], masks.act), tgt["act"])
    acting = tgt["act"] == ACT
    if acting.any():
        bp_mask = masks.blueprint[torch.arange(n), tgt["location"]]
        per = (
            ce(_masked(out["location"], masks.location), tgt["location"], reduction="none")
            + ce(_masked(out["blueprint"], bp_mask), tgt["blueprint"], reduction="none")
            + ce(out["intensity"], tgt["intensity"], reduction="none")
            + ce(out["grafting"], tgt["grafting"], reduction="none")
        )
        loss = loss + per[acting].mean()
    return loss


def _random_decisions(situations: Sequence[Situation], rng: np.random.Generator, space: ActionSpace) -> list[Decision]:
    out: list[Decision] = []
    for s in situations:
        if not s.masks.act[ACT] or rng.random() < 0.5:
            out.append(Decision(False))
            continue
        sites = np.flatnonzero(s.masks.location)
        site = int(rng.choice(sites))
        bp = int(rng.choice(np.flatnonzero(s.masks.blueprint[site])))
        out.append(Decision(True, site, bp, 1, 0))
    return out


def imitate(
    policy: TamiyoPolicy,
    heuristic: HeuristicTamiyo,
    train: Sequence[Situation],
    test: Sequence[Situation],
    *,
    steps: int = 300,
    lr: float = 3e-3,
    seed: int = 0,
) -> ImitationReport:
    """Behaviour cloning of the heuristic: cross-entropy on every head it used, masked logits."""
    with single_thread():
        return _imitate(policy, heuristic, train, test, steps=steps, lr=lr, seed=seed)


def _imitate(
    policy: TamiyoPolicy,
    heuristic: HeuristicTamiyo,
    train: Sequence[Situation],
    test: Sequence[Situation],
    *,
    steps: int = 300,
    lr: float = 3e-3,
    seed: int = 0,
) -> ImitationReport:
    torch.manual_seed(seed)
    obs = torch.from_numpy(np.stack([s.obs for s in train]))
    masks = MaskBatch.stack([s.masks for s in train])
    tgt = _targets([heuristic.decide(s.obs, s.masks) for s in train])
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        opt.zero_grad()
        loss = imitation_loss(policy, obs, masks, tgt)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    expert = [heuristic.decide(s.obs, s.masks) for s in test]
    with torch.no_grad():
        mine = act_on(
            policy, torch.from_numpy(np.stack([s.obs for s in test])), MaskBatch.stack([s.masks for s in test]), sample=False
        ).decisions
    rng = np.random.default_rng(seed)
    chance = agreement(_random_decisions(test, rng, policy.space), expert)
    keys = [(d.act, d.site, d.blueprint) for d in expert]
    top = max(set(keys), key=keys.count)
    majority = keys.count(top) / max(1, len(keys))
    return ImitationReport(steps, float(loss.detach()), agreement(mine, expert), chance, majority)


# --------------------------------------------------------------------------- REINFORCE


@dataclass
class OutcomeTable:
    """Measured outcomes per (condition, site, blueprint); the costs of untried ones are known."""

    outcomes: dict[tuple[str, str, str], Outcome]
    costs: Mapping[tuple[str, str], tuple[int, int]]  # (site, blueprint) -> (params, macs)
    base_params: int
    base_macs: int
    weights: RewardWeights = field(default_factory=RewardWeights)

    def reward(self, space: ActionSpace, s: Situation, d: Decision) -> float:
        if not d.act:
            return 0.0
        assert d.site is not None and d.blueprint is not None
        site, bp = space.sites[d.site], space.blueprints[d.blueprint]
        violation = int(
            not s.masks.act[ACT] or not s.masks.location[d.site] or not s.masks.blueprint[d.site, d.blueprint]
        )
        found = self.outcomes.get((s.condition, site, bp))
        if found is None:
            # Untried here (or a clean signal): no gain can be claimed, the cost is certain.
            params, macs = self.costs.get((site, bp), (0, 0))
            found = Outcome(gain=0.0, params=params, macs=macs)
        o = Outcome(found.gain, found.params, found.macs, found.drift, found.violations + violation)
        return reward(o, self.base_params, self.base_macs, self.weights)


@dataclass
class ReinforceReport:
    episodes: int
    reward_before: float  # greedy policy, mean reward per situation, before REINFORCE
    reward_after: float
    reward_heuristic: float
    curve: list[float]


def mean_reward(
    decisions: Sequence[Decision], situations: Sequence[Situation], table: OutcomeTable, space: ActionSpace
) -> float:
    return float(np.mean([table.reward(space, s, d) for s, d in zip(situations, decisions, strict=True)]))


def greedy(policy: TamiyoPolicy, situations: Sequence[Situation]) -> list[Decision]:
    with torch.no_grad():
        return act_on(
            policy,
            torch.from_numpy(np.stack([s.obs for s in situations])),
            MaskBatch.stack([s.masks for s in situations]),
            sample=False,
        ).decisions


def reinforce(
    policy: TamiyoPolicy,
    table: OutcomeTable,
    episodes: Sequence[Sequence[Situation]],
    evaluation: Sequence[Situation],
    heuristic: HeuristicTamiyo,
    *,
    lr: float = 1e-3,
    entropy_bonus: float = 0.01,
    seed: int = 0,
) -> ReinforceReport:
    """REINFORCE over curriculum episodes (each a batch of situations), running-mean baseline."""
    with single_thread():
        return _reinforce(
            policy, table, episodes, evaluation, heuristic, lr=lr, entropy_bonus=entropy_bonus, seed=seed
        )


def _reinforce(
    policy: TamiyoPolicy,
    table: OutcomeTable,
    episodes: Sequence[Sequence[Situation]],
    evaluation: Sequence[Situation],
    heuristic: HeuristicTamiyo,
    *,
    lr: float = 1e-3,
    entropy_bonus: float = 0.01,
    seed: int = 0,
) -> ReinforceReport:
    space = policy.space
    gen = torch.Generator().manual_seed(seed)
    before = mean_reward(greedy(policy, evaluation), evaluation, table, space)
    heur = mean_reward([heuristic.decide(s.obs, s.masks) for s in evaluation], evaluation, table, space)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    baseline = 0.0
    curve: list[float] = []
    for k, episode in enumerate(episodes):
        obs = torch.from_numpy(np.stack([s.obs for s in episode]))
        res = act_on(policy, obs, MaskBatch.stack([s.masks for s in episode]), sample=True, generator=gen)
        r = torch.tensor([table.reward(space, s, d) for s, d in zip(episode, res.decisions, strict=True)])
        baseline = float(r.mean()) if k == 0 else 0.9 * baseline + 0.1 * float(r.mean())
        loss = -((r - baseline) * res.log_prob).mean() - entropy_bonus * res.entropy.mean()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        curve.append(float(r.mean()))
    after = mean_reward(greedy(policy, evaluation), evaluation, table, space)
    return ReinforceReport(len(episodes), before, after, heur, curve)


# --------------------------------------------------------------------------- latency


def decision_latency_us(
    policy: TamiyoPolicy, situations: Sequence[Situation], repeats: int = 300
) -> dict[str, float]:
    """p50/p99 of one masked greedy decision, batch 1, in microseconds (torch, one thread)."""
    times: list[float] = []
    with single_thread():
        for i in range(repeats):
            s = situations[i % len(situations)]
            t0 = time.perf_counter()
            decide(policy, s.obs, s.masks)
            times.append((time.perf_counter() - t0) * 1e6)
    arr = np.asarray(times[10:] if len(times) > 20 else times)
    return {"p50_us": float(np.percentile(arr, 50)), "p99_us": float(np.percentile(arr, 99))}


def save_policy(policy: TamiyoPolicy) -> dict[str, object]:
    return {"space": policy.space.to_dict(), "state": policy.state_dict(), "n_features": N_FEATURES}
