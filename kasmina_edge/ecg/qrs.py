"""QRS detection (Pan-Tompkins family), batch and streaming, and beat matching."""

from __future__ import annotations

import numpy as np


class QrsDetector:
    """Streaming QRS detector: feed raw chunks, get R-peak sample indices (global) back."""

    def __init__(self, fs: float) -> None:
        self.fs = float(fs)

    def process(self, chunk: np.ndarray) -> list[int]:
        raise NotImplementedError

    def flush(self) -> list[int]:
        raise NotImplementedError


def detect_qrs(signal: np.ndarray, fs: float) -> np.ndarray:
    raise NotImplementedError


def match_beats(ref: np.ndarray, det: np.ndarray, fs: float, window_s: float = 0.15) -> tuple[int, int, int]:
    raise NotImplementedError


def sensitivity_ppv(tp: int, fp: int, fn: int) -> tuple[float, float]:
    raise NotImplementedError
