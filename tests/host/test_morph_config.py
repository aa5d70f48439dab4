"""Morph's settings from the CLI's options: checked before any work."""

from __future__ import annotations

import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.morph import _controls
from kasmina_edge.host.morph_config import morph_config_for


def test_an_intensity_config_from_the_library_reaches_each_trial() -> None:
    cfg = morph_config_for("tiny", "edgetpu", intensity="cautious")
    assert cfg.intensity == "cautious"
    controls = _controls(cfg)
    assert controls is not None and controls.config.name == "cautious"
    assert _controls(morph_config_for("tiny", "edgetpu")) is None  # none asked: the driver's own behaviour


def test_an_unknown_intensity_config_fails_before_any_work() -> None:
    with pytest.raises(KasminaError, match="intensity config 'nope'"):
        morph_config_for("tiny", "edgetpu", intensity="nope")
