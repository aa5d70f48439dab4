"""Condition seeds on real records (issue 15 items 1-2): the cells, NSTDB-style mixing with split noise
halves, condition beats, the ship / cull verdicts and item 2's judgement, the records' roles, the CLI.

Fast: synthetic two-lead records and a small noise record written here; the real-data tests read one
MIT-BIH record and NSTDB's ``ma`` and skip when ../shared/data is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.artifacts import qrs_signal_power
from kasmina_edge.ecg.data import data_root
from kasmina_edge.ecg.dataset import synthetic_patients
from kasmina_edge.ecg.noise import noisy_stretches
from kasmina_edge.ecg.types import ARTIFACT_BITS, Record
from kasmina_edge.host.conditions import (
    DEFAULT_SNRS,
    NoiseBank,
    RealCondition,
    condition_beats,
    mix_noise,
    parse_real_conditions,
    parse_snrs,
    thin_normal,
)
from kasmina_edge.host.conditions_morph import (
    CONDITIONS_PRESETS,
    ConditionsConfig,
    HeldOut,
    judge,
    macro_f1,
    recovery,
    roles_from_checkpoint,
    verdict,
)
from kasmina_edge.host.evidence import GateEvidence
from kasmina_edge.host.morph import TrialResult

MITDB, NSTDB = data_root() / "mitdb", data_root() / "nstdb"
SHORT = {"first_clean_s": 60.0, "stretch_s": 60.0}  # NSTDB's schedule, shortened: 1 min clean, then 1 min on/off
needs_real = pytest.mark.skipif(
    not ((MITDB / "114.hea").exists() and (MITDB / "119.hea").exists() and (NSTDB / "ma.hea").exists()),
    reason=f"needs MIT-BIH 114 and 119 under {MITDB} and NSTDB ma under {NSTDB} (../shared/data)",
)


@pytest.fixture(scope="module")
def patients() -> list[Record]:
    """Two synthetic two-lead (MLII, V1) patients of 5 minutes."""
    return list(synthetic_patients(2, 5.0, seed=3))


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-channel noise record named like NSTDB's ``ma``: a ramp in channel 0, so halves can be told apart."""
    wfdb = pytest.importorskip("wfdb")
    folder = tmp_path_factory.mktemp("noise")
    n = 360 * 60 * 8
    rng = np.random.default_rng(0)
    sig = np.stack([np.linspace(-1.0, 1.0, n), rng.normal(0, 0.2, n)], axis=1)
    wfdb.wrsamp("ma", fs=360, units=["mV", "mV"], sig_name=["noise1", "noise2"], p_signal=sig, fmt=["16", "16"],
                adc_gain=[2000.0, 2000.0], baseline=[0, 0], write_dir=str(folder))  # fmt: skip
    return folder


# --------------------------------------------------------------------------- cells


def test_cells_are_every_noise_at_every_snr_and_the_lead_once() -> None:
    cells = parse_real_conditions("emg,baseline,lead")
    assert [c.key for c in cells] == [
        "emg+12dB", "emg+6dB", "emg+0dB", "emg-6dB", "baseline+12dB", "baseline+6dB", "baseline+0dB",
        "baseline-6dB", "lead",
    ]  # fmt: skip
    assert {c.noise for c in cells} == {"ma", "bw", None}
    emg = cells[3].as_condition()
    assert emg.name == "emg-6dB" and emg.snr_db == -6.0 and "emg" in emg.tags  # the runtime reads "emg" as noise
    lead = cells[-1].as_condition()
    assert lead.kind == "lead" and lead.lead == 1 and "lead" in lead.tags
    assert [c.snr_db for c in parse_real_conditions("emg", parse_snrs("0, -6dB"))] == [0.0, -6.0]
    assert parse_snrs(None) == DEFAULT_SNRS


@pytest.mark.parametrize(
    ("text", "snr", "needle"),
    [("motion", None, "electrode-motion"), ("patient", None, "--patient"), ("emg,typo", None, "typo"),
     ("emg", "abc", "not a number"), ("emg", "99", "outside"), ("emg", ",", "at least one")],
)  # fmt: skip
def test_bad_cells_are_one_line(text: str, snr: str | None, needle: str) -> None:
    with pytest.raises(KasminaError, match=needle):
        parse_real_conditions(text, parse_snrs(snr))


# --------------------------------------------------------------------------- mixing


def test_mix_follows_the_nstdb_schedule_and_meets_the_snr(patients: list[Record]) -> None:
    rec = patients[0]
    noise = np.random.default_rng(1).normal(size=(rec.n_samples, 2))
    out = mix_noise(rec, noise, "emg", -6.0, np.random.default_rng(2), **SHORT)
    added = out.signal[:, 0].astype(np.float64) - rec.signal[:, 0]
    on = np.zeros(rec.n_samples, dtype=bool)
    for a, b in noisy_stretches(rec.n_samples, rec.fs, **SHORT):
        on[a:b] = True
    assert np.all(added[~on] == 0.0) and np.all(added[on] != 0.0)  # noise only in the stretches
    assert np.array_equal(out.signal[:, 1], rec.signal[:, 1])  # the other lead untouched
    snr = 10 * np.log10(qrs_signal_power(rec, 0) / np.mean((added[on] - added[on].mean()) ** 2))
    assert snr == pytest.approx(-6.0, abs=0.05)
    assert out.artifact_mask is not None and np.all((out.artifact_mask[on] & ARTIFACT_BITS["emg"]) > 0)
    assert not np.any(out.artifact_mask[~on])
    with pytest.raises(KasminaError, match="too short"):
        mix_noise(rec, noise, "emg", 0.0, np.random.default_rng(0), first_clean_s=rec.seconds + 1)


def test_noise_halves_are_disjoint_and_a_missing_record_is_one_line(noise_dir: Path) -> None:
    bank = NoiseBank(noise_dir)
    seed, test = bank.part("ma", "seed"), bank.part("ma", "test")
    assert seed.shape[1] == test.shape[1] == 2
    # the ramp: the seed half lies wholly before the test half
    assert seed[:, 0].max() <= test[:, 0].min() and seed[:, 0].mean() < -0.4 < 0.4 < test[:, 0].mean()
    with pytest.raises(KasminaError, match="bw.hea not found"):
        bank.require(["ma", "bw"])
    with pytest.raises(KasminaError, match="noise part"):
        bank.part("ma", "train")


def test_condition_beats_are_the_noisy_stretch_beats_with_their_clean_twins(
    patients: list[Record], noise_dir: Path
) -> None:
    bank = NoiseBank(noise_dir)
    cell = RealCondition("emg", 0.0)
    cb = condition_beats(patients, cell, noise=bank, part="seed", seed=4, **SHORT)
    assert len(cb) > 50 and np.array_equal(cb.clean.r_peaks, cb.condition.r_peaks)
    assert np.array_equal(cb.clean.labels, cb.condition.labels)
    spans = noisy_stretches(patients[0].n_samples, patients[0].fs, **SHORT)
    assert all(any(a <= p < b for a, b in spans) for p in cb.condition.r_peaks)
    assert not np.allclose(cb.clean.windows, cb.condition.windows)
    again = condition_beats(patients, cell, noise=bank, part="seed", seed=4, **SHORT)
    assert np.array_equal(again.condition.windows, cb.condition.windows)  # reproducible
    other = condition_beats(patients, cell, noise=bank, part="test", seed=4, **SHORT)
    assert not np.allclose(other.condition.windows, cb.condition.windows)  # the other noise half
    both = condition_beats(patients, cell, noise=bank, part="seed", seed=4, phases=2, **SHORT)
    first_clean = int(SHORT["first_clean_s"] * patients[0].fs)
    for rec in patients:  # phase 2 moves the stretches: every beat after the first clean minute, once in noise
        mine = both.condition.records == rec.name
        after = cb.clean.r_peaks[cb.clean.records == rec.name]
        all_after = condition_beats([rec], RealCondition("lead")).clean.r_peaks
        assert np.array_equal(np.sort(both.condition.r_peaks[mine]), all_after[all_after >= first_clean])
        assert set(after) <= set(both.condition.r_peaks[mine])
    lead = condition_beats(patients, RealCondition("lead"))
    assert lead.lead == 1 and len(lead) > len(cb) and np.array_equal(lead.clean.r_peaks, lead.condition.r_peaks)
    with pytest.raises(KasminaError, match="NoiseBank"):
        condition_beats(patients, cell, noise=None)


def test_thin_normal_keeps_rare_classes_and_the_cap(patients: list[Record]) -> None:
    from kasmina_edge.ecg.dataset import beats_from_record

    ds = beats_from_record(patients[0])
    small = thin_normal(ds, 100, seed=0)
    assert len(small) == min(100, len(ds))
    for cls in set(np.unique(ds.labels)) - {0}:
        assert (small.labels == cls).sum() == min((ds.labels == cls).sum(), 25)
    assert thin_normal(ds, None, 0) is ds


# --------------------------------------------------------------------------- verdicts


def _trial(stage: str = "FOSSILIZED", reason: str = "fossilized: gain", params: int = 300) -> TrialResult:
    return TrialResult(condition="emg-6dB", site="site1", blueprint="sliding_conv", blueprint_params={},
                       grafting="fixed_ramp", intensity=1.0, seed_id="site1/all", final_stage=stage, reason=reason,
                       param_count=params, macs=1000, baseline_val=0.5, seed_val=0.6)  # fmt: skip


def _evidence(gain: float, low: float) -> GateEvidence:
    return GateEvidence(n_beats=500, classes=(0, 2), base_macro_f1=0.5, seed_macro_f1=0.5 + gain, gain=gain,
                        gain_low=low, n_acc_delta=0.0, n_acc_delta_low=0.0, quantile=0.1, rounds=400)  # fmt: skip


def test_verdicts_in_order_nothing_to_recover_then_gates_then_held_out_evidence() -> None:
    cfg = ConditionsConfig()
    v = verdict(0.012, cfg, trials=[_trial()], chosen=_trial(), evidence=_evidence(0.1, 0.05))
    assert v.code == "nothing_to_recover" and not v.ships and "loses only 1.2 points" in v.reason
    assert verdict(0.05, cfg, plan_reason="no_degradation").code == "no_seed"
    culled = verdict(0.05, cfg, trials=[_trial("CULLED", "gate_G4_failed: global metric worse")])
    assert culled.code == "culled" and "gate_G4_failed" in culled.reason
    no_help = verdict(0.05, cfg, trials=[_trial()], chosen=_trial(), evidence=_evidence(0.02, -0.004))
    assert no_help.code == "did_not_help" and "-0.4" in no_help.reason and not no_help.ships
    ok = verdict(0.05, cfg, trials=[_trial()], chosen=_trial(), evidence=_evidence(0.06, 0.03), gate_records=["108"])
    assert ok.ships and "108" in ok.reason and "+6.0" in ok.reason


def test_item2_judgement() -> None:
    cfg = ConditionsConfig()
    fig = {"drop": 0.08, "base": 0.40, "finetune": 0.48, "recovery": 0.75}
    assert judge(fig, [0.05], 0, 4, cfg).met
    assert not judge({**fig, "recovery": 0.5}, [0.05], 0, 4, cfg).met
    assert not judge(fig, [0.12], 0, 4, cfg).met  # above 10 % of the base's parameters
    assert not judge(fig, [], 0, 4, cfg).met  # the base loses points and nothing shipped
    assert not judge({**fig, "recovery": None, "finetune": 0.401}, [0.05], 0, 4, cfg).met
    assert "loses no macro-F1 (+0.4 points)" in judge({**fig, "drop": -0.004}, [], 4, 4, cfg).text
    small = {"drop": 0.01, "base": 0.47, "finetune": 0.48, "recovery": None}
    met = judge(small, [], 4, 4, cfg)
    assert met.met and "nothing to recover (4 of 4)" in met.text and "1.0 points" in met.text
    assert not judge(small, [0.05], 3, 4, cfg).met  # a seed shipped where there was nothing to recover
    assert recovery(0.40, 0.46, 0.48) == pytest.approx(0.75)
    assert recovery(0.40, 0.46, 0.402) is None  # fine-tuning gains nothing: no fraction of it to recover


def test_held_out_pools_folds_and_scores_n_s_v_f() -> None:
    t = np.array([0, 0, 0, 2, 2, 1])
    a = HeldOut(t, np.array(["a"] * 6), t.copy(), np.array([0, 0, 0, 0, 2, 0]), t.copy(), t.copy(), t.copy())
    b = HeldOut(t, np.array(["b"] * 6), t.copy(), t.copy(), t.copy(), t.copy(), None)
    pooled = HeldOut.pool([a, b])
    assert pooled.truth.size == 12 and pooled.finetune is None  # one fold without fine-tuning: none pooled
    f = HeldOut.pool([a, a]).figures()
    assert f["base_clean"] == pytest.approx(1.0) and f["drop"] > 0 and f["recovery"] == pytest.approx(1.0)
    # Q beats are not scored (8 in all of DS1), though a Q beat called N still costs N its precision
    assert macro_f1(np.array([0, 0, 4]), np.array([0, 0, 0])) == pytest.approx(0.8)


# --------------------------------------------------------------------------- records' roles


def test_roles_from_a_real_record_checkpoint() -> None:
    ck: dict[str, Any] = {"train_records": ["101", "106"], "val_records": ["108"]}
    names = ["100", "101", "106", "108", "109"]
    roles = roles_from_checkpoint(ck, names, None, "DIR")
    assert roles.adapt == ("101", "106") and roles.gate == ("108",) and roles.test == ("100", "109")
    assert roles_from_checkpoint(ck, names, ["109"], "DIR").test == ("109",)
    with pytest.raises(KasminaError, match="trained or validated the base"):
        roles_from_checkpoint(ck, names, ["106"], "DIR")
    with pytest.raises(KasminaError, match="synthetic"):
        roles_from_checkpoint({}, names, None, "DIR")
    with pytest.raises(KasminaError, match="record 106 is not in that folder"):
        roles_from_checkpoint(ck, ["101", "108", "109"], None, "DIR")
    with pytest.raises(KasminaError, match="no record the base never saw"):
        roles_from_checkpoint(ck, ["101", "106", "108"], None, "DIR")
    with pytest.raises(KasminaError, match="--records: record 999"):
        roles_from_checkpoint(ck, names, ["999"], "DIR")


# --------------------------------------------------------------------------- one cell, end to end (tiny)


def test_a_cell_where_the_base_loses_little_is_culled_before_any_seed_grows(patients: list[Record],
                                                                            noise_dir: Path) -> None:  # fmt: skip
    import dataclasses

    from kasmina_edge.host.conditions_morph import RecordRoles, morph_on_records
    from kasmina_edge.host.model import build_model
    from kasmina_edge.host.morph import MORPH_PRESETS

    more = list(synthetic_patients(3, 5.0, seed=9))
    records = {r.name: r for r in [*patients, *more]}
    names = list(records)
    roles = RecordRoles(tuple(names[:2]), tuple(names[2:4]), tuple(names[4:]))
    base = build_model("tiny", seed=0)
    cfg = dataclasses.replace(CONDITIONS_PRESETS["tiny"], min_drop=1.0, finetune=False)  # nothing is ever enough
    res = morph_on_records(base, {}, records, roles, [RealCondition("emg", -6.0)],
                           dataclasses.replace(MORPH_PRESETS["tiny"], target=None), cfg,
                           NoiseBank(noise_dir), schedule=SHORT)  # fmt: skip
    (cell,) = res.cells
    assert cell.verdict.code == "nothing_to_recover" and "nothing to recover: the base loses" in cell.verdict.reason
    assert cell.trials == [] and cell.shipped is None and not res.library.entries
    assert cell.held_out is not None and np.array_equal(cell.held_out.seed, cell.held_out.base)
    assert set(cell.held_out.records) == set(roles.test)


# --------------------------------------------------------------------------- the command line


def _cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from kasmina_edge.cli.app import main

    monkeypatch.setattr(sys, "argv", ["kasmina-edge", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.err + cap.out


# --------------------------------------------------------------------------- real data


@needs_real
def test_real_record_leads_and_real_noise_at_the_snr() -> None:
    from kasmina_edge.host.conditions import default_noise_folder, read_two_leads

    r114 = read_two_leads(MITDB, "114")
    assert r114.lead_names == ["MLII", "V5"]  # 114 has V5 first: the base's lead comes first
    r119 = read_two_leads(MITDB, "119")
    assert r119.lead_names == ["MLII", "V1"]
    from kasmina_edge.ecg.records import crop

    short = crop(r119, 0.0, 300.0)
    bank = NoiseBank(default_noise_folder())
    cb = condition_beats([short], RealCondition("emg", -6.0), noise=bank, part="test", seed=0, **SHORT)
    assert len(cb) > 100 and set(np.unique(cb.condition.labels)) >= {0, 2}  # 119: normal and V beats
    (mixed,) = cb.records
    added = mixed.signal[:, 0].astype(np.float64) - short.signal[:, 0]
    on = added != 0
    snr = 10 * np.log10(qrs_signal_power(short, 0) / np.var(added[on]))
    assert snr == pytest.approx(-6.0, abs=0.05)


needs_four = pytest.mark.skipif(
    not (all((MITDB / f"{r}.hea").exists() for r in ("101", "106", "108", "109")) and (NSTDB / "ma.hea").exists()),
    reason=f"needs MIT-BIH 101, 106, 108, 109 under {MITDB} and NSTDB ma under {NSTDB} (../shared/data)",
)


@pytest.fixture(scope="module")
def real_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of four real records and a tiny base trained on two of them (108 validates it; 109 unseen)."""
    import dataclasses

    import torch

    from kasmina_edge.ecg.dataset import concat
    from kasmina_edge.host.experiment import load_checkpoint, save_checkpoint
    from kasmina_edge.host.records import RecordSummary, record_beats
    from kasmina_edge.host.train import TRAIN_PRESETS, for_real_records, train_base

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("real")
    folder = root / "records"
    folder.mkdir()
    for r in ("101", "106", "108", "109"):
        for ext in ("hea", "dat", "atr"):
            (folder / f"{r}.{ext}").symlink_to(MITDB / f"{r}.{ext}")
    beats = {r: record_beats(folder, RecordSummary(r, 360.0, "MLII", (0,) * 5)) for r in ("101", "106", "108")}
    ckpt_path = root / "base.pt"
    cfg = for_real_records(dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=2))
    train_base(cfg, concat([beats["101"], beats["106"]]), beats["108"], out=ckpt_path)
    ck = load_checkpoint(ckpt_path)
    ck["train_records"], ck["val_records"] = ["101", "106"], ["108"]
    save_checkpoint(ckpt_path, ck)
    return folder, ckpt_path


@needs_four  # ~11 s on 2 shared cores
def test_morph_on_real_records_end_to_end(real_base: tuple[Path, Path], tmp_path: Path) -> None:
    """Seeds grown on two real records with real noise and the other lead, gated on a third, judged on a
    fourth; only seeds that helped on the gate record ship, and they make the library."""
    import dataclasses
    import json

    from kasmina_edge.host.conditions_morph import run_conditions_morph
    from kasmina_edge.host.morph import MORPH_PRESETS
    from kasmina_edge.host.seed_library import SeedLibrary
    from kasmina_edge.host.train import load_base

    folder, ckpt_path = real_base
    base, ckpt = load_base(ckpt_path)
    ccfg = dataclasses.replace(CONDITIONS_PRESETS["tiny"], min_drop=-1.0, max_adapt_beats=800, finetune_epochs=1)
    mcfg = dataclasses.replace(MORPH_PRESETS["tiny"], target=None, train_epochs=1, min_train_steps=20)
    out = tmp_path / "seeds"
    cells = [RealCondition("emg", -6.0), RealCondition("lead")]
    res = run_conditions_morph(base, ckpt, folder, cells, mcfg, ccfg, out)
    assert res.roles.test == ("109",)
    for c in res.cells:
        assert c.verdict.code in ("shipped", "no_seed", "culled", "did_not_help")  # min_drop -1: always grown
        assert c.held_out is not None and set(c.held_out.records) == {"109"}
        f = c.held_out.figures()
        assert all(np.isfinite(f[k]) for k in ("base_clean", "base", "seed", "finetune"))
        if c.verdict.ships:
            assert c.evidence is not None and c.evidence.gain_low > 0
        else:
            assert np.array_equal(c.held_out.seed, c.held_out.base)
    shipped = {f"{c.cell.key}@{c.shipped.site}" for c in res.cells if c.shipped is not None}
    assert set(SeedLibrary.load(out).entries) == shipped
    table = json.loads((out / "conditions.json").read_text())
    assert [c["cell"] for c in table["cells"]] == ["emg-6dB", "lead"] and all("item2" in c for c in table["cells"])


@needs_four  # ~5 s
def test_cli_morph_data_prints_the_table_and_writes_the_library(
    real_base: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, ckpt_path = real_base
    monkeypatch.setattr("kasmina_edge.host.train.set_threads", lambda n=None: 1)  # 2 shared cores: one thread
    out = tmp_path / "seeds"
    code, text = _cli(["morph", "--checkpoint", str(ckpt_path), "--data", f"wfdb:{folder}", "--conditions", "emg",
                       "--snr", "0", "--preset", "tiny", "--out", str(out)], monkeypatch, capsys)  # fmt: skip
    assert code == 0, text
    flat = " ".join(text.split())  # rich wraps at 80 columns
    assert "condition seeds: macro-F1" in flat and "judged on 109" in flat and "emg 0 dB:" in flat
    assert (out / "library.json").exists() and (out / "conditions.json").exists() and (out / "morph.jsonl").exists()


@needs_four  # ~5 s
def test_cli_morph_data_json_is_one_document(real_base: tuple[Path, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json

    folder, ckpt_path = real_base
    monkeypatch.setattr("kasmina_edge.host.train.set_threads", lambda n=None: 1)
    out = tmp_path / "seeds"
    monkeypatch.setattr(sys, "argv", ["kasmina-edge", "morph", "--checkpoint", str(ckpt_path), "--data",
                                      f"wfdb:{folder}", "--conditions", "lead", "--preset", "tiny", "--out", str(out),
                                      "--json"])  # fmt: skip
    from kasmina_edge.cli.app import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    cap = capsys.readouterr()
    assert exc.value.code in (0, None), cap.err
    doc = json.loads(cap.out)  # the whole of stdout
    assert [c["cell"] for c in doc["cells"]] == ["lead"] and doc["roles"]["test"] == ["109"]
    assert doc["library"] == str(out / "library.json") and "item2" in doc["cells"][0]
    code, text = _cli(["morph", "--checkpoint", str(ckpt_path), "--data", f"wfdb:{folder}", "--snr", "x", "--json"],
                      monkeypatch, capsys)  # fmt: skip
    err = json.loads(text)
    assert code == 2 and err["code"] == 2 and "--snr" in err["error"]
