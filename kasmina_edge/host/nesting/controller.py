"""The hierarchical controller: where to grow (parent level) and which child next (child level).

Parent level: Tamiyo's heuristic *where* rule (:meth:`HeuristicTamiyo.rank_sites`: per-site drift of the
task's activations from the host's reference data, weighted by the symptom's site prior) over the masks
(target, sites already holding a seed); each pick asks the arbiter for the root's own cost, and a refusal
leaves that site's seed DORMANT with G0's reason. The roots walk through the host's SeedDriver.

Child level, inside each fossilized nested root, in rounds: every DORMANT child whose parent is FOSSILIZED
is a candidate; its gain is estimated (squared gradient norm of its own weights at alpha 1) and all
candidates go to the arbiter as one round (gain per parameter first, ties by id); the granted ones walk
their own lifecycle one at a time. After each round, the fossilized child that adds least (ablation on the
validation set) is culled if it adds less than ``cull_below``, which frees its subtree's grant for the next
round. Rounds stop when one grants nothing and culls nothing (or after ``max_rounds``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.core.features import INDEX, N_FEATURES
from kasmina_edge.host.model import BeatClassifier
from kasmina_edge.host.nesting.arbitration import Arbiter, Request, Resources, seed_cost
from kasmina_edge.host.nesting.hierarchy import LIVE, NestedHierarchy, g0_inputs, release_on_cull
from kasmina_edge.host.nesting.walk import ChildWalker, RootRecipe, Task, WalkSettings, accuracy

Say = Callable[[str], None]


@dataclass(frozen=True)
class GrowthPlan:
    """What to grow: flat seeds (one per site, up to ``max_roots``) or one nested seed of ``depth`` levels."""

    name: str
    blueprint: str = "nested_seed"  # or a flat blueprint such as "bottleneck_adapter"
    depth: int = 3
    fanout: int = 2
    rank: int = 2
    max_roots: int = 1
    symptom: str = "shift"  # the Tamiyo site prior the parent level uses
    cull_below: float | None = 0.0  # child level: cull a fossilized child adding less than this
    max_rounds: int = 8

    @property
    def nested(self) -> bool:
        return self.blueprint == "nested_seed"

    def blueprint_params(self) -> dict[str, int]:
        if self.nested:
            return {"depth": self.depth, "fanout": self.fanout, "rank": self.rank}
        return {"rank": self.rank}


@dataclass
class GrowthReport:
    plan: GrowthPlan
    base_val: float
    base_test: float
    val: float = 0.0
    test: float = 0.0
    used: Resources = field(default_factory=Resources)
    budget: Resources = field(default_factory=Resources)
    roots: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0  # refused verdicts (a seed may be refused in several rounds)
    refused_seeds: int = 0  # distinct seeds refused at least once
    culled: int = 0
    live_levels: int = 0
    updates: float = 0.0  # optimizer updates of every seed together (the driver's logical clock)
    seconds: float = 0.0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.__dict__, "base_val": self.base_val, "base_test": self.base_test, "val": self.val,
            "test": self.test, "gain_val": self.val - self.base_val, "gain_test": self.test - self.base_test,
            "used": self.used.to_json(), "budget": self.budget.to_json(), "refused": self.refused,
            "refused_seeds": self.refused_seeds, "culled": self.culled, "live_levels": self.live_levels,
            "updates": self.updates, "seconds": self.seconds, "roots": self.roots,
            "children": self.children, "decisions": self.decisions,
        }  # fmt: skip


def root_cost(model: BeatClassifier, site: str, plan: GrowthPlan) -> Resources:
    """A root asks for its own weights only (a nested root's children ask for theirs when they grow)."""
    from kasmina_edge.host.blueprints import get_blueprint

    channels, length = model.config.site_shapes()[site]
    if plan.nested:
        params = 2 * channels * plan.rank
        return seed_cost(params, params * length, channels, length)
    spec = get_blueprint(plan.blueprint)
    kw = plan.blueprint_params()
    return seed_cost(spec.param_count(channels, **kw), spec.macs(channels, length, **kw), channels, length)


def site_drift(model: BeatClassifier, task: Task) -> list[float]:
    """Per site: how far the task's activations sit from the reference data's (0 without reference)."""
    from kasmina_edge.host.tamiyo.features import site_drift as drift
    from kasmina_edge.host.tamiyo.features import site_stats

    if task.reference is None:
        return [0.0] * len(model.sites)
    with torch.no_grad():
        ref = model.features(task.reference.x)
        now = model.features(task.train.x)
    return [drift(now[s].numpy(), site_stats(ref[s].numpy())) for s in model.sites]


class ParentLevel:
    """Tamiyo's where rule over the model's sites, for one blueprint."""

    def __init__(self, model: BeatClassifier, plan: GrowthPlan) -> None:
        from kasmina_edge.host.blueprints import TARGETS
        from kasmina_edge.host.tamiyo.heuristic import HeuristicTamiyo
        from kasmina_edge.host.tamiyo.masks import GRAFTINGS, ActionSpace, BlueprintCost

        self.sites = tuple(model.sites)
        self.space = ActionSpace(self.sites, (plan.blueprint,), GRAFTINGS)
        self.costs = {
            (s, plan.blueprint): BlueprintCost(root_cost(model, s, plan).params, root_cost(model, s, plan).macs,
                                               frozenset(TARGETS))  # fmt: skip
            for s in self.sites
        }
        self.tamiyo = HeuristicTamiyo(self.space, reference=np.zeros(N_FEATURES, dtype=np.float32))
        self.symptom = plan.symptom

    def rank(self, drift: Sequence[float], busy: set[str]) -> list[str]:
        """Sites in Tamiyo's order; the budget is the arbiter's to enforce, so the mask holds only the
        target and the sites already holding a seed."""
        from kasmina_edge.host.tamiyo.masks import Budget, build_masks

        masks = build_masks(self.space, self.costs, Budget(), busy_sites=busy)
        obs = np.zeros(N_FEATURES, dtype=np.float32)
        for i, d in enumerate(drift[: len(self.sites)]):
            obs[INDEX[f"drift_site{i}"]] = d
        return [self.sites[i] for i in self.tamiyo.rank_sites(obs, masks, self.symptom)]


class ChildLevel:
    """Which child of one nested root grows next, and which is culled (see the module docstring)."""

    def __init__(self, h: NestedHierarchy, walker: ChildWalker, plan: GrowthPlan, say: Say) -> None:
        self.h, self.walker, self.plan, self.say = h, walker, plan, say
        self.decisions: list[dict[str, Any]] = []

    def candidates(self) -> list[str]:
        h = self.h
        return sorted(
            c.seed_id for c in h.children.values()
            if h.stage(c.seed_id) is Stage.DORMANT and h.stage(c.parent_id) is Stage.FOSSILIZED
        )  # fmt: skip

    def round(self, k: int) -> int:
        """One round of requests and walks; returns how many were granted."""
        ids = self.candidates()
        if not ids:
            return 0
        estimates = {sid: self.walker.estimate_gain(sid) for sid in ids}
        verdicts = self.h.germinate(estimates)
        granted = [v.seed_id for v in verdicts if v.granted and self.h.stage(v.seed_id) is Stage.GERMINATED]
        for sid in granted:
            self.say(f"{self.plan.name}: child {sid}")
            stage = self.walker.walk(sid)
            self.decisions.append({"round": k, "action": "grow", "seed_id": sid, "estimate": estimates[sid],
                                   "final_stage": stage.name, "gain": self.h.child(sid).gain})  # fmt: skip
        for v in verdicts:
            if not v.granted:
                self.decisions.append({"round": k, "action": "refused", "seed_id": v.seed_id, "reason": v.reason})
        return len(granted)

    def cull_weakest(self, k: int) -> str | None:
        if self.plan.cull_below is None:
            return None
        fossils = sorted(c.seed_id for c in self.h.children.values() if self.h.stage(c.seed_id) is Stage.FOSSILIZED)
        if not fossils:
            return None
        adds = {sid: self.walker.ablation_gain(sid) for sid in fossils}
        weakest = min(fossils, key=lambda s: (adds[s], s))
        if adds[weakest] >= self.plan.cull_below:
            return None
        reason = f"low_gain: ablation {adds[weakest]:+.4f} < {self.plan.cull_below:g}"
        self.h.cull(weakest, reason)
        self.decisions.append({"round": k, "action": "cull", "seed_id": weakest, "reason": reason})
        return weakest

    def grow(self) -> None:
        for k in range(self.plan.max_rounds):
            grown = self.round(k)
            culled = self.cull_weakest(k)
            if not grown and culled is None:
                break


class HierarchicalController:
    """Grows a plan on a copy of the base within one shared budget; returns what it measured."""

    def __init__(self, budget: Resources, settings: WalkSettings, *, max_depth: int = 3, child_share: float = 0.5,
                 seed: int = 0, say: Say | None = None) -> None:  # fmt: skip
        self.budget, self.s, self.max_depth, self.child_share = budget, settings, max_depth, child_share
        self.seed, self.say = seed, say or (lambda _m: None)

    def grow(self, base: BeatClassifier, task: Task, plan: GrowthPlan) -> GrowthReport:
        from kasmina_edge.host.seed_driver import DriverLimits, SeedDriver
        from kasmina_edge.host.tamiyo.masks import Budget

        t0 = time.perf_counter()
        torch.manual_seed(self.seed)
        s = self.s
        limits = DriverLimits(s.lr, s.blend_steps, s.max_oscillation, s.max_drift)
        driver = SeedDriver(base, Budget(), limits, seed=self.seed, watch=list(base.sites))
        arbiter = Arbiter(self.budget, max_depth=self.max_depth, child_share=self.child_share)
        release_on_cull(driver.engine, arbiter)
        recipe = RootRecipe(driver, task, s)
        report = GrowthReport(plan, recipe.baseline, accuracy(driver.model, task.test), budget=self.budget)
        specs = self._pick_roots(driver, task, plan, arbiter, report)
        driver.germinate(specs, recipe.baseline)
        self.say(f"{plan.name}: roots {[sp.site for sp in specs]}")
        driver.run(recipe)
        hierarchies = []
        for grown in driver.seeds:
            report.roots.append({"seed_id": grown.seed_id, "site": grown.spec.site, "final_stage": grown.final_stage,
                                 "reason": grown.reason})  # fmt: skip
            if plan.nested and grown.final_stage == Stage.FOSSILIZED.name:
                h = NestedHierarchy(driver.layer(grown), grown.seed_id, arbiter, emit=driver.emit)
                walker = ChildWalker(driver, grown.spec.site, h, task, s, driver.emit)
                level = ChildLevel(h, walker, plan, self.say)
                level.grow()
                report.decisions += level.decisions
                hierarchies.append(h)
        self._finish(report, driver, task, arbiter, hierarchies, t0)
        return report

    def _pick_roots(self, driver: Any, task: Task, plan: GrowthPlan, arbiter: Arbiter, report: GrowthReport) -> list[Any]:
        """Parent level: Tamiyo's sites in order, each asked of the arbiter, until ``max_roots`` are granted."""
        from kasmina_edge.host.seed_driver import SeedSpec

        parent = ParentLevel(driver.model, plan)
        drift = site_drift(driver.model, task)
        specs: list[SeedSpec] = []
        busy: set[str] = set()
        while len(specs) < plan.max_roots:
            ranked = parent.rank(drift, busy)
            if not ranked:
                break
            site = ranked[0]
            busy.add(site)
            sid = f"site{list(driver.model.sites).index(site)}/all"
            cost = root_cost(driver.model, site, plan)
            verdict = arbiter.request(Request(sid, cost, None, gain=float(drift[list(driver.model.sites).index(site)])))
            report.decisions.append({"action": "site", "site": site, "seed_id": sid, "granted": verdict.granted,
                                     "reason": verdict.reason, "drift": drift})  # fmt: skip
            if verdict.granted:
                specs.append(SeedSpec(site, plan.blueprint, "fixed_ramp", params=plan.blueprint_params()))
            else:  # G0 with the arbiter's allowance: the seed stays DORMANT with the gate's reason
                driver.engine.register(sid)
                driver.engine.evaluate(sid, Stage.GERMINATED, g0_inputs(plan.blueprint, cost, verdict))
        return specs

    def _finish(self, report: GrowthReport, driver: Any, task: Task, arbiter: Arbiter,
                hierarchies: list[NestedHierarchy], t0: float) -> None:  # fmt: skip
        report.val = accuracy(driver.model, task.val)
        report.test = accuracy(driver.model, task.test)
        report.used = arbiter.used()
        refusals = [e["seed_id"] for e in arbiter.log if e["event"] == "arbitration" and not e["granted"]]
        report.refused, report.refused_seeds = len(refusals), len(set(refusals))
        report.culled = sum(1 for e in driver.events if e.get("event") == "transition" and e.get("to") == "CULLED")
        live_roots = [r for r in report.roots if r["final_stage"] == Stage.FOSSILIZED.name]
        report.live_levels = max([h.live_levels() for h in hierarchies] + [1 if live_roots else 0])
        report.children = [c for h in hierarchies for c in h.tree()]
        report.events = list(driver.events) + list(arbiter.log)
        report.updates = driver.clock.now
        report.seconds = time.perf_counter() - t0
        self.say(f"{report.plan.name}: val {report.val:.3f} (base {report.base_val:.3f}), used {report.used.params}")
        assert all(driver.engine.stage(c["seed_id"]) not in LIVE or arbiter.granted(c["seed_id"]) for c in report.children)
