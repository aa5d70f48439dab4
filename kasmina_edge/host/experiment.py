"""Experiment bookkeeping: a JSON-lines log per run and atomic, resumable checkpoints.

Every run (train, morph, bench) gets an ``experiment_id``. The log's first line records what
is needed to reproduce it (command, config, seed, git commit, versions); every later line is
one event. Checkpoints hold only plain types and tensors, so they load with
``torch.load(weights_only=True)``: opening a checkpoint never runs code from it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError

CHECKPOINT_FORMAT = 1


class CheckpointError(KasminaError):
    """A checkpoint file that is missing, unreadable, or not one of ours."""


def new_experiment_id(prefix: str = "exp") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def git_commit(start: Path | None = None) -> str | None:
    """The checkout's HEAD commit (with ``+dirty`` when tracked files changed), or None outside git."""
    where = start or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars, paths, tuples and dataclass-like values into JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


class ExperimentLog:
    """Append-only JSON-lines log. ``path=None`` keeps the events in memory only."""

    def __init__(
        self,
        path: Path | None,
        *,
        command: str,
        config: Mapping[str, Any],
        seed: int,
        experiment_id: str | None = None,
        resumed: bool = False,
    ) -> None:
        self.path = path
        self.experiment_id = experiment_id or new_experiment_id(command)
        self.events: list[dict[str, Any]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.write(
            "run_resume" if resumed else "run_start",
            command=command,
            config=dict(config),
            seed=seed,
            git_commit=git_commit(),
            python=platform.python_version(),
            torch=_torch_version(),
            host=platform.node(),
        )

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "experiment_id": self.experiment_id, "t": round(time.time(), 3)}
        record.update(_jsonable(fields))
        self.events.append(record)
        if self.path is not None:
            # One write per line, flushed: a crash loses at most the line being written.
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=False) + "\n")
        return record


def read_log(path: Path) -> list[dict[str, Any]]:
    """All events of a JSON-lines log; a torn last line (crash mid-write) is skipped."""
    if not path.exists():
        raise KasminaError(f"{path}: no such experiment log")
    out: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if n == len(lines):
                break
            raise KasminaError(f"{path}:{n}: not a JSON line ({exc.msg})") from exc
    return out


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_jsonable(payload), indent=2) + "\n").encode("utf-8"))


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """torch.save to a temporary file beside ``path``, then rename: never a half-written checkpoint."""
    import io

    import torch

    body = dict(payload)
    body["format"] = CHECKPOINT_FORMAT
    buf = io.BytesIO()
    torch.save(body, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, *, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; one-line errors for bad files."""
    import pickle

    import torch

    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:120]})") from exc
    if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a kasmina-edge checkpoint (format {CHECKPOINT_FORMAT} expected)")
    if kind is not None and body.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {body.get('kind')!r} checkpoint, expected {kind!r}")
    return body
