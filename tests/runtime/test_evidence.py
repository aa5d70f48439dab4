"""Label-free evidence: a kernel is on trial beside the answers, goes live only if its answers fit the signal
better than the base's, and is culled within a bounded number of windows once they fit worse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_runtime import KERNEL1, Clock, Events, image, windows
from runtime_fixtures import mitdb_100

from kasmina_edge.contracts.events import BeatClassified, DecisionTaken, EvidenceVerdict, SeedTransition
from kasmina_edge.contracts.lifecycle import Stage, TransitionEvent
from kasmina_edge.core.features import INDEX, N_FEATURES
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.sources import RecordSource, open_source
from kasmina_edge.runtime.controller import KernelChoice, KernelController, KernelControllerConfig
from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig
from kasmina_edge.runtime.evidence import (
    BeatContext,
    BeatContextTracker,
    EvidenceConfig,
    KernelEvidence,
    plausibility,
    window_evidence,
)
from kasmina_edge.runtime.executor import SegmentedExecutor, SiteObservation, SlotConfig, WindowResult
from kasmina_edge.runtime.health import HealthLimits, HealthMonitor
from kasmina_edge.runtime.lifecycle import LifecycleConfig, SeedManager

N, S, V, F = 0, 1, 2, 3
CFG = EvidenceConfig()
ON_TIME_LIKE = BeatContext(rr_ratio=1.0, template_corr=0.95)  # a normal beat
PREMATURE_UNLIKE = BeatContext(rr_ratio=0.6, template_corr=0.2)  # a PVC


def _probs(label: int, p: float = 0.6) -> np.ndarray:
    out = np.full(5, (1 - p) / 4, np.float32)
    out[label] = p
    return out


def test_plausibility_follows_rhythm_and_shape() -> None:
    assert plausibility(N, ON_TIME_LIKE, CFG) > plausibility(V, ON_TIME_LIKE, CFG)
    assert plausibility(N, ON_TIME_LIKE, CFG) > plausibility(S, ON_TIME_LIKE, CFG)
    assert plausibility(V, PREMATURE_UNLIKE, CFG) > plausibility(S, PREMATURE_UNLIKE, CFG) > plausibility(N, PREMATURE_UNLIKE, CFG)
    premature_like = BeatContext(rr_ratio=0.6, template_corr=0.95)
    assert plausibility(S, premature_like, CFG) > plausibility(V, premature_like, CFG)
    assert plausibility(F, ON_TIME_LIKE, CFG) == 0.0  # nothing a device can check supports a fusion beat


def test_window_evidence_only_disagreements_carry_class_evidence() -> None:
    cls, _ = window_evidence(_probs(N), _probs(N, 0.7), ON_TIME_LIKE, CFG)
    assert cls == 0.0
    good, _ = window_evidence(_probs(N), _probs(V), ON_TIME_LIKE, CFG)  # the kernel fixes a false PVC
    bad, _ = window_evidence(_probs(V), _probs(N), ON_TIME_LIKE, CFG)  # the kernel invents one
    assert good > 0 > bad and good == pytest.approx(-bad)
    sure, _ = window_evidence(_probs(S), _probs(N, 0.95), ON_TIME_LIKE, CFG)  # overruling a sure base costs more
    assert sure < bad
    _, ent = window_evidence(_probs(N, 0.9), _probs(N, 0.4), None, CFG)  # a surer kernel: entropy evidence
    assert ent > 0


def test_kernel_evidence_sums_a_stage_and_a_sliding_window() -> None:
    ev = KernelEvidence(EvidenceConfig(recent_windows=4, entropy_weight=0.0))
    for _ in range(6):
        ev.add(_probs(V), _probs(N), ON_TIME_LIKE)
    assert ev.windows == 6 and ev.disagreements == 6
    assert ev.total == pytest.approx(6 * ev.recent / 4) and ev.total < 0 and ev.classes == ev.total
    assert ev.add(None, _probs(N), ON_TIME_LIKE) == 0.0 and ev.windows == 6  # no comparison ran: nothing added
    ev.restart()
    assert ev.total == 0.0 and ev.recent < 0  # a new stage, the sliding window goes on


def test_context_tracker_builds_the_template_from_the_first_beats() -> None:
    tr = BeatContextTracker(config=EvidenceConfig(template_beats=3))
    t = np.arange(256)
    normal = np.exp(-0.5 * ((t - 90) / 6.0) ** 2).astype(np.float32)[None, :]
    wide = np.exp(-0.5 * ((t - 90) / 30.0) ** 2).astype(np.float32)[None, :] * np.sign(t - 90)[None, :]
    rr = np.array([0.8, 0.8, 0.8, 1.0], np.float32)
    assert tr.observe(normal, rr).template_corr is None  # no template yet
    tr.observe(normal, rr)
    assert tr.observe(normal, rr).template_corr == pytest.approx(1.0, abs=1e-5)  # the third beat completes it
    ctx = tr.observe(wide, np.array([0.5, 1.1, 0.8, 0.62], np.float32))
    assert ctx.template_corr is not None and ctx.template_corr < 0.5 and ctx.rr_ratio == pytest.approx(0.62)


# ---------------------------------------------------------------------------------------- the lifecycle


def _result(label: int, shadow_label: int, n_sites: int) -> WindowResult:
    """A window's result as the executor hands it over: ``label`` answered, ``shadow_label`` run beside it."""
    return WindowResult(logits=np.zeros(5, np.float32), probs=_probs(label), label=label, latency_s=0.0,
                        sites=[SiteObservation() for _ in range(n_sites)], config_version=0,
                        shadow_label=shadow_label, shadow_probs=_probs(shadow_label))


def _cull(events: Events) -> TransitionEvent:
    return next(e.transition for e in events.of(SeedTransition) if e.transition.dst is Stage.CULLED)


def _manager(bundles: Path, keys: Path, cfg: LifecycleConfig):  # type: ignore[no-untyped-def]
    img = image(bundles, keys)
    ex = SegmentedExecutor(img)
    events = Events()
    mgr = SeedManager(ex, HealthMonitor(HealthLimits(confidence_floor=0.0)), clock=Clock(), sink=events.append, config=cfg)
    return img, ex, mgr, events


def test_on_trial_the_answers_are_the_base_and_the_kernel_runs_beside_them(bundles: Path, keys: Path) -> None:
    img = image(bundles, keys)
    k = img.kernels[KERNEL1]
    trial, base_only, live = SegmentedExecutor(img), SegmentedExecutor(img), SegmentedExecutor(img)
    trial.set_slot(k.site, SlotConfig(candidate=k, alpha=1.0, trial=True))
    live.set_slot(k.site, SlotConfig(candidate=k, alpha=1.0))
    x, rr = windows(20, 11)
    differs = 0
    for i in range(20):
        r, b, w = trial.infer(x[i], rr[i]), base_only.infer(x[i], rr[i]), live.infer(x[i], rr[i])
        np.testing.assert_array_equal(r.probs, b.probs)  # not one answer depends on the kernel on trial
        assert r.shadow_probs is not None
        np.testing.assert_allclose(r.shadow_probs, w.probs, atol=1e-6)  # the kernel's answers, compared only
        differs += int(not np.allclose(w.probs, b.probs))
    assert differs > 0  # the kernel does change the chain's output: the comparison is not vacuous
    assert SlotConfig(candidate=k, alpha=1.0, trial=True).live is None


def test_a_hurting_kernel_is_culled_on_trial_within_its_shadow_windows(bundles: Path, keys: Path) -> None:
    cfg = LifecycleConfig(blend_windows=4, shadow_windows=12)
    img, ex, mgr, events = _manager(bundles, keys, cfg)
    assert mgr.activate(KERNEL1, 1.0, "test", 0.3)
    assert ex.config.slots[1].trial  # on trial from the first blended window
    culled_at = None
    for i in range(100):
        # the base answers N, the kernel (beside it) V on every third beat; the beats are on time and shaped
        # like the template: the kernel invents PVCs
        mgr.tick(_result(N, V if i % 3 == 0 else N, ex.n_sites), ON_TIME_LIKE)
        if mgr.stage(KERNEL1) is Stage.EMBARGOED:
            culled_at = i + 1
            break
    assert culled_at == cfg.blend_windows + cfg.shadow_windows  # bounded: the G3 verdict ends the trial
    cull = _cull(events)
    assert cull.src is Stage.SHADOWING and cull.reason.startswith("evidence_harm")
    verdict = events.of(EvidenceVerdict)[0]
    assert verdict.verdict == "hurts" and verdict.metrics["evidence"] < 0 and verdict.metrics["disagreements"] == 4
    assert ex.config.slots[1].candidate is None  # rolled back
    assert mgr.config.embargo.duration(cull.reason) == 60.0  # evidence culls wait the middle embargo
    assert not [e for e in events.of(SeedTransition) if e.transition.dst is Stage.PROBATIONARY]


def test_a_kernel_that_changes_nothing_never_goes_live(bundles: Path, keys: Path) -> None:
    cfg = LifecycleConfig(blend_windows=2, shadow_windows=8)
    img, ex, mgr, events = _manager(bundles, keys, cfg)
    assert mgr.activate(KERNEL1, 1.0, "test", 0.3)
    for _ in range(cfg.blend_windows + cfg.shadow_windows):
        r = _result(N, N, ex.n_sites)
        r.shadow_probs = _probs(N, 0.9)  # surer than the base (entropy evidence > 0), but never a different answer
        mgr.tick(r, ON_TIME_LIKE)
    assert mgr.stage(KERNEL1) is Stage.EMBARGOED
    cull = _cull(events)
    assert cull.reason.startswith("evidence_none")


def test_a_live_kernel_that_turns_harmful_is_culled_within_a_few_windows(bundles: Path, keys: Path) -> None:
    cfg = LifecycleConfig(blend_windows=2, shadow_windows=6, probation_windows=200)
    img, ex, mgr, events = _manager(bundles, keys, cfg)
    assert mgr.activate(KERNEL1, 1.0, "test", 0.3)
    for i in range(cfg.blend_windows + cfg.shadow_windows):  # the kernel fixes false PVCs: it earns its place
        mgr.tick(_result(V, N if i % 2 else V, ex.n_sites), ON_TIME_LIKE)
    assert mgr.stage(KERNEL1) is Stage.PROBATIONARY
    slot = ex.config.slots[1]
    assert slot.candidate is not None and not slot.trial and slot.shadow  # live; the base still run beside it
    for i in range(40):  # now the live kernel's answers (label) contradict the signal, the base's (shadow) fit
        mgr.tick(_result(V if i % 2 else N, N, ex.n_sites), ON_TIME_LIKE)
        if mgr.stage(KERNEL1) is not Stage.PROBATIONARY:
            break
    assert mgr.stage(KERNEL1) is Stage.EMBARGOED and i + 1 <= 4, f"culled only after {i + 1} harmful windows"
    cull = _cull(events)
    assert cull.src is Stage.PROBATIONARY and cull.reason.startswith("evidence_harm")
    assert ex.config.slots[1].candidate is None


# ---------------------------------------------------------------------------------------- the controller


def test_a_noise_symptom_needs_the_quality_index_to_fall() -> None:
    ref = np.zeros(N_FEATURES, np.float32)
    ref[INDEX["qrs_template_corr"]] = 1.0
    noisy = ref.copy()
    noisy[INDEX["noise_power"]] = 0.5  # 10 dB more high-frequency power than the reference
    k = KernelChoice("emg", 0, "sliding_conv", ("noise",))
    ctl = KernelController([k], 2, KernelControllerConfig(), reference=ref, reference_quality=20.0)
    assert ctl.decide(noisy, {}, {"emg"}, quality=18.0).action == "wait"  # QRS still read as well: no kernel
    d = ctl.decide(noisy, {}, {"emg"}, quality=6.0)
    assert d.action == "activate" and d.kernel == "emg"


def _no_activation(bundles: Path, keys: Path, source) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    out = Events()
    rt = DeviceRuntime(image(bundles, keys), fs=source.fs,
                       config=RuntimeConfig(boot_kernels=False, health=HealthLimits(confidence_floor=0.0)), sink=out.append)
    for ch in source.chunks(360):
        rt.feed(ch)
    rt.finish()
    live = sum(1 for b in out.of(BeatClassified) if b.active)
    trials = sum(1 for d in out.of(DecisionTaken) if d.decision.action == "activate")
    return live, trials


def test_no_kernel_activated_on_clean_signal(bundles: Path, keys: Path) -> None:
    live, trials = _no_activation(bundles, keys, RecordSource(make_scenario("clean", 3.0, seed=3)))
    assert live == 0 and trials == 0


def test_no_kernel_activated_on_clean_mitbih(bundles: Path, keys: Path) -> None:
    rec = mitdb_100()
    if rec is None:
        pytest.skip("MIT-BIH record 100 is not in ../shared/data/mitdb")
    live, trials = _no_activation(bundles, keys, open_source(f"wfdb:{rec}", seconds=300.0))
    assert live == 0 and trials == 0


def test_one_changed_answer_is_not_enough_to_go_live(bundles: Path, keys: Path) -> None:
    """On MIT-BIH 108, 208 and 215 as recorded, single flips brought a kernel live: G3 wants two."""
    cfg = LifecycleConfig(blend_windows=2, shadow_windows=8)
    img, ex, mgr, events = _manager(bundles, keys, cfg)
    assert mgr.activate(KERNEL1, 1.0, "test", 0.3)
    for i in range(cfg.blend_windows + cfg.shadow_windows):  # one flip the signal fully backs (+1.5)
        mgr.tick(_result(V, N if i == 5 else V, ex.n_sites), ON_TIME_LIKE)
    assert mgr.stage(KERNEL1) is Stage.EMBARGOED
    cull = _cull(events)
    assert cull.reason.startswith("evidence_none") and "1 disagreements" in cull.reason
