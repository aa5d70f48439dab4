"""Patient-specific seeds: the adaptation window and its errors, Tamiyo's plan within the budget, the seeds'
lifecycle (host untouched, G4 culls a seed without gain), ``morph --patient`` errors, and (slow) the whole
path: kernel-only bundle → emulator holding the base → live through the lifecycle, refused for another base."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.ecg.dataset import beats_from_record, synthetic_patients
from kasmina_edge.ecg.records import crop
from kasmina_edge.host.data import SPEC
from kasmina_edge.host.model import build_model, count_host_parameters
from kasmina_edge.host.patient import (
    PatientConfig,
    PatientError,
    common_beats,
    patient_window,
    seeded_model,
)
from kasmina_edge.host.patient_grow import grow_patient_seed
from kasmina_edge.host.patient_plan import size_blueprint

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mitdb"
needs_mitdb = pytest.mark.skipif(
    not (DATA / "100.hea").exists(),
    reason=f"MIT-BIH records not found under {DATA} (../shared/data beside the checkout)",
)
FAST = PatientConfig(minutes=2.0, epochs=2, blend_steps=2, common_per_class=20, cv_block_s=30.0, cv_folds=2,
                     gate_rounds=100)


@pytest.fixture(scope="module")
def patient() -> object:
    return synthetic_patients(1, 3.0, seed=5)[0]


@pytest.fixture(scope="module")
def base() -> object:
    torch.manual_seed(0)
    model = build_model("tiny", seed=0).eval()
    for site in model.sites.values():
        site.telemetry_enabled = False
    return model


@pytest.fixture(scope="module")
def common() -> object:
    others = synthetic_patients(3, 1.0, seed=11)
    from kasmina_edge.ecg.dataset import concat

    return common_beats(concat([beats_from_record(r, SPEC) for r in others]), 20)


def test_window_blocks_and_rr_normalisation(patient: object, base: object) -> None:
    w = patient_window(patient, base, FAST)  # type: ignore[arg-type]
    assert len(w.beats) == len(w.beats_raw) == len(w.blocks)
    assert int(w.beats.r_peaks.max()) < FAST.minutes * 60 * SPEC.fs
    # the out-of-fold gates need beats in at least two blocks of time
    assert len(np.unique(w.blocks)) == int(FAST.minutes * 60 / FAST.cv_block_s)
    # the patient's median pre-RR is brought to the population's mean; the ratio feature untouched
    pop = float(base.head.rr_mean[0])  # type: ignore[attr-defined]
    assert w.rr_scale[3] == 1.0
    np.testing.assert_allclose(w.beats.rr[:, 0], w.beats_raw.rr[:, 0] * w.rr_scale[0], rtol=1e-6)
    if pop > 0:
        assert w.rr_scale[0] == pytest.approx(pop / float(np.median(w.beats_raw.rr[:, 0])), rel=1e-4)


def test_bad_input_is_one_clear_error(patient: object, base: object) -> None:
    short = crop(patient, 0.0, 60.0)  # type: ignore[arg-type]
    with pytest.raises(PatientError, match="shorter than the 2-minute adaptation window"):
        patient_window(short, base, FAST)  # type: ignore[arg-type]
    bare = dataclasses.replace(patient, beats=None)  # type: ignore[type-var]
    with pytest.raises(PatientError, match="no reference beat annotations"):
        patient_window(bare, base, FAST)  # type: ignore[arg-type]


def test_blueprint_sized_to_the_budget() -> None:
    from kasmina_edge.host.blueprints import get_blueprint

    p = size_blueprint("bottleneck_adapter", 48, 16, budget=1000, max_macs=10**9)
    spec = get_blueprint("bottleneck_adapter")
    assert spec.param_count(48, **p) <= 1000 < spec.param_count(48, rank=p["rank"] + 1)
    assert size_blueprint("latent_align", 48, 16, budget=10, max_macs=10**9) == {}


def test_seeds_grow_through_their_lifecycle_and_leave_the_host_untouched(
    patient: object, base: object, common: object
) -> None:
    before = {k: v.clone() for k, v in base.state_dict().items()}  # type: ignore[attr-defined]
    w = patient_window(patient, base, FAST)  # type: ignore[arg-type]
    seed = grow_patient_seed(base, w, common, FAST, target="edgetpu")  # type: ignore[arg-type]
    for k, v in base.state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(v, before[k]), k
    assert seed.seeds, seed.decision
    assert seed.param_count <= 0.10 * count_host_parameters(base)  # type: ignore[arg-type]
    assert seed.bit_exact_training is True
    for g in seed.seeds:
        moves = [(e["from"], e["to"]) for e in g.history if e.get("event") == "transition"]
        assert moves[0] == ("DORMANT", "GERMINATED")
        if g.final_stage == Stage.FOSSILIZED.name:
            assert [m[1] for m in moves][-5:] == [
                "TRAINING",
                "BLENDING",
                "SHADOWING",
                "PROBATIONARY",
                "FOSSILIZED",
            ]
            assert g.state is not None
        else:  # culled: by the gate that failed (its G-number in the reason) or the breaker, and left the path
            assert g.final_stage == Stage.CULLED.name, (g.final_stage, g.reason)
            assert ("CULLED" in [m[1] for m in moves]) and g.reason.startswith(("gate_G", "health_")), g.reason
    # the seeded model equals the base where no seed fossilized
    if not seed.fossilized:
        x = torch.from_numpy(w.beats.windows[:8])
        rr = torch.from_numpy(w.beats_raw.rr[:8])
        with torch.no_grad():
            assert torch.equal(seeded_model(base, seed)(x, rr), base(x, rr))  # type: ignore[operator]


def test_g4_culls_a_seed_without_gain_and_says_so(patient: object, base: object, common: object) -> None:
    cfg = dataclasses.replace(FAST, min_gain=10.0)  # no seed can gain ten macro-F1
    w = patient_window(patient, base, cfg)  # type: ignore[arg-type]
    seed = grow_patient_seed(base, w, common, cfg, target="edgetpu")  # type: ignore[arg-type]
    assert not seed.fossilized and seed.outcome.startswith("culled")
    reached = [g for g in seed.seeds if any(e.get("gate") == "G4" for e in g.history)]
    for g in reached:
        assert g.final_stage == "CULLED" and "gate_G4_failed" in g.reason and "gain" in g.reason


@pytest.fixture(scope="module")
def trained_base() -> object:
    """A tiny base that has learned something: a seed can make it worse."""
    from kasmina_edge.host.train import TRAIN_PRESETS, synthetic_split, train_base

    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=3, patients=6, minutes=1.5)
    split = synthetic_split(cfg)
    model = train_base(cfg, split.train, split.val).model.eval()
    for site in model.sites.values():
        site.telemetry_enabled = False
    return model


def test_a_seed_that_would_hurt_is_culled_and_the_patient_keeps_the_base(
    patient: object, trained_base: object, common: object
) -> None:
    """Planted: the window's labels are scrambled, so a seed trained on them hurts; G4 must cull it."""
    from kasmina_edge.host.patient import scale_rr

    cfg = dataclasses.replace(FAST, epochs=6, class_weight_power=1.0)  # full weights: the scramble bites
    w = patient_window(patient, trained_base, cfg)  # type: ignore[arg-type]
    scrambled = np.random.default_rng(0).permutation(w.beats.labels)
    w.beats.labels[:] = scrambled
    w.beats_raw.labels[:] = scrambled
    seed = grow_patient_seed(trained_base, w, common, cfg, target="edgetpu")  # type: ignore[arg-type]
    assert seed.evidence is not None and seed.evidence["gain_low"] < 0
    assert not seed.fossilized and seed.outcome.startswith("culled by G4")
    # the plant works: the seed the gate culled is worse than the base on the rest of the record
    rest = beats_from_record(patient, SPEC)  # type: ignore[arg-type]
    rest = rest.subset(np.flatnonzero(rest.r_peaks >= cfg.minutes * 60 * SPEC.fs))
    x, rr = torch.from_numpy(rest.windows), torch.from_numpy(rest.rr)
    with torch.no_grad():
        base_pred = trained_base(x, rr).argmax(1).numpy()  # type: ignore[operator]
        ungated = seeded_model(trained_base, seed, include_culled=True)(x, rr).argmax(1).numpy()  # type: ignore[arg-type]
        gated = seeded_model(trained_base, seed)(x, rr)  # type: ignore[arg-type]
        assert torch.equal(gated, trained_base(x, rr))  # type: ignore[operator]
    assert np.mean(ungated == rest.labels) < np.mean(base_pred == rest.labels) - 0.02
    assert len(scale_rr(rest, seed.rr_scale)) == len(rest)


def _checkpoint(tmp: Path, model: object) -> Path:
    from kasmina_edge.host.experiment import save_checkpoint

    path = tmp / "base.pt"
    save_checkpoint(
        path, {"kind": "base", "model_config": model.config.to_dict(), "state": model.state_dict()}
    )  # type: ignore[attr-defined]
    return path


def test_morph_patient_errors_are_one_line(tmp_path: Path, patient: object, base: object) -> None:
    from typer.testing import CliRunner

    from kasmina_edge.cli.app import app
    from kasmina_edge.ecg.wfdb_io import write_wfdb

    ckpt = _checkpoint(tmp_path, base)
    rec = write_wfdb(crop(patient, 0.0, 100.0), tmp_path / "rec")  # type: ignore[arg-type]
    run = CliRunner().invoke
    res = run(app, ["morph", "--patient", f"wfdb:{rec}", "--checkpoint", str(ckpt), "--minutes", "5"])
    assert res.exit_code == 2 and "shorter than the 5-minute adaptation window" in res.output
    res = run(app, ["morph", "--patient", f"wfdb:{rec}", "--checkpoint", str(ckpt), "--target", "host"])
    assert res.exit_code == 2 and "needs a device target" in res.output
    res = run(app, ["morph", "--patient", f"wfdb:{rec}", "--checkpoint", str(tmp_path / "none.pt")])
    assert res.exit_code == 2 and "base checkpoint not found" in res.output
    res = run(app, ["morph"])
    assert res.exit_code == 2 and "--checkpoint is required" in res.output


# ------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
@needs_mitdb
def test_kernel_only_bundle_goes_live_on_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record 100: a tiny base, its bundle on an emulator, the patient seed as a kernel-only bundle; flashed,
    it goes live through the lifecycle (a seed the host culled makes no bundle); another base is refused."""
    from rich.console import Console

    from firmware_sim.device import FlashRefused, open_device
    from kasmina_edge.cli.device import run_device, run_flash
    from kasmina_edge.cli.host import run_morph_patient
    from kasmina_edge.compile.pipeline import BuildRequest, build
    from kasmina_edge.contracts.bundle import init_keys, read_bundle
    from kasmina_edge.host.train import TRAIN_PRESETS, synthetic_split, train_base

    monkeypatch.setenv("KASMINA_DEVICES_DIR", str(tmp_path / "devices"))
    con = Console(width=120, record=True)
    keys = tmp_path / "keys"
    init_keys(keys)
    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=2, patients=6)
    split = synthetic_split(cfg)
    ckpt = tmp_path / "base.pt"
    train_base(cfg, split.train, split.val, out=ckpt)
    base_bundle = tmp_path / "base.kedge"
    build(
        BuildRequest(checkpoint=ckpt, seeds=None, target="edgetpu", out=base_bundle, keys=keys, strict=False)
    )
    run_flash(con, base_bundle, "emu://p100", keys=keys)
    import kasmina_edge.host.patient as patient_mod

    def with_gate(**kw: float) -> None:
        monkeypatch.setattr(patient_mod, "PatientConfig", lambda: PatientConfig(**kw))

    # a seed G4 culls never reaches a bundle
    with_gate(min_gain=10.0)
    culled, built = run_morph_patient(con, patient=f"wfdb:{DATA / '100'}", checkpoint=ckpt, out=tmp_path / "c.kedge",
                                      minutes=5.0, target="edgetpu", base_bundle=base_bundle, keys=keys)  # fmt: skip
    assert built is None and not culled.fossilized and not (tmp_path / "c.kedge").exists()
    # a seed G4 keeps (its bounds opened for the test: the tiny base is not what is judged here) goes live
    with_gate(min_gain=-1.0, n_tolerance=1.0)
    seed, _ = run_morph_patient(con, patient=f"wfdb:{DATA / '100'}", checkpoint=ckpt, out=tmp_path / "s.kedge",
                                minutes=5.0, target="edgetpu", base_bundle=base_bundle, keys=keys)  # fmt: skip
    assert seed.fossilized
    b = read_bundle(tmp_path / "s.kedge", keys)
    assert b.manifest.kind == "kernels" and b.manifest.kernels()
    assert b.manifest.base_checkpoint == read_bundle(base_bundle, keys).manifest.base_checkpoint
    assert b.manifest.model_extra["patient"]["outcome"] == seed.outcome
    run_flash(con, tmp_path / "s.kedge", "emu://p100", keys=keys)
    log = tmp_path / "run.jsonl"
    run_device(con, "emu://p100", f"wfdb:{DATA / '100'}", start=300.0, seconds=240.0, out=log, live=False)
    events = [__import__("json").loads(x) for x in log.read_text().splitlines()]
    names = {k.name for k in b.manifest.kernels()}
    mine = [e for e in events if e.get("kernel") in names or e.get("seed_id") in names]
    assert any(e.get("event") == "kernel_installed" for e in mine)
    assert any(e.get("event") == "transition" and e.get("to") == "BLENDING" for e in mine)
    # a kernel bundle for another base: one clear line at flash time
    run_flash(con, base_bundle, "emu://other", keys=keys)
    other = train_base(
        dataclasses.replace(cfg, seed=1, epochs=1), split.train, split.val, out=tmp_path / "b2.pt"
    )
    assert other.model is not None
    b2 = tmp_path / "b2.kedge"
    build(
        BuildRequest(
            checkpoint=tmp_path / "b2.pt", seeds=None, target="edgetpu", out=b2, keys=keys, strict=False
        )
    )
    run_flash(con, b2, "emu://other2", keys=keys)
    with pytest.raises(FlashRefused, match="kernel bundle is for base"):
        open_device("emu://other2").flash(tmp_path / "s.kedge", keys)
    # a mass-storage device takes full bundles only; a device without a base takes no kernels
    with pytest.raises(FlashRefused, match="full bundles only"):
        open_device(f"dir:{tmp_path / 'mass'}").flash(tmp_path / "s.kedge", keys)
    with pytest.raises(FlashRefused, match="holds no base"):
        open_device("emu://empty").flash(tmp_path / "s.kedge", keys)
