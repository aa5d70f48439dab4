"""KasminaLayer: chunked seeds, the vectorised fast path, telemetry, a whole lifecycle, export."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch.nn import functional as F

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.blueprints import get_blueprint
from kasmina_edge.host.kasmina import (
    GerminationRejected,
    GradientHealthInputs,
    GraftSignals,
    KasminaLayer,
    LifecycleEngine,
    SeedError,
    build_seed_module,
    host_parameters,
)
from kasmina_edge.host.kasmina import layer as layer_mod
from kasmina_edge.host.kernels.reference import seed_layer_reference

B, C, L = 4, 16, 24


def _x(c: int = C) -> torch.Tensor:
    return torch.randn(B, c, L)


def _passing_g1() -> GradientHealthInputs:
    return GradientHealthInputs(0, False, [1.0, 0.9, 0.8, 0.7, 0.6], [0.1] * 5)


def _train(layer: KasminaLayer, x: torch.Tensor, target: torch.Tensor, steps: int = 12) -> list[float]:
    ids = [s.seed_id for s in layer.seeds() if s.stage is Stage.TRAINING]
    opt = torch.optim.SGD(layer.registry.optimizer_param_groups(0.5, ids), lr=0.5)
    layer.registry.guard(opt, active=lambda: ids)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        layer(x)
        inc = layer.incubator_output()
        assert inc is not None
        losses.append(layer.seed_backward(F.mse_loss(inc, target)))
        opt.step()
    return losses


def _grow_to_fossil(layer: KasminaLayer, sid: str, x: torch.Tensor, target: torch.Tensor) -> None:
    """Drive one seed through every stage with real measurements."""
    layer.set_baseline(sid, 0.80)
    layer.engine.try_advance(sid)  # GERMINATED -> TRAINING
    losses = _train(layer, x, target)
    assert losses[-1] < losses[0]
    ev = layer.advance(sid)  # G1 from the layer's own records
    assert ev.dst is Stage.BLENDING, ev
    for i in range(10):
        layer(x)
        layer.step_alpha(sid, GraftSignals(val_metric=0.80 + 0.001 * i, baseline_metric=0.80))
    assert layer.seed(sid).alpha == 1.0
    assert layer.advance(sid).dst is Stage.SHADOWING  # G2
    layer(x)
    assert layer.advance(sid).dst is Stage.PROBATIONARY  # G3: shapes, export, telemetry
    ev = layer.advance(sid, layer.system_impact_inputs(sid, val_metric=0.85))
    assert ev.dst is Stage.FOSSILIZED, ev


def test_no_seed_returns_the_host_tensor_itself() -> None:
    layer = KasminaLayer(C, 4, site=0)
    x = _x()
    assert layer(x) is x
    with pytest.raises(SeedError, match=r"expected \(B, 16, L\)"):
        layer(torch.randn(2, 8, L))
    with pytest.raises(KasminaError, match="multiple of chunks"):
        KasminaLayer(10, 4, site=0)


def test_germinate_mirrors_state_into_buffers(engine: LifecycleEngine) -> None:
    layer = KasminaLayer(C, 4, site=3)
    layer.attach(engine=engine)
    x = _x()
    layer(x)
    sid = layer.germinate(2, "bottleneck_adapter")
    assert sid == "site3/c2"
    info = layer.seed(sid)
    assert info.stage is Stage.GERMINATED and info.in_bank and info.channels == (8, 12)
    assert info.param_count == get_blueprint("bottleneck_adapter").param_count(4, rank=4)
    assert layer.stage.tolist() == [0, 0, int(Stage.GERMINATED), 0]
    assert layer.blueprint_id.tolist()[2] == get_blueprint("bottleneck_adapter").blueprint_id
    assert layer.grafting_id.tolist() == [-1, -1, 0, -1]
    assert bool(layer.ref_set[2]) and torch.allclose(layer.ref_mean[2], layer.tel_mean[2])
    assert layer(x) is x  # GERMINATED does not touch the output
    whole = layer.germinate((0, 2), "squeeze_excitation")
    assert not layer.seed(whole).in_bank and layer.seed(whole).channels == (0, 8)
    assert [s.seed_id for s in layer.seeds()] == [sid, whole]
    layer.end_epoch()
    layer.end_epoch()
    assert layer.epochs_in_stage.tolist() == [2, 2, 2, 0]
    layer.engine.try_advance(sid)
    assert layer.epochs_in_stage.tolist() == [2, 2, 0, 0]
    with pytest.raises(SeedError, match=r"held by site3/c0-1, site3/c2"):
        layer.germinate(None, "noop")
    with pytest.raises(SeedError, match="outside"):
        layer.germinate(7, "noop")


def test_g0_refusals_are_events(engine: LifecycleEngine, events: list[dict[str, object]]) -> None:
    layer = KasminaLayer(C, 1, site=0, length=L)
    layer.attach(engine=engine, target="edgetpu", max_params=300)
    with pytest.raises(GerminationRejected, match="not registered"):
        layer.germinate(None, "no_such_blueprint")
    with pytest.raises(GerminationRejected, match="target edgetpu cannot run 'mini_attention'"):
        layer.germinate(None, "mini_attention")
    with pytest.raises(GerminationRejected, match=r"params \d+ > budget 300"):
        layer.germinate(None, "residual_mlp")
    gate_events = [e for e in events if e["event"] == "gate"]
    assert len(gate_events) == 3 and not any(e["passed"] for e in gate_events)
    assert layer.germinate(None, "bottleneck_adapter", rank=2)  # fits: 2·16·2 = 64 params


def test_bank_seed_equals_its_module_and_the_reference() -> None:
    layer = KasminaLayer(C, 4, site=0)
    sid = layer.germinate(1, "bottleneck_adapter")
    with torch.no_grad():
        layer.w_up[1].normal_()
    layer.engine.try_advance(sid)
    layer.engine.try_advance(sid, _passing_g1())
    layer.set_alpha(sid, 0.25)
    x = _x()
    y = layer(x)
    flat = x.permute(0, 2, 1).reshape(-1, C)
    code = torch.tensor([0, 1, 0, 0])
    ref, _ = seed_layer_reference(flat, code, torch.full((4,), 0.25), layer.w_down, layer.w_up)
    assert torch.equal(y, ref.reshape(B, L, C).permute(0, 2, 1))
    module = layer.seed_module(sid)
    seg = x[:, 4:8]
    assert torch.allclose(y[:, 4:8], seg + 0.25 * (module(seg) - seg), atol=1e-6)
    assert torch.equal(y[:, :4], x[:, :4]) and torch.equal(y[:, 8:], x[:, 8:])


def test_telemetry_is_measured_per_chunk() -> None:
    layer = KasminaLayer(C, 4, site=0)
    x = _x()
    x[:, 12:] = 0.0  # one dead chunk
    layer(x)
    tel = layer.telemetry()
    chunks = x.reshape(B, 4, 4, L)
    assert torch.allclose(tel["mean"], chunks.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(tel["var"], chunks.var(dim=(0, 2, 3), unbiased=False), atol=1e-5)
    assert tel["dead_ratio"].tolist() == [0.0, 0.0, 0.0, 1.0]
    sid = layer.germinate(0, "bottleneck_adapter")
    layer.engine.try_advance(sid)
    layer(x + 3.0)  # the input distribution moves after germination
    drift = layer.telemetry()["drift"]
    assert drift[0] > 2.0 and drift[1] == 0.0  # drift is tracked only where a seed holds a reference


def test_thousands_of_seeds_one_kernel_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def counting(*a: object, **k: object) -> object:
        calls.append(1)
        return seed_layer_reference(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(layer_mod, "seed_layer_reference", counting)
    timings = {}
    for chunks in (64, 4096):
        layer = KasminaLayer(4096, chunks, site=0, rank=4)
        layer.attach(engine=LifecycleEngine(keep_events=False))
        for i in range(chunks):
            sid = layer.germinate(i, "bottleneck_adapter")
            layer.engine.try_advance(sid)
            layer.engine.try_advance(sid, _passing_g1())
        assert int((layer.stage == int(Stage.BLENDING)).sum()) == chunks
        x = torch.randn(2, 4096, 16)
        with torch.no_grad():
            layer(x)
            calls.clear()
            t0 = time.perf_counter()
            for _ in range(5):
                layer(x)
            timings[chunks] = (time.perf_counter() - t0) / 5
        assert len(calls) == 5  # one vectorised call per forward, whatever the number of seeds
    # Same FLOPs either way; a Python loop over seeds would make 4096 chunks ~64x slower.
    assert timings[4096] < 8 * timings[64] + 5e-3, timings


@pytest.mark.parametrize(("chunk", "blueprint", "params"), [
    (1, "bottleneck_adapter", {}),  # chunk bank
    (None, "squeeze_excitation", {}),  # whole-layer module seed
    ((2, 4), "depthwise_separable", {}),  # module seed on a chunk range
])  # fmt: skip
def test_full_lifecycle_to_fossil_and_export(
    chunk: int | tuple[int, int] | None, blueprint: str, params: dict[str, int], engine: LifecycleEngine
) -> None:
    layer = KasminaLayer(C, 4, site=0)
    layer.attach(engine=engine)
    x = _x()
    target = x.clone()
    a, b = (0, C) if chunk is None else ((chunk * 4, chunk * 4 + 4) if isinstance(chunk, int) else (8, 16))
    target[:, a:b] = 1.1 * x[:, a:b]
    layer(x)
    sid = layer.germinate(chunk, blueprint, **params)
    _grow_to_fossil(layer, sid, x, target)
    assert layer.stage_of(sid) is Stage.FOSSILIZED
    layer.eval()
    with torch.no_grad():
        y = layer(x)
        assert not torch.equal(y, x)
        view = layer.export_view()
        assert torch.allclose(view(x), y, atol=1e-5)
        ep = torch.export.export(view, (x,))
        assert torch.allclose(ep.module()(x), y, atol=1e-5)
        ep_layer = torch.export.export(layer, (x,))
        assert torch.allclose(ep_layer.module()(x), y, atol=1e-5)
    stages = [e["to"] for e in engine.events if e["event"] == "transition"]
    assert stages == ["GERMINATED", "TRAINING", "BLENDING", "SHADOWING", "PROBATIONARY", "FOSSILIZED"]
    # A seed-library record round-trips to a module computing the same seed.
    record = layer.seed_record(sid)
    json.dumps(record)
    assert record["stage"] == "FOSSILIZED" and [h["to"] for h in record["history"]] == stages
    rebuilt = build_seed_module(record, layer.seed_state_dict(sid))
    seg = x[:, a:b]
    with torch.no_grad():
        assert torch.allclose(seg + (rebuilt(seg) - seg), y[:, a:b], atol=1e-5)


def test_export_view_is_identity_without_live_seeds() -> None:
    layer = KasminaLayer(C, 4, site=0)
    layer.germinate(0, "bottleneck_adapter")
    view = layer.export_view()
    assert view.is_identity
    x = _x()
    assert torch.equal(torch.export.export(view, (x,)).module()(x), x)


def test_reset_frees_the_slot(engine: LifecycleEngine, clock: object) -> None:
    layer = KasminaLayer(C, 4, site=0)
    layer.attach(engine=engine)
    sid = layer.germinate(None, "glu")
    layer.engine.try_advance(sid)
    assert len(list(layer.seed_modules.parameters())) > 0
    layer.reset_seed(sid)
    assert layer.stage_of(sid) is Stage.EMBARGOED
    assert engine.tick() == []
    clock.advance(engine.embargo.duration("reset_requested") + 1)  # type: ignore[attr-defined]
    moved = engine.tick()
    assert [e.dst for e in moved] == [Stage.RESETTING, Stage.DORMANT]
    assert moved[-1].gate is not None and moved[-1].gate.passed
    assert list(layer.seeds()) == [] and len(layer.seed_modules) == 0
    assert layer.blueprint_id.tolist() == [-1] * 4 and layer.stage.tolist() == [0] * 4
    assert layer.germinate(None, "noop") == sid  # the same slot, germinated again


def test_terminated_seed_frees_slot_with_a_new_id() -> None:
    layer = KasminaLayer(C, 2, site=5)
    sid = layer.germinate(0, "latent_align")
    layer.terminate(sid)
    assert layer.stage_of(sid) is Stage.TERMINATED and list(layer.seeds()) == []
    assert layer.germinate(0, "latent_align") == "site5/c0#2"


def test_host_parameters_exclude_seeds() -> None:
    model = torch.nn.Sequential(torch.nn.Conv1d(1, C, 3, padding=1), KasminaLayer(C, 4, site=0))
    model[1].germinate(None, "glu")
    host = host_parameters(model)
    assert {id(p) for p in host} == {id(p) for p in model[0].parameters()}
