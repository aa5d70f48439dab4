"""Children of a nested seed as lifecycle participants: ids, the order rule, cascades, G0 arbitration."""

from __future__ import annotations

import copy

import pytest
import torch

from kasmina_edge.contracts.errors import IllegalTransitionError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina import (
    GradientHealthInputs,
    InterfaceInputs,
    KasminaLayer,
    LifecycleEngine,
    StabilityInputs,
    SystemImpactInputs,
)
from kasmina_edge.host.nesting.arbitration import Arbiter, Request, Resources
from kasmina_edge.host.nesting.hierarchy import NestedHierarchy, release_on_cull

C, L = 8, 4
UNIT = 2 * C * 2  # one node's own parameters (rank 2)

PASS = {
    Stage.TRAINING: GradientHealthInputs(0, False, (3.0, 2.5, 2.0, 1.5, 1.0), (0.5,) * 5),
    Stage.BLENDING: StabilityInputs((0.0, 0.5, 1.0), 0.1, (0.5, 0.5, 0.5)),
    Stage.SHADOWING: InterfaceInputs((2, C, L), (2, C, L), "torch.float32", "torch.float32", True),
    Stage.PROBATIONARY: SystemImpactInputs(0.6, 0.5),
}


def _walk(advance, stage_of, sid: str, to: Stage) -> None:  # type: ignore[no-untyped-def]
    while stage_of(sid) < to:
        advance(sid, PASS.get(stage_of(sid)))


def _setup(depth: int = 3, units: int = 20, max_depth: int = 3, child_share: float = 1.0):  # type: ignore[no-untyped-def]
    engine = LifecycleEngine()
    layer = KasminaLayer(C, 1, 2, length=L, engine=engine)
    arb = Arbiter(Resources(UNIT * units, UNIT * L * units, 10**9), max_depth=max_depth, child_share=child_share)
    release_on_cull(engine, arb)
    assert arb.request(Request("site2/all", Resources(UNIT, UNIT * L, 0))).granted
    root = layer.germinate(None, "nested_seed", depth=depth, fanout=2, rank=2)
    h = NestedHierarchy(layer, root, arb)
    return layer, h, arb


def _root_to(layer: KasminaLayer, to: Stage) -> None:
    _walk(layer.advance, layer.engine.stage, "site2/all", to)


def _child_to(h: NestedHierarchy, sid: str, to: Stage) -> None:
    if h.stage(sid) is Stage.DORMANT:
        assert h.germinate({sid: 1.0})[0].granted
    _walk(h.advance, h.stage, sid, to)


def _randomise(h: NestedHierarchy) -> None:
    with torch.no_grad():
        for p in h.root.parameters():
            p.normal_(std=0.5)


def test_every_child_has_its_own_seed_id_and_starts_dormant_off_the_path() -> None:
    layer, h, _ = _setup()
    assert sorted(h.children) == [
        "site2/all/c0", "site2/all/c0/c0", "site2/all/c0/c1", "site2/all/c1", "site2/all/c1/c0", "site2/all/c1/c1",
    ]  # fmt: skip
    assert h.levels() == 3 and h.child("site2/all/c0/c1").level == 3
    assert all(layer.engine.stage(s) is Stage.DORMANT for s in h.children)
    assert h.root.child_live == [False, False] and float(h.root.child_alpha.sum()) == 0.0
    _randomise(h)
    x = torch.randn(2, C, L)
    with torch.no_grad():
        alone = h.root.own(x) + x  # with every child off, the root is its own bottleneck
        assert torch.allclose(h.root(x), alone)


def test_a_child_is_never_ahead_of_its_parent() -> None:
    layer, h, _ = _setup()
    _root_to(layer, Stage.TRAINING)
    with pytest.raises(IllegalTransitionError, match="parent site2/all/c0 is DORMANT"):
        h.germinate({"site2/all/c0/c0": 1.0})
    _child_to(h, "site2/all/c0", Stage.TRAINING)  # as far as the parent: allowed
    with pytest.raises(IllegalTransitionError, match="cannot move to BLENDING while its parent site2/all is TRAINING"):
        h.advance("site2/all/c0", PASS[Stage.TRAINING])
    assert h.stage("site2/all/c0") is Stage.TRAINING
    _root_to(layer, Stage.FOSSILIZED)
    _child_to(h, "site2/all/c0", Stage.FOSSILIZED)
    assert h.stage("site2/all/c0") is Stage.FOSSILIZED


def test_culling_a_child_culls_its_subtree_frees_it_and_the_parent_keeps_working() -> None:
    layer, h, arb = _setup()
    _root_to(layer, Stage.FOSSILIZED)
    for sid in ("site2/all/c0", "site2/all/c0/c1", "site2/all/c1"):
        _child_to(h, sid, Stage.FOSSILIZED)
    _randomise(h)
    used = arb.used().params
    x = torch.randn(3, C, L)
    expected = copy.deepcopy(h.root)
    expected.set_child(0, 0.0, False)
    h.cull("site2/all/c0", "low_gain: test")
    assert h.stage("site2/all/c0") is Stage.EMBARGOED and h.stage("site2/all/c0/c1") is Stage.EMBARGOED
    assert h.child("site2/all/c0/c1").reason == "parent_culled: site2/all/c0"
    assert h.stage("site2/all/c1") is Stage.FOSSILIZED and h.stage("site2/all") is Stage.FOSSILIZED
    assert float(h.root.child_alpha[0]) == 0.0 and h.root.child_live[0] is False
    assert arb.used().params == used - 2 * UNIT
    with torch.no_grad():
        assert torch.equal(h.root(x), expected(x))
        out = layer(x)
    assert torch.isfinite(out).all()


def test_culling_the_root_in_its_layer_culls_every_live_child_and_frees_the_pool() -> None:
    layer, h, arb = _setup()
    _root_to(layer, Stage.FOSSILIZED)
    _child_to(h, "site2/all/c1", Stage.FOSSILIZED)
    _child_to(h, "site2/all/c1/c0", Stage.SHADOWING)
    layer.cull("site2/all", "health_test")
    assert all(h.stage(s) in (Stage.DORMANT, Stage.EMBARGOED) for s in h.children)
    assert h.stage("site2/all/c1/c0") is Stage.EMBARGOED
    assert arb.used() == Resources()


def test_a_refused_request_stays_dormant_with_a_g0_reason_and_gets_the_room_a_cull_frees() -> None:
    layer, h, arb = _setup(units=3)  # root + two children fit; a third child of the pool does not
    _root_to(layer, Stage.FOSSILIZED)
    _child_to(h, "site2/all/c0", Stage.FOSSILIZED)
    _child_to(h, "site2/all/c1", Stage.FOSSILIZED)
    (v,) = h.germinate({"site2/all/c0/c0": 0.5})
    assert not v.granted and v.constraint == "pool"
    assert h.stage("site2/all/c0/c0") is Stage.DORMANT
    g0 = [e for e in layer.engine.events if e.get("seed_id") == "site2/all/c0/c0" and e["event"] == "gate"]
    assert g0 and g0[-1]["gate"] == "G0" and not g0[-1]["passed"] and f"params {UNIT} > budget 0" in g0[-1]["reason"]
    assert h.child("site2/all/c0/c0").reason.startswith("gate_G0_failed: params")
    h.cull("site2/all/c1", "low_gain: test")  # frees one unit
    (v2,) = h.germinate({"site2/all/c0/c0": 0.5})
    assert v2.granted and h.stage("site2/all/c0/c0") is Stage.GERMINATED


def test_the_depth_limit_refuses_a_fourth_level_at_g0() -> None:
    layer, h, _ = _setup(depth=4, max_depth=3)
    _root_to(layer, Stage.FOSSILIZED)
    for sid in ("site2/all/c0", "site2/all/c0/c0"):
        _child_to(h, sid, Stage.FOSSILIZED)
    (v,) = h.germinate({"site2/all/c0/c0/c0": 1.0})
    assert not v.granted and v.constraint == "depth" and v.depth == 4
    assert h.stage("site2/all/c0/c0/c0") is Stage.DORMANT
    assert "depth 4 > limit 3" in h.child("site2/all/c0/c0/c0").reason


def test_a_parent_share_refuses_a_grandchild_and_germination_rounds_are_deterministic() -> None:
    outcomes = []
    for order in (["site2/all/c0", "site2/all/c1"], ["site2/all/c1", "site2/all/c0"]):
        layer, h, arb = _setup(units=4, child_share=0.5)  # each child's subtree: 2 units
        _root_to(layer, Stage.FOSSILIZED)
        verdicts = h.germinate({sid: 0.1 for sid in order})  # equal gains: ties by id
        outcomes.append([(v.seed_id, v.granted) for v in verdicts])
        for sid in ("site2/all/c0", "site2/all/c1"):
            if h.stage(sid) is Stage.GERMINATED:
                _walk(h.advance, h.stage, sid, Stage.FOSSILIZED)
        left = [v for v in h.germinate({"site2/all/c0/c0": 0.3, "site2/all/c0/c1": 0.2})]
        outcomes.append([(v.seed_id, v.granted, v.constraint) for v in left])
    assert outcomes[0] == outcomes[2] and outcomes[1] == outcomes[3]
    # 4 units: root 1; c0 and c1 one each; c0/c0 takes the last; c0/c1 refused by the pool
    assert outcomes[0] == [("site2/all/c0", True), ("site2/all/c1", True)]
    assert outcomes[1] == [("site2/all/c0/c0", True, ""), ("site2/all/c0/c1", False, "pool")]


def test_a_culled_child_comes_back_dormant_behind_g5_function_preserving(clock) -> None:  # type: ignore[no-untyped-def]
    engine = LifecycleEngine(clock=clock)
    layer = KasminaLayer(C, 1, 2, length=L, engine=engine)
    arb = Arbiter(Resources(10**6, 10**6, 10**9))
    arb.request(Request("site2/all", Resources(UNIT, UNIT * L, 0)))
    h = NestedHierarchy(layer, layer.germinate(None, "nested_seed", rank=2), arb)
    _root_to(layer, Stage.FOSSILIZED)
    _child_to(h, "site2/all/c0", Stage.FOSSILIZED)
    _randomise(h)
    h.cull("site2/all/c0", "low_gain: test")
    clock.advance(10_000)
    engine.tick()
    assert h.stage("site2/all/c0") is Stage.DORMANT
    assert float(h.child("site2/all/c0").node.own.up.weight.detach().abs().sum()) == 0.0
    g5 = [e for e in engine.events if e.get("seed_id") == "site2/all/c0" and e["event"] == "gate" and e["gate"] == "G5"]
    assert g5 and g5[-1]["passed"]


def test_memory_alone_refuses_at_g0_naming_the_arbiter() -> None:
    engine = LifecycleEngine()
    layer = KasminaLayer(C, 1, 2, length=L, engine=engine)
    arb = Arbiter(Resources(10**6, 10**6, 4 * (UNIT + C * L) + 10))  # the root's memory and 10 bytes more
    arb.request(Request("site2/all", Resources(UNIT, UNIT * L, 4 * (UNIT + C * L))))
    h = NestedHierarchy(layer, layer.germinate(None, "nested_seed", rank=2), arb)
    _root_to(layer, Stage.FOSSILIZED)
    (v,) = h.germinate({"site2/all/c1": 1.0})
    assert not v.granted and "memory" in v.reason
    reason = h.child("site2/all/c1").reason
    assert reason.startswith("gate_G0_failed: target arbiter [pool: memory") and h.stage("site2/all/c1") is Stage.DORMANT


def test_the_exported_seed_holds_only_the_children_on_the_path() -> None:
    layer, h, _ = _setup()
    _root_to(layer, Stage.FOSSILIZED)
    probe = torch.randn(2, C, L)

    def convs() -> int:
        graph = torch.export.export(h.root, (probe,)).graph
        return sum(1 for n in graph.nodes if n.op == "call_function" and "conv" in str(n.target))

    assert convs() == 2  # the root's own bottleneck only
    _child_to(h, "site2/all/c0", Stage.FOSSILIZED)
    _child_to(h, "site2/all/c0/c1", Stage.FOSSILIZED)
    assert convs() == 6
    h.cull("site2/all/c0", "low_gain: test")
    assert convs() == 2
