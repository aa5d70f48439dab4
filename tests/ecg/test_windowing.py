"""Shared windowing: batch and streaming give the same windows and RR features."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.qrs import detect_qrs
from kasmina_edge.ecg.synth import random_patient, synthesize
from kasmina_edge.ecg.windowing import (
    NORM_FLOOR_MV,
    Preprocessor,
    StreamingBeatizer,
    WindowSpec,
    extract_windows,
    rr_features,
)

from .conftest import MITDB, needs_mitdb


def test_window_spec_defaults() -> None:
    spec = WindowSpec()
    assert (spec.fs, spec.before, spec.after, spec.length) == (360.0, 90, 166, 256)


def test_preprocessor_stream_is_bit_identical_to_batch_and_has_its_delay() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000).cumsum() * 0.01 + rng.normal(size=5000)
    pre = Preprocessor(360)
    aligned = pre.apply(x)
    stream = Preprocessor(360)
    causal = [stream.process(x[i: i + n]) for i, n in zip(range(0, 5000, 77), [77] * 65, strict=False)]
    causal.append(stream.flush())
    c = np.concatenate(causal)
    assert np.array_equal(c[pre.delay: pre.delay + 5000], aligned)
    # a symmetric (linear-phase) FIR: an impulse comes out `delay` samples later, unshifted
    imp = np.zeros(2000)
    imp[1000] = 1.0
    assert int(np.argmax(np.abs(Preprocessor(360).apply(imp)))) == 1000
    assert pre.delay == 360


def test_preprocessor_band() -> None:
    fs = 360.0
    t = np.arange(int(20 * fs)) / fs
    pre = Preprocessor(fs)
    mid = slice(int(5 * fs), int(15 * fs))
    # -6 dB at the 0.5 and 40 Hz edges (window design); 0.1 Hz wander is cut to under a fifth
    for f, lo, hi in ((0.1, 0.0, 0.2), (0.5, 0.4, 0.6), (10.0, 0.95, 1.05), (60.0, 0.0, 0.01)):
        y = pre.apply(np.sin(2 * np.pi * f * t))
        gain = np.sqrt(2) * np.std(y[mid])
        assert lo <= gain <= hi, (f, gain)


def test_rr_features_by_hand() -> None:
    fs = 100.0
    r = np.array([0, 100, 300, 400])  # intervals 1.0, 2.0, 1.0 s
    f = rr_features(r, fs)
    assert f.dtype == np.float32 and f.shape == (4, 4)
    np.testing.assert_allclose(f[:, 0], [1.0, 1.0, 2.0, 1.0])  # pre (first = its post)
    np.testing.assert_allclose(f[:, 1], [1.0, 2.0, 1.0, 1.0])  # post (last = its pre)
    np.testing.assert_allclose(f[:, 2], [1.0, 1.0, 4 / 3, 5 / 4], rtol=1e-6)  # local mean (causal)
    np.testing.assert_allclose(f[:, 3], [1.0, 1.0, 2.0 / (4 / 3), 1.0 / (5 / 4)], rtol=1e-6)
    assert rr_features(np.array([5]), fs).shape == (1, 4)
    assert rr_features(np.array([], dtype=np.int64), fs).shape == (0, 4)


def test_patient_mean_forgets_after_five_minutes() -> None:
    fs = 10.0
    slow = np.arange(0, 400 * fs, 2 * fs)  # 400 s at RR 2 s
    fast = slow[-1] + np.arange(1, 400) * fs  # then RR 1 s
    f = rr_features(np.concatenate([slow, fast]).astype(np.int64), fs)
    assert f[-1, 3] == pytest.approx(1.0, rel=1e-6)  # 5 minutes later the old rhythm is gone
    assert f[len(slow), 3] == pytest.approx(1.0 / 2.0, rel=0.05)


def test_extract_windows_shape_validity_and_normalisation() -> None:
    rec = synthesize(random_patient(np.random.default_rng(2)), 30, rng=np.random.default_rng(2))
    spec = WindowSpec()
    aligned = Preprocessor(rec.fs).apply(rec.lead(0))
    r = np.concatenate([[10], rec.beats.samples, [rec.n_samples - 5]])
    bw = extract_windows(aligned, r, spec)
    assert bw.windows.shape == (len(r), 1, 256) and bw.windows.dtype == np.float32
    assert bw.rr.shape == (len(r), 4)
    assert not bw.valid[0] and not bw.valid[-1] and bw.valid[1:-1].sum() >= len(r) - 4
    assert np.all(bw.windows[~bw.valid] == 0)
    w = bw.windows[bw.valid, 0, :]
    assert np.allclose(np.median(w, axis=1), 0, atol=1e-6)
    assert np.allclose(np.percentile(np.abs(w), 99, axis=1), 1.0, atol=0.05)
    # the R peak sits at index `before`
    assert np.median(np.abs(np.argmax(w, axis=1) - spec.before)) <= 2
    # a flat window is not blown up: the scale never drops below the floor
    flat = extract_windows(np.full(1000, 0.01), np.array([500]), spec)
    assert np.all(np.abs(flat.windows) <= 0.01 / NORM_FLOOR_MV + 1e-6)


def _stream(x: np.ndarray, fs: float, rng: np.random.Generator, max_chunk: int) -> list:
    sb = StreamingBeatizer(fs)
    beats = []
    i = 0
    while i < x.shape[0]:
        n = int(rng.integers(1, max_chunk + 1))
        beats += sb.process(x[i: i + n])
        i += n
    return beats + sb.flush()


def _compare_stream_to_batch(x: np.ndarray, fs: float, max_chunk: int) -> int:
    spec = WindowSpec(fs=fs)
    batch = extract_windows(Preprocessor(fs).apply(x), detect_qrs(x, fs), spec)
    beats = _stream(x, fs, np.random.default_rng(1), max_chunk)
    assert [b.r_peak for b in beats] == batch.r_peaks.tolist()
    np.testing.assert_array_equal(np.array([b.valid for b in beats]), batch.valid)
    np.testing.assert_allclose(np.stack([b.window for b in beats]), batch.windows, atol=1e-6)
    np.testing.assert_allclose(np.stack([b.rr for b in beats]), batch.rr, rtol=1e-6)
    return len(beats)


@pytest.mark.parametrize("max_chunk", [1, 36, 700])
def test_streaming_beatizer_equals_batch_on_synthetic(max_chunk: int) -> None:
    rng = np.random.default_rng(4)
    x = synthesize(random_patient(rng), 60 if max_chunk > 1 else 20, rng=rng).lead(0)
    assert _compare_stream_to_batch(x, 360.0, max_chunk) > 15


@needs_mitdb
def test_streaming_beatizer_equals_batch_on_record_100() -> None:
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    x = read_wfdb(MITDB / "100", leads=["MLII"], seconds=180).lead(0)
    assert _compare_stream_to_batch(x, 360.0, 500) > 200


def test_streaming_beatizer_errors() -> None:
    with pytest.raises(KasminaError, match="window spec"):
        StreamingBeatizer(250.0, WindowSpec(fs=360.0))
    sb = StreamingBeatizer(360.0)
    with pytest.raises(KasminaError, match="NaN"):
        sb.process(np.array([0.0, np.inf]))


@pytest.mark.parametrize("length", [2, 3, 64, 255, 256])
def test_normalise_windows_gives_numpys_median_and_percentile(length: int) -> None:
    """The selection-based normalisation is the very formula of np.median and np.percentile(99), ties included."""
    from kasmina_edge.ecg.windowing import NORM_FLOOR_MV, NORM_PERCENTILE, normalise_windows

    rng = np.random.default_rng(length)
    w = rng.normal(0, 1, (40, 1, length))
    w[:5] = np.round(w[:5])  # many ties
    w[5] = 0.0  # flat: the floor divides
    med = np.median(w, axis=-1, keepdims=True)
    dev = w - med
    scale = np.maximum(np.percentile(np.abs(dev), NORM_PERCENTILE, axis=-1, keepdims=True), NORM_FLOOR_MV)
    np.testing.assert_array_equal(normalise_windows(w), (dev / scale).astype(np.float32))
