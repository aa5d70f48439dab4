"""`morph --patient` refuses, before any training, a base where no seed site receives a gradient
(issue 17, item 3): saturated sites (every activation beyond the device range) or a frozen base."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _base():  # type: ignore[no-untyped-def]
    from kasmina_edge.host.model import CONFIGS, BeatClassifier

    torch.manual_seed(0)
    return BeatClassifier(CONFIGS["tiny"])


def _beats(n: int = 64):  # type: ignore[no-untyped-def]
    from kasmina_edge.host.model import CONFIGS

    rng = np.random.default_rng(0)
    cfg = CONFIGS["tiny"]
    return SimpleNamespace(windows=rng.standard_normal((n, 1, cfg.window)).astype(np.float32),
                           rr=rng.standard_normal((n, cfg.n_rr)).astype(np.float32),
                           labels=rng.integers(0, 5, size=n))  # fmt: skip


def test_a_live_base_passes_and_is_left_as_it_was() -> None:
    from kasmina_edge.host.site_gradients import GRADIENT_FLOOR, refuse_gradient_free_base, site_gradients

    base = _base()
    before = [p.requires_grad for p in base.parameters()]
    grads = site_gradients(base, _beats(), {})
    assert set(grads) == set(base.config.site_names)
    assert all(g > GRADIENT_FLOOR and beyond == 0.0 for g, beyond in grads.values())
    refuse_gradient_free_base(base, _beats(), {}, Path("base.pt"), "100")  # no error
    assert [p.requires_grad for p in base.parameters()] == before and all(p.grad is None for p in base.parameters())


def test_saturated_sites_are_refused_with_the_reason() -> None:
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.site_gradients import refuse_gradient_free_base

    base = _base()
    ranges = {n: (-60.0, -50.0) for n in base.config.site_names}  # post-ReLU activations all above: clipped flat
    with pytest.raises(KasminaError, match="no seed can learn on patient 100.*saturated.*site0 \\(100 % beyond\\)"):
        refuse_gradient_free_base(base, _beats(), ranges, Path("base.pt"), "100")


def test_a_frozen_base_is_refused_with_the_reason() -> None:
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.site_gradients import refuse_gradient_free_base

    base = _base()
    with torch.no_grad():  # a dead head: nothing after the sites carries a gradient back
        base.head.fc1.weight.zero_()
    with pytest.raises(KasminaError, match="frozen or saturated"):
        refuse_gradient_free_base(base, _beats(), {}, Path("base.pt"), "100")
