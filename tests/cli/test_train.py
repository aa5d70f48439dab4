"""`kasmina-edge train --data wfdb:DIR`: real records, a patient-wise split, one-line errors before training (the
split itself: tests/host/test_records.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kasmina_edge.cli.app import app
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import synthetic_patients
from kasmina_edge.ecg.wfdb_io import read_wfdb, write_wfdb
from kasmina_edge.host.records import (
    parse_data_spec,
    plan_split,
)

REPO = Path(__file__).resolve().parents[2]
MITDB = REPO.parent / "shared" / "data" / "mitdb"
needs_mitdb = pytest.mark.skipif(
    not (MITDB / "106.hea").exists(), reason=f"MIT-BIH records not found in {MITDB} (../shared/data absent)"
)
runner = CliRunner()


def _one_line_error(result, text: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.output
    assert "Traceback" not in result.output


def _train(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["train", "--preset", "tiny", "--epochs", "1", *args])


# --------------------------------------------------------------------------- folders of records


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short annotated synthetic records (no real data needed for the error paths)."""
    folder = tmp_path_factory.mktemp("synth")
    for rec in synthetic_patients(3, 0.5, seed=4):
        write_wfdb(rec, folder)
    return folder


def _copy(src: Path, dst: Path, names: list[str] | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and (names is None or f.stem in names):
            shutil.copy(f, dst / f.name)
    return dst


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.hea"))


def _write_atr(
    folder: Path, name: str, samples: list[int], symbols: list[str], custom: str | None = None
) -> None:
    """Replace a record's .atr (``custom``: one symbol outside WFDB's table, as WFDB custom labels allow)."""
    import pandas as pd
    import wfdb

    (folder / f"{name}.atr").unlink(missing_ok=True)
    labels = None
    if custom is not None:
        labels = pd.DataFrame(
            {"label_store": [42], "symbol": [custom], "description": ["site-specific beat"]}
        )
    wfdb.wrann(
        name, "atr", np.asarray(samples), symbol=symbols, custom_labels=labels, fs=360, write_dir=str(folder)
    )


@pytest.fixture(scope="module")
def mitdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Crops of two real MIT-BIH records (2 minutes each), written as WFDB the way the ECG layer writes them."""
    if not (MITDB / "106.hea").exists():
        pytest.skip(f"MIT-BIH records not found in {MITDB} (../shared/data absent)")
    folder = tmp_path_factory.mktemp("mitdb")
    for name in ("106", "119"):
        write_wfdb(read_wfdb(MITDB / name, seconds=120.0), folder)
    return folder


# --------------------------------------------------------------------------- training on real records


@needs_mitdb
def test_train_on_two_real_records(mitdb_dir: Path, tmp_path: Path) -> None:
    from kasmina_edge.host.experiment import load_checkpoint
    from kasmina_edge.host.patient import COMMON_KEY

    out = tmp_path / "base.pt"
    res = _train("--data", f"wfdb:{mitdb_dir}", "--out", str(out))
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(out)
    train, val = ckpt["train_records"], ckpt["val_records"]
    assert len(train) == 1 and len(val) == 1 and set(train) | set(val) == {"106", "119"}, (train, val)
    assert ckpt["data"] == f"wfdb:{mitdb_dir}"
    # the checkpoint's per-record counts are the annotated beats of each crop (minus edge windows)
    for name in ("106", "119"):
        ref = read_wfdb(mitdb_dir / name).beats
        assert ref is not None
        got = ckpt["record_classes"][name]
        assert 0 <= sum(ref.counts().values()) - sum(got.values()) <= 2 and got["V"] > 10, (name, got)
    # the validation table was scored on the validation record's beats only
    assert ckpt["val_metrics"]["support"] == list(ckpt["record_classes"][val[0]].values())
    common = ckpt[COMMON_KEY]
    assert common["records"] == train and len(common["labels"]) > 0
    for text in ("records (patient-wise split)", "validation (held-out records", "macro-F1", "106", "119"):
        assert text in res.output, res.output


@needs_mitdb
def test_val_records_chosen_explicitly_and_resampled_record(mitdb_dir: Path, tmp_path: Path) -> None:
    """--val-records names the validation side; a record at another rate is resampled and said so."""
    from kasmina_edge.cli.common import console
    from kasmina_edge.cli.host import run_train
    from kasmina_edge.host.experiment import load_checkpoint

    folder = _copy(mitdb_dir, tmp_path / "data")
    write_wfdb(read_wfdb(MITDB / "208", seconds=90.0, fs=250.0), folder)  # a 250 Hz record
    out = tmp_path / "base.pt"
    with console.capture() as cap:
        run_train(console, config="tiny", epochs=1, out=out, data=f"wfdb:{folder}", val_records="119")
    said = cap.get()
    ckpt = load_checkpoint(out)
    assert ckpt["val_records"] == ["119"] and ckpt["train_records"] == ["106", "208"]
    assert "resampled to 360 Hz: 208 (250 Hz)" in said
    n_208 = ckpt["record_classes"]["208"]
    assert n_208["F"] > 0 and n_208["V"] > 0  # 208's fusion and ventricular beats came through the resampling
    with pytest.raises(KasminaError, match="the checkpoint was trained on --data"):
        run_train(console, config="tiny", epochs=2, out=out, resume=out, data=f"wfdb:{mitdb_dir}")
    with pytest.raises(KasminaError, match="give it again"):
        run_train(console, config="tiny", epochs=2, out=out, resume=out)
    with console.capture():  # resumed on the same records (the folder given another way): one more epoch
        run_train(console, epochs=2, out=out, resume=out, data=f"wfdb:{folder}/./", val_records="119")
    again = load_checkpoint(out)
    assert (
        again["epochs_done"] == 2
        and again["train_records"] == ["106", "208"]
        and again["val_records"] == ["119"]
    )


# --------------------------------------------------------------------------- errors before training


def test_errors_are_one_line_and_write_nothing(synth_dir: Path, tmp_path: Path) -> None:
    names = _names(synth_dir)
    out = tmp_path / "base.pt"
    cases = [
        (["--records", f"{names[0]},{names[1]}", "--val-records", names[1]],
         f"record {names[1]} is in both the training and the validation split"),
        (["--records", f"{names[0]},nope"], "record nope is not in"),
        (["--val-records", f"{names[0]},{names[0]}"], f"record {names[0]} is named twice"),
        (["--val-records", ",".join(names)], "no record left to train on"),
        (["--records", names[0]], "training needs at least 2 records"),
        (["--patients", "4"], "--patients: only for synthetic patients"),
        (["--lead", "V9"], "no lead named 'V9'"),
    ]  # fmt: skip
    for args, text in cases:
        _one_line_error(_train("--data", f"wfdb:{synth_dir}", "--out", str(out), *args), text)
        assert not out.exists() and not out.with_suffix(".jsonl").exists(), args


def test_record_without_annotations(synth_dir: Path, tmp_path: Path) -> None:
    folder = _copy(synth_dir, tmp_path / "data")
    name = _names(folder)[1]
    (folder / f"{name}.atr").unlink()
    out = tmp_path / "base.pt"
    _one_line_error(
        _train("--data", f"wfdb:{folder}", "--out", str(out)),
        f"{name}: no reference beat annotations ({name}.atr): training needs annotated beats",
    )
    assert not out.exists()
    # leaving that record out of the selection trains on the others' side of the check
    others = [n for n in _names(folder) if n != name]
    plan = plan_split(parse_data_spec(f"wfdb:{folder}"), records=others)
    assert sorted(plan.train + plan.val) == others


def test_unknown_beat_symbols_are_refused_or_skipped_and_counted(synth_dir: Path, tmp_path: Path) -> None:
    folder = _copy(synth_dir, tmp_path / "data")
    name = _names(folder)[0]
    ref = read_wfdb(folder / name).beats
    assert ref is not None and len(ref) > 20
    samples = [int(s) for s in ref.samples]
    symbols = list(ref.symbols or [])
    for i in (3, 7, 11):  # three beats carry a site-specific symbol no AAMI table knows
        symbols[i] = "X"
    _write_atr(folder, name, samples, symbols, custom="X")
    out = tmp_path / "base.pt"
    res = _train("--data", f"wfdb:{folder}", "--out", str(out))
    _one_line_error(
        res, f"{name}: 3 annotation(s) with symbols outside the AAMI beat mapping: 'X' ×3 (first at 0:0"
    )
    assert "--skip-unknown-symbols" in res.output and not out.exists()

    res = _train(
        "--data", f"wfdb:{folder}", "--out", str(out), "--skip-unknown-symbols", "--val-records", name
    )
    assert res.exit_code == 0, res.output
    assert f"{name}: 3 beats" in res.output
    from kasmina_edge.ecg.dataset import beats_from_record
    from kasmina_edge.host.data import SPEC
    from kasmina_edge.host.experiment import load_checkpoint

    before = len(beats_from_record(read_wfdb(synth_dir / name), SPEC))
    assert (
        sum(load_checkpoint(out)["record_classes"][name].values()) == before - 3
    )  # exactly the X beats left out


def test_annotations_without_aami_beats(synth_dir: Path, tmp_path: Path) -> None:
    folder = _copy(synth_dir, tmp_path / "data")
    name = _names(folder)[2]
    _write_atr(folder, name, [0, 500, 900], ["+", "~", "~"])
    _one_line_error(
        _train("--data", f"wfdb:{folder}", "--out", str(tmp_path / "b.pt")),
        f"{name}: its annotations hold no beat of the AAMI classes N/S/V/F/Q (symbols: + ~): nothing to train on",
    )


def test_empty_folder_and_bad_specs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_train("--data", f"wfdb:{empty}"), "no WFDB records (NAME.hea) in this folder")
    _one_line_error(_train("--data", f"wfdb:{tmp_path / 'nope'}"), "no such folder")
    _one_line_error(
        _train("--data", "csv:ecg.csv"), "a CSV source holds samples only, no reference beat annotations"
    )
    _one_line_error(_train("--data", "edf:x"), "expected wfdb:DIR")
    _one_line_error(_train("--records", "101"), "--records: only with real records (--data wfdb:DIR)")
