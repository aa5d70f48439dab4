"""Stage 3: ECG beats in muscle noise, the project's own path, as a curriculum stage.

Records are split by patient (leave-records-out): the base trains on clean beats of one group, a seed
adapts on another group's beats in noise (each with its clean twin: the same beat before the noise was
mixed in), the gates judge on a third and the stage reports a fourth. With ``data`` the records are
MIT-BIH DS1 and the noise is NSTDB's muscle artefact ('ma', 0 dB, the standard mixing schedule); without,
synthetic patients in synthetic EMG. Metric: gross macro-F1 over the AAMI classes (at least 25 beats).
Target: half of what the noise takes from the base recovered (the project's recovery criterion).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kasmina_edge.curriculum.grow import (
    GrowSettings,
    ShiftTask,
    TaskData,
    quick_settings,
    three_arms,
    train_task_base,
)
from kasmina_edge.curriculum.stage import ArmScore, StageContext, StageReport
from kasmina_edge.ecg.types import Record

MIN_SUPPORT = 25
RECOVERY = 0.5  # the share of the noise's drop that base + seeds must win back
SNR_DB = -6.0


def _data(records: Sequence[Record]) -> TaskData:
    from kasmina_edge.host.data import beats

    ds = beats(records)
    return TaskData(ds.windows, ds.rr, ds.labels)


def _real_groups(folder: Path, quick: bool, seed: int) -> tuple[list[list[Record]], list[list[Record]], str]:
    """(clean, noisy) records in four groups: base, adapt, gate, test; DS1 order shuffled by ``seed``."""
    from kasmina_edge.ecg.noise import nstdb_mix
    from kasmina_edge.ecg.wfdb_io import read_wfdb
    from kasmina_edge.host.data import SPEC, time_split
    from kasmina_edge.host.records import DS1

    names = [n for n in DS1 if (folder / "mitdb" / f"{n}.hea").exists()]
    if len(names) < 8:
        raise FileNotFoundError(f"{folder / 'mitdb'}: {len(names)} DS1 records, the stage needs 8")
    order = np.random.default_rng(seed).permutation(len(names))
    picked = [names[i] for i in order]  # every patient: the classes are spread thin across records
    minutes = 4.0 if quick else 30.0
    rng = np.random.default_rng(seed + 1)
    clean = [time_split(read_wfdb(folder / "mitdb" / n, fs=SPEC.fs), minutes * 60)[0] for n in picked]
    noisy = [
        nstdb_mix(r, "ma", SNR_DB, rng, first_clean_s=0.0) for r in clean
    ]  # noise from the start: short excerpts
    cuts = np.cumsum([len(picked) - 3 * (len(picked) // 5), len(picked) // 5, len(picked) // 5])
    groups = lambda rs: [list(g) for g in np.split(np.array(rs, dtype=object), cuts)]  # noqa: E731
    return (
        groups(clean),
        groups(noisy),
        f"{len(picked)} DS1 records, first {minutes:g} min, NSTDB ma {SNR_DB:g} dB",
    )


def _synthetic_groups(quick: bool, seed: int) -> tuple[list[list[Record]], list[list[Record]], str]:
    from kasmina_edge.ecg.dataset import synthetic_patients

    n, minutes = (12, 3.0) if quick else (24, 5.0)
    recs = synthetic_patients(n, minutes, seed=seed, conditions=("clean", f"emg@{SNR_DB:g}"))
    clean, noisy = recs[0::2], recs[1::2]  # patient-major: each patient's clean copy, then its noisy one
    cuts = np.cumsum([n // 2, n // 6 or 1, n // 6 or 1])
    groups = lambda rs: [list(g) for g in np.split(np.array(rs, dtype=object), cuts)]  # noqa: E731
    return (
        groups(clean),
        groups(noisy),
        f"{n} synthetic patients, {minutes:g} min, synthetic EMG {SNR_DB:g} dB",
    )


def ecg_task(data: Path | None, quick: bool, seed: int) -> tuple[ShiftTask, str]:
    has_real = data is not None and (data / "mitdb").is_dir() and (data / "nstdb").is_dir()
    clean, noisy, source = (
        _real_groups(data, quick, seed) if has_real and data else _synthetic_groups(quick, seed)
    )
    base_recs, adapt_clean, gate_clean, test_clean = clean
    _, adapt_noisy, gate_noisy, test_noisy = noisy
    n_val = max(1, len(base_recs) // 4)
    task = ShiftTask(
        name="muscle_noise", n_classes=5, train=_data(base_recs[n_val:]), val=_data(base_recs[:n_val]),
        adapt=_data(adapt_noisy), shift_val=_data(gate_noisy), shift_test=_data(test_noisy),
        clean_test=_data(test_clean), adapt_clean=_data(adapt_clean),
    )  # fmt: skip
    return task, source


def macro_f1(model: object, data: TaskData) -> float:
    from kasmina_edge.host.train import evaluate

    return evaluate(model, data).macro_f1_at(MIN_SUPPORT)  # type: ignore[arg-type]


class EcgStage:
    index, name, domain = 3, "ecg", "ECG beats in muscle noise (leave-records-out)"

    def run(self, ctx: StageContext) -> StageReport:
        from kasmina_edge.host.model import get_config
        from kasmina_edge.host.morph_config import MorphConfig

        t0 = time.perf_counter()
        task, source = ecg_task(ctx.data, ctx.quick, ctx.seed)
        ctx.say(f"{source}: {len(task.train)} base beats, {len(task.adapt)} adaptation beats")
        morph = MorphConfig(target=None, gate_min_support=MIN_SUPPORT)
        model = dataclasses.replace(get_config("tiny" if ctx.quick else "default"), name="curriculum-ecg")
        settings = GrowSettings(
            model=model, base_epochs=12, batch_size=128, morph=morph, sites=("site1", "site2")
        )
        if ctx.quick:  # fewer lifecycle steps; the base still needs its epochs to be worth adapting
            settings = dataclasses.replace(quick_settings(settings), base_epochs=15)
        base = train_task_base(task, settings, seed=ctx.seed, say=ctx.say)
        arms = three_arms(task, base, settings, seed=ctx.seed, say=ctx.say)
        clean, noisy = macro_f1(base, task.clean_test), macro_f1(base, task.shift_test)
        target = noisy + RECOVERY * max(0.0, clean - noisy)
        seeded_clean = macro_f1(arms.seeded, task.clean_test)
        return StageReport(
            index=self.index, name=self.name, domain=self.domain, metric="macro-F1 in noise", target=target,
            base=ArmScore(noisy, arms.base_params, {"clean": clean}),
            seeded=ArmScore(macro_f1(arms.seeded, task.shift_test), arms.seed_params, {"clean": seeded_clean}),
            fine_tuned=ArmScore(macro_f1(arms.fine_tuned, task.shift_test), arms.fine_tune_params,
                                {"clean": macro_f1(arms.fine_tuned, task.clean_test)}),
            lifecycle=arms.events,
            checks={"noise_hurts_the_base": noisy < clean - 0.01,
                    "seeds_keep_clean_accuracy": seeded_clean >= clean - morph.global_tolerance},
            notes=[source, *(f"{t.site}: {t.final_stage} ({t.reason})" for t in arms.trials)],
            seconds=time.perf_counter() - t0,
        )  # fmt: skip


def ecg_stage() -> EcgStage:
    return EcgStage()
