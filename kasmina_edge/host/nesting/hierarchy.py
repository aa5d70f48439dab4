"""The children of a nested seed as lifecycle participants of their own.

A root ``nested_seed`` lives in a KasminaLayer under its layer seed id (``site2/all``). Each of its
descendants gets a seed id of its own (``site2/all/c0``, ``site2/all/c0/c1``: the index path) and walks
the same 11 stages through the *same* :class:`LifecycleEngine`, behind the same gates. What this adds:

* order: a child never moves ahead of its parent (to a forward stage beyond its parent's, or at all while
  its parent is not live); :meth:`NestedHierarchy.advance` refuses it with IllegalTransitionError;
* cascade: a seed culled (or terminated) by anyone culls its live children, recursively, and hands its
  subtree's grant back to the arbiter;
* the stage is mirrored into the holder's ``child_alpha`` / ``child_live``: GERMINATED and TRAINING
  children are off the live path (trained incubated, see :meth:`incubate`), BLENDING ramps alpha,
  SHADOWING and later run at alpha 1, every other stage is alpha 0 and skipped: the parent keeps working;
* G0 is where arbitration is enforced: the gate is evaluated with the arbiter's allowance as its budget,
  so a refused request fails G0 with the numbers and leaves the child DORMANT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from kasmina_edge.contracts.errors import IllegalTransitionError, KasminaError
from kasmina_edge.contracts.lifecycle import GateResult, Stage, TransitionEvent
from kasmina_edge.host.blueprints.nested import NestedSeed
from kasmina_edge.host.kasmina.gates import ResetInputs, SanityInputs
from kasmina_edge.host.kasmina.layer import KasminaLayer
from kasmina_edge.host.kasmina.lifecycle_engine import NEXT_STAGE, LifecycleEngine
from kasmina_edge.host.nesting.arbitration import Arbiter, Request, Resources, Verdict, seed_cost

LIVE = frozenset(
    {Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED}
)
ON_PATH = frozenset({Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED})
Emit = Callable[[dict[str, Any]], None]


class NestingError(KasminaError):
    """A nested-seed operation on something that is not a nested seed, or an unknown child."""


@dataclass
class ChildSeed:
    """One descendant of a root nested seed."""

    seed_id: str
    parent_id: str
    level: int  # the root is level 1
    holder: NestedSeed  # the module whose child_alpha[index] blends this child
    index: int
    node: NestedSeed
    cost: Resources
    reason: str = ""  # G0's refusal (with the arbiter's) or the cull reason
    alpha_history: list[float] = field(default_factory=list)
    baseline: float | None = None  # the metric before it germinated (G4's reference)
    gain: float | None = None  # measured at probation: metric - baseline
    estimate: float | None = None  # the controller's estimate when it asked for a grant


def g0_inputs(blueprint: str, cost: Resources, verdict: Verdict, finite: bool = True) -> SanityInputs:
    """G0's measurements with the arbiter's allowance as the budget: a refused request fails G0 with its
    numbers. A refusal that parameters and MACs alone would not explain (memory) is named as what the
    target lacks."""
    allow = cost if verdict.granted else verdict.allowance
    unexplained = not verdict.granted and cost.params <= allow.params and cost.macs <= allow.macs
    return SanityInputs(
        blueprint=blueprint,
        registered=True,
        params_finite=finite,
        param_count=cost.params,
        macs=cost.macs,
        max_params=allow.params,
        max_macs=allow.macs,
        target=f"arbiter [{verdict.reason}]" if unexplained else None,
        target_ok=not unexplained,
    )


def release_on_cull(engine: LifecycleEngine, arbiter: Arbiter) -> None:
    """Any seed culled or terminated hands its grant (and its subtree's) back to the arbiter."""

    def watch(event: dict[str, Any]) -> None:
        if event.get("event") == "transition" and event.get("to") in ("CULLED", "TERMINATED"):
            arbiter.release(str(event["seed_id"]))

    engine.add_sink(watch)


class NestedHierarchy:
    """The descendants of one root nested seed, registered in the layer's engine."""

    def __init__(self, layer: KasminaLayer, root_id: str, arbiter: Arbiter, *, emit: Emit | None = None) -> None:
        root = layer.seed_module(root_id)
        if not isinstance(root, NestedSeed):
            raise NestingError(f"seed {root_id}: a {type(root).__name__}, not a nested_seed")
        self.layer, self.engine, self.root_id, self.root, self.arbiter = layer, layer.engine, root_id, root, arbiter
        self._emit = emit or (lambda _e: None)
        length = layer.length or 1
        self.children: dict[str, ChildSeed] = {}
        for path, holder, node in root.descendants():
            sid = root_id + "".join(f"/c{i}" for i in path)
            parent = root_id + "".join(f"/c{i}" for i in path[:-1])
            params = sum(p.numel() for p in node.own_parameters())
            channels = int(node.own.down.weight.shape[1])
            self.children[sid] = ChildSeed(sid, parent, len(path) + 1, holder, path[-1], node,
                                           seed_cost(params, params * length, channels, length))  # fmt: skip
            holder.set_child(path[-1], 0.0, False)  # dormant children are off the path
            self.engine.register(sid, on_move=self._on_move, on_reset=self._resetter(sid))
        self.engine.add_sink(self._watch)

    # -- reading ----------------------------------------------------------------------------------
    def child(self, seed_id: str) -> ChildSeed:
        try:
            return self.children[seed_id]
        except KeyError:
            raise NestingError(f"{seed_id!r} is not a child of {self.root_id}") from None

    def stage(self, seed_id: str) -> Stage:
        return self.engine.stage(seed_id)

    def kids(self, seed_id: str) -> list[ChildSeed]:
        """Direct children of ``seed_id`` (the root or a child), in index order."""
        return [c for c in self.children.values() if c.parent_id == seed_id]

    def levels(self) -> int:
        return 1 + max((c.level - 1 for c in self.children.values()), default=0)

    def live_levels(self) -> int:
        """How deep the live part goes (1: only the root)."""
        return max((c.level for c in self.children.values() if self.stage(c.seed_id) in LIVE), default=1)

    def tree(self) -> list[dict[str, Any]]:
        return [
            {"seed_id": c.seed_id, "level": c.level, "stage": self.stage(c.seed_id).name,
             "granted": self.arbiter.granted(c.seed_id), "cost": c.cost.to_json(), "reason": c.reason,
             "estimate": c.estimate, "gain": c.gain}  # fmt: skip
            for c in self.children.values()
        ]

    # -- the order rule -------------------------------------------------------------------------
    def check_order(self, seed_id: str, dst: Stage) -> None:
        """A child may reach a forward stage only if its parent is live and at least as far."""
        child = self.child(seed_id)
        if dst not in LIVE:
            return
        p = self.stage(child.parent_id)
        if p not in LIVE or p < dst:
            raise IllegalTransitionError(
                f"seed {seed_id}: cannot move to {dst.name} while its parent {child.parent_id} is {p.name} "
                "(a child is never ahead of its parent)"
            )

    # -- germination through the arbiter --------------------------------------------------------
    def germinate(self, estimates: dict[str, float]) -> list[Verdict]:
        """Ask for grants for DORMANT children (seed id -> estimated gain) as one arbitration round, then
        G0 for each with the arbiter's allowance as its budget. Verdicts in the rule's order."""
        requests = []
        for sid, gain in estimates.items():
            child = self.child(sid)
            if self.stage(sid) is not Stage.DORMANT:
                raise IllegalTransitionError(f"seed {sid}: germinates from DORMANT, not {self.stage(sid).name}")
            self.check_order(sid, Stage.GERMINATED)
            child.estimate = gain
            requests.append(Request(sid, child.cost, child.parent_id, gain))
        verdicts = self.arbiter.arbitrate(requests)
        for v in verdicts:
            self._apply(v)
        return verdicts

    def _apply(self, verdict: Verdict) -> GateResult:
        child = self.children[verdict.seed_id]
        result = self.engine.evaluate(child.seed_id, Stage.GERMINATED, self._sanity(child, verdict))
        assert result is not None
        self._emit({"event": "arbitration", "seed_id": child.seed_id, "granted": verdict.granted,
                    "reason": verdict.reason, "constraint": verdict.constraint, "rank": verdict.rank,
                    "g0_passed": result.passed})  # fmt: skip
        if result.passed:
            child.reason = ""
            self.engine.move(child.seed_id, Stage.GERMINATED, reason="germinate nested child", gate=result)
        else:
            if verdict.granted:  # G0 refused what the arbiter granted (e.g. non-finite weights)
                self.arbiter.release(child.seed_id)
            arb = "" if verdict.granted else f" [arbiter: {verdict.reason}]"
            child.reason = f"gate_G0_failed: {result.reason}{arb}"
        return result

    def _sanity(self, child: ChildSeed, verdict: Verdict) -> SanityInputs:
        finite = all(bool(torch.isfinite(p).all()) for p in child.node.own_parameters())
        return g0_inputs("nested_seed", child.cost, verdict, finite)

    # -- moves --------------------------------------------------------------------------------------
    def advance(self, seed_id: str, measurements: object | None = None) -> TransitionEvent:
        """One forward step behind its gate (a failed gate culls it and its subtree)."""
        dst = NEXT_STAGE.get(self.stage(seed_id))
        if dst is None:
            raise IllegalTransitionError(f"seed {seed_id}: no forward move from {self.stage(seed_id).name}")
        self.check_order(seed_id, dst)
        event = self.engine.try_advance(seed_id, measurements)
        if event.dst is Stage.EMBARGOED:
            self.child(seed_id).reason = self.engine.lifecycle(seed_id).cull_reason or ""
        return event

    def cull(self, seed_id: str, reason: str) -> TransitionEvent:
        self.child(seed_id).reason = reason
        return self.engine.cull(seed_id, reason)

    def set_alpha(self, seed_id: str, alpha: float) -> None:
        child = self.child(seed_id)
        if self.stage(seed_id) is not Stage.BLENDING:
            raise IllegalTransitionError(f"seed {seed_id}: alpha is set only while BLENDING")
        if not 0.0 <= alpha <= 1.0:
            raise NestingError(f"seed {seed_id}: alpha {alpha} outside [0, 1]")
        child.holder.set_child(child.index, alpha, True)
        child.alpha_history.append(float(alpha))

    def muted(self, seed_id: str) -> AbstractContextManager[None]:
        """The child off the path for the duration (to measure what it adds); restored afterwards."""
        return self._child_set(seed_id, 0.0, False)

    def incubate(self, seed_id: str) -> AbstractContextManager[None]:
        """The child at alpha 1 for the duration (its own training forward); restored afterwards."""
        return self._child_set(seed_id, 1.0, True)

    @contextmanager
    def _child_set(self, seed_id: str, alpha: float, live: bool) -> Iterator[None]:
        child = self.child(seed_id)
        before = (float(child.holder.child_alpha[child.index]), child.holder.child_live[child.index])
        child.holder.set_child(child.index, alpha, live)
        try:
            yield
        finally:
            child.holder.set_child(child.index, *before)

    # -- engine callbacks -------------------------------------------------------------------------
    def _on_move(self, event: TransitionEvent) -> None:
        child = self.children[event.seed_id]
        if event.dst in ON_PATH:
            child.holder.set_child(child.index, 1.0, True)
        elif event.dst is Stage.BLENDING:
            child.holder.set_child(child.index, 0.0, True)
            child.alpha_history = [0.0]
        else:
            child.holder.set_child(child.index, 0.0, False)

    def _watch(self, event: dict[str, Any]) -> None:
        if event.get("event") != "transition" or event.get("to") not in ("CULLED", "TERMINATED"):
            return
        sid = str(event["seed_id"])
        if sid != self.root_id and sid not in self.children:
            return
        for kid in self.kids(sid):
            if self.stage(kid.seed_id) in LIVE:
                self.cull(kid.seed_id, f"parent_culled: {sid}")
        self.arbiter.release(sid)

    def _resetter(self, seed_id: str) -> Callable[[], ResetInputs]:
        return lambda: self._reset(seed_id)

    def _reset(self, seed_id: str) -> ResetInputs:
        """RESETTING: the child's weights back to function-preserving, its history cleared."""
        child = self.children[seed_id]
        child.node.reset_own()
        child.alpha_history, child.gain, child.baseline = [], None, None
        return ResetInputs(
            slot_empty=not self.arbiter.granted(seed_id),
            params_remaining=self.arbiter.grant_of(seed_id).params,
            alpha=float(child.holder.child_alpha[child.index]),
            counters_clear=not child.alpha_history,
            caches_clear=not child.holder.child_live[child.index],
        )


def dormant_children(h: NestedHierarchy, parents: Sequence[str]) -> list[str]:
    """DORMANT children of the given parents (ids), in id order."""
    return sorted(c.seed_id for p in parents for c in h.kids(p) if h.stage(c.seed_id) is Stage.DORMANT)
