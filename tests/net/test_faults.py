"""Loss models and faults: Bernoulli and Gilbert-Elliott statistics, scripted outages, spikes, bursts and
restarts, the fault spec, reproducible stochastic faults."""

from __future__ import annotations

import random
import statistics

import pytest

from kasmina_edge.core import catalog
from kasmina_edge.core.airtime import LinkError
from kasmina_edge.net.faults import (
    Bernoulli,
    FaultInjector,
    GatewayRestart,
    GilbertElliott,
    LatencySpike,
    LossBurst,
    Outage,
)
from kasmina_edge.net.link import Channel
from kasmina_edge.net.radio_budget import (
    radio_budget,
)


def test_bernoulli_and_gilbert_elliott_loss_statistics() -> None:
    rng = random.Random(7)
    n = 40_000
    bern = Bernoulli(0.2)
    assert sum(bern.lost(rng) for _ in range(n)) / n == pytest.approx(0.2, abs=0.01)
    ge = GilbertElliott.bursty(0.2, 5.0)
    assert ge.mean_loss == pytest.approx(0.2)
    outcomes = [ge.lost(rng) for _ in range(n)]
    assert sum(outcomes) / n == pytest.approx(0.2, abs=0.02)
    bursts, run = [], 0
    for lost in outcomes:
        if lost:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert statistics.mean(bursts) == pytest.approx(5.0, rel=0.15)  # Bernoulli at 20 % would give 1.25
    with pytest.raises(LinkError):
        Bernoulli(1.5)
    with pytest.raises(LinkError):
        GilbertElliott.bursty(0.2, 0.5)


def test_fault_injector_outage_spike_burst_restart() -> None:
    faults = FaultInjector(
        [Outage(100, 50), LatencySpike(300, 100, 5.0), LossBurst(500, 100, 1.0), GatewayRestart(800, 20)]
    )
    assert faults.down(120) and not faults.down(150) and faults.up_again(120) == 150
    assert faults.down(805) and faults.up_again(805) == 820
    assert faults.extra_latency_s(350) == 5.0 and faults.extra_latency_s(450) == 0
    assert faults.burst_loss(550) == 1.0 and faults.burst_loss(650) == 0.0
    assert faults.restarts_between(0, 800) == 1 and faults.restarts_between(800, 900) == 0
    profile = catalog.network("wifi")
    channel = Channel(profile, faults=faults, seed=1)
    budget = radio_budget(profile)
    out = {t: channel.uplink(budget.commit(t, 20)) for t in (50.0, 120.0, 350.0, 550.0, 700.0)}
    assert out[120.0].reason == "outage" and not out[120.0].delivered
    assert out[550.0].reason == "lost"
    assert out[350.0].arrival_at - 350.0 > 5.0
    assert channel.stats.uplinks == 5 and channel.stats.uplinks_outage == 1


def test_fault_spec_parsing() -> None:
    faults = FaultInjector.parse("outage@600+600, spike@60+30:2.5, restart@1800, burst@100+300:0.2, ge:0.2:4")
    assert faults.down(700) and not faults.down(1300)
    assert faults.extra_latency_s(70) == 2.5
    assert faults.down(1810) and not faults.down(1831)
    assert faults.burst_loss(200) == pytest.approx(0.2)
    assert isinstance(faults.loss, GilbertElliott) and faults.loss.mean_loss == pytest.approx(0.2)
    assert isinstance(FaultInjector.parse("loss:0.05").loss, Bernoulli)
    for bad in ("outage@600", "nonsense", "burst@1+2:3", "loss:2"):
        with pytest.raises(LinkError):
            FaultInjector.parse(bad)


def test_stochastic_faults_are_reproducible() -> None:
    a = FaultInjector.stochastic(random.Random(5), 86400 * 10, outages_per_day=2, restarts_per_day=1)
    b = FaultInjector.stochastic(random.Random(5), 86400 * 10, outages_per_day=2, restarts_per_day=1)
    assert a.events == b.events
    outages = [e for e in a.events if isinstance(e, Outage)]
    assert 5 <= len(outages) <= 40 and all(0 <= e.start_s < 864000 for e in outages)
