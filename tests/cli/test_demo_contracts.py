"""The contracts' demo step shows the frames and the replay refusal, on an injected clock (it never waits)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from kasmina_edge.cli.demo_contracts import demo_step


def test_demo_step_shows_frames_and_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the demo step slept {seconds} s")

    monkeypatch.setattr(time, "sleep", no_sleep)  # fast by construction, not by a bound on a shared machine
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    demo_step(console, tmp_path)
    text = out.getvalue()
    for name in ("DeviceStatus", "BeatCounts", "SeedEvent"):
        assert name in text
    assert "accepted" in text and "refused (replay)" in text
