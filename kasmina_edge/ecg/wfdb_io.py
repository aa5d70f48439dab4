"""WFDB records in and out (wfdb imported lazily), MIT-BIH symbols mapped to AAMI classes."""

from __future__ import annotations

from pathlib import Path

from kasmina_edge.ecg.types import DEFAULT_FS, Record

# MIT-BIH beat symbol -> AAMI class letter.
MITBIH_TO_AAMI: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}


def read_wfdb(
    path: str | Path,
    fs: float = DEFAULT_FS,
    leads: list[str] | list[int] | None = None,
    start_s: float = 0.0,
    seconds: float | None = None,
) -> Record:
    raise NotImplementedError


def write_wfdb(record: Record, out_dir: str | Path) -> Path:
    raise NotImplementedError
