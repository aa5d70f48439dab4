"""The base beat classifier: size and MAC limits, seed sites, split points, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.model import (
    CONFIGS,
    BeatClassifier,
    ModelConfig,
    build_model,
    count_host_parameters,
    count_macs,
    count_parameters,
    example_inputs,
)


def _macs_by_formula(cfg: ModelConfig) -> int:
    """Conv and linear MACs written out by hand, independent of the hook-based counter."""
    total, c_in, length = 0, 1, cfg.window
    for c, k in zip(cfg.channels, cfg.kernels, strict=True):
        length //= 2
        total += c * length * c_in * k
        total += (cfg.convs_per_block - 1) * c * length * c * k
        c_in = c
    total += (cfg.channels[-1] + cfg.n_rr) * cfg.head_hidden + cfg.head_hidden * cfg.n_classes
    return total


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_size_and_macs_fit_a_cortex_m7(name: str) -> None:
    model = build_model(name)
    cfg = model.config
    x, rr = example_inputs(cfg, batch=2)
    assert model(x, rr).shape == (2, 5)
    params = count_host_parameters(model)
    macs = count_macs(model, x, rr)
    assert params < 100_000
    assert macs < 2_000_000
    assert macs == _macs_by_formula(cfg)
    # Dormant sites add nothing to the per-beat work of the base.
    assert count_parameters(model) - params == sum(count_parameters(s) for s in model.sites.values())


def test_four_seed_sites_are_kasmina_layers_and_start_as_identity() -> None:
    from kasmina_edge.host.kasmina import KasminaLayer

    model = build_model("default", seed=1)
    assert len(model.sites) >= 4
    assert all(isinstance(s, KasminaLayer) for s in model.sites.values())
    x, rr = example_inputs(model.config, batch=3)
    plain = BeatClassifier(model.config, site_factory=lambda c, k, s, n: nn.Identity())
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("sites.")}, strict=True)
    model.eval()
    plain.eval()
    assert torch.equal(model(x, rr), plain(x, rr))


def test_no_batchnorm_no_maxpool() -> None:
    model = build_model("default")
    kinds = {type(m) for m in model.modules()}
    assert not kinds & {nn.BatchNorm1d, nn.MaxPool1d, nn.MaxPool2d}


def test_segments_chain_to_the_full_model() -> None:
    model = build_model("default", seed=3).eval()
    segs = model.segments()
    assert len(segs) == len(model.sites) + 1
    assert segs[0].inputs[0][0] == "window" and segs[-1].inputs[1][0] == "rr"
    x, rr = example_inputs(model.config, batch=4)
    h = x
    with torch.no_grad():
        for seg in segs[:-1]:
            h = seg.module(h)
            assert tuple(h.shape[1:]) == seg.output
            assert seg.site_after is not None
            h = model.sites[seg.site_after](h)
        out = segs[-1].module(h, rr)
        assert torch.allclose(out, model(x, rr))


def test_torch_export_of_the_base() -> None:
    model = build_model("default").eval()
    x, rr = example_inputs(model.config, batch=1)
    ep = torch.export.export(model, (x, rr))
    assert torch.allclose(ep.module()(x, rr), model(x, rr), atol=1e-6)
    for seg in model.segments():
        args = tuple(torch.randn(1, *shape) for _, shape in seg.inputs)
        torch.export.export(seg.module.eval(), args)


def test_bad_config_is_one_clear_error() -> None:
    with pytest.raises(KasminaError, match="at least 4"):
        ModelConfig(channels=(8, 8, 8), kernels=(3, 3, 3), chunks=(1, 1, 1))
    with pytest.raises(KasminaError, match="chunks"):
        ModelConfig(chunks=(3, 4, 4, 4))
    with pytest.raises(KasminaError, match="unknown model config"):
        build_model("huge")
