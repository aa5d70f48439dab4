"""The profiler's comparison table marks the cells that rest on estimated profile numbers."""

from __future__ import annotations

from kasmina_edge.core.catalog import hardware, hardware_names
from kasmina_edge.core.profiles import estimated
from kasmina_edge.profiler.render import _est, _estimate_marks


def test_marks_follow_each_profile_s_sources() -> None:
    for name in hardware_names():
        fields = estimated(hardware(name))
        timing, power = _estimate_marks(name)
        assert (timing == "~") == any(not f.startswith("power.") for f in fields), name
        assert (power == "~") == any(f.startswith("power.") for f in fields), name
    assert _estimate_marks("no-such-profile") == ("", "")
    assert _est("1.2 ms", "~") == "1.2 ms~" and _est("-", "~") == "-"
