"""host/train_run: every option checked before any work (which options go with which data, the resume rules),
and a run from options alone (no console) that trains, logs its data and writes the checkpoint."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import synthetic_patients
from kasmina_edge.ecg.types import AAMI_CLASSES
from kasmina_edge.ecg.wfdb_io import write_wfdb
from kasmina_edge.host.experiment import load_checkpoint, read_log, save_checkpoint
from kasmina_edge.host.train import REAL_RECORDS_WEIGHTS
from kasmina_edge.host.train_run import TrainOptions, TrainProgress, plan_training, train_from_options


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three annotated records (synthetic patients written as WFDB)."""
    out = tmp_path_factory.mktemp("wfdb")
    for rec in synthetic_patients(3, 1.0, seed=3):
        write_wfdb(rec, out)
    return out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TrainOptions(records="100"), "--records: only with real records"),
        (TrainOptions(lead="MLII", skip_unknown_symbols=True), "--lead, --skip-unknown-symbols: only with real"),
        (TrainOptions(data="wfdb:{folder}", patients=4, minutes=1.0), "--patients, --minutes: only for synthetic"),
        (TrainOptions(data="wfdb:{folder}", records="nope"), "or a named set: ds1"),
        (TrainOptions(config="huge"), "--preset: unknown 'huge'"),
    ],
)
def test_user_errors_are_raised_before_any_work(
    folder: Path, tmp_path: Path, options: TrainOptions, message: str
) -> None:
    data = options.data.format(folder=folder) if options.data else None
    options = dataclasses.replace(options, data=data, out=tmp_path / "base.pt")
    with pytest.raises(KasminaError, match=message):
        plan_training(options)
    assert not list(tmp_path.iterdir())  # nothing written


def test_resume_keeps_the_checkpoints_data(folder: Path, tmp_path: Path) -> None:
    """A real-record checkpoint resumes only with its folder and records; a synthetic one only without --data."""
    names = sorted(p.stem for p in folder.glob("*.hea"))
    plan = plan_training(TrainOptions(data=f"wfdb:{folder}", records=",".join(names[:2]), val_records=names[2]))
    assert plan.split is not None and plan.split.val == [names[2]] and plan.cfg.weights == REAL_RECORDS_WEIGHTS
    ckpt = tmp_path / "real.pt"
    save_checkpoint(ckpt, {"kind": "base", "train_config": plan.cfg.to_dict(), "data": f"wfdb:{folder}",
                           "data_folder": str(folder.resolve()), "train_records": names[:2], "epochs_done": 1})  # fmt: skip
    with pytest.raises(KasminaError, match="give it again"):
        plan_training(TrainOptions(resume=ckpt))
    with pytest.raises(KasminaError, match="other records"):
        plan_training(TrainOptions(resume=ckpt, data=f"wfdb:{folder}", records=names[0], val_records=names[2]))
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(folder, elsewhere)
    with pytest.raises(KasminaError, match=f"not wfdb:{elsewhere}"):
        plan_training(TrainOptions(resume=ckpt, data=f"wfdb:{elsewhere}"))
    again = plan_training(TrainOptions(resume=ckpt, data=f"wfdb:{folder}", records=",".join(names[:2]),
                                       val_records=names[2]))  # fmt: skip
    assert again.resumed is not None and again.cfg == plan.cfg


def test_a_run_from_options_trains_logs_and_writes(tmp_path: Path) -> None:
    out = tmp_path / "base.pt"
    seen: dict[str, object] = {}
    progress = TrainProgress(
        loading=lambda what, total: seen.setdefault("loading", (what, total)),
        loaded=lambda n_train, n_val, n_batches, done: seen.setdefault("loaded", (n_train, n_val, n_batches, done)),
        batch=lambda epoch, b, nb, loss: seen.__setitem__("batches", int(seen.get("batches", 0)) + 1),  # type: ignore[call-overload]
    )
    run = train_from_options(TrainOptions(config="tiny", patients=4, minutes=1.0, epochs=1, out=out), progress)
    assert run.split is None and run.train_names and run.val_names and run.seconds > 0
    assert seen["loading"] == ("synthesizing patients", None)
    n_train, n_val, n_batches, done = seen["loaded"]  # type: ignore[misc]
    assert done == 0 and seen["batches"] == n_batches  # one epoch: every batch reported
    assert load_checkpoint(out, kind="base")["epochs_done"] == 1
    data = next(e for e in read_log(out.with_suffix(".jsonl")) if e["event"] == "data")
    assert list(data["train_classes"]) == list(AAMI_CLASSES) and sum(data["train_classes"].values()) == n_train
    assert data["val_beats"] == n_val and data["train_patients"] == run.train_names
