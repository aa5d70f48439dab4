"""A checkpoint and a seed library of the host's tiny model on disk, as `kasmina-edge train` and `morph`
write them (tests only)."""

from __future__ import annotations

from pathlib import Path

import torch


def write_checkpoint(path: Path, train: bool = False) -> None:
    from kasmina_edge.host.experiment import save_checkpoint
    from kasmina_edge.host.model import build_model

    model = build_model("tiny", seed=0)
    if train:  # a few steps on synthetic patients, so argmax is not decided by near-ties
        from kasmina_edge.ecg.dataset import synthetic_patients
        from kasmina_edge.host.data import beats
        from kasmina_edge.host.train import class_weights

        ds = beats(synthetic_patients(6, 2.0, seed=5))
        x, rr, y = (torch.from_numpy(a) for a in (ds.windows, ds.rr, ds.labels))
        model.head.set_rr_stats(rr)
        opt = torch.optim.Adam(model.host_parameters(), lr=5e-3)
        loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(ds.labels))
        g = torch.Generator().manual_seed(0)
        for _ in range(150):
            idx = torch.randint(0, len(y), (64,), generator=g)
            loss = loss_fn(model(x[idx], rr[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    save_checkpoint(
        path,
        {
            "kind": "base",
            "model_config": model.config.to_dict(),
            "state": model.state_dict(),
            "experiment_id": "test",
        },
    )


def write_library(folder: Path, blueprint: str = "bottleneck_adapter", site_index: int = 1) -> None:
    from kasmina_edge.host.blueprints import create_blueprint
    from kasmina_edge.host.model import get_config
    from kasmina_edge.host.seed_library import LibraryEntry, SeedLibrary

    cfg = get_config("tiny")
    site = cfg.site_names[site_index]
    c, length = cfg.site_shapes()[site]
    torch.manual_seed(1)
    module = create_blueprint(blueprint, c, length)
    with torch.no_grad():  # function-preserving at birth: give it a real (small) effect
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    params = sum(p.numel() for p in module.parameters())
    key = f"test-{blueprint}@{site}"
    lib = SeedLibrary(meta={"model_config": cfg.to_dict()})
    lib.entries[key] = LibraryEntry(
        key=key, condition="test", tags=[], site=site, site_index=site_index, channels=c, length=length,
        blueprint=blueprint, blueprint_params={}, grafting="none", intensity=1.0, param_count=params,
        param_fraction=0.01, macs=0, baseline_val=0.5, seed_val=0.5, gain=0.0, clean_host=None, clean_seed=None,
        seed_id=f"{site}/all",
    )  # fmt: skip
    lib.states[key] = module.state_dict()
    lib.save(folder)
