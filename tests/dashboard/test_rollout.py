"""The rollout's decisions, with a stand-in for the OTA transfer: canary size, halt rule, waves, held devices."""

from __future__ import annotations

import pytest

from kasmina_edge.dashboard.rollout import DeviceOutcome, HaltRule, RolloutError, canary_size, rollout

FLEET = [f"dev{i:03d}" for i in range(40)]


def updater(results: dict[str, str], offered: list[str]):  # type: ignore[no-untyped-def]
    def update(device: str) -> DeviceOutcome:
        offered.append(device)
        return DeviceOutcome(device, 0, results.get(device, "probation_passed"))

    return update


def test_canary_sizes_and_rules() -> None:
    assert canary_size("5%", 200) == 10 and canary_size("5%", 20) == 1 and canary_size("5%", 1) == 1
    assert canary_size("3", 2) == 2
    for bad in ("0%", "150%", "x", "0", "-1"):
        with pytest.raises(RolloutError, match="--canary"):
            canary_size(bad, 10)
    assert str(HaltRule.parse("probation-failures>1")) == "probation-failures>1"
    assert HaltRule.parse(" failures >= 2 ").threshold == 2
    for bad in ("probation-failures", "crashes>1", "failures<3", "failures>x"):
        with pytest.raises(RolloutError, match="--halt-on"):
            HaltRule.parse(bad)


def test_a_failing_canary_halts_before_the_rest() -> None:
    offered: list[str] = []
    results = {"dev000": "rolled_back", "dev001": "rolled_back"}
    report = rollout(FLEET, updater(results, offered), bundle="v2", canary="5%", halt_on="probation-failures>1")
    assert sorted(offered) == ["dev000", "dev001"]  # 5 % of 40: two devices, nobody else was offered it
    assert report.halted and not report.ok
    assert "probation-failures = 2 after the canary" in (report.halt_reason or "")
    held = [o for o in report.outcomes if o.status == "held"]
    assert len(held) == 38 and {o.device for o in held}.isdisjoint(offered)
    assert report.counts() == {"rolled_back": 2, "held": 38}


def test_one_canary_failure_under_the_rule_goes_on_in_waves() -> None:
    offered: list[str] = []
    results = {"dev001": "rolled_back", "dev020": "rolled_back", "dev021": "timeout"}
    report = rollout(FLEET, updater(results, offered), bundle="v2", canary="2", halt_on="probation-failures>1",
                     wave=10)
    # the canary (dev000, dev001) had one failure: not > 1, so wave 1 (dev002..dev011) and wave 2 ran;
    # wave 2 brought the second probation failure (dev020): halted before wave 3
    assert report.halted and "after the wave 2" in (report.halt_reason or "")
    assert sorted(offered) == FLEET[:22]
    assert {o.device for o in report.outcomes if o.status == "held"} == set(FLEET[22:])
    assert [o.wave for o in report.outcomes if o.device == "dev015"] == [2]


def test_a_clean_rollout_updates_everyone() -> None:
    offered: list[str] = []
    report = rollout(FLEET, updater({}, offered), bundle="v2", canary="5%", halt_on="failures>0")
    assert report.ok and sorted(offered) == FLEET and report.counts() == {"probation_passed": 40}
    with pytest.raises(RolloutError, match="no devices"):
        rollout([], updater({}, offered), bundle="v2")
