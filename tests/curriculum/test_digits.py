"""Stage 2: the corruptions, FGSM and its detectors, the denoising ratio, and a quick stage run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.curriculum import adversarial as adv
from kasmina_edge.curriculum.corruptions import CORRUPTIONS, corrupt, corrupt_mixed

pytest.importorskip("sklearn", reason="the digits stage needs the research extra (scikit-learn)")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from kasmina_edge.curriculum.digits import load_digit_images

    return load_digit_images()


# -- corruptions ------------------------------------------------------------------------------------------
def test_fifteen_corruptions() -> None:
    assert len(CORRUPTIONS) == 15


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_changes_image_keeps_shape_and_range(name: str, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images = digits[0][:64]
    for severity in (1, 3, 5):
        out = corrupt(images, name, severity, seed=7)
        assert out.shape == images.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        changed = np.abs(out - images).reshape(len(images), -1).max(1) > 1e-3
        assert changed.mean() > 0.9, f"{name} s{severity}: only {changed.mean():.0%} of images changed"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_deterministic_and_grows_with_severity(name: str, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images = digits[0][:100]
    np.testing.assert_array_equal(corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=1))
    mild = np.abs(corrupt(images, name, 1, seed=2) - images).mean()
    harsh = np.abs(corrupt(images, name, 5, seed=2) - images).mean()
    assert harsh > mild, f"{name}: severity 5 changes the images less ({harsh:.3f}) than severity 1 ({mild:.3f})"


def test_random_corruptions_differ_by_seed(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images = digits[0][:32]
    for name in ("impulse_noise", "shot_noise", "rotate", "zigzag", "spatter"):
        assert not np.array_equal(corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=2)), name


def test_corruption_input_errors(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images = digits[0][:4]
    with pytest.raises(KasminaError, match="severity"):
        corrupt(images, "fog", 6, seed=0)
    with pytest.raises(KasminaError, match="unknown"):
        corrupt(images, "rain", 1, seed=0)
    with pytest.raises(KasminaError, match=r"\(n, H, W\)"):
        corrupt(images.reshape(4, 64), "fog", 1, seed=0)


def test_corrupt_mixed_uses_every_corruption(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images = digits[0][:300]
    out, which = corrupt_mixed(images, list(CORRUPTIONS), 2, seed=0)
    assert out.shape == images.shape and set(which.tolist()) == set(range(15))
    k = int(which[0])
    np.testing.assert_array_equal(out[which == k], corrupt(images[which == k], list(CORRUPTIONS)[k], 2, 0 * 1000 + k))


def test_build_task_twins_splits_and_replay(digits: tuple[np.ndarray, np.ndarray]) -> None:
    from kasmina_edge.curriculum.digits import DigitsSettings, build_task

    s = DigitsSettings(n_train=300, n_val=100, n_adapt=60, n_shift_val=50, adapt_copies=2, replay_fraction=0.5,
                       jitter_copies=1)  # fmt: skip
    data = build_task(*digits, s, seed=3)
    task = data.task
    n_shifted, n_replay = 60 * 2, 60
    assert len(task.adapt) == len(task.adapt_clean) == n_shifted + n_replay  # type: ignore[arg-type]
    assert len(task.train) == 300 * 2 and task.window == 64 and task.n_aux == 0
    assert len(task.shift_test) == len(task.clean_test) == len(digits[1]) - 510
    np.testing.assert_array_equal(task.adapt.labels, task.adapt_clean.labels)  # type: ignore[union-attr]
    # the replayed clean images are their own twins; the corrupted ones differ from theirs
    np.testing.assert_array_equal(task.adapt.windows[n_shifted:], task.adapt_clean.windows[n_shifted:])  # type: ignore[union-attr]
    moved = np.abs(task.adapt.windows[:n_shifted] - task.adapt_clean.windows[:n_shifted]).max(axis=(1, 2))  # type: ignore[union-attr]
    assert (moved > 1e-3).mean() > 0.9
    # the held-out clean test set is what the per-corruption scores corrupt
    np.testing.assert_array_equal(task.clean_test.windows.reshape(-1, 8, 8), data.test_images)
    # same seed, same task
    again = build_task(*digits, s, seed=3).task
    np.testing.assert_array_equal(again.adapt.windows, task.adapt.windows)


def test_jitter_is_mild(digits: tuple[np.ndarray, np.ndarray]) -> None:
    from kasmina_edge.curriculum.digits import jitter

    images = digits[0][:50]
    out = jitter(images, seed=0)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    d = np.abs(out - images).mean()
    assert 0.01 < d < np.abs(corrupt(images, "translate", 2, seed=0) - images).mean()


# -- FGSM and detectors -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_base(digits: tuple[np.ndarray, np.ndarray]) -> nn.Module:
    from kasmina_edge.curriculum.digits import DigitsSettings, build_task
    from kasmina_edge.curriculum.grow import GrowSettings, task_model_config, train_task_base

    s = DigitsSettings(n_train=400, n_val=100, n_adapt=50, n_shift_val=50, jitter_copies=0, adapt_copies=1)
    task = build_task(*digits, s, seed=0).task
    g = GrowSettings(model=task_model_config("t", task, channels=(8, 16, 16, 16)), base_epochs=10, batch_size=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on 2 shared cores: more threads only thrash
    try:
        return train_task_base(task, g)
    finally:
        torch.set_num_threads(threads)


def test_fgsm_raises_loss_and_stays_in_range(small_base: nn.Module, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x = digits[0][1500:1700].reshape(-1, 1, 64)
    y = digits[1][1500:1700]
    x_adv = adv.fgsm(small_base, x, y, eps=0.1)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert adv.mean_loss(small_base, x_adv, y) > adv.mean_loss(small_base, x, y) + 0.1
    with pytest.raises(KasminaError, match="eps"):
        adv.fgsm(small_base, x, y, eps=0.0)


class _Boundary(nn.Module):
    """Two classes split by the sign of the window's mean: a point near 0 sits on the boundary."""

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        m = 20 * x.mean(dim=(1, 2))
        return torch.stack([m, -m], 1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"site0": x}


def test_consistency_detector_flags_boundary_points() -> None:
    rng = np.random.default_rng(0)
    far = np.sign(rng.standard_normal((200, 1, 1))) * 0.5 + np.zeros((200, 1, 16))
    near = rng.uniform(-0.01, 0.01, (200, 1, 1)) + np.zeros((200, 1, 16))
    model = _Boundary()
    s_far = adv.consistency_scores(model, far.astype(np.float32), sigma=0.2, draws=8)
    s_near = adv.consistency_scores(model, near.astype(np.float32), sigma=0.2, draws=8)
    assert adv.auroc(s_far, s_near) > 0.95
    score = adv.score_detector("consistency", s_far[:100], s_far[100:], s_near, false_alarm=0.05)
    assert score.detection_rate > 0.9 and score.false_alarm <= 0.1


def test_feature_distance_detector_flags_shifted_activations() -> None:
    rng = np.random.default_rng(1)
    clean = rng.normal(0, 1, (300, 4, 8)).astype(np.float32)
    shifted = rng.normal(1.5, 1, (100, 4, 8)).astype(np.float32)
    model = _Boundary()
    ref = adv.feature_reference(model, clean[:200])
    s_clean, s_shift = adv.feature_distance_scores(model, clean[200:], ref), adv.feature_distance_scores(model, shifted, ref)
    assert adv.auroc(s_clean, s_shift) > 0.95
    assert adv.auroc(s_clean, s_clean) == pytest.approx(0.5)


def test_auroc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 5, 50).astype(float), rng.integers(1, 6, 70).astype(float)
    expect = roc_auc_score(np.r_[np.zeros(50), np.ones(70)], np.r_[a, b])
    assert adv.auroc(a, b) == pytest.approx(expect)


def test_threshold_keeps_false_alarm() -> None:
    scores = np.random.default_rng(3).random(1000)
    assert (scores > adv.threshold_at(scores, 0.05)).mean() <= 0.05
    with pytest.raises(KasminaError, match="false-alarm"):
        adv.threshold_at(scores, 0.0)


def test_denoise_ratio_is_one_for_the_base_itself(small_base: nn.Module, digits: tuple[np.ndarray, np.ndarray]) -> None:
    from kasmina_edge.curriculum.digits import denoise_ratios

    clean = digits[0][:100]
    noisy = corrupt(clean, "impulse_noise", 3, seed=0)
    ratios = denoise_ratios(small_base, small_base, clean, noisy)
    assert set(ratios) == {"site0", "site1", "site2", "site3"}
    assert all(r == pytest.approx(1.0) for r in ratios.values())
    # a "seeded" model that is given the clean image itself would sit at 0: checked via the clean inputs
    assert all(r == pytest.approx(0.0) for r in denoise_ratios(small_base, small_base, clean, clean).values())


def test_registry_loads_the_stage() -> None:
    from kasmina_edge.curriculum.registry import load_stage

    stage = load_stage(2)
    assert stage.index == 2 and stage.name and stage.domain


@pytest.mark.slow
def test_quick_stage_run_returns_a_complete_report(tmp_path: Path) -> None:
    from kasmina_edge.curriculum.digits import digits_corruption_stage
    from kasmina_edge.curriculum.stage import StageContext

    lines: list[str] = []
    report = digits_corruption_stage().run(StageContext(workdir=tmp_path, quick=True, say=lines.append))
    d = json.loads(json.dumps(report.to_dict()))  # JSON-safe
    assert d["index"] == 2 and d["metric"] == "mean corruption accuracy" and lines
    for arm in ("base", "seeded", "fine_tuned"):
        per = d[arm]["detail"]["per_corruption"]
        assert set(per) == {"clean", *CORRUPTIONS} and all(0.0 <= v <= 1.0 for v in per.values())
        assert d[arm]["metric"] == pytest.approx(np.mean([per[k] for k in CORRUPTIONS]))
    assert d["base"]["params"] > 0 and d["fine_tuned"]["params"] > 0
    assert len(d["seeded"]["detail"]["trials"]) >= 1 and d["lifecycle"]
    assert {"base_short_of_target", "passed", "checks"} <= set(d)
    assert d["base"]["detail"]["adversarial"]["loss_fgsm"] > d["base"]["detail"]["adversarial"]["loss_clean"]
    assert report.seconds < 180
