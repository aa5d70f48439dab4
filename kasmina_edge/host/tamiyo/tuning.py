"""Reward tuning: an Optuna multi-objective study over Tamiyo's reward weights, scored on held-out data.

The data is an :class:`OutcomeGrid`: for each (condition, site, blueprint) a seed was grown and walked
through the lifecycle (:func:`measure_grid`, :func:`~kasmina_edge.host.condition_trial.run_trial`), with
three measurements of its gain kept apart:

- ``train_gain``: the gates' gain on the validation patients, the only one the policy's reward sees;
- ``tune_gain``: macro-F1 gain on held-out patients A (what the study optimises);
- ``report_gain``: macro-F1 gain on held-out patients B (only the final before/after reads it).

Each study trial trains Tamiyo's policy (imitation of the heuristic once, shared; then REINFORCE with the
trial's weights) on situations drawn around the measured observations, and scores the greedy policy on
*other* situations (a separate random stream) with the held-out outcomes: mean gain per decision (points
of macro-F1; only a seed that fossilized counts, a culled one is removed), mean parameters and MACs it
adds (fractions of the base's). NSGA-II (seeded) searches the weights; the default weights are enqueued
as the first trial, so the front is comparable with them. ``after`` is the front point with the highest
tuning gain whose mean cost fits a :class:`CostBudget` (ties to the cheaper); before and after are then
retrained and scored once more on the report set (other situations, held-out patients B), which the study
never saw.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.tamiyo.masks import ACT, GRAFTINGS, ActionSpace, Masks
from kasmina_edge.host.tamiyo.reward import Outcome, RewardWeights

if TYPE_CHECKING:
    from kasmina_edge.host.tamiyo.policy import Situation, TamiyoPolicy

Say = Callable[[str], None]
GRID_FORMAT = "kasmina-edge/outcome-grid/1"
# The terms the study searches (log-uniform ranges). drift and safety keep their defaults: the grid
# measures no drift, and the masks make a safety violation impossible for a greedy policy.
SEARCH_SPACE: dict[str, tuple[float, float]] = {"accuracy": (0.01, 1.0), "params": (0.05, 20.0),
                                                 "latency": (0.05, 20.0)}  # fmt: skip
OBJECTIVES = ("heldout_gain_points", "params_fraction", "macs_fraction")


class TuningError(KasminaError):
    """A bad grid file or study setting."""


# --------------------------------------------------------------------------- the measured grid


@dataclass(frozen=True)
class Cell:
    """One seed grown for a condition at a site with a blueprint, and where it ended."""

    condition: str
    site: str
    blueprint: str
    fossilized: bool
    train_gain: float  # validation patients (the gates'), fraction of macro-F1
    tune_gain: float  # held-out patients A
    report_gain: float  # held-out patients B
    params: int
    macs: int
    reason: str = ""


@dataclass
class OutcomeGrid:
    """Everything a study needs, self-contained (JSON): observations, masks, costs, measured cells."""

    sites: list[str]
    blueprints: list[str]
    observations: dict[str, list[float]]  # condition (and "clean") -> Tamiyo's feature vector
    allowed: list[list[bool]]  # (site, blueprint): the target runs it within the budget
    cells: list[Cell]
    base_params: int
    base_macs: int
    meta: dict[str, Any] = field(default_factory=dict)

    def cell(self, condition: str, site: str, blueprint: str) -> Cell | None:
        return self._index().get((condition, site, blueprint))

    def _index(self) -> dict[tuple[str, str, str], Cell]:
        return {(c.condition, c.site, c.blueprint): c for c in self.cells}

    def to_dict(self) -> dict[str, Any]:
        return {"format": GRID_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, body: dict[str, Any], source: str = "grid") -> OutcomeGrid:
        if body.get("format") != GRID_FORMAT:
            raise TuningError(f"{source}: format {body.get('format')!r}, expected {GRID_FORMAT}")
        try:
            cells = [Cell(**c) for c in body["cells"]]
            grid = cls(list(body["sites"]), list(body["blueprints"]), dict(body["observations"]),
                       [list(map(bool, r)) for r in body["allowed"]], cells, int(body["base_params"]),
                       int(body["base_macs"]), dict(body.get("meta", {})))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise TuningError(f"{source}: bad outcome grid ({type(exc).__name__}: {exc})") from None
        if "clean" not in grid.observations:
            raise TuningError(f"{source}: observations: no 'clean' reference vector")
        if len(grid.allowed) != len(grid.sites) or any(len(r) != len(grid.blueprints) for r in grid.allowed):
            raise TuningError(f"{source}: allowed: expected {len(grid.sites)} rows of {len(grid.blueprints)}")
        return grid

    def save(self, path: Path) -> None:
        _atomic_write(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> OutcomeGrid:
        try:
            body = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TuningError(f"{path}: no such outcome grid") from None
        except json.JSONDecodeError as exc:
            raise TuningError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        return cls.from_dict(body, str(path))


def _atomic_write(path: Path, data: bytes) -> None:
    from kasmina_edge.host.experiment import atomic_write_bytes

    atomic_write_bytes(Path(path), data)


def write_json(path: Path, body: Any) -> None:
    """A report, written whole or not at all."""
    _atomic_write(path, (json.dumps(body, indent=1) + "\n").encode("utf-8"))


@dataclass(frozen=True)
class GridConfig:
    """How :func:`measure_grid` grows its seeds: a small base on synthetic patients, every allowed cell."""

    train_preset: str = "tiny"
    morph_preset: str = "tiny"
    target: str | None = "edgetpu"
    conditions: tuple[str, ...] = ("emg", "baseline", "lead")
    blueprints: tuple[str, ...] = ("bottleneck_adapter", "low_rank_residual", "depthwise_separable",
                                   "squeeze_excitation")  # fmt: skip
    heldout_patients: int = 4  # per held-out set (A and B)
    heldout_minutes: float = 2.0
    seed: int = 0


def measure_grid(cfg: GridConfig, say: Say | None = None) -> OutcomeGrid:
    """Train a base, then grow one seed per allowed (condition, site, blueprint) and measure it three ways
    (one torch thread: a tiny model gains nothing from two busy cores and loses much when they are shared)."""
    from kasmina_edge.host.tamiyo.policy import single_thread

    with single_thread():
        return _measure_grid(cfg, say)


def _measure_grid(cfg: GridConfig, say: Say | None) -> OutcomeGrid:
    from kasmina_edge.host.conditions_morph import seeded_model
    from kasmina_edge.host.data import CONDITIONS, apply_condition, beats, condition_split, patient_records
    from kasmina_edge.host.model import count_host_parameters, count_macs, example_inputs
    from kasmina_edge.host.morph import make_controller, measure_reference, observe, run_trial
    from kasmina_edge.host.morph_config import MORPH_PRESETS
    from kasmina_edge.host.train import TRAIN_PRESETS, evaluate, synthetic_split, train_base

    for name in cfg.conditions:
        if name not in CONDITIONS or CONDITIONS[name].kind == "patient":
            raise TuningError(f"grid conditions: {name!r} is not an artifact or lead condition")
    note = say or (lambda _m: None)
    tcfg = dataclasses.replace(TRAIN_PRESETS[cfg.train_preset], seed=cfg.seed)
    mcfg = dataclasses.replace(MORPH_PRESETS[cfg.morph_preset], target=cfg.target, seed=cfg.seed)
    split = synthetic_split(tcfg)
    note(f"training the base ({tcfg.model}, {len(split.train)} beats)")
    base = train_base(tcfg, split.train, split.val).model
    reference = measure_reference(base, split.train, split.val, split.val_records)
    ctrl = make_controller(base, reference, mcfg)
    blueprints = [b for b in cfg.blueprints if b in ctrl.space.blueprints]
    cols = [ctrl.space.blueprints.index(b) for b in blueprints]
    allowed = ctrl.masks().blueprint[:, cols]
    # Two held-out patient sets, far from the training seed and from each other.
    held = {k: patient_records(cfg.heldout_patients, cfg.heldout_minutes, cfg.seed + off)
            for k, off in (("A", 424_242), ("B", 737_373))}  # fmt: skip
    x, rr = example_inputs(base.config)
    grid = OutcomeGrid(list(ctrl.space.sites), blueprints, {"clean": reference.vector.tolist()},
                       allowed.tolist(), [], count_host_parameters(base), count_macs(base, x, rr),
                       meta={"config": dataclasses.asdict(cfg), "budget": dataclasses.asdict(ctrl.budget)})  # fmt: skip
    for k, name in enumerate(cfg.conditions):
        cond = CONDITIONS[name]
        cs = condition_split(cond, split.train_records, split.val_records, held["A"], seed=cfg.seed + k,
                             calibration_s=mcfg.calibration_s, replay=split.train if mcfg.replay else None)  # type: ignore[arg-type]  # fmt: skip
        # held-out set B under the condition, as condition_split builds its test set
        test_b = beats([apply_condition(r, cond, (cfg.seed + k) * 7919 + 5 * 1009 + i)
                        for i, r in enumerate(held["B"])], cond.lead)  # fmt: skip
        assert cs.test is not None
        grid.observations[name] = observe(base, cs.val, cs.records, cs.lead, reference.template, reference.sites,
                                          plateau=True).vector().tolist()  # fmt: skip
        base_b = evaluate(base, test_b).macro_f1
        for i, site in enumerate(grid.sites):
            for j, bp in enumerate(blueprints):
                if not allowed[i, j]:
                    continue
                t = run_trial(base, cs, split.val, site, bp, "fixed_ramp", 1.0, ctrl.budget, mcfg,
                              seed=cfg.seed * 1000 + k * 100 + i * 10 + j, clean_sites=reference.sites)  # fmt: skip
                tune = report = 0.0
                if t.fossilized and t.test_seed and t.test_base and t.state is not None:
                    tune = float(t.test_seed["macro_f1"]) - float(t.test_base["macro_f1"])
                    report = evaluate(seeded_model(base, t), test_b).macro_f1 - base_b
                grid.cells.append(Cell(name, site, bp, t.fossilized, t.gain if t.fossilized else 0.0, tune,
                                       report, t.param_count, t.macs, t.reason[:120]))  # fmt: skip
                note(f"{name} · {site} · {bp}: {t.final_stage}")
    return grid


# --------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class PolicyBudget:
    """How much each trial trains (small: a study runs many)."""

    imitation_steps: int = 150
    episodes: int = 30
    episode_size: int = 64
    situations: int = 400  # training situations; as many held-out ones per stream
    lr: float = 3e-3  # REINFORCE's: high enough that 30 episodes move the imitated policy


@dataclass(frozen=True)
class Scores:
    """A greedy policy on held-out situations: what it gains and adds, per decision."""

    heldout_gain_points: float  # mean macro-F1 points gained on held-out patients
    params_fraction: float  # mean parameters added, fraction of the base
    macs_fraction: float  # mean MACs added (the latency cost), fraction of the base
    act_rate: float

    def objectives(self) -> tuple[float, float, float]:
        return self.heldout_gain_points, self.params_fraction, self.macs_fraction


class TuningProblem:
    """The grid turned into situations, masks, a heuristic to imitate and outcome tables."""

    def __init__(self, grid: OutcomeGrid, budget: PolicyBudget, seed: int = 0) -> None:
        from kasmina_edge.host.tamiyo.heuristic import HeuristicTamiyo
        from kasmina_edge.host.tamiyo.policy import MaskFactory, jitter_situations

        self.grid, self.budget, self.seed = grid, budget, seed
        self.space = ActionSpace(tuple(grid.sites), tuple(grid.blueprints), GRAFTINGS)
        bp = np.asarray(grid.allowed, dtype=bool)
        location = np.asarray(bp.any(axis=1), dtype=bool)
        normal = Masks(np.array([True, bool(location.any())]), location, bp)
        alert = Masks(np.array([True, False]), location, bp)
        factory = MaskFactory(normal, alert)
        obs = {k: np.asarray(v, dtype=np.float32) for k, v in grid.observations.items()}
        params = {(c.site, c.blueprint): c.params for c in grid.cells}
        self.heuristic = HeuristicTamiyo(self.space, obs["clean"], params=params)
        # Separate random streams: training, the study's held-out situations, the report's.
        streams = np.random.SeedSequence(seed).spawn(4)
        rng = [np.random.default_rng(s) for s in streams]
        self.train = jitter_situations(obs, factory, budget.situations, rng[0])
        self.episodes = [jitter_situations(obs, factory, budget.episode_size, rng[1]) for _ in range(budget.episodes)]
        self.tune_situations = jitter_situations(obs, factory, budget.situations, rng[2])
        self.report_situations = jitter_situations(obs, factory, budget.situations, rng[3])
        self._imitated: dict[str, Any] | None = None

    def outcome_table(self, weights: RewardWeights) -> Any:
        """What REINFORCE's reward reads: the gates' (validation) gains only."""
        from kasmina_edge.host.tamiyo.policy import OutcomeTable

        outcomes = {(c.condition, c.site, c.blueprint): Outcome(c.train_gain, c.params, c.macs)
                    for c in self.grid.cells}  # fmt: skip
        costs = {(c.site, c.blueprint): (c.params, c.macs) for c in self.grid.cells}
        return OutcomeTable(outcomes, costs, self.grid.base_params, self.grid.base_macs, weights)

    def imitated(self) -> TamiyoPolicy:
        """The policy after behaviour cloning (weight-independent: done once, copied per trial)."""
        import torch

        from kasmina_edge.host.tamiyo.policy import TamiyoPolicy, imitate

        if self._imitated is None:
            torch.manual_seed(self.seed)
            policy = TamiyoPolicy(self.space)
            imitate(policy, self.heuristic, self.train, self.tune_situations[:100], steps=self.budget.imitation_steps,
                    seed=self.seed)  # fmt: skip
            self._imitated = copy.deepcopy(policy.state_dict())
        policy = TamiyoPolicy(self.space)
        policy.load_state_dict(self._imitated)
        return policy

    def train_policy(self, weights: RewardWeights) -> TamiyoPolicy:
        from kasmina_edge.host.tamiyo.policy import reinforce

        policy = self.imitated()
        reinforce(policy, self.outcome_table(weights), self.episodes, self.train[:100], self.heuristic,
                  lr=self.budget.lr, seed=self.seed)  # fmt: skip
        return policy

    def score(self, policy: TamiyoPolicy, which: str) -> Scores:
        """Greedy decisions on held-out situations (``"tune"`` or ``"report"``), held-out outcomes."""
        from kasmina_edge.host.tamiyo.policy import greedy

        situations = self.tune_situations if which == "tune" else self.report_situations
        return self.score_decisions(greedy(policy, situations), situations, which)

    def score_decisions(self, decisions: Sequence[Any], situations: Sequence[Situation], which: str) -> Scores:
        index = self.grid._index()
        gain = params = macs = acts = 0.0
        for s, d in zip(situations, decisions, strict=True):
            if not d.act or not s.masks.act[ACT]:
                continue
            acts += 1
            assert d.site is not None and d.blueprint is not None
            cell = index.get((s.condition, self.space.sites[d.site], self.space.blueprints[d.blueprint]))
            if cell is None or not cell.fossilized:
                continue  # no seed for a clean signal, and a culled seed leaves nothing behind
            gain += cell.tune_gain if which == "tune" else cell.report_gain
            params += cell.params / max(1, self.grid.base_params)
            macs += cell.macs / max(1, self.grid.base_macs)
        n = max(1, len(situations))
        return Scores(100.0 * gain / n, params / n, macs / n, acts / n)


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class TrialPoint:
    """One study trial: its weights and held-out scores."""

    number: int
    weights: dict[str, float]
    scores: Scores

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "weights": self.weights, **dataclasses.asdict(self.scores)}


@dataclass
class TuningResult:
    trials: list[TrialPoint]
    front: list[TrialPoint]  # Pareto-optimal on the study's held-out set (A)
    before: TrialPoint  # the default weights (the study's first trial)
    after: TrialPoint  # the chosen front point
    report_before: Scores  # the same two policies on the report's held-out set (B)
    report_after: Scores
    seed: int
    choice: str  # how ``after`` was chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "objectives": list(OBJECTIVES), "search_space": SEARCH_SPACE, "choice": self.choice,
            "before": self.before.to_dict(), "after": self.after.to_dict(),
            "report": {"before": dataclasses.asdict(self.report_before), "after": dataclasses.asdict(self.report_after)},
            "front": [p.to_dict() for p in self.front], "trials": [p.to_dict() for p in self.trials],
        }  # fmt: skip


def dominates(a: Scores, b: Scores) -> bool:
    """Pareto: a is no worse on every objective (gain up, costs down) and better on one."""
    ga, pa, ma = a.objectives()
    gb, pb, mb = b.objectives()
    no_worse = ga >= gb and pa <= pb and ma <= mb
    return no_worse and (ga > gb or pa < pb or ma < mb)


def pareto_front(points: Sequence[TrialPoint]) -> list[TrialPoint]:
    """The non-dominated points, one per distinct score (policies often tie exactly), by gain descending."""
    front: dict[tuple[float, float, float], TrialPoint] = {}
    for p in points:
        if not any(dominates(q.scores, p.scores) for q in points):
            front.setdefault(p.scores.objectives(), p)
    return sorted(front.values(), key=lambda p: (-p.scores.heldout_gain_points, p.scores.params_fraction, p.number))


@dataclass(frozen=True)
class CostBudget:
    """What the deployment affords per decision, on average (fractions of the base): ``after`` must fit it."""

    max_params_fraction: float = 0.02
    max_macs_fraction: float = 0.05

    def fits(self, s: Scores) -> bool:
        return s.params_fraction <= self.max_params_fraction + 1e-12 and s.macs_fraction <= self.max_macs_fraction + 1e-12

    def describe(self) -> str:
        return (f"the front point with the highest held-out gain whose mean cost per decision fits the budget "
                f"(params <= {100 * self.max_params_fraction:g}%, MACs <= {100 * self.max_macs_fraction:g}% of the "
                f"base); ties to the cheaper; none fits: the cheapest")  # fmt: skip


def choose_after(front: Sequence[TrialPoint], budget: CostBudget) -> TrialPoint:
    """See :meth:`CostBudget.describe`."""
    fitting = [p for p in front if budget.fits(p.scores)]
    if not fitting:
        return min(front, key=lambda p: (p.scores.params_fraction + p.scores.macs_fraction, p.number))
    return max(fitting, key=lambda p: (p.scores.heldout_gain_points, -p.scores.params_fraction,
                                       -p.scores.macs_fraction, -p.number))  # fmt: skip


def run_study(
    problem: TuningProblem, n_trials: int, *, seed: int = 0, budget: CostBudget | None = None, say: Say | None = None
) -> TuningResult:
    """NSGA-II over :data:`SEARCH_SPACE` (seeded, one trial at a time: reproducible), default weights first."""
    from kasmina_edge.contracts.optional import require

    if n_trials < 2:
        raise TuningError(f"--trials: at least 2 (the default weights and one more), got {n_trials}")
    optuna = require("optuna", "reward tuning (kasmina-edge tune reward)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, min(8, n_trials // 2)))
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    defaults = RewardWeights()
    study.enqueue_trial({k: getattr(defaults, k) for k in SEARCH_SPACE})
    points: list[TrialPoint] = []

    def objective(trial: Any) -> tuple[float, float, float]:
        w = {k: trial.suggest_float(k, lo, hi, log=True) for k, (lo, hi) in SEARCH_SPACE.items()}
        weights = dataclasses.replace(defaults, **w)
        scores = problem.score(problem.train_policy(weights), "tune")
        points.append(TrialPoint(trial.number, weights.to_dict(), scores))
        if say is not None:
            say(f"trial {trial.number}: gain {scores.heldout_gain_points:+.3f} pt, params "
                f"{100 * scores.params_fraction:.2f}%, MACs {100 * scores.macs_fraction:.2f}%")  # fmt: skip
        return scores.objectives()

    study.optimize(objective, n_trials=n_trials, n_jobs=1, show_progress_bar=False)
    before = points[0]
    front = pareto_front(points)
    budget = budget or CostBudget()
    after = choose_after(front, budget)

    def report(p: TrialPoint) -> Scores:
        return problem.score(problem.train_policy(RewardWeights(**p.weights)), "report")

    return TuningResult(points, front, before, after, report(before), report(after), seed, budget.describe())


# --------------------------------------------------------------------------- the plot


def plot_front(result: TuningResult, path: Path, title: str = "Tamiyo reward tuning") -> Path:
    """Held-out gain against parameters and against MACs: every trial, the front, before and after (PNG)."""
    from kasmina_edge.contracts.optional import require

    mpl = require("matplotlib", "plotting the Pareto front")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", "plotting the Pareto front")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, attr, label in ((axes[0], "params_fraction", "parameters added (% of base)"),
                            (axes[1], "macs_fraction", "MACs added (% of base)")):  # fmt: skip
        def xy(ps: Sequence[TrialPoint], a: str = attr) -> tuple[list[float], list[float]]:
            return [100 * getattr(p.scores, a) for p in ps], [p.scores.heldout_gain_points for p in ps]

        ax.scatter(*xy(result.trials), s=14, c="0.7", label="trials")
        fx, fy = xy(sorted(result.front, key=lambda p: getattr(p.scores, attr)))
        ax.plot(fx, fy, "o-", c="tab:blue", ms=5, label="Pareto front")
        ax.scatter(*xy([result.before]), s=90, marker="s", facecolors="none", edgecolors="tab:red", label="before (default)")
        ax.scatter(*xy([result.after]), s=120, marker="*", c="tab:green", label="after (chosen)")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out gain per decision (macro-F1 points)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path
