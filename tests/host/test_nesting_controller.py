"""The hierarchical controller on a small real training task: parent level, child level, the shared budget."""

from __future__ import annotations

import pytest
import torch

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina.layer import host_parameters
from kasmina_edge.host.model import BeatClassifier, ModelConfig
from kasmina_edge.host.nesting.arbitration import Resources
from kasmina_edge.host.nesting.controller import (
    GrowthPlan,
    HierarchicalController,
    ParentLevel,
    root_cost,
)
from kasmina_edge.host.nesting.walk import Task, TaskData, WalkSettings

CFG = ModelConfig(name="t", channels=(4, 8, 8, 8), kernels=(3, 3, 3, 3), convs_per_block=1, head_hidden=8,
                  chunks=(1, 1, 1, 1), window=32, n_rr=0, n_classes=3)  # fmt: skip
FAST = WalkSettings(train_steps=8, blend_steps=2, blend_batches=1, batch_size=32, probe=64, max_oscillation=1.0,
                    tolerance=1.0, min_gain=-1.0)  # fmt: skip


def _data(n: int, gen: torch.Generator, flip: bool) -> TaskData:
    """Class = which third of the window holds a bump; the shifted domain is the window reversed."""
    y = torch.randint(0, 3, (n,), generator=gen)
    x = 0.3 * torch.randn(n, 1, 32, generator=gen)
    for i in range(n):
        a = int(y[i]) * 10
        x[i, 0, a : a + 10] += 1.0
    return TaskData(x.flip(-1) if flip else x, torch.zeros(n, 0), y)


@pytest.fixture(scope="module")
def setup() -> tuple[BeatClassifier, Task]:
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    base = BeatClassifier(CFG)
    clean = _data(256, gen, flip=False)
    opt = torch.optim.Adam(host_parameters(base), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(base(clean.x, clean.aux), clean.y).backward()
        opt.step()
    task = Task(_data(192, gen, True), _data(96, gen, True), _data(96, gen, True), reference=clean)
    return base.eval(), task


def _units(base: BeatClassifier, n: float) -> Resources:
    return root_cost(base, "site3", GrowthPlan("u")).scaled(n)


def test_parent_level_follows_tamiyos_where_rule_and_skips_busy_sites(setup) -> None:  # type: ignore[no-untyped-def]
    base, _ = setup
    parent = ParentLevel(base, GrowthPlan("p", symptom="morphology"))  # prior (0.4, 1.0, 0.8, 0.5)
    assert parent.rank([0.0, 0.0, 1.0, 0.0], set()) == ["site2", "site1", "site3", "site0"]
    assert parent.rank([0.0, 0.0, 0.0, 0.0], {"site1"}) == ["site2", "site3", "site0"]


def test_nested_growth_stays_within_the_shared_budget_and_the_order_rule(setup) -> None:  # type: ignore[no-untyped-def]
    base, task = setup
    budget = _units(base, 4)
    report = HierarchicalController(budget, FAST, seed=0).grow(base, task, GrowthPlan("n3", depth=3, cull_below=None))
    assert report.roots[0]["final_stage"] == "FOSSILIZED"
    assert not report.used.exceeds(budget) and report.used.params == budget.params  # 4 nodes of 7 fit
    stages = {c["seed_id"]: c["stage"] for c in report.children} | {"site3/all": "FOSSILIZED"}
    order = [s.name for s in Stage]
    for sid, stage in stages.items():
        if sid != "site3/all" and stage in ("GERMINATED", "TRAINING", "BLENDING", "SHADOWING", "PROBATIONARY", "FOSSILIZED"):
            parent = sid.rsplit("/", 1)[0]
            assert order.index(stages[parent]) >= order.index(stage), (sid, stage, stages[parent])
    refused = [c for c in report.children if c["stage"] == "DORMANT" and c["reason"]]
    assert len(refused) == report.refused_seeds >= 1
    assert all(c["reason"].startswith("gate_G0_failed: params") for c in refused)
    g0 = {e["seed_id"] for e in report.events if e.get("event") == "gate" and e["gate"] == "G0" and not e["passed"]}
    assert {c["seed_id"] for c in refused} <= g0
    assert report.live_levels == 3


@pytest.mark.slow  # two whole growths; the arbiter's and the hierarchy's determinism tests are in the default suite
def test_growth_is_deterministic(setup) -> None:  # type: ignore[no-untyped-def]
    base, task = setup
    runs = [HierarchicalController(_units(base, 3), FAST, seed=3).grow(base, task, GrowthPlan("n", depth=2))
            for _ in range(2)]  # fmt: skip
    a, b = (r.to_json() for r in runs)
    for key in ("children", "decisions", "val", "used", "refused"):
        assert a[key] == b[key], key


def test_a_cull_frees_room_that_a_refused_child_is_granted_in_a_later_round(setup) -> None:  # type: ignore[no-untyped-def]
    base, task = setup
    # cull_below above any possible gain: after every round the weakest fossilized child is culled
    plan = GrowthPlan("churn", depth=2, cull_below=2.0, max_rounds=4)
    report = HierarchicalController(_units(base, 2), FAST, seed=0).grow(base, task, plan)
    d = report.decisions
    refused_at = {x["seed_id"]: x["round"] for x in d if x["action"] == "refused"}
    later = [x for x in d if x["action"] == "grow" and x["seed_id"] in refused_at and x["round"] > refused_at[x["seed_id"]]]
    assert refused_at and later, d
    culls = [x for x in d if x["action"] == "cull"]
    assert culls and all(x["reason"].startswith("low_gain: ablation") for x in culls)


def test_flat_roots_take_sites_in_tamiyos_order_until_the_budget_refuses(setup) -> None:  # type: ignore[no-untyped-def]
    base, task = setup
    plan = GrowthPlan("flat", blueprint="bottleneck_adapter", rank=2, max_roots=4)
    budget = Resources(root_cost(base, "site3", plan).params * 2, 10**9, 10**9)  # two 8-channel seeds
    report = HierarchicalController(budget, FAST, seed=0).grow(base, task, plan)
    granted = [x["site"] for x in report.decisions if x["action"] == "site" and x["granted"]]
    refused = [x for x in report.decisions if x["action"] == "site" and not x["granted"]]
    assert len(granted) == 2 and granted == [r["site"] for r in report.roots]
    assert refused and all("pool: params" in x["reason"] for x in refused)
    assert report.used.params <= budget.params
