"""Checks on command-line values that run before any work starts.

Each is a typer ``callback``: a bad value raises ``typer.BadParameter``, which the console script prints
as one line naming the option (exit 2), before anything is read, trained or written. They stay
torch-free and cheap: reading a file's first bytes at most.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import typer

N = TypeVar("N", int, float)


def number(
    *, low: float | None = None, high: float | None = None, low_open: bool = False, what: str = ""
) -> Callable[[N | None], N | None]:
    """A finite number within [low, high] (``low_open``: strictly above ``low``); None passes (not given)."""

    def check(value: N | None) -> N | None:
        if value is None:
            return value
        unit = f" {what}" if what else ""
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            bound = "above" if low_open else "at least"
            raise typer.BadParameter(f"must be {bound} {low:g}{unit}, not {value:g}")
        if high is not None and value > high:
            raise typer.BadParameter(f"must be at most {high:g}{unit}, not {value:g}")
        return value

    return check


positive = number(low=0, low_open=True)
non_negative = number(low=0)
positive_seconds = number(low=0, low_open=True, what="s")
non_negative_seconds = number(low=0, what="s")
at_least_one = number(low=1)
tcp_port = number(low=1, high=65_535)


def sample_rate(value: float | None) -> float | None:
    """A rate the readers can resample to (50-10000 Hz)."""
    if value is not None and not (math.isfinite(value) and 50 <= value <= 10_000):
        raise typer.BadParameter(f"{value:g} Hz is not supported (a sample rate of 50-10000 Hz)")
    return value




def choice(options: Iterable[str], what: str = "value") -> Callable[[str | None], str | None]:
    """One of ``options`` (case as given); None passes."""
    allowed = tuple(options)

    def check(value: str | None) -> str | None:
        if value is None or value in allowed:
            return value
        raise typer.BadParameter(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")

    return check


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_under(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a writable folder (so ``mkdir -p`` can work)."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise typer.BadParameter(f"{path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{path}: cannot write in {base} (permission denied)")


def output_file(*suffixes: str) -> Callable[[Path | None], Path | None]:
    """A file to write: not a folder, a writable place, and (given ``suffixes``) one of those endings."""

    def check(path: Path | None) -> Path | None:
        if path is None:
            return path
        if path.is_dir():
            raise typer.BadParameter(f"{path} is a folder; give a file name")
        if suffixes and path.suffix.lower() not in suffixes:
            raise typer.BadParameter(f"{path}: use a {', '.join(suffixes)} file name")
        _writable_under(path)
        return path

    return check


def output_dir(path: Path | None) -> Path | None:
    """A folder to write into: not an existing file, in a writable place."""
    if path is None:
        return path
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a folder")
    _writable_under(path / "x")  # the folder itself, or the nearest one above it that exists
    return path


def input_file(path: Path | None) -> Path | None:
    """An existing, readable file (not a folder)."""
    if path is None:
        return path
    if not path.exists():
        raise typer.BadParameter(f"{path}: no such file")
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise typer.BadParameter(f"{path}: not readable (permission denied)")
    return path


def input_dir(path: Path | None) -> Path | None:
    """An existing folder."""
    if path is None:
        return path
    if not path.exists():
        raise typer.BadParameter(f"{path}: no such folder")
    if not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a folder")
    return path


def one_of_ints(*allowed: int) -> Callable[[int | None], int | None]:
    def check(value: int | None) -> int | None:
        if value is None or value in allowed:
            return value
        raise typer.BadParameter(f"{value} is not supported; use {' or '.join(map(str, allowed))}")

    return check


def checkpoint_content(path: Path | None) -> Path | None:
    """A checkpoint that exists must be one (torch saves a zip): a PNG or a log given by mistake is named
    here, not in a torch unpickling error. A missing one is left to the command (it says which)."""
    if path is None or not path.is_file():
        return path
    with path.open("rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        raise typer.BadParameter(f"{path}: not a checkpoint (a .pt from `kasmina-edge train` is a torch zip)")
    return path


def existing_checkpoint(path: Path | None) -> Path | None:
    return checkpoint_content(input_file(path))


def input_path(path: Path | None) -> Path | None:
    """An existing file or folder (e.g. a keys folder or a public key PEM)."""
    if path is None:
        return path
    if not path.exists():
        raise typer.BadParameter(f"{path}: no such file or folder")
    return path


def _looks_like_json_lines(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        if len(head) < 4096:
            return False
        text = head[:4000].decode("utf-8", errors="ignore")  # a multi-byte character cut at the edge
    first = text.lstrip()
    return first == "" or first.startswith("{")


def json_lines_input(path: Path | None) -> Path | None:
    """An existing JSON-lines file (a run log): refused early if it is binary or not JSON objects."""
    path = input_file(path)
    if path is not None and not _looks_like_json_lines(path):
        raise typer.BadParameter(f"{path}: not a JSON-lines run log (its first bytes are not a JSON object)")
    return path


def json_lines_store(path: Path | None) -> Path | None:
    """A JSON-lines file to append to: absent, or an existing JSON-lines file."""
    if path is None:
        return path
    if path.exists():
        if path.is_dir():
            raise typer.BadParameter(f"{path} is a folder; give a .jsonl file")
        if not _looks_like_json_lines(path):
            raise typer.BadParameter(f"{path}: not a JSON-lines file (appending would corrupt it)")
    _writable_under(path)
    return path


def monitor_store(value: str | None) -> Path | str | None:
    """Where the monitor stores: a database URL (``sqlite:///file.db``, ``postgresql://...``) as given, else a
    JSON-lines file checked by :func:`json_lines_store`."""
    if value is None or "://" in value:
        return value
    return json_lines_store(Path(value))


def list_of(check: Callable[[Path | None], Path | None]) -> Callable[[list[Path] | None], list[Path] | None]:
    """The same check on every value of a repeatable option."""

    def each(values: list[Path] | None) -> list[Path] | None:
        for v in values or []:
            check(v)
        return values

    return each


def broker_reachable(url: str, timeout_s: float = 5.0, wait_s: float = 3.0) -> None:
    """Say which of the three it is before any MQTT work: a host that does not resolve, a port where
    nothing listens (refused, after ``wait_s`` of retries: a broker started a moment ago), or a host that
    does not answer (timed out). Raises a one-line KasminaError."""
    import socket
    import time

    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.net.mqtt import BrokerUrl

    where = BrokerUrl.parse(url)
    try:
        socket.getaddrinfo(where.host, where.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise KasminaError(f"--mqtt {url}: cannot connect: cannot resolve the host {where.host!r} ({reason})") from None
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                with socket.create_connection((where.host, where.port), timeout=timeout_s):
                    break
            except ConnectionRefusedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)
    except ConnectionRefusedError:
        raise KasminaError(
            f"--mqtt {url}: cannot connect: connection refused (nothing listens on {where.host}:{where.port}; "
            "start one with `kasmina-edge broker`)"
        ) from None
    except TimeoutError:
        raise KasminaError(
            f"--mqtt {url}: cannot connect: {where.host}:{where.port} did not answer within {timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise KasminaError(f"--mqtt {url}: cannot connect: {exc.strerror or exc}") from None
