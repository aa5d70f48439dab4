"""Shared fixtures for the host (torch) tests: small, fast, deterministic."""

from __future__ import annotations

import pytest
import torch

from kasmina_edge.host.kasmina import LifecycleEngine


class FakeClock:
    """An injectable clock: embargo expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[dict[str, object]]:
    return []


@pytest.fixture
def engine(clock: FakeClock, events: list[dict[str, object]]) -> LifecycleEngine:
    return LifecycleEngine(clock=clock, sink=events.append)
