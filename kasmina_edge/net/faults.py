"""What the medium does to frames besides latency: loss models and scripted or stochastic faults.

Loss is Bernoulli or Gilbert–Elliott bursts (:class:`LossModel`); faults are outages, latency spikes, gateway
restarts and loss bursts placed in simulated time (:class:`FaultInjector`), queried by time so tests can place
them exactly. Random draws use :class:`random.Random` (scalar draws are ~20x cheaper than numpy's per call, and
the simulator draws one number at a time).
"""

from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from kasmina_edge.core.airtime import LinkError
from kasmina_edge.net.radio_budget import DAY_S


class LossModel(Protocol):
    def lost(self, rng: random.Random) -> bool: ...

    @property
    def mean_loss(self) -> float: ...


@dataclass
class Bernoulli:
    """Each frame lost independently with probability ``p``."""

    p: float

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise LinkError(f"Bernoulli loss p={self.p} must be in [0, 1]")

    def lost(self, rng: random.Random) -> bool:
        return rng.random() < self.p

    @property
    def mean_loss(self) -> float:
        return self.p


@dataclass
class GilbertElliott:
    """Two-state burst loss: a good and a bad state with their own loss, switching per frame.

    ``p_gb`` is the chance to go bad after a frame, ``p_bg`` to recover; bursts last ``1/p_bg`` frames on average.
    """

    p_gb: float
    p_bg: float
    loss_good: float = 0.0
    loss_bad: float = 1.0
    bad: bool = False

    def __post_init__(self) -> None:
        for name in ("p_gb", "p_bg", "loss_good", "loss_bad"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise LinkError(f"Gilbert-Elliott {name}={value} must be in [0, 1]")
        if self.p_gb + self.p_bg == 0:
            raise LinkError("Gilbert-Elliott p_gb and p_bg cannot both be 0")

    @classmethod
    def bursty(cls, mean_loss: float, mean_burst_frames: float) -> GilbertElliott:
        """A chain losing ``mean_loss`` of frames in bursts of ``mean_burst_frames`` on average."""
        if not 0 < mean_loss < 1 or mean_burst_frames < 1:
            raise LinkError(
                f"burst loss {mean_loss} must be in (0, 1) and burst length {mean_burst_frames} >= 1 frame"
            )
        p_bg = 1.0 / mean_burst_frames
        return cls(p_gb=mean_loss * p_bg / (1.0 - mean_loss), p_bg=p_bg)

    def lost(self, rng: random.Random) -> bool:
        self.bad = rng.random() < (1.0 - self.p_bg if self.bad else self.p_gb)
        return rng.random() < (self.loss_bad if self.bad else self.loss_good)

    @property
    def mean_loss(self) -> float:
        pi_bad = self.p_gb / (self.p_gb + self.p_bg)
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good


# --------------------------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Outage:
    """The link carries nothing, either way, from ``start_s`` for ``duration_s``."""

    start_s: float
    duration_s: float


@dataclass(frozen=True)
class LatencySpike:
    """Every frame from ``start_s`` for ``duration_s`` arrives ``extra_s`` later than usual."""

    start_s: float
    duration_s: float
    extra_s: float


@dataclass(frozen=True)
class GatewayRestart:
    """The gateway (or broker) restarts at ``at_s``: down for ``downtime_s``, queued downlinks lost."""

    at_s: float
    downtime_s: float = 30.0


@dataclass(frozen=True)
class LossBurst:
    """Frames from ``start_s`` for ``duration_s`` are lost with probability ``loss`` (on top of the base model)."""

    start_s: float
    duration_s: float
    loss: float


FaultEvent: TypeAlias = Outage | LatencySpike | GatewayRestart | LossBurst


def _intervals(pairs: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Merge [start, end) intervals; returns sorted starts and their ends for bisect lookups."""
    merged: list[list[float]] = []
    for start, end in sorted(pairs):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [m[0] for m in merged], [m[1] for m in merged]


def _inside(starts: list[float], ends: list[float], t: float) -> int:
    """Index of the interval holding ``t``, or -1."""
    i = bisect.bisect_right(starts, t) - 1
    return i if i >= 0 and t < ends[i] else -1


class FaultInjector:
    """Scripted fault events plus a stochastic loss model; queried by time, so tests can place faults exactly.

    Build it from events (``FaultInjector([Outage(600, 600)], loss=Bernoulli(0.05))``), from a spec string
    (:meth:`parse`, for the CLI), or draw events from rates (:meth:`stochastic`).
    """

    def __init__(
        self, events: tuple[FaultEvent, ...] | list[FaultEvent] = (), loss: LossModel | None = None
    ) -> None:
        self.events: list[FaultEvent] = list(events)
        self.loss = loss
        self._index()

    def add(self, event: FaultEvent) -> None:
        self.events.append(event)
        self._index()

    def _index(self) -> None:
        down = [(e.start_s, e.start_s + e.duration_s) for e in self.events if isinstance(e, Outage)]
        down += [(e.at_s, e.at_s + e.downtime_s) for e in self.events if isinstance(e, GatewayRestart)]
        self._down = _intervals(down)
        self._spikes = sorted(
            (e for e in self.events if isinstance(e, LatencySpike)), key=lambda e: e.start_s
        )
        self._bursts = sorted((e for e in self.events if isinstance(e, LossBurst)), key=lambda e: e.start_s)
        self._restarts = sorted(e.at_s for e in self.events if isinstance(e, GatewayRestart))

    def down(self, t: float) -> bool:
        return _inside(*self._down, t) >= 0

    def up_again(self, t: float) -> float:
        """When the link is next up at or after ``t``."""
        i = _inside(*self._down, t)
        return t if i < 0 else self._down[1][i]

    def extra_latency_s(self, t: float) -> float:
        return sum(s.extra_s for s in self._spikes if s.start_s <= t < s.start_s + s.duration_s)

    def burst_loss(self, t: float) -> float:
        """Extra loss probability at ``t`` from scripted loss bursts."""
        keep = 1.0
        for b in self._bursts:
            if b.start_s <= t < b.start_s + b.duration_s:
                keep *= 1.0 - b.loss
        return 1.0 - keep

    def restarts_between(self, t0: float, t1: float) -> int:
        """Gateway restarts in (t0, t1]."""
        return bisect.bisect_right(self._restarts, t1) - bisect.bisect_right(self._restarts, t0)

    def lost(self, t: float, rng: random.Random) -> bool:
        if self.loss is not None and self.loss.lost(rng):
            return True
        extra = self.burst_loss(t) if self._bursts else 0.0
        return extra > 0 and rng.random() < extra

    @classmethod
    def stochastic(
        cls,
        rng: random.Random,
        horizon_s: float,
        *,
        outages_per_day: float = 0.0,
        outage_mean_s: float = 600.0,
        spikes_per_day: float = 0.0,
        spike_mean_s: float = 120.0,
        spike_extra_s: float = 2.0,
        restarts_per_day: float = 0.0,
        restart_downtime_s: float = 30.0,
        loss: LossModel | None = None,
    ) -> FaultInjector:
        """Fault events drawn as Poisson arrivals over ``[0, horizon_s)`` with exponential durations."""
        events: list[FaultEvent] = []

        def arrivals(per_day: float) -> list[float]:
            times, t = [], 0.0
            while per_day > 0:
                t += rng.expovariate(per_day / DAY_S)
                if t >= horizon_s:
                    break
                times.append(t)
            return times

        events += [Outage(t, rng.expovariate(1.0 / outage_mean_s)) for t in arrivals(outages_per_day)]
        events += [
            LatencySpike(t, rng.expovariate(1.0 / spike_mean_s), spike_extra_s)
            for t in arrivals(spikes_per_day)
        ]
        events += [GatewayRestart(t, restart_downtime_s) for t in arrivals(restarts_per_day)]
        return cls(events, loss=loss)

    @classmethod
    def parse(cls, spec: str) -> FaultInjector:
        """Faults from a comma-separated spec (times in seconds of simulated time)::

        outage@600+600        outage from t=600 s for 600 s
        spike@60+30:2.5       latency +2.5 s from t=60 s for 30 s
        restart@1800+20       gateway/broker restart at t=1800 s, down 20 s
        burst@100+300:0.2     20 % extra loss from t=100 s for 300 s
        loss:0.05             Bernoulli loss 5 %
        ge:0.2:4              Gilbert-Elliott: 20 % loss in bursts of 4 frames on average
        """
        events: list[FaultEvent] = []
        loss: LossModel | None = None
        number = r"(\d+(?:\.\d+)?)"
        patterns = {
            "outage": re.compile(rf"outage@{number}\+{number}"),
            "spike": re.compile(rf"spike@{number}\+{number}:{number}"),
            "restart": re.compile(rf"restart@{number}(?:\+{number})?"),
            "burst": re.compile(rf"burst@{number}\+{number}:{number}"),
            "loss": re.compile(rf"loss:{number}"),
            "ge": re.compile(rf"ge:{number}:{number}"),
        }
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            kind = re.split(r"[@:]", part, maxsplit=1)[0]
            pattern = patterns.get(kind)
            match = pattern.fullmatch(part) if pattern else None
            if match is None:
                raise LinkError(
                    f"fault spec {part!r}: expected outage@T+D, spike@T+D:EXTRA, restart@T[+D], "
                    "burst@T+D:LOSS, loss:P or ge:LOSS:BURST"
                )
            v = [float(g) if g is not None else None for g in match.groups()]
            if kind == "outage":
                events.append(Outage(v[0], v[1]))  # type: ignore[arg-type]
            elif kind == "spike":
                events.append(LatencySpike(v[0], v[1], v[2]))  # type: ignore[arg-type]
            elif kind == "restart":
                events.append(GatewayRestart(v[0], v[1] if v[1] is not None else 30.0))  # type: ignore[arg-type]
            elif kind == "burst":
                if not 0 <= v[2] <= 1:  # type: ignore[operator]
                    raise LinkError(f"fault spec {part!r}: loss must be in [0, 1]")
                events.append(LossBurst(v[0], v[1], v[2]))  # type: ignore[arg-type]
            elif kind == "loss":
                loss = Bernoulli(v[0])  # type: ignore[arg-type]
            else:
                loss = GilbertElliott.bursty(v[0], v[1])  # type: ignore[arg-type]
        return cls(events, loss=loss)
