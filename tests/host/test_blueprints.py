"""Blueprint library: metadata matches the modules, every blueprint starts function-preserving,
exports where it claims a constrained target, and learns."""

from __future__ import annotations

import pytest
import torch

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.blueprints import (
    TARGET_OPS,
    TARGETS,
    BlueprintParamError,
    UnknownBlueprintError,
    blueprint_by_id,
    create_blueprint,
    get_blueprint,
    list_blueprints,
)

REQUIRED = {
    "noop", "bottleneck_adapter", "low_rank_residual", "residual_mlp", "squeeze_excitation",
    "depthwise_separable", "sliding_conv", "mini_attention", "glu", "denoising_autoencoder",
    "sparse_topk", "attention_filter", "latent_align", "quant_adapter", "pruning_adapter",
    "failsafe_gating", "nested_seed",
}  # fmt: skip
NAMES = [s.name for s in list_blueprints()]
C, L = 12, 32


def _x(c: int = C, n: int = L, b: int = 3) -> torch.Tensor:
    return torch.randn(b, c, n)


def test_library_has_the_catalogue() -> None:
    assert set(NAMES) >= REQUIRED
    ids = [s.blueprint_id for s in list_blueprints()]
    assert ids == list(range(len(ids)))
    assert all(blueprint_by_id(i).name == n for i, n in zip(ids, NAMES, strict=True))


def test_unknown_blueprint_and_parameter_are_user_errors() -> None:
    with pytest.raises(UnknownBlueprintError, match="unknown blueprint 'nope'"):
        create_blueprint("nope", 4)
    with pytest.raises(BlueprintParamError, match="unknown parameter"):
        create_blueprint("bottleneck_adapter", 4, rnk=3)
    with pytest.raises(KasminaError, match="rank must be >= 1"):
        create_blueprint("bottleneck_adapter", 4, rank=0)
    with pytest.raises(KasminaError, match="odd"):
        create_blueprint("sliding_conv", 4, kernel_size=4)


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_param_formula(name: str) -> None:
    spec = get_blueprint(name)
    for c in (4, C):
        m = create_blueprint(name, c, L)
        assert m(_x(c)).shape == (3, c, L)
        real = sum(p.numel() for p in m.parameters())
        assert spec.param_count(c) == real, f"{name} C={c}: formula {spec.param_count(c)} != real {real}"


@pytest.mark.parametrize("name", NAMES)
def test_macs_scale_with_length(name: str) -> None:
    spec = get_blueprint(name)
    if name == "noop":
        assert spec.macs(C, L) == 0
        return
    assert spec.macs(C, L) > 0
    assert spec.macs(C, 2 * L) > spec.macs(C, L)


@pytest.mark.parametrize("name", NAMES)
def test_function_preserving_at_init(name: str) -> None:
    m = create_blueprint(name, C, L)
    x = _x()
    for mode in (True, False):
        m.train(mode)
        with torch.no_grad():
            y = m(x)
        assert (y - x).abs().max().item() <= 1e-6, f"{name} (train={mode}) changes the host at init"


@pytest.mark.parametrize("name", NAMES)
def test_targets_consistent_with_ops(name: str) -> None:
    spec = get_blueprint(name)
    assert spec.targets <= set(TARGETS)
    for target in spec.targets:
        missing = set(spec.ops) - TARGET_OPS[target]
        assert not missing, f"{name} claims {target} but lowers to {sorted(missing)}"


def test_edgetpu_exclusions_are_real() -> None:
    for name in ("mini_attention", "sparse_topk", "failsafe_gating"):
        assert not get_blueprint(name).supports("edgetpu", C)
    assert get_blueprint("quant_adapter").supports("edgetpu", C, bits=8)
    assert not get_blueprint("quant_adapter").supports("edgetpu", C, bits=4)
    assert get_blueprint("quant_adapter").supports("cortex-m", C, bits=4)


@pytest.mark.parametrize(
    "name", [n for n in NAMES if {"edgetpu", "cortex-m"} & get_blueprint(n).targets]
)
def test_torch_export_for_constrained_targets(name: str) -> None:
    m = create_blueprint(name, C, L).eval()
    x = _x()
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), m(x), atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "noop"])
def test_seed_trains(name: str) -> None:
    m = create_blueprint(name, C, L).train()
    x = _x()
    target = x + 0.5 * torch.randn_like(x)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss(m(x), target)
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert any(bool(g.ne(0).any()) for g in grads), f"{name}: no gradient reaches the output path"
    opt.step()
    m.eval()
    with torch.no_grad():
        moved = (m(x) - x).abs().max().item()
        new_loss = torch.nn.functional.mse_loss(m(x), target).item()
    assert moved > 1e-6, f"{name}: output unchanged after one step"
    assert new_loss < loss.item() + 1e-6


def test_quant_adapter_weights_on_grid() -> None:
    from kasmina_edge.host.blueprints.quant import _weight_scale, fake_quant_symmetric

    for bits in (8, 4):
        w = torch.randn(6, 5, 1, requires_grad=True)
        q = fake_quant_symmetric(w, _weight_scale(w, bits), bits)
        levels = max(len(torch.unique(row)) for row in q.detach())
        assert levels <= 2**bits - 1
        q.sum().backward()
        assert torch.equal(w.grad, torch.ones_like(w))  # straight-through
    with pytest.raises(BlueprintParamError, match="bits"):
        create_blueprint("quant_adapter", 4, bits=3)


def test_pruning_adapter_masks_by_magnitude() -> None:
    m = create_blueprint("pruning_adapter", 8, rank=4, sparsity=0.5)
    with torch.no_grad():
        m.block.up.weight.normal_()
    m.prune()
    total = m.block.down.weight.numel() + m.block.up.weight.numel()
    assert m.nonzero_param_count() == total // 2
    kept = m.block.down.weight[m.mask_down.bool()].abs().min()
    dropped = m.block.down.weight[~m.mask_down.bool()].abs().max()
    assert kept >= dropped


def test_nested_seed_is_three_levels_deep_with_child_alphas() -> None:
    m = create_blueprint("nested_seed", 8)
    assert m.levels() == 3
    x = _x(8)
    for leaf in m.modules():
        if hasattr(leaf, "own"):
            torch.nn.init.normal_(leaf.own.up.weight)
    with torch.no_grad():
        y_all = m(x)
        m.child_alpha.zero_()
        y_none = m(x)
    assert not torch.allclose(y_all, y_none)


def test_failsafe_gating_falls_back_to_identity() -> None:
    m = create_blueprint("failsafe_gating", 8)
    x = _x(8)
    with torch.no_grad():
        m.inner.up.weight.normal_()
        assert not torch.equal(m(x), x)
        m.trip()
        assert torch.equal(m(x), x)
        m.trip(False)
        m.inner.up.weight[0, 0, 0] = float("nan")
        y = m(x)
    assert torch.isfinite(y).all()
    assert torch.equal(y[:, 0], x[:, 0])  # the poisoned channel falls back, the others still adapt
