"""Beat windowing shared by host training and the on-device runtime (batch == streaming)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kasmina_edge.ecg.types import DEFAULT_FS


@dataclass(frozen=True)
class WindowSpec:
    fs: float = DEFAULT_FS
    before: int = 90
    after: int = 166

    @property
    def length(self) -> int:
        return self.before + self.after


@dataclass
class BeatWindows:
    windows: np.ndarray  # float32 (n, 1, length)
    rr: np.ndarray  # float32 (n, 4)
    r_peaks: np.ndarray  # int64 (n,)
    valid: np.ndarray  # bool (n,)


@dataclass
class Beat:
    r_peak: int
    window: np.ndarray  # float32 (1, length)
    rr: np.ndarray  # float32 (4,)
    valid: bool


class Preprocessor:
    def __init__(self, fs: float = DEFAULT_FS) -> None:
        self.fs = float(fs)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply(self, signal: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def rr_features(r_peaks: np.ndarray, fs: float) -> np.ndarray:
    raise NotImplementedError


def extract_windows(filtered_signal: np.ndarray, r_peaks: np.ndarray, spec: WindowSpec) -> BeatWindows:
    raise NotImplementedError


class StreamingBeatizer:
    def __init__(self, fs: float = DEFAULT_FS, spec: WindowSpec | None = None) -> None:
        self.fs = float(fs)
        self.spec = spec or WindowSpec(fs=fs)

    def process(self, chunk: np.ndarray) -> list[Beat]:
        raise NotImplementedError

    def flush(self) -> list[Beat]:
        raise NotImplementedError
