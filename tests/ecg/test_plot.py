"""Strip plots: drawn atomically with matplotlib; a clear error without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.contracts.errors import KasminaError, MissingExtraError
from kasmina_edge.ecg.scenarios import make_scenario


def test_strip_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from kasmina_edge.ecg.plot import plot_strip

    rec = make_scenario("artifact-tour", 0.5, seed=0)
    out = plot_strip(rec, tmp_path / "strips" / "s.png", start_s=2, seconds=8)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["s.png"]  # no temporary file left
    svg = plot_strip(rec, tmp_path / "s.svg", seconds=3)
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(KasminaError, match=".png"):
        plot_strip(rec, tmp_path / "s.gif")


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import kasmina_edge.ecg.plot as plot

    def missing(module: str, purpose: str = "") -> None:
        raise MissingExtraError(f"{module} is not installed (needed for {purpose}): pip install 'kasmina-edge[host]'")

    monkeypatch.setattr(plot, "require", missing)
    with pytest.raises(MissingExtraError, match=r"kasmina-edge\[host\]"):
        plot.plot_strip(make_scenario("clean", 0.2), tmp_path / "x.png")
