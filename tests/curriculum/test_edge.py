"""Curriculum stages 5-6 (edge deployment): the registry's factories, every target's hardware profile, the
budgets read from a real bundle, the per-profile checks; slow: a seed kernel delivered through the kernel store
to an emulated device, and both stages end to end in their quick form."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kasmina_edge.curriculum import deploy
from kasmina_edge.curriculum.edge import (
    DECISION_BUDGET_MS,
    EdgeAdaptStage,
    EdgeBuildStage,
    ProfileOutcome,
    _profile_checks,
    edge_adapt_stage,
    edge_build_stage,
)
from kasmina_edge.curriculum.stage import StageContext

RUNTIME_TESTS = Path(__file__).resolve().parent.parent / "runtime"


def test_the_registry_loads_both_edge_stages() -> None:
    from kasmina_edge.curriculum.registry import load_stage

    for index, cls in ((5, EdgeBuildStage), (6, EdgeAdaptStage)):
        stage = load_stage(index)
        assert isinstance(stage, cls) and stage.index == index
        assert stage.name and stage.domain and callable(stage.run)
    assert edge_build_stage().name != edge_adapt_stage().name


@pytest.mark.parametrize("quick", [True, False])
def test_every_target_of_a_plan_runs_on_its_hardware_profile(quick: bool) -> None:
    from kasmina_edge.core.catalog import hardware, target

    plan = deploy.edge_plan(quick)
    assert plan.targets[0] == "x86"  # the reference device every other profile is compared with
    for t, profile in plan.profiles.items():
        assert t in hardware(profile).targets
        assert target(t).default_profile == profile
    assert set(deploy.edge_plan(False).targets) == {"x86", "edgetpu", "cortex-m", "linux-arm"}
    assert set(deploy.edge_plan(True).targets) < set(deploy.edge_plan(False).targets)


def _budgets(**kw: Any) -> deploy.Budgets:
    base: dict[str, Any] = {"profile": "p", "flash_need": 100, "flash_limit": 1000, "ram_need": 10, "ram_limit": 100,
                            "ram_kind": "SRAM", "per_beat_us": 10.0, "per_beat_budget_us": 5000.0}  # fmt: skip
    return deploy.Budgets(**(base | kw))


def test_budgets_hold_within_and_fail_over_each_limit() -> None:
    assert _budgets().flash_ok and _budgets().ram_ok and _budgets().latency_ok
    assert not _budgets(flash_need=1001).flash_ok
    assert not _budgets(ram_need=101).ram_ok
    assert not _budgets(per_beat_us=5000.1).latency_ok
    # 0: the profile keeps no model of its own / sets no limit (a host)
    assert _budgets(flash_limit=0, flash_need=10**9).flash_ok and _budgets(ram_limit=0, ram_need=10**9).ram_ok


def _fixture_bundles(request: pytest.FixtureRequest) -> Path:
    sys.path.insert(0, str(RUNTIME_TESTS))
    from runtime_fixtures import ensure_fixture_bundles

    return ensure_fixture_bundles(request.config)


@pytest.mark.parametrize(("name", "profile", "ram_kind"), [("x86-v1", "x86-64-host", "DRAM"),
                                                            ("cortex-m-v1", "stm32h743", "SRAM")])  # fmt: skip
def test_budgets_read_a_signed_bundle_against_its_profile(request: pytest.FixtureRequest, name: str, profile: str,
                                                          ram_kind: str) -> None:  # fmt: skip
    from firmware_sim.fit import runnable_bytes
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.core.catalog import hardware

    folder = _fixture_bundles(request)
    b = deploy.budgets(folder / f"{name}.kedge", folder / "keys", profile, per_beat_us=120.0)
    need = runnable_bytes(read_bundle(folder / f"{name}.kedge", folder / "keys"))
    assert b.flash_need == 2 * need  # A/B slots
    assert b.flash_limit == hardware(profile).memory.flash_bytes
    assert b.ram_kind.startswith(ram_kind)
    assert b.flash_ok and b.ram_ok and b.latency_ok
    assert not deploy.budgets(folder / f"{name}.kedge", folder / "keys", profile, per_beat_us=6000.0).latency_ok


def _run(f1: float) -> deploy.DeviceRun:
    return deploy.DeviceRun(f1, 100, 1.0, 50.0, 500.0, 0, None, {}, [])


def test_profile_checks_name_each_budget_and_compare_with_the_reference() -> None:
    ref = ProfileOutcome("x86", "x86-64-host", True, seeded=_run(0.70), budgets=_budgets())
    mcu = ProfileOutcome("cortex-m", "stm32h743", True, seeded=_run(0.60), budgets=_budgets(ram_need=10**6))
    checks = _profile_checks(mcu, ref)
    assert checks == {"cortex-m.flash_within_budget": True, "cortex-m.ram_within_budget": False,
                      "cortex-m.latency_within_budget": True, "cortex-m.agrees_with_x86": False}  # fmt: skip
    refused = ProfileOutcome("edgetpu", "coral-usb", False, refusal="bundle needs 2 x ... of flash")
    assert _profile_checks(refused, ref)["edgetpu.flash_within_budget"] is False
    assert set(_profile_checks(ref, ref)) == {"x86.flash_within_budget", "x86.ram_within_budget",
                                              "x86.latency_within_budget"}  # fmt: skip


# ------------------------------------------------------------------------------------------------- slow


def _emg_library(folder: Path) -> Path:
    """A seed library with one small emg-tagged kernel at site 0 of the tiny model."""
    import torch

    from kasmina_edge.host.blueprints import create_blueprint
    from kasmina_edge.host.model import get_config
    from kasmina_edge.host.seed_library import LibraryEntry, SeedLibrary

    cfg = get_config("tiny")
    c, length = cfg.site_shapes()["site0"]
    torch.manual_seed(3)
    module = create_blueprint("bottleneck_adapter", c, length)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn_like(p))
    lib = SeedLibrary(meta={"model_config": cfg.to_dict()})
    gates = {"GERMINATED": "G0", "BLENDING": "G1", "SHADOWING": "G2", "PROBATIONARY": "G3", "FOSSILIZED": "G4"}
    lifecycle = [{"event": "transition", "from": a, "to": b, "gate": gates.get(b), "gate_passed": b in gates,
                  "gate_reason": "passed on the host"} for a, b in
                 (("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING"), ("TRAINING", "BLENDING"),
                  ("BLENDING", "SHADOWING"), ("SHADOWING", "PROBATIONARY"), ("PROBATIONARY", "FOSSILIZED"))]
    entry = LibraryEntry(
        key="emg@site0", condition="emg", tags=["artifact", "emg"], site="site0", site_index=0, channels=c,
        length=length, blueprint="bottleneck_adapter", blueprint_params={}, grafting="fixed_ramp", intensity=1.0,
        param_count=sum(p.numel() for p in module.parameters()), param_fraction=0.02, macs=0, baseline_val=0.5,
        seed_val=0.52, gain=0.02, clean_host=None, clean_seed=None, seed_id="site0/all", lifecycle=lifecycle,
    )  # fmt: skip
    lib.add(entry, module.state_dict())
    lib.save(folder)
    return folder


@pytest.mark.slow
def test_a_seed_kernel_is_delivered_to_the_kernel_store_and_swapped_live(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compile"))
    from host_files import write_checkpoint

    from kasmina_edge.curriculum.edge import _keys, adapt_on_device

    write_checkpoint(tmp_path / "base.pt", train=True)
    host = SimpleNamespace(checkpoint=tmp_path / "base.pt", seeds=_emg_library(tmp_path / "seeds"))
    plan = deploy.edge_plan(True)
    ctx = StageContext(tmp_path / "stage")
    record = deploy.switch_record(plan)
    half = record.seconds / 2
    got = adapt_on_device(plan, host, "x86", ctx, _keys(ctx.workdir), record,  # type: ignore[arg-type]
                          {"clean": (0.0, half), "condition": (half, None)})
    checks = got["checks"]
    assert checks["x86.kernel_stored"], got.get("kernel_store")
    assert got["kernel_store"]["kernels"]
    assert checks[f"x86.decision_within_{DECISION_BUDGET_MS:g}ms"]
    assert got["after"]["activation_ms"], "the installed kernel has an activation estimate on the profile"
    assert 0.0 <= got["base_condition"] <= 1.0 and 0.0 <= got["adapted_condition"] <= 1.0
    # the base alone never swaps; with the kernel stored, the controller may (it decides on the signal)
    assert got["before"]["swaps"] == 0
    culled = [e for e in got["adapted_transitions"] if e.get("to") == "CULLED"]
    assert not [e for e in culled if str(e.get("reason", "")).startswith("g1")], culled  # the host's G1 travelled
    assert checks["x86.swapped_live"] == (got["after"]["swaps"] >= 1 and bool(got["adapted_transitions"]))


@pytest.mark.slow
@pytest.mark.parametrize("index", [5, 6])
def test_the_edge_stage_runs_quick_and_reports_three_arms(tmp_path: Path, index: int) -> None:
    from kasmina_edge.curriculum.registry import load_stage

    said: list[str] = []
    report = load_stage(index).run(StageContext(tmp_path, quick=True, say=said.append))
    assert report.index == index and said
    assert 0.0 < report.target < 1.0 and report.base.params > 0
    assert report.fine_tuned is not None and report.fine_tuned.params == report.base.params
    assert report.lifecycle and report.lifecycle[0]["event"] in ("transition", "gate")
    assert "host.seed_fossilized" in report.checks
    d = report.to_dict()
    assert d["passed"] == (d["base_short_of_target"] and report.seeded.metric >= report.target
                           and all(report.checks.values()))  # fmt: skip
    if index == 5:
        for t in deploy.edge_plan(True).targets:
            for what in ("flash", "ram", "latency"):
                assert f"{t}.{what}_within_budget" in report.checks
        assert set(report.seeded.detail["per_profile"]) == set(deploy.edge_plan(True).targets)
    else:
        assert any(k.startswith("cortex-m.decision_within") for k in report.checks)


def test_the_notes_say_each_budget_and_the_swap_in_one_line() -> None:
    from kasmina_edge.curriculum.edge import _adapt_note, _budget_note

    note = _budget_note(ProfileOutcome("cortex-m", "stm32h743", True, budgets=_budgets(ram_kind="SRAM (arenas)")))
    assert note.startswith("cortex-m (stm32h743): flash 100 / 1,000 B") and "SRAM (arenas) 10 / 100 B" in note
    assert "not run (too big)" in _budget_note(ProfileOutcome("x86", "x86-64-host", False, refusal="too big"))
    after = _run(0.5).to_dict() | {"swaps": 1, "decision_ms_p99": 4.25, "activation_ms": {"k": 6.0}}
    line = _adapt_note("cortex-m", {"after": after, "kernel_store": {"kernels": ["k"]}})
    assert "swaps 1" in line and "p99 4.2 ms" in line and "k 6.0 ms" in line
