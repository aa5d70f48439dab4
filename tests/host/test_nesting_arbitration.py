"""The arbiter alone: one pool shared across levels, shares, the depth limit, the ranking rule, releases."""

from __future__ import annotations

import itertools

import pytest

from kasmina_edge.host.nesting.arbitration import Arbiter, ArbitrationError, Request, Resources

UNIT = Resources(params=100, macs=400, memory=800)


def _arbiter(units: int = 10, **kw: object) -> Arbiter:
    return Arbiter(Resources(100 * units, 400 * units, 800 * units), **kw)  # type: ignore[arg-type]


def test_oversubscription_grants_by_gain_per_param_and_names_the_winner() -> None:
    arb = _arbiter(3, child_share=1.0)
    assert arb.request(Request("r", UNIT)).granted
    # 200 params left; two children ask for 200 each: only the better gain per parameter gets it
    big = Resources(200, 800, 1600)
    verdicts = arb.arbitrate([Request("r/c0", big, "r", gain=0.02), Request("r/c1", big, "r", gain=0.05)])
    by_id = {v.seed_id: v for v in verdicts}
    assert by_id["r/c1"].granted and by_id["r/c1"].rank == 0
    assert not by_id["r/c0"].granted and by_id["r/c0"].constraint == "pool"
    assert "outranked by r/c1" in by_id["r/c0"].reason
    assert arb.remaining() == Resources(0, 0, 0)


def test_ties_are_broken_by_seed_id_and_the_outcome_ignores_request_order() -> None:
    reqs = [Request(f"r/c{i}", UNIT, "r", gain=g) for i, g in enumerate([0.1, 0.3, 0.3, 0.2])]
    outcomes = set()
    for perm in itertools.permutations(reqs):
        arb = _arbiter(4, child_share=1.0)
        arb.request(Request("r", UNIT))
        verdicts = arb.arbitrate(list(perm))
        outcomes.add(tuple((v.seed_id, v.granted) for v in verdicts))
    assert len(outcomes) == 1
    (only,) = outcomes
    # 300 params left for four 100-param children: gains 0.3 (c1, c2 by id), then 0.2 (c3); c0 refused
    assert only == (("r/c1", True), ("r/c2", True), ("r/c3", True), ("r/c0", False))


def test_a_child_cannot_ask_beyond_its_parents_share() -> None:
    arb = _arbiter(10, child_share=0.5)
    arb.request(Request("r", UNIT))  # share: the whole pool (1000 params)
    assert arb.request(Request("r/c0", UNIT, "r")).granted  # c0's share: 500
    v = arb.request(Request("r/c0/c0", Resources(300, 1200, 2400), "r/c0"))  # own share 250 < 300
    assert not v.granted and v.constraint == "share:r/c0/c0" and "own share" in v.reason
    assert arb.request(Request("r/c0/c0", Resources(250, 1000, 2000), "r/c0")).granted
    # c0's subtree now uses 350 of its 500; another 200-param grandchild would take it to 550
    v2 = arb.request(Request("r/c0/c1", Resources(200, 800, 1600), "r/c0"))
    assert not v2.granted and v2.constraint == "share:r/c0", v2.reason
    assert arb.remaining().params == 1000 - 450  # the pool itself still had room: the share refused it


def test_memory_alone_can_refuse() -> None:
    arb = Arbiter(Resources(1000, 10_000, 1000))
    v = arb.request(Request("r", Resources(10, 10, 2000)))
    assert not v.granted and "memory 2000 > 1000" in v.reason


def test_depth_limit_and_missing_parent() -> None:
    arb = _arbiter(10, max_depth=2, child_share=1.0)
    arb.request(Request("r", UNIT))
    assert arb.request(Request("r/c0", UNIT, "r")).granted
    v = arb.request(Request("r/c0/c0", UNIT, "r/c0"))
    assert not v.granted and v.constraint == "depth" and v.depth == 3
    v = arb.request(Request("q/c0", UNIT, "q"))
    assert not v.granted and v.constraint == "parent"


def test_release_frees_the_subtree_and_a_later_request_gets_it() -> None:
    arb = _arbiter(4, child_share=1.0)
    arb.request(Request("r", UNIT))
    arb.request(Request("r/c0", UNIT, "r"))
    arb.request(Request("r/c0/c0", UNIT, "r/c0"))
    arb.request(Request("r/c1", UNIT, "r"))
    refused = arb.request(Request("r/c1/c0", UNIT, "r/c1"))
    assert not refused.granted
    freed = arb.release("r/c0")
    assert freed.params == 200 and not arb.granted("r/c0/c0") and arb.granted("r")
    assert arb.request(Request("r/c1/c0", UNIT, "r/c1")).granted
    assert [e["event"] for e in arb.log].count("release") == 1


def test_a_duplicate_and_a_bad_budget_are_refused() -> None:
    arb = _arbiter(4)
    arb.request(Request("r", UNIT))
    assert arb.request(Request("r", UNIT)).constraint == "duplicate"
    with pytest.raises(ArbitrationError):
        arb.arbitrate([Request("a", UNIT), Request("a", UNIT)])
    with pytest.raises(ArbitrationError, match="child_share"):
        Arbiter(UNIT, child_share=0.0)
