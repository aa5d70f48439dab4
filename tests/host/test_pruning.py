"""Pruning seeds on constructed cases whose answer is known: a dead unit, a tiny one, one whose output the
head ignores, and one the decision rests on; seeds in a KasminaLayer (a chunk-bank row and a module seed)
and a fossilized blueprint at a site."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.blueprints import create_blueprint
from kasmina_edge.host.kasmina import (
    GradientHealthInputs,
    InterfaceInputs,
    KasminaLayer,
    LifecycleEngine,
    StabilityInputs,
    SystemImpactInputs,
    bit_equal,
)
from kasmina_edge.host.pruning import (
    PruneGate,
    Unit,
    Validation,
    apply_plan,
    compact,
    count_params,
    find_seeds,
    gain_per_parameter,
    magnitude,
    prune_schedule,
    same_weights,
    seed_units,
    seed_utilization,
    try_prune,
    unit_utilization,
    utilization,
)
from kasmina_edge.host.pruning.strategies import Candidate

C, L, N = 8, 16, 256
DEAD, TINY, IGNORED, KEY = 0, 1, 2, 3  # the four rank units of the site seed


def _inputs(seed: int = 0) -> torch.Tensor:
    """Positive activations (as after a ReLU): a unit whose W_down row is negative never fires."""
    return torch.rand(N, C, L, generator=torch.Generator().manual_seed(seed)) + 0.1


class SiteNet(nn.Module):
    """site (a fossilized bottleneck adapter, rank 4) → mean over time → linear head on channel 6 only."""

    def __init__(self) -> None:
        super().__init__()
        self.sites = nn.ModuleDict({"site0": create_blueprint("bottleneck_adapter", C, L, rank=4)})
        self.head = nn.Linear(C, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.sites["site0"](x).mean(dim=2))  # type: ignore[no-any-return]


def _site_net() -> tuple[SiteNet, Validation]:
    net = SiteNet()
    block = net.sites["site0"].block
    with torch.no_grad():
        down, up = block.down.weight, block.up.weight  # (4, C, 1), (C, 4, 1)
        down.zero_()
        up.zero_()
        down[DEAD, :, 0] = -1.0
        up[6, DEAD, 0] = 4.0  # would matter, but never fires
        down[TINY, 0, 0] = 0.01
        up[6, TINY, 0] = 0.01
        down[IGNORED, :4, 0] = 1.0
        up[7, IGNORED, 0] = 3.0  # channel 7: the head does not read it
        down[KEY, :4, 0] = 1.0
        up[6, KEY, 0] = 5.0
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.weight[1, 6] = 1.0
    x = _inputs()
    with torch.no_grad():
        y6 = net.sites["site0"](x).mean(dim=2)[:, 6]
        net.head.bias[1] = -float(y6.median())  # half the samples each side
        labels = net(x).argmax(dim=1)
    return net, Validation((x,), labels, n_classes=2)


def _unit(net: nn.Module, index: int) -> Unit:
    (ref,) = find_seeds(net)
    return Unit(ref, "block", index)


def _order(plan: list[Candidate]) -> list[int]:
    return [c.unit.index for c in plan]


# --------------------------------------------------------------------------- KasminaLayer seeds


class LayerNet(nn.Module):
    """A KasminaLayer (2 chunks of 4 channels, rank 4) → mean over time → linear head on channel 2."""

    def __init__(self, engine: LifecycleEngine) -> None:
        super().__init__()
        self.site = KasminaLayer(C, 2, site=0, rank=4, length=L, engine=engine)
        self.head = nn.Linear(C, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.site(x).mean(dim=2))  # type: ignore[no-any-return]


def _fossilize(layer: KasminaLayer, sid: str) -> None:
    eng = layer.engine
    eng.try_advance(sid)
    eng.try_advance(sid, GradientHealthInputs(0, False, [1.0, 0.9, 0.8, 0.7, 0.6], [0.1] * 5))
    eng.try_advance(sid, StabilityInputs(alphas=[0.5, 1.0], drift=0.0, val_metrics=[0.8, 0.8]))
    eng.try_advance(sid, InterfaceInputs((1,), (1,), "f", "f", True))
    eng.try_advance(sid, SystemImpactInputs(0.9, 0.8))
    assert layer.stage_of(sid) is Stage.FOSSILIZED


def _layer_net(events: list[dict[str, object]]) -> tuple[LayerNet, Validation, str, str]:
    net = LayerNet(LifecycleEngine(sink=events.append))
    bank = net.site.germinate(0, "bottleneck_adapter", rank=4)  # the layer's rank: a chunk-bank row
    module = net.site.germinate(1, "low_rank_residual")  # a module seed, its output path still zero
    for sid in (bank, module):
        _fossilize(net.site, sid)
    with torch.no_grad():
        net.site.w_down[0].fill_(1.0)
        net.site.w_down[0][:, DEAD] = -1.0
        net.site.w_up[0].zero_()
        net.site.w_up[0][DEAD, 2] = 4.0
        net.site.w_up[0][KEY, 2] = 5.0
        net.site.w_up[0][TINY, 2] = 0.01
        net.head.weight.zero_()
        net.head.weight[1, 2] = 1.0
    x = _inputs(1)
    with torch.no_grad():
        y2 = net.site(x).mean(dim=2)[:, 2]
        net.head.bias.zero_()
        net.head.bias[1] = -float(y2.median())
        labels = net(x).argmax(dim=1)
    return net, Validation((x,), labels, n_classes=2), bank, module


# --------------------------------------------------------------------------- utilization


def test_utilization_ranks_the_dead_unit_lowest() -> None:
    net, val = _site_net()
    scores = {u.key: u for u in unit_utilization(net, val)}
    dead, tiny = scores[_unit(net, DEAD).key], scores[_unit(net, TINY).key]
    assert dead.activation == 0.0 and dead.out_norm == pytest.approx(4.0)  # big weights, never fires
    assert min(scores.values(), key=lambda u: u.score) is dead
    assert 0.0 < tiny.score < scores[_unit(net, KEY).key].score


def test_utilization_of_a_chunk_bank_row_reads_the_layer_input(events: list[dict[str, object]]) -> None:
    net, val, bank, _module = _layer_net(events)
    scores = [u for u in unit_utilization(net, val) if bank in u.key]
    assert len(scores) == 4
    assert min(scores, key=lambda u: u.score).key.endswith("#bank[0]")  # the dead one
    x = val.inputs[0][:, :4].permute(0, 2, 1)
    expected = torch.relu(x @ net.site.w_down[0]).abs().mean(dim=(0, 1))
    got = torch.tensor([u.activation for u in sorted(scores, key=lambda u: u.key)])
    assert torch.allclose(got.float(), expected, rtol=1e-5)


def test_seed_utilization_share_delta_and_decisions(events: list[dict[str, object]]) -> None:
    net, val, bank, module = _layer_net(events)
    by_id = {u.key.split(":")[1]: u for u in seed_utilization(net, val)}
    idle, busy = by_id[module], by_id[bank]  # the module seed's output path is still zero
    assert idle.share == 0.0 and idle.rel_delta == 0.0 and idle.decision_change == 0.0
    assert busy.share == pytest.approx(1.0) and busy.rel_delta > 0.1
    assert busy.decision_change >= 0.4  # without it the head sees channel 2 drop by ~10: one class only


# --------------------------------------------------------------------------- strategies


def test_each_strategy_orders_the_constructed_units() -> None:
    net, val = _site_net()
    # magnitude trusts weights: the tiny unit first, the dead one (big weights) last
    assert _order(magnitude(net, val)) == [TINY, IGNORED, KEY, DEAD]
    # utilization reads the data: the dead unit first, the tiny second, the one the head ignores third
    assert _order(utilization(net, val)) == [DEAD, TINY, IGNORED, KEY]
    # gain per parameter asks the metric: dead and ignored cost nothing (exactly), the key unit most
    snapshot = {k: v.clone() for k, v in net.state_dict().items()}
    plan = gain_per_parameter(net, val)
    assert same_weights(net, snapshot)  # each ablation was masked in place and put back exactly
    by_index = {c.unit.index: c for c in plan}
    assert by_index[DEAD].score == 0.0 and by_index[DEAD].tie == 0.0
    assert by_index[IGNORED].score == 0.0 and by_index[IGNORED].tie == 0.0
    assert _order(plan)[-1] == KEY and by_index[KEY].score > 0
    assert _order(plan).index(IGNORED) < _order(utilization(net, val)).index(IGNORED) + 1


def test_seed_level_plans_name_whole_seeds(events: list[dict[str, object]]) -> None:
    net, val, bank, module = _layer_net(events)
    for strategy in (magnitude, utilization, gain_per_parameter):
        plan = strategy(net, val, "seed")
        assert [c.unit.whole_seed for c in plan] == [True, True]
        assert plan[0].key.endswith(module), strategy.__name__  # the idle module seed goes first
    with pytest.raises(KasminaError, match="level"):
        magnitude(net, val, "layer")


# --------------------------------------------------------------------------- removal, gate, rollback


def test_masked_units_and_shrunk_layers_free_their_parameters() -> None:
    net, val = _site_net()
    before, numel = count_params(net), sum(p.numel() for p in net.parameters())
    masked = apply_plan(net, [_unit(net, DEAD), _unit(net, IGNORED)])
    assert count_params(masked).seeds == before.seeds - 2 * 2 * C
    assert sum(p.numel() for p in masked.parameters()) == numel  # masked: still there, counted as removed
    assert compact(masked) == 2
    block = masked.sites["site0"].block  # type: ignore[index]
    assert block.down.weight.shape == (2, C, 1) and block.up.weight.shape == (C, 2, 1)
    assert sum(p.numel() for p in masked.parameters()) == numel - 2 * 2 * C
    assert count_params(masked).seeds == before.seeds - 2 * 2 * C
    assert np.array_equal(val.predict(masked), val.predict(net))
    assert torch.allclose(val.logits(masked), val.logits(net), atol=1e-5)
    assert [u.index for u in seed_units(masked, find_seeds(masked)[0])] == [0, 1]  # TINY and KEY, re-indexed


def test_a_prune_that_breaks_accuracy_is_refused_and_rolled_back_bit_for_bit() -> None:
    net, val = _site_net()
    snapshot = {k: v.clone() for k, v in net.state_dict().items()}
    logits = val.logits(net)
    plan = [c for c in magnitude(net, val) if c.unit.index == KEY]
    kept, step = try_prune(net, plan, val, PruneGate(tolerance=0.01))
    assert not step.accepted and step.metric < 0.75 and step.reference == 1.0
    assert "worse than baseline" in step.gate["reason"]
    assert kept is net and step.rollback_exact is True
    assert same_weights(net, snapshot)
    assert bit_equal(val.logits(net), logits)
    assert step.params_after < step.params_before  # the refused candidate did remove something


def test_a_harmless_prune_is_kept_and_parameters_drop() -> None:
    net, val = _site_net()
    plan = [c for c in magnitude(net, val) if c.unit.index in (DEAD, IGNORED)]
    kept, step = try_prune(net, plan, val, PruneGate(tolerance=0.0, bootstrap=True, bootstrap_rounds=100))
    assert step.accepted, step.gate
    assert kept is not net and count_params(kept).seeds == count_params(net).seeds - 2 * 2 * C
    assert "bootstrap_gain_low" in step.gate["metrics"]


def test_whole_layer_seeds_terminate_on_the_copy_only(events: list[dict[str, object]]) -> None:
    net, val, bank, module = _layer_net(events)
    n_events = len(events)
    seeds_before = count_params(net).seeds
    # the bank seed carries the decision: refused, and the original (its engine, its sink) untouched
    kept, step = try_prune(net, [c for c in magnitude(net, val, "seed") if c.key.endswith(bank)], val, PruneGate())
    assert not step.accepted and kept is net and step.rollback_exact
    assert net.site.stage_of(bank) is Stage.FOSSILIZED and len(events) == n_events
    # the idle module seed goes: TERMINATED on the kept copy, its parameters freed, the sink told
    kept, step = try_prune(net, [c for c in magnitude(net, val, "seed") if c.key.endswith(module)], val, PruneGate())
    assert step.accepted
    assert kept.site.stage_of(module) is Stage.TERMINATED and net.site.stage_of(module) is Stage.FOSSILIZED
    assert count_params(kept).seeds < seeds_before
    assert len(list(kept.site.seed_modules)) == 0 and len(list(net.site.seed_modules)) == 1
    assert [e["to"] for e in events[n_events:]] == ["TERMINATED"]


def test_schedule_rolls_back_the_step_that_fails_and_goes_on() -> None:
    net, val = _site_net()
    run = prune_schedule(net, magnitude, val, [0.25, 0.5, 0.75], step_fraction=0.25, gate=PruneGate(tolerance=0.01))
    # magnitude offers TINY, IGNORED, then KEY: refused, rolled back, never offered again; then DEAD
    refused = [s for s in run.steps if not s.accepted]
    assert len(refused) == 1 and refused[0].removed == [_unit(net, KEY).key] and refused[0].rollback_exact
    assert [t.reached for t in run.targets] == [True, True, True]
    last = run.targets[-1]
    assert last.saved_fraction == pytest.approx(0.75) and last.metric >= run.reference - 0.01
    assert [u.index for u in seed_units(last.model, find_seeds(last.model)[0])] == [KEY]
    assert count_params(net).seeds == 4 * 2 * C  # the input model is never changed


def test_schedule_refuses_bad_targets() -> None:
    net, val = _site_net()
    with pytest.raises(KasminaError, match="ascending"):
        prune_schedule(net, magnitude, val, [0.5, 0.25])


def test_compacting_a_layer_module_seed_updates_its_registry(events: list[dict[str, object]]) -> None:
    net = LayerNet(LifecycleEngine(sink=events.append))
    sid = net.site.germinate(1, "residual_mlp")  # 4 channels, 8 hidden units: a module seed
    _fossilize(net.site, sid)
    with torch.no_grad():
        net.site.seed_module(sid).fc2.weight.normal_()  # type: ignore[operator]
    x = _inputs(2)
    (ref,) = find_seeds(net)
    units = seed_units(net, ref)
    assert len(units) == 8 and net.site.seed(sid).param_count == 2 * 4 * 8 + 8 + 4
    pruned = apply_plan(net, units[:3], shrink=True)
    module = pruned.site.seed_module(sid)  # type: ignore[operator]
    assert module.fc1.weight.shape[0] == 5 and module.fc2.weight.shape[1] == 5
    assert pruned.site.seed(sid).param_count == sum(p.numel() for p in module.parameters()) == 2 * 4 * 5 + 5 + 4
    masked = apply_plan(net, units[:3])
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked(x), atol=1e-6)
    assert net.site.seed(sid).param_count == 2 * 4 * 8 + 8 + 4  # the original keeps its seed whole
