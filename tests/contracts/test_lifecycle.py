"""The lifecycle contract: the transition table is exactly ARCHITECTURE.md's, and SeedLifecycle enforces it."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kasmina_edge.contracts.errors import IllegalTransitionError, KasminaError
from kasmina_edge.contracts.lifecycle import (
    TRANSITIONS,
    EmbargoPolicy,
    Gate,
    GateResult,
    SeedLifecycle,
    Stage,
    TransitionEvent,
    legal_targets,
    required_gate,
)

S = Stage
LIVE = [S.GERMINATED, S.TRAINING, S.BLENDING, S.SHADOWING, S.PROBATIONARY, S.FOSSILIZED]

# ARCHITECTURE.md, "Seed lifecycle", written out row by row (not derived from the code under test).
EXPECTED: dict[tuple[Stage, Stage], Gate | None] = {
    (S.DORMANT, S.GERMINATED): Gate.G0,
    (S.GERMINATED, S.TRAINING): None,
    (S.TRAINING, S.BLENDING): Gate.G1,
    (S.BLENDING, S.SHADOWING): Gate.G2,
    (S.SHADOWING, S.PROBATIONARY): Gate.G3,
    (S.PROBATIONARY, S.FOSSILIZED): Gate.G4,
    (S.GERMINATED, S.CULLED): None,
    (S.TRAINING, S.CULLED): None,
    (S.BLENDING, S.CULLED): None,
    (S.SHADOWING, S.CULLED): None,
    (S.PROBATIONARY, S.CULLED): None,
    (S.FOSSILIZED, S.CULLED): None,
    (S.CULLED, S.EMBARGOED): None,
    (S.EMBARGOED, S.RESETTING): None,
    (S.RESETTING, S.DORMANT): Gate.G5,
    (S.DORMANT, S.TERMINATED): None,
    (S.GERMINATED, S.TERMINATED): None,
    (S.TRAINING, S.TERMINATED): None,
    (S.BLENDING, S.TERMINATED): None,
    (S.SHADOWING, S.TERMINATED): None,
    (S.PROBATIONARY, S.TERMINATED): None,
    (S.FOSSILIZED, S.TERMINATED): None,
    (S.CULLED, S.TERMINATED): None,
    (S.EMBARGOED, S.TERMINATED): None,
    (S.RESETTING, S.TERMINATED): None,
}

# The path from DORMANT through every stage of the happy path and back round the cull loop.
HAPPY = [
    (S.GERMINATED, Gate.G0),
    (S.TRAINING, None),
    (S.BLENDING, Gate.G1),
    (S.SHADOWING, Gate.G2),
    (S.PROBATIONARY, Gate.G3),
    (S.FOSSILIZED, Gate.G4),
]


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def passed(gate: Gate) -> GateResult:
    return GateResult(gate, True, "ok", {"metric": 1.0})


def walk_to(lc: SeedLifecycle, target: Stage) -> None:
    """Drive ``lc`` from DORMANT along the happy path until it reaches ``target``."""
    for dst, gate in HAPPY:
        lc.move(dst, reason="test", gate=passed(gate) if gate else None)
        if dst is target:
            return
    raise AssertionError(f"{target} not on the happy path")


def test_eleven_stages_in_order() -> None:
    assert [s.name for s in Stage] == [
        "DORMANT",
        "GERMINATED",
        "TRAINING",
        "BLENDING",
        "SHADOWING",
        "PROBATIONARY",
        "FOSSILIZED",
        "CULLED",
        "EMBARGOED",
        "RESETTING",
        "TERMINATED",
    ]


def test_transition_table_is_exactly_the_architecture_table() -> None:
    assert TRANSITIONS == EXPECTED


ARCHITECTURE = Path(__file__).resolve().parents[2].parent / "shared" / "ARCHITECTURE.md"


def _architecture_table(text: str) -> dict[tuple[Stage, Stage], Gate | None]:
    """The "from | to | gate" table of ARCHITECTURE.md's "Seed lifecycle" section, as a dict."""
    section = text.split("## Seed lifecycle", 1)[1].split("\n## ", 1)[0]
    table: dict[tuple[Stage, Stage], Gate | None] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("from", "") or set(cells[0]) <= set("-: "):
            continue
        src_cell, dst_cell, gate_cell = cells
        if src_cell.startswith("every stage but "):
            excluded = Stage[src_cell.removeprefix("every stage but ").strip()]
            sources = [s for s in Stage if s is not excluded]
        else:
            sources = [Stage[name.strip()] for name in src_cell.split(",")]
        gate = Gate(gate_cell.split()[0]) if gate_cell.startswith("G") else None
        for src in sources:
            assert (src, Stage[dst_cell]) not in table, f"row repeated: {line}"
            table[(src, Stage[dst_cell])] = gate
    return table


@pytest.mark.skipif(not ARCHITECTURE.exists(), reason=f"{ARCHITECTURE} not present (checked in CI)")
def test_transition_table_matches_the_architecture_document() -> None:
    """Read the table from the document itself, so an edit to either side is caught."""
    assert _architecture_table(ARCHITECTURE.read_text()) == TRANSITIONS


@pytest.mark.parametrize("src", list(Stage))
@pytest.mark.parametrize("dst", list(Stage))
def test_every_move_outside_the_table_is_refused(src: Stage, dst: Stage) -> None:
    if (src, dst) in EXPECTED:
        assert required_gate(src, dst) == EXPECTED[(src, dst)]
        assert dst in legal_targets(src)
        return
    with pytest.raises(IllegalTransitionError, match=f"illegal lifecycle move {src.name} -> {dst.name}"):
        required_gate(src, dst)
    assert dst not in legal_targets(src)


def test_illegal_move_message_names_the_allowed_moves() -> None:
    lc = SeedLifecycle("s1")
    with pytest.raises(IllegalTransitionError) as info:
        lc.move(S.BLENDING, reason="skip ahead")
    msg = str(info.value)
    assert "DORMANT -> BLENDING" in msg and "GERMINATED" in msg and "TERMINATED" in msg
    assert lc.stage is S.DORMANT and lc.history == []
    assert isinstance(info.value, KasminaError)


def test_happy_path_records_every_move_with_its_gate() -> None:
    events: list[TransitionEvent] = []
    lc = SeedLifecycle("s1", clock=FakeClock(), sink=events.append)
    walk_to(lc, S.FOSSILIZED)
    assert lc.stage is S.FOSSILIZED
    assert [e.dst for e in lc.history] == [dst for dst, _ in HAPPY]
    assert events == lc.history
    for event, (_, gate) in zip(lc.history, HAPPY, strict=True):
        assert (event.gate.gate if event.gate else None) == gate
    as_json = lc.history[0].to_json()
    assert as_json["from"] == "DORMANT" and as_json["to"] == "GERMINATED" and as_json["gate"] == "G0"


@pytest.mark.parametrize(("dst", "gate"), [(dst, gate) for dst, gate in HAPPY if gate is not None])
def test_gated_move_refused_when_gate_missing_failed_or_wrong(dst: Stage, gate: Gate) -> None:
    lc = SeedLifecycle("s1", clock=FakeClock())
    # walk to the stage just before dst
    for step, step_gate in HAPPY:
        if step is dst:
            break
        lc.move(step, reason="test", gate=passed(step_gate) if step_gate else None)
    before = lc.stage
    with pytest.raises(IllegalTransitionError, match=f"needs gate {gate.value}.*not evaluated"):
        lc.move(dst, reason="no gate")
    with pytest.raises(IllegalTransitionError, match=f"gate {gate.value} .* failed: loss is NaN"):
        lc.move(dst, reason="bad", gate=GateResult(gate, False, "loss is NaN"))
    wrong = next(g for g in Gate if g is not gate)
    with pytest.raises(IllegalTransitionError, match=f"needs gate {gate.value}, got {wrong.value}"):
        lc.move(dst, reason="wrong", gate=GateResult(wrong, True, "ok"))
    assert lc.stage is before
    lc.move(dst, reason="ok", gate=passed(gate))
    assert lc.stage is dst


@pytest.mark.parametrize("live", LIVE)
def test_cull_needs_a_reason(live: Stage) -> None:
    lc = SeedLifecycle("s1", clock=FakeClock())
    walk_to(lc, live)
    for reason in ("", "   "):
        with pytest.raises(IllegalTransitionError, match="culling needs a reason"):
            lc.move(S.CULLED, reason=reason)
    assert lc.stage is live
    lc.move(S.CULLED, reason="health_nan")
    assert lc.stage is S.CULLED and lc.cull_reason == "health_nan"


@pytest.mark.parametrize(
    ("reason", "policy_attr"), [("condition_cleared", "hysteresis_s"), ("health_latency", "fault_s")]
)
def test_embargo_length_depends_on_cull_reason(reason: str, policy_attr: str) -> None:
    clock = FakeClock(1000.0)
    policy = EmbargoPolicy(hysteresis_s=30.0, fault_s=600.0)
    wait = getattr(policy, policy_attr)
    lc = SeedLifecycle("s1", clock=clock, embargo=policy)
    walk_to(lc, S.PROBATIONARY)
    lc.move(S.CULLED, reason=reason)
    lc.move(S.EMBARGOED, reason="embargo")
    assert lc.embargo_until == pytest.approx(1000.0 + wait)
    clock.t += wait - 0.5
    assert not lc.embargo_expired()
    with pytest.raises(IllegalTransitionError, match="embargo runs until"):
        lc.move(S.RESETTING, reason="too early")
    assert lc.stage is S.EMBARGOED
    clock.t += 0.5
    assert lc.embargo_expired()
    lc.move(S.RESETTING, reason="embargo_expired")
    with pytest.raises(IllegalTransitionError, match="needs gate G5"):
        lc.move(S.DORMANT, reason="reset")
    lc.move(S.DORMANT, reason="reset_done", gate=passed(Gate.G5))
    assert lc.stage is S.DORMANT and lc.cull_reason is None and lc.embargo_until is None


def test_short_embargo_is_shorter_than_fault_embargo_by_default() -> None:
    policy = EmbargoPolicy()
    assert policy.duration("condition_cleared") < policy.duration("health_nan")
    assert policy.duration("health_nan") == policy.duration("health_latency")


@pytest.mark.parametrize("stage", [s for s in Stage if s is not S.TERMINATED])
def test_terminated_is_reachable_from_everywhere_and_final(stage: Stage) -> None:
    lc = SeedLifecycle("s1", clock=FakeClock())
    if stage in (S.CULLED, S.EMBARGOED, S.RESETTING):
        walk_to(lc, S.TRAINING)
        lc.move(S.CULLED, reason="health_nan")
        if stage is not S.CULLED:
            lc.move(S.EMBARGOED, reason="embargo")
        if stage is S.RESETTING:
            lc.clock.t += 10_000  # type: ignore[attr-defined]
            lc.move(S.RESETTING, reason="expired")
    elif stage is not S.DORMANT:
        walk_to(lc, stage)
    assert lc.stage is stage
    lc.move(S.TERMINATED, reason="administrative")
    assert legal_targets(S.TERMINATED) == frozenset()
    for dst in Stage:
        with pytest.raises(IllegalTransitionError, match="none \\(final\\)"):
            lc.move(dst, reason="revive", gate=passed(Gate.G0))
    assert lc.stage is S.TERMINATED


def test_every_stage_is_reachable_from_dormant() -> None:
    seen = {S.DORMANT}
    queue = deque([S.DORMANT])
    while queue:
        src = queue.popleft()
        for dst in legal_targets(src):
            if dst not in seen:
                seen.add(dst)
                queue.append(dst)
    assert seen == set(Stage)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(Stage)), st.booleans(), st.sampled_from(list(Gate))), max_size=60)
)
def test_random_walks_only_take_table_moves(steps: list[tuple[Stage, bool, Gate]]) -> None:
    """Throw random moves (right or wrong gates, passing or failing) at a seed: only table moves happen."""
    clock = FakeClock()
    lc = SeedLifecycle("walk", clock=clock)
    for dst, gate_passes, any_gate in steps:
        clock.t += 50.0
        src = lc.stage
        needed = TRANSITIONS.get((src, dst))
        gate = GateResult(needed or any_gate, gate_passes, "random")
        try:
            lc.move(dst, reason="random", gate=gate)
        except IllegalTransitionError:
            assert lc.stage is src
            continue
        assert (src, dst) in TRANSITIONS
        assert needed is None or gate_passes
    for event in lc.history:
        assert (event.src, event.dst) in TRANSITIONS
    assert all(a.dst == b.src for a, b in zip(lc.history, lc.history[1:], strict=False))


def shortest_path(src: Stage, dst: Stage) -> list[Stage]:
    parent: dict[Stage, Stage] = {}
    queue = deque([src])
    seen = {src}
    while queue:
        cur = queue.popleft()
        if cur is dst:
            break
        for nxt in sorted(legal_targets(cur)):
            if nxt not in seen:
                seen.add(nxt)
                parent[nxt] = cur
                queue.append(nxt)
    assert dst in seen, f"{dst.name} unreachable from {src.name}"
    path = [dst]
    while path[-1] is not src:
        path.append(parent[path[-1]])
    return path[::-1][1:]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_random_legal_walk_then_any_stage_is_reachable(data: st.DataObject) -> None:
    """After a random legal walk (passing gates, waiting out embargoes), SeedLifecycle can still be driven
    to any stage the table reaches from there; from DORMANT that is every stage."""
    clock = FakeClock()
    lc = SeedLifecycle("walk", clock=clock)

    def step(dst: Stage) -> None:
        gate = required_gate(lc.stage, dst)
        if dst is S.RESETTING:
            clock.t += lc.embargo.fault_s
        lc.move(
            dst,
            reason=data.draw(st.sampled_from(["condition_cleared", "health_nan"])),
            gate=passed(gate) if gate else None,
        )

    for _ in range(data.draw(st.integers(0, 30))):
        targets = sorted(legal_targets(lc.stage))
        if not targets:
            break
        step(data.draw(st.sampled_from(targets)))
    target = data.draw(st.sampled_from(list(Stage)))
    if lc.stage is S.TERMINATED:
        assert target is S.TERMINATED or not legal_targets(lc.stage)
        return
    for dst in shortest_path(lc.stage, target) if target is not lc.stage else []:
        step(dst)
    assert lc.stage is target


def test_forced_walk_visits_all_eleven_stages() -> None:
    clock = FakeClock()
    lc = SeedLifecycle("all", clock=clock)
    walk_to(lc, S.FOSSILIZED)
    lc.move(S.CULLED, reason="condition_cleared")
    lc.move(S.EMBARGOED, reason="embargo")
    clock.t += 30.0
    lc.move(S.RESETTING, reason="embargo_expired")
    lc.move(S.DORMANT, reason="reset_done", gate=passed(Gate.G5))
    lc.move(S.TERMINATED, reason="administrative")
    assert {e.dst for e in lc.history} | {S.DORMANT} == set(Stage)


def test_embargo_reason_code_ignores_detail() -> None:
    from kasmina_edge.contracts.lifecycle import EmbargoPolicy

    policy = EmbargoPolicy(hysteresis_s=5.0, fault_s=500.0)
    assert policy.duration("condition_cleared: emg gone") == 5.0
    assert policy.duration("health_nan: slot 2") == 500.0
