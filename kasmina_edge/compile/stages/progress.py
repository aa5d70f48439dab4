"""The build's progress: one rich line per step, and the wall time each took (the report's timings)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class StepProgress:
    """Rich progress with one line per step, and the wall time each took."""

    def __init__(self, console: Console | None, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.timings: dict[str, float] = {}
        self.progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            if console is not None
            else None
        )
        self.task = self.progress.add_task("build", total=total) if self.progress is not None else None

    def __enter__(self) -> StepProgress:
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=what)
        t0 = time.perf_counter()
        yield
        self.timings[what] = self.timings.get(what, 0.0) + time.perf_counter() - t0
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)

    def grow(self, n: int) -> None:
        if self.progress is not None and self.task is not None:
            total = self.progress.tasks[0].total or 0
            self.progress.update(self.task, total=total + n)
