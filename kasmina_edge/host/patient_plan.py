"""Tamiyo's plan for one patient: which sites get a seed, which blueprint, sized to the patient's budget.

The observation is taken with the calibration flag set (annotated beats of the wearer at hand): the
symptom is a patient shift, sites are ranked by their drift from the population and the shift's
prior (late sites first), the blueprint is the first on the shift's list that the target runs
within the per-seed budget (≤ ``max_seed_fraction`` of the base's parameters, all of the patient's
seeds together). The budget then buys capacity: the blueprint's width (rank, expansion, hidden
units) is the largest that fits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kasmina_edge.ecg.dataset import BeatDataset
from kasmina_edge.host.model import BeatClassifier

if TYPE_CHECKING:
    from kasmina_edge.host.patient import PatientConfig, PatientWindow

WIDTH_PARAMS = ("rank", "expansion", "hidden")  # the blueprint parameter that sets its capacity


@dataclass(frozen=True)
class SeedPlan:
    site: str
    blueprint: str
    params: dict[str, Any]
    param_count: int
    macs: int
    grafting: str
    intensity: float


def _width_param(defaults: dict[str, Any]) -> str | None:
    return next((k for k in WIDTH_PARAMS if isinstance(defaults.get(k), int)), None)


def size_blueprint(blueprint: str, channels: int, length: int, budget: int, max_macs: int) -> dict[str, Any]:
    """The blueprint's defaults with its width parameter raised to the largest value within the budget."""
    from kasmina_edge.host.blueprints import get_blueprint

    spec = get_blueprint(blueprint)
    params = dict(spec.defaults)
    key = _width_param(params)
    if key is None:
        return params
    best = None
    for width in range(1, 4 * channels + 1):
        trial = {**params, key: width}
        if spec.param_count(channels, **trial) > budget or spec.macs(channels, length, **trial) > max_macs:
            break
        best = width
    if best is not None:
        params[key] = best
    return params


def plan_patient_seeds(
    base: BeatClassifier,
    window: PatientWindow,
    common: BeatDataset | None,
    cfg: PatientConfig,
    target: str | None,
) -> tuple[list[SeedPlan], dict[str, Any]]:
    """Tamiyo's decision for this patient: sites, blueprints (sized to the budget), grafting, intensity."""
    from kasmina_edge.host.blueprints import get_blueprint
    from kasmina_edge.host.morph_config import MorphConfig
    from kasmina_edge.host.morph_tamiyo import make_controller, plan_trials
    from kasmina_edge.host.site_observation import Reference, observe, site_activations
    from kasmina_edge.host.tamiyo.features import reference_template, site_stats

    cal = window.calibration
    assert cal.beats is not None
    template = reference_template(cal.lead(0), cal.fs, cal.beats.samples)
    population = common if common is not None and len(common) else window.beats
    ref_sites = {k: site_stats(v) for k, v in site_activations(base, population).items()}
    ref_vec = observe(base, population, [cal], 0, template, ref_sites, plateau=True).vector()
    ctrl = make_controller(
        base, Reference(template, ref_sites, ref_vec),
        MorphConfig(target=target, max_seed_fraction=cfg.max_seed_fraction, max_mac_fraction=cfg.max_mac_fraction),
    )  # fmt: skip
    obs = observe(base, window.beats, [cal], 0, template, ref_sites, plateau=True, calibration=True).vector()
    first, decisions = plan_trials(ctrl, obs, cfg.sites)
    desc: dict[str, Any] = {
        "decision": first.describe(ctrl.space),
        "observation": [round(float(v), 4) for v in obs],
        "budget": {"target": target, "max_params": ctrl.budget.max_params, "max_macs": ctrl.budget.max_macs},
    }
    if not first.act:
        return [], desc
    shapes = base.config.site_shapes()
    share = ctrl.budget.max_params // max(1, len(decisions))  # the seeds share the patient's budget
    plans: list[SeedPlan] = []
    for d in decisions:
        assert d.site is not None and d.blueprint is not None and d.grafting is not None
        site, bp = ctrl.space.sites[d.site], ctrl.space.blueprints[d.blueprint]
        channels, length = shapes[site]
        params = size_blueprint(bp, channels, length, share, ctrl.budget.max_macs)
        spec = get_blueprint(bp)
        plans.append(SeedPlan(site, bp, params, spec.param_count(channels, **params), spec.macs(channels, length, **params),
                              ctrl.space.graftings[d.grafting], float(ctrl.space.intensities[d.intensity])))  # fmt: skip
    desc["seeds"] = [asdict(p) for p in plans]
    return plans, desc
