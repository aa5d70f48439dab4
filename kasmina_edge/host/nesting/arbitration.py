"""Resource arbitration: one budget (parameters, MACs, memory bytes) shared by every seed at every level.

Every seed, a root at a site or a child inside a nested seed, asks the :class:`Arbiter` for a grant before
its G0. A grant is checked against, in order: the depth limit, its parent holding a grant, the pool's
remainder, and the *share* of every ancestor (a subtree, the node itself included, may use at most its
share: a root's share is the pool, a child's is ``child_share`` times its parent's share).

Requests that arrive together are judged by one stated rule (:data:`RULE`): highest measured gain per
parameter first, ties by seed id; each is granted only if it still fits after the ones ranked above it.
The outcome does not depend on the order of the requests. A released grant (a cull) frees its whole
subtree, so a later request can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kasmina_edge.contracts.errors import KasminaError

RULE = (
    "gain per parameter, highest first; ties by seed id; each grant must fit the depth limit, "
    "the pool's remainder and every ancestor's share after the grants ranked above it"
)
FIELDS = ("params", "macs", "memory")
FP32_BYTES = 4


class ArbitrationError(KasminaError):
    """A request the arbiter cannot judge (a budget or share that makes no sense)."""


@dataclass(frozen=True)
class Resources:
    """Parameters, MACs per input, and memory in bytes."""

    params: int = 0
    macs: int = 0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.params + other.params, self.macs + other.macs, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.params - other.params, self.macs - other.macs, self.memory - other.memory)

    def scaled(self, factor: float) -> Resources:
        return Resources(int(self.params * factor), int(self.macs * factor), int(self.memory * factor))

    def exceeds(self, limit: Resources) -> list[str]:
        """The fields where ``self`` is over ``limit``, as 'params 96 > 64' lines."""
        return [f"{f} {getattr(self, f)} > {getattr(limit, f)}" for f in FIELDS if getattr(self, f) > getattr(limit, f)]

    @staticmethod
    def least(items: Iterable[Resources]) -> Resources:
        xs = list(items)
        return Resources(*(min(getattr(x, f) for x in xs) for f in FIELDS))

    def to_json(self) -> dict[str, int]:
        return {"params": self.params, "macs": self.macs, "memory": self.memory}


def seed_cost(params: int, macs: int, channels: int, length: int) -> Resources:
    """A seed's cost: memory is its fp32 weights plus the one (C, L) activation buffer it adds per input
    (a nested child's output is held while its parent goes on)."""
    return Resources(params, macs, FP32_BYTES * (params + channels * length))


@dataclass(frozen=True)
class Request:
    """A seed asking for its own cost; ``parent`` None for a root (a seed at a site)."""

    seed_id: str
    cost: Resources
    parent: str | None = None
    gain: float = 0.0  # measured or estimated gain, higher is better

    @property
    def gain_per_param(self) -> float:
        return self.gain / max(1, self.cost.params)

    def priority(self) -> tuple[float, str]:
        return (-self.gain_per_param, self.seed_id)


@dataclass(frozen=True)
class Verdict:
    seed_id: str
    granted: bool
    reason: str
    constraint: str  # "" granted; else depth | parent | pool | share:<ancestor> | duplicate
    allowance: Resources  # what this request could have had when judged (pool and shares)
    rank: int  # its place in the round's priority order (0 first)
    depth: int


@dataclass
class _Grant:
    cost: Resources
    parent: str | None
    depth: int
    share: Resources
    children: list[str] = field(default_factory=list)


class Arbiter:
    """The one pool; grants, shares and releases (see the module docstring for the rule)."""

    def __init__(self, budget: Resources, *, max_depth: int = 3, child_share: float = 0.5) -> None:
        if min(budget.params, budget.macs, budget.memory) < 0:
            raise ArbitrationError(f"arbiter: budget {budget.to_json()} has a negative field")
        if max_depth < 1:
            raise ArbitrationError(f"arbiter: max_depth must be >= 1, got {max_depth}")
        if not 0.0 < child_share <= 1.0:
            raise ArbitrationError(f"arbiter: child_share must be in (0, 1], got {child_share}")
        self.budget, self.max_depth, self.child_share = budget, max_depth, child_share
        self._grants: dict[str, _Grant] = {}
        self.log: list[dict[str, object]] = []  # every verdict and release, in order

    # -- state ----------------------------------------------------------------------------------
    def granted(self, seed_id: str) -> bool:
        return seed_id in self._grants

    def grant_of(self, seed_id: str) -> Resources:
        g = self._grants.get(seed_id)
        return g.cost if g is not None else Resources()

    def used(self) -> Resources:
        return sum((g.cost for g in self._grants.values()), Resources())

    def remaining(self) -> Resources:
        return self.budget - self.used()

    def subtree(self, seed_id: str) -> list[str]:
        g = self._grants.get(seed_id)
        if g is None:
            return []
        out = [seed_id]
        for child in g.children:
            out += self.subtree(child)
        return out

    def subtree_used(self, seed_id: str) -> Resources:
        return sum((self._grants[s].cost for s in self.subtree(seed_id)), Resources())

    def ancestors(self, seed_id: str) -> list[str]:
        """Granted ancestors of a granted seed, nearest first."""
        out, g = [], self._grants.get(seed_id)
        while g is not None and g.parent is not None:
            out.append(g.parent)
            g = self._grants.get(g.parent)
        return out

    def share_of(self, seed_id: str) -> Resources:
        return self._grants[seed_id].share

    # -- judging --------------------------------------------------------------------------------
    def _depth(self, req: Request) -> int:
        if req.parent is None:
            return 1
        g = self._grants.get(req.parent)
        return g.depth + 1 if g is not None else 0  # 0: unknown (the parent holds no grant)

    def allowance(self, req: Request) -> Resources:
        """What ``req`` may take now: the least of the pool's remainder, its own share, and each
        ancestor's unused share."""
        limits = [self.remaining()]
        if req.parent is not None and req.parent in self._grants:
            limits.append(self._grants[req.parent].share.scaled(self.child_share))
            chain = [req.parent, *self.ancestors(req.parent)]
            limits += [self._grants[a].share - self.subtree_used(a) for a in chain]
        return Resources.least(limits)

    def _judge(self, req: Request, rank: int) -> Verdict:
        depth = self._depth(req)
        allow = self.allowance(req)

        def refuse(constraint: str, why: str, allowance: Resources = allow) -> Verdict:
            return Verdict(req.seed_id, False, why, constraint, allowance, rank, depth)

        if req.seed_id in self._grants:
            return refuse("duplicate", f"{req.seed_id} already holds a grant")
        if req.parent is not None and req.parent not in self._grants:
            return refuse("parent", f"parent {req.parent} holds no grant", Resources())
        if depth > self.max_depth:
            return refuse("depth", f"depth {depth} > limit {self.max_depth}", Resources())
        over = req.cost.exceeds(self.remaining())
        if over:
            return refuse("pool", f"pool: {'; '.join(over)} left")
        if req.parent is not None:
            own_share = self._grants[req.parent].share.scaled(self.child_share)
            for a in [req.parent, *self.ancestors(req.parent)]:
                free = self._grants[a].share - self.subtree_used(a)
                over = req.cost.exceeds(free)
                if over:
                    return refuse(f"share:{a}", f"share of {a}: {'; '.join(over)} left in its share")
            over = req.cost.exceeds(own_share)
            if over:
                return refuse(f"share:{req.seed_id}", f"own share: {'; '.join(over)} ({self.child_share:g} of parent's)")
        return Verdict(req.seed_id, True, f"granted {req.cost.to_json()}", "", allow, rank, depth)

    def _grant(self, req: Request, depth: int) -> None:
        parent = self._grants.get(req.parent) if req.parent is not None else None
        share = self.budget if parent is None else parent.share.scaled(self.child_share)
        self._grants[req.seed_id] = _Grant(req.cost, req.parent, depth, share)
        if parent is not None:
            parent.children.append(req.seed_id)

    def arbitrate(self, requests: Sequence[Request]) -> list[Verdict]:
        """Judge a round of requests by :data:`RULE`; verdicts in priority order. A refused request
        that would have fitted before this round's earlier grants names the grants that outranked it."""
        ids = [r.seed_id for r in requests]
        if len(set(ids)) != len(ids):
            raise ArbitrationError(f"arbiter: a round names a seed twice: {sorted(ids)}")
        before = {r.seed_id: self._judge(r, -1).granted for r in requests}
        winners: list[Request] = []
        verdicts: list[Verdict] = []
        for rank, req in enumerate(sorted(requests, key=Request.priority)):
            v = self._judge(req, rank)
            if v.granted:
                self._grant(req, v.depth)
                winners.append(req)
            elif before[req.seed_id] and winners:
                above = ", ".join(f"{w.seed_id} ({w.gain_per_param:.3g}/param)" for w in winners)
                v = Verdict(v.seed_id, False, f"{v.reason}; outranked by {above}", v.constraint, v.allowance,
                            rank, v.depth)  # fmt: skip
            verdicts.append(v)
            self.log.append({"event": "arbitration", "seed_id": v.seed_id, "granted": v.granted,
                             "reason": v.reason, "constraint": v.constraint, "rank": rank,
                             "gain_per_param": req.gain_per_param, "cost": req.cost.to_json(),
                             "remaining": self.remaining().to_json()})  # fmt: skip
        return verdicts

    def request(self, req: Request) -> Verdict:
        return self.arbitrate([req])[0]

    def release(self, seed_id: str) -> Resources:
        """Hand back a seed's grant and its whole subtree's; returns what was freed."""
        ids = self.subtree(seed_id)
        freed = sum((self._grants[s].cost for s in ids), Resources())
        g = self._grants.get(seed_id)
        if g is not None and g.parent is not None and g.parent in self._grants:
            self._grants[g.parent].children.remove(seed_id)
        for s in ids:
            del self._grants[s]
        if ids:
            self.log.append({"event": "release", "seed_id": seed_id, "subtree": ids, "freed": freed.to_json(),
                             "remaining": self.remaining().to_json()})  # fmt: skip
        return freed
