"""Reward tuning: the outcome grid, held-out scoring, the Pareto front, the NSGA-II study and its plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.core.features import INDEX, SignalFeatures
from kasmina_edge.host.tamiyo.features import Observation
from kasmina_edge.host.tamiyo.heuristic import Decision
from kasmina_edge.host.tamiyo.reward import RewardWeights
from kasmina_edge.host.tamiyo.tuning import (
    Cell,
    CostBudget,
    OutcomeGrid,
    PolicyBudget,
    Scores,
    TrialPoint,
    TuningError,
    TuningProblem,
    choose_after,
    dominates,
    pareto_front,
    plot_front,
    run_study,
)

SITES = ["site0", "site1", "site2", "site3"]
BPS = ["bottleneck_adapter", "low_rank_residual", "squeeze_excitation"]
FAST = PolicyBudget(imitation_steps=60, episodes=8, episode_size=32, situations=120)


def _obs() -> dict[str, list[float]]:
    ref = Observation(SignalFeatures(-1.0, -1.0, -2.0, 1.0, 0.99), 0.2, (0.1, 0.1, 0.1, 0.1)).vector()
    emg = ref.copy()
    emg[INDEX["noise_power"]] += 0.8
    emg[INDEX["drift_site0"]] = 0.6
    lead = ref.copy()
    lead[INDEX["qrs_template_corr"]] = 0.4
    lead[INDEX["drift_site2"]] = 0.7
    return {"clean": ref.tolist(), "emg": emg.tolist(), "lead": lead.tolist()}


def synthetic_grid() -> OutcomeGrid:
    """A made-up grid with a real trade-off: the big seeds gain more on validation and cost more; on held-out
    patients the big emg seed gains nothing while the small one keeps its gain."""
    cells = []
    for cond in ("emg", "lead"):
        for i, site in enumerate(SITES):
            for j, bp in enumerate(BPS):
                params, macs = 40 * (j + 1) * (i + 1), 2000 * (j + 1)
                big = j == 0
                train = 0.04 if big else 0.015
                held = (0.0 if cond == "emg" else 0.03) if big else 0.012
                cells.append(Cell(cond, site, bp, True, train, held, held * 0.9, params, macs))
    allowed = [[True] * len(BPS) for _ in SITES]
    return OutcomeGrid(SITES, BPS, _obs(), allowed, cells, base_params=4000, base_macs=100_000)


def test_grid_round_trips_through_json_and_rejects_a_bad_file(tmp_path: Path) -> None:
    g = synthetic_grid()
    g.save(tmp_path / "g.json")
    back = OutcomeGrid.load(tmp_path / "g.json")
    assert back.cells == g.cells and back.allowed == g.allowed and back.observations == g.observations
    body = json.loads((tmp_path / "g.json").read_text())
    body["allowed"] = body["allowed"][:2]
    (tmp_path / "bad.json").write_text(json.dumps(body))
    with pytest.raises(TuningError, match="bad.json: allowed"):
        OutcomeGrid.load(tmp_path / "bad.json")
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(TuningError, match="nojson.json:1: not JSON"):
        OutcomeGrid.load(tmp_path / "nojson.json")
    with pytest.raises(TuningError, match="no such outcome grid"):
        OutcomeGrid.load(tmp_path / "absent.json")


def test_scoring_reads_held_out_gains_and_counts_only_fossilized_seeds() -> None:
    g = synthetic_grid()
    g.cells[0] = dataclasses.replace(g.cells[0], fossilized=False)  # emg · site0 · bottleneck culled
    p = TuningProblem(g, FAST, seed=0)
    sits = [s for s in p.report_situations if s.condition == "emg" and s.masks.act[1]][:4]
    assert len(sits) == 4
    culled = p.score_decisions([Decision(True, 0, 0, 1, 0)] * 4, sits, "tune")
    assert culled.heldout_gain_points == 0 and culled.params_fraction == 0 and culled.act_rate == 1
    small = p.score_decisions([Decision(True, 1, 1, 1, 0)] * 4, sits, "tune")
    cell = g.cell("emg", "site1", BPS[1])
    assert cell is not None
    assert small.heldout_gain_points == pytest.approx(100 * cell.tune_gain)
    assert small.params_fraction == pytest.approx(cell.params / g.base_params)
    report = p.score_decisions([Decision(True, 1, 1, 1, 0)] * 4, sits, "report")
    assert report.heldout_gain_points == pytest.approx(100 * cell.report_gain)  # the other held-out set
    wait = p.score_decisions([Decision(False)] * 4, sits, "tune")
    assert wait == Scores(0.0, 0.0, 0.0, 0.0)


def test_situation_streams_are_disjoint_draws() -> None:
    p = TuningProblem(synthetic_grid(), FAST, seed=0)
    train = {s.obs.tobytes() for s in p.train}
    assert not train & {s.obs.tobytes() for s in p.tune_situations}
    assert not train & {s.obs.tobytes() for s in p.report_situations}


def _pt(n: int, g: float, pa: float, m: float) -> TrialPoint:
    return TrialPoint(n, {}, Scores(g, pa, m, 0.5))


def test_pareto_front_and_the_choice_of_after() -> None:
    pts = [_pt(0, 1.0, 0.05, 0.05), _pt(1, 1.2, 0.04, 0.05), _pt(2, 0.5, 0.01, 0.01), _pt(3, 0.4, 0.02, 0.02),
           _pt(4, 2.0, 0.10, 0.20), _pt(5, 1.2, 0.04, 0.05)]  # fmt: skip
    assert dominates(pts[1].scores, pts[0].scores) and not dominates(pts[0].scores, pts[1].scores)
    front = pareto_front(pts)
    assert [p.number for p in front] == [4, 1, 2]  # 0 and 3 dominated, 5 ties 1 exactly
    budget = CostBudget(max_params_fraction=0.05, max_macs_fraction=0.05)
    assert choose_after(front, budget).number == 1  # 4 gains more but is over the budget
    assert choose_after(front, CostBudget(1.0, 1.0)).number == 4
    assert choose_after(front, CostBudget(0.001, 0.001)).number == 2  # nothing fits: the cheapest
    assert "params <= 5%" in budget.describe()


def test_study_is_deterministic_finds_a_front_and_plots_it(tmp_path: Path) -> None:
    problem = TuningProblem(synthetic_grid(), FAST, seed=0)
    a = run_study(problem, 4, seed=3)
    b = run_study(TuningProblem(synthetic_grid(), FAST, seed=0), 4, seed=3)
    assert [p.to_dict() for p in a.trials] == [p.to_dict() for p in b.trials]
    assert len(a.trials) == 4 and a.before.number == 0
    assert a.before.weights == RewardWeights().to_dict()
    assert a.front and all(not any(dominates(q.scores, p.scores) for q in a.trials) for p in a.front)
    assert a.after in a.front
    fitting = [p for p in a.front if CostBudget().fits(p.scores)]
    assert not fitting or a.after.scores.heldout_gain_points == max(p.scores.heldout_gain_points for p in fitting)
    body = a.to_dict()
    assert body["report"]["before"]["heldout_gain_points"] == a.report_before.heldout_gain_points
    png = plot_front(a, tmp_path / "front.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_weights_change_the_trained_policy() -> None:
    """Expensive parameters make the trained policy act less or pick cheaper seeds than cheap ones do."""
    problem = TuningProblem(synthetic_grid(), PolicyBudget(imitation_steps=60, episodes=40, episode_size=32,
                                                           situations=120), seed=0)  # fmt: skip
    cheap = problem.score(problem.train_policy(RewardWeights(accuracy=1.0, params=0.05, latency=0.05)), "tune")
    dear = problem.score(problem.train_policy(RewardWeights(accuracy=0.01, params=20.0, latency=20.0)), "tune")
    assert dear.params_fraction < cheap.params_fraction
    assert np.isfinite(cheap.heldout_gain_points)


def test_too_few_trials_is_a_user_error() -> None:
    with pytest.raises(TuningError, match="--trials: at least 2"):
        run_study(TuningProblem(synthetic_grid(), FAST), 1)


@pytest.mark.slow  # trains a base and grows ~8 real seeds: about a minute on two idle cores
def test_measure_grid_grows_real_seeds_and_measures_them_three_ways(tmp_path: Path) -> None:
    from kasmina_edge.host.tamiyo.tuning import GridConfig, measure_grid

    cfg = GridConfig(conditions=("emg",), blueprints=("bottleneck_adapter", "squeeze_excitation"),
                     heldout_patients=2, heldout_minutes=1.5)  # fmt: skip
    grid = measure_grid(cfg)
    allowed = np.asarray(grid.allowed)
    assert len(grid.cells) == int(allowed.sum()) and set(grid.observations) == {"clean", "emg"}
    for c in grid.cells:
        if c.fossilized:
            assert c.train_gain >= 0.01  # G4's min_gain: only a seed that passed it fossilizes
        else:
            assert (c.train_gain, c.tune_gain, c.report_gain) == (0.0, 0.0, 0.0)
        assert c.params > 0 and c.macs > 0
    grid.save(tmp_path / "g.json")
    back = OutcomeGrid.load(tmp_path / "g.json")
    assert back.cells == grid.cells
    problem = TuningProblem(back, FAST)
    assert problem.score(problem.train_policy(RewardWeights()), "report").act_rate >= 0.0
