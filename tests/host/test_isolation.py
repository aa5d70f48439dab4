"""Gradient isolation (host bit-exact in TRAINING, no seed->host gradient, shared parameters
caught) and the parameter registry's per-seed optimizer groups and update guard."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina import (
    GradientHealthInputs,
    IsolationMonitor,
    KasminaLayer,
    LifecycleEngine,
    ParameterRegistry,
    SharedParameterError,
    UpdateRejected,
    bit_equal,
    evaluate_gate,
    freeze_host,
)

C, L = 8, 16


class Host(nn.Module):
    """conv -> seed site -> conv, the shape of the base model around one KasminaLayer."""

    def __init__(self, chunks: int = 2) -> None:
        super().__init__()
        self.pre = nn.Conv1d(1, C, 3, padding=1)
        self.site = KasminaLayer(C, chunks, site=0)
        self.post = nn.Conv1d(C, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.site(self.pre(x)))


def _host_with_registry(chunks: int = 2) -> tuple[Host, ParameterRegistry]:
    host = Host(chunks)
    reg = ParameterRegistry()
    host.site.attach(registry=reg, engine=LifecycleEngine())
    reg.register_host(host)  # the KasminaLayer's bank is kept out of the host automatically
    return host, reg


def _to_training(layer: KasminaLayer, chunk: int | None, blueprint: str, **p: int) -> str:
    sid = layer.germinate(chunk, blueprint, **p)
    layer.engine.try_advance(sid)
    assert layer.stage_of(sid) is Stage.TRAINING
    return sid


def test_training_output_is_the_host_bit_for_bit() -> None:
    host, _ = _host_with_registry(chunks=2)
    _to_training(host.site, 0, "bottleneck_adapter")  # chunk bank
    _to_training(host.site, 1, "glu")  # module seed
    a = torch.randn(3, C, L)
    a[0, 0, 0] = float("nan")  # bit-exact even where torch.equal could not say so
    a[1, 5, 3] = -0.0
    out = host.site(a)
    assert out is a and bit_equal(out, a)
    with torch.no_grad():
        for p in host.site.parameters():
            p.add_(0.5)  # trained seeds still must not touch the output in TRAINING
    assert host.site(a) is a


def test_blending_chunk_does_not_disturb_training_chunks() -> None:
    layer = KasminaLayer(C, 2, site=0)
    blending = layer.germinate(0, "bottleneck_adapter")
    layer.engine.try_advance(blending)
    layer.engine.try_advance(blending, GradientHealthInputs(0, False, [5, 4, 3, 2, 1], [0.1] * 5))
    layer.set_alpha(blending, 0.5)
    _to_training(layer, 1, "bottleneck_adapter")
    with torch.no_grad():
        layer.w_up.normal_()
    x = torch.randn(3, C, L, requires_grad=True)
    out = layer(x)
    assert bit_equal(out[:, 4:], x[:, 4:]) and not torch.equal(out[:, :4], x[:, :4])
    out.sum().backward()
    # The host sees the seed's contribution as a constant: d out / d x is exactly the identity.
    assert torch.equal(x.grad, torch.ones_like(x))


def test_seed_loss_gives_exactly_zero_host_gradient() -> None:
    host, reg = _host_with_registry()
    frozen = freeze_host(host)
    assert {id(p) for p in frozen} == {id(p) for p in [*host.pre.parameters(), *host.post.parameters()]}
    sid = _to_training(host.site, None, "residual_mlp")
    x = torch.randn(4, 1, L)
    host(x)
    inc = host.site.incubator_output()
    assert inc is not None
    # The seed's own loss: the task loss through the frozen downstream head.
    logits = host.post(inc)
    loss = F.cross_entropy(logits.mean(dim=2), torch.tensor([0, 1, 0, 1]))
    host.site.seed_backward(loss)
    for p in frozen:
        assert p.grad is None
    assert any(p.grad is not None and bool(p.grad.ne(0).any()) for p in host.site.seed_parameters(sid))
    assert host.site.seed(sid).isolation_violations == 0
    reg.check_update([sid])
    g1 = evaluate_gate("G1", host.site.gradient_health_inputs(sid, window=1))
    assert "isolation" not in g1.reason
    # Had the head not been frozen, the guard would refuse the step.
    host.post.weight.grad = torch.ones_like(host.post.weight)
    with pytest.raises(UpdateRejected, match="frozen host parameter 'post.weight'"):
        reg.check_update([sid])


def test_unfrozen_host_reached_by_a_seed_loss_is_a_violation() -> None:
    host, _ = _host_with_registry()
    sid = _to_training(host.site, None, "residual_mlp")
    host(torch.randn(4, 1, L))
    inc = host.site.incubator_output()
    assert inc is not None
    host.site.seed_backward(host.post(inc).pow(2).mean())  # host.post still requires grad
    assert host.site.seed(sid).isolation_violations == 1
    assert host.site.stage_of(sid) is Stage.EMBARGOED


def test_shared_parameter_is_a_violation_that_trips_the_breaker() -> None:
    pre = nn.Conv1d(C, C, 1)
    seed = nn.Conv1d(C, C, 1)
    seed.weight = pre.weight  # deliberately shared with the host
    monitor = IsolationMonitor(seed.parameters(), pre.parameters())
    assert monitor.violations == 1 and monitor.tripped
    assert "shared" in monitor.reasons[0]
    reg = ParameterRegistry()
    reg.register_host(pre)
    with pytest.raises(SharedParameterError, match="already owned by host"):
        reg.register_seed("s", seed.parameters())
    g1 = evaluate_gate("G1", GradientHealthInputs(monitor.violations, monitor.tripped, [3, 2, 1, 0.5, 0.1], [0.1] * 5))
    assert not g1.passed and "isolation violated 1x" in g1.reason and "breaker" in g1.reason


def test_layer_detects_a_seed_that_reaches_into_the_host() -> None:
    host, _ = _host_with_registry()
    sid = _to_training(host.site, None, "low_rank_residual", rank=C)
    module = host.site.seed_module(sid)
    shared = nn.Conv1d(C, C, 1)
    host.shared = shared  # a host layer whose weight the seed will borrow
    host.site.registry.register_host(shared, prefix="shared.")
    module.u.weight = shared.weight  # type: ignore[assignment]
    x = torch.randn(2, 1, L)
    host(x)
    inc = host.site.incubator_output()
    assert inc is not None
    host.site.seed_backward(F.mse_loss(inc, torch.zeros_like(inc)))
    info = host.site.seed(sid)
    assert info.isolation_violations >= 2  # the shared parameter and the gradient it carried
    assert host.site.stage_of(sid) is Stage.EMBARGOED  # the breaker culled it
    cull = host.site.engine.lifecycle(sid).cull_reason
    assert cull is not None and cull.startswith("health_isolation_breaker")


def test_seed_params_get_no_gradient_from_the_host_loss_in_training() -> None:
    host, _ = _host_with_registry()
    sid = _to_training(host.site, None, "glu")
    monitor = IsolationMonitor(host.site.seed_parameters(sid), [])
    with monitor.host_backward():
        F.mse_loss(host(torch.randn(2, 1, L)), torch.zeros(2, 2, L)).backward()
    assert monitor.holds and monitor.seed_grad_from_host == 0.0


# -- registry ----------------------------------------------------------------------------------
def test_one_optimizer_group_per_seed_with_lr_scale() -> None:
    host, reg = _host_with_registry(chunks=4)
    a = _to_training(host.site, (0, 2), "glu")
    b = _to_training(host.site, 2, "squeeze_excitation")
    c = host.site.germinate(3, "bottleneck_adapter", lr_scale=0.75)
    assert host.site.lr_scale[3] == 0.75
    host.site.engine.try_advance(c)
    host.site.set_lr_scale(a, 0.5)
    groups = reg.optimizer_param_groups(0.1)
    by_seed = {g.get("seed_id"): g for g in groups}
    assert by_seed[a]["lr"] == pytest.approx(0.05) and by_seed[b]["lr"] == pytest.approx(0.1)
    bank = next(g for g in groups if "seed_ids" in g)
    assert bank["seed_ids"] == [c] and bank["weight_decay"] == 0.0
    owned = [id(p) for g in groups for p in g["params"]]
    assert len(owned) == len(set(owned))  # no parameter in two groups
    torch.optim.SGD(groups, lr=0.1)  # torch accepts the groups as they are
    # Bank rows: the lr scale is applied to that row's gradient.
    host.site.set_lr_scale(c, 0.25)
    host(torch.randn(2, 1, L))
    inc = host.site.incubator_output()
    assert inc is not None
    host.site.seed_backward(inc.pow(2).mean())
    assert host.site.w_down.grad is not None and host.site.w_up.grad is not None


def test_cross_seed_update_is_rejected_before_the_step() -> None:
    host, reg = _host_with_registry(chunks=4)
    a = _to_training(host.site, 0, "bottleneck_adapter")
    b = _to_training(host.site, 1, "bottleneck_adapter")
    m = _to_training(host.site, (2, 4), "glu")
    host(torch.randn(2, 1, L))
    inc = host.site.incubator_output()
    assert inc is not None
    host.site.seed_backward(inc.pow(2).mean() + inc.abs().mean())  # trains a, b and m together
    with pytest.raises(UpdateRejected, match=r"chunk-bank row 1 \(owner site0/c1\)"):
        reg.check_update([a, m])
    with pytest.raises(UpdateRejected, match="seed site0/c2-3 is not being trained"):
        reg.check_update([a, b])
    reg.check_update([a, b, m])
    opt = torch.optim.SGD(reg.optimizer_param_groups(0.1, [a]), lr=0.1)
    reg.guard(opt, active=lambda: [a])
    before = host.site.w_up.detach().clone()
    with pytest.raises(UpdateRejected):
        opt.step()
    assert torch.equal(host.site.w_up, before)  # nothing was written
    stray = nn.Parameter(torch.ones(3))
    stray.grad = torch.ones(3)
    with pytest.raises(UpdateRejected, match="unregistered parameter"):
        reg.check_update([a, b, m], params=[stray])


def test_bank_row_lr_scale_scales_that_rows_gradient() -> None:
    import copy

    original = KasminaLayer(C, 2, site=0)
    original.attach(registry=ParameterRegistry())
    layer = copy.deepcopy(original)  # morph works on a copy of the base: nothing may point back
    layer.attach(registry=ParameterRegistry())
    a = _to_training(layer, 0, "bottleneck_adapter")
    b = _to_training(layer, 1, "bottleneck_adapter")
    with torch.no_grad():
        layer.w_down[1] = layer.w_down[0]
    layer.set_lr_scale(b, 0.25)
    x = torch.randn(3, C, L)
    x[:, 4:] = x[:, :4]  # both chunks see the same signal
    layer(x)
    inc = layer.incubator_output()
    assert inc is not None
    layer.seed_backward((inc - 2 * x).pow(2).sum())
    g = layer.w_up.grad
    assert g is not None and bool(g[0].ne(0).any())
    assert torch.allclose(g[1], 0.25 * g[0])
    assert layer.seed(a).param_count == layer.seed(b).param_count == 2 * 4 * 4
