"""host/patient_run: ``morph --patient`` as library functions: the user's errors before any work; (slow: a tiny
base is trained and seeds grown) the device's grids and the bundle made by the functions handed in (the host
never imports compile), no bundle for a seed the gates culled, and every lifecycle event in the run's log."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import synthetic_patients
from kasmina_edge.ecg.records import crop
from kasmina_edge.ecg.wfdb_io import write_wfdb
from kasmina_edge.host.experiment import read_log, save_checkpoint
from kasmina_edge.host.model import build_model
from kasmina_edge.host.patient import PatientConfig
from kasmina_edge.host.patient_run import PatientRequest, morph_patient, prepare_patient

FAST = dict(epochs=2, blend_steps=2, common_per_class=20, cv_folds=2, gate_rounds=50)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained tiny base's checkpoint and a 150-s annotated record (enough to be refused)."""
    tmp = tmp_path_factory.mktemp("patient_run_errors")
    model = build_model("tiny", seed=0)
    ckpt = tmp / "base.pt"
    save_checkpoint(ckpt, {"kind": "base", "model_config": model.config.to_dict(), "state": model.state_dict()})
    return ckpt, write_wfdb(crop(synthetic_patients(1, 3.0, seed=5)[0], 0.0, 150.0), tmp / "rec")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny trained base's checkpoint (its seeds' losses can fall) and a 150-s annotated record."""
    from kasmina_edge.host.train import TRAIN_PRESETS, synthetic_split, train_base

    tmp = tmp_path_factory.mktemp("patient_run")
    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=3, patients=6, minutes=1.5)
    split = synthetic_split(cfg)
    ckpt = tmp / "base.pt"
    train_base(cfg, split.train, split.val, out=ckpt)
    rec = write_wfdb(crop(synthetic_patients(1, 3.0, seed=5)[0], 0.0, 150.0), tmp / "rec")
    return ckpt, rec


class Grids:
    """The device's site grids, as compile's device_site_ranges would give them; every call written down."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, checkpoint: Path, target: str, base_bundle: Path | None, keys: Path | None,
                 site_names: list[str]) -> dict[str, tuple[float, float]]:  # fmt: skip
        self.calls.append((checkpoint, target, base_bundle, keys, list(site_names)))
        return {name: (-50.0, 50.0) for name in site_names}


def _request(files: tuple[Path, Path], tmp_path: Path, **kw: Any) -> PatientRequest:
    ckpt, rec = files
    return PatientRequest(**{"patient": f"wfdb:{rec}", "checkpoint": ckpt, "out": tmp_path / "seed.kedge",
                             "minutes": 2.0, **kw})  # fmt: skip


def test_user_errors_come_before_any_work(untrained: tuple[Path, Path], tmp_path: Path) -> None:
    grids = Grids()
    with pytest.raises(KasminaError, match="needs a device target"):
        prepare_patient(_request(untrained, tmp_path, target="host"), grids)
    with pytest.raises(KasminaError, match="base checkpoint not found"):
        prepare_patient(_request(untrained, tmp_path, checkpoint=tmp_path / "none.pt"), grids)
    with pytest.raises(KasminaError, match="shorter than the 5-minute adaptation window"):
        prepare_patient(_request(untrained, tmp_path, minutes=5.0), grids)
    assert grids.calls == [] and not list(tmp_path.iterdir())  # refused before the grids were asked for


@pytest.mark.slow
def test_a_culled_seed_writes_no_bundle_and_the_log_has_every_event(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kasmina_edge.host.patient as patient_mod

    # no seed can gain ten macro-F1: G4 (or an earlier gate) culls every one
    monkeypatch.setattr(patient_mod, "PatientConfig", lambda: PatientConfig(**FAST, min_gain=10.0))
    grids = Grids()
    bundles: list[Any] = []
    keys = tmp_path / "keys"
    req = _request(files, tmp_path, keys=keys, seed=3)
    torch.manual_seed(0)
    seed, built = morph_patient(req, device_ranges=grids, bundle=lambda *a, **kw: bundles.append(kw))
    assert built is None and bundles == [] and not seed.fossilized and not req.out.exists()  # type: ignore[union-attr]
    site_names = build_model("tiny", seed=0).config.site_names
    assert grids.calls == [(req.checkpoint, "edgetpu", None, keys, list(site_names))]
    assert seed.ranges == {name: (-50.0, 50.0) for name in site_names}  # the seeds grew clipped to the given grids
    assert seed.config["seed"] == 3 and seed.config["minutes"] == 2.0 and seed.config["epochs"] == FAST["epochs"]
    log = read_log(tmp_path / "seed.jsonl")
    lifecycle = [e for e in log if e["event"] in ("transition", "gate")]
    assert len(lifecycle) == sum(1 for e in seed.events if e.get("event") in ("transition", "gate")) > 0
    assert log[-1]["event"] == "patient_seed" and log[-1]["outcome"] == seed.outcome


@pytest.mark.slow
def test_the_bundle_is_made_by_the_function_handed_in(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed that fossilizes (gates that let anything through) goes to the bundle function with the patient's
    RR-scaled beats; the kernels' bytes are counted from what it returns."""
    import kasmina_edge.host.patient as patient_mod

    lenient = dict(epochs=6, min_gain=-10.0, n_tolerance=10.0, max_oscillation=10.0)
    monkeypatch.setattr(patient_mod, "PatientConfig", lambda: dataclasses.replace(PatientConfig(**FAST), **lenient))
    got: list[dict[str, Any]] = []

    def bundle(seed: Any, **kw: Any) -> Any:
        got.append({"seed": seed, **kw})
        return type("Built", (), {"files": {"artifacts/k.tflite": b"x" * 10, "manifest.json": b"{}"}})()

    req = _request(files, tmp_path)
    seed, built = morph_patient(req, device_ranges=Grids(), bundle=bundle)
    assert seed.fossilized, seed.outcome
    assert built is not None and len(got) == 1 and got[0]["seed"] is seed
    assert got[0]["out"] == req.out and got[0]["target"] == "edgetpu" and len(got[0]["beats"]) >= len(seed.counts)
    written = [e for e in read_log(tmp_path / "seed.jsonl") if e["event"] == "bundle"]
    assert written and written[0]["kernel_bytes"] == 10
