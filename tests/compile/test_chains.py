"""The chains stage: the base layout always, the morphed one with each site's first library kernel."""

from __future__ import annotations

from types import SimpleNamespace

from kasmina_edge.compile.stages.chains import plan_chains


def _spec(name: str, kind: str, seed_id: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, kind=kind, seed_id=seed_id)


def _model(active: dict[int, str]) -> SimpleNamespace:
    return SimpleNamespace(default_active=lambda: dict(active))


def test_a_base_without_kernels_has_one_chain() -> None:
    specs = [_spec(f"segment_{i}", "segment") for i in range(3)]
    plan = plan_chains(specs, _model({}))  # type: ignore[arg-type]
    assert plan.segments == ("segment_0", "segment_1", "segment_2") and plan.morphed == {}
    ((name, layout, active),) = plan.configs
    assert name == "base" and dict(layout.active) == {} and active == {}


def test_the_morphed_chain_names_artifacts_and_seeds() -> None:
    specs = [
        _spec("segment_0", "segment"),
        _spec("kernel_s0_a", "kernel", "a"),
        _spec("kernel_s0_b", "kernel", "b"),  # a second kernel at site 0: in the library, not live
        _spec("segment_1", "segment"),
        _spec("kernel_s1_c", "kernel", "c"),
        _spec("segment_2", "segment"),
    ]
    plan = plan_chains(specs, _model({0: "a", 1: "c"}))  # type: ignore[arg-type]
    assert plan.segments == ("segment_0", "segment_1", "segment_2")
    assert plan.morphed == {0: "kernel_s0_a", 1: "kernel_s1_c"}
    assert [c[0] for c in plan.configs] == ["base", "morphed"]
    _, layout, active = plan.configs[1]
    assert layout.order() == ["segment_0", "kernel_s0_a", "segment_1", "kernel_s1_c", "segment_2"]
    assert active == {0: "a", 1: "c"}  # torch runs the same chain by seed id
