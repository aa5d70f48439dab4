"""The channel: IP links' latency and loss from their profiles, Class A downlinks only in a receive window, and
simulated time that reads no clock (the radio budget: test_radio_budget.py; loss and faults: test_faults.py)."""

from __future__ import annotations

import statistics

import pytest

from kasmina_edge.core import catalog
from kasmina_edge.core.profiles import IpLinkProfile, LoRaProfile
from kasmina_edge.net.faults import (
    Bernoulli,
    FaultInjector,
    GatewayRestart,
)
from kasmina_edge.net.link import Channel, ClassADownlinks
from kasmina_edge.net.radio_budget import (
    FairUseLedger,
    IpBudget,
    LoRaBudget,
    radio_budget,
)

EU868 = {dr: catalog.network(f"lorawan-eu868-dr{dr}") for dr in range(6)}


def test_ip_links_latency_and_loss_follow_their_profiles() -> None:
    for name in ("nb-iot", "lte-m", "5g-embb", "5g-urllc", "wifi"):
        profile = catalog.network(name)
        assert isinstance(profile, IpLinkProfile)
        channel = Channel(profile, seed=3)
        budget = radio_budget(profile)
        assert isinstance(budget, IpBudget)
        delays, lost = [], 0
        t = 0.0
        for _ in range(20_000):
            tx = budget.commit(t, 40)
            d = channel.uplink(tx)
            t = tx.end + 1.0
            if d.delivered:
                delays.append(d.arrival_at - tx.end)
            else:
                lost += 1
        delays.sort()
        assert statistics.median(delays) == pytest.approx(profile.latency.median_s, rel=0.05), name
        p99 = delays[int(0.99 * len(delays))]
        assert p99 == pytest.approx(profile.latency.p99_s, rel=0.15), name
        assert lost / 20_000 == pytest.approx(profile.loss_rate, abs=max(0.003, 3 * profile.loss_rate)), name
        assert tx.airtime_s == pytest.approx(40 * 8 / profile.uplink_bps)


def test_class_a_downlink_only_in_the_receive_window_after_an_uplink() -> None:
    profile = EU868[0]
    assert isinstance(profile, LoRaProfile)
    channel = Channel(profile, faults=FaultInjector([GatewayRestart(5000, 10)]), seed=0)
    fair = FairUseLedger(30.0, 2)
    network = ClassADownlinks(channel, fair_use=fair)
    network.enqueue(b"cmd-1")
    network.enqueue(b"cmd-2")
    network.enqueue(b"cmd-3")
    budget = LoRaBudget(profile)
    tx = budget.commit(1000.0, 20)
    got = network.on_uplink(channel.uplink(tx))
    assert got is not None and got.payload == b"cmd-1"
    assert got.delivery.sent_at == pytest.approx(tx.end + 1.0)  # RX1 opens 1 s after the uplink ends
    tx2 = budget.commit(budget.earliest_tx(tx.end, 20), 20)
    got2 = network.on_uplink(channel.uplink(tx2))
    assert got2 is not None and got2.payload == b"cmd-2"
    tx3 = budget.commit(budget.earliest_tx(tx2.end, 20), 20)
    assert network.on_uplink(channel.uplink(tx3)) is None  # fair use: 2 downlinks a day
    assert network.refused_fair_use == 1 and list(network.queue) == [b"cmd-3"]
    tx4 = budget.commit(budget.earliest_tx(6000.0, 20), 20)  # after the gateway restart: queue gone
    assert network.on_uplink(channel.uplink(tx4)) is None and network.dropped_by_restart == 1


def test_simulated_time_reads_no_clock_and_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated day of 20 EU868 devices at a frame per 10 minutes, through a lossy channel, runs on the time
    passed in alone: any sleep or clock read fails here (that is what lets a day of a thousand devices simulate
    in seconds; tools/bench_net.py measures the speed). Every device sends its 144 frames, and the seeded
    channel loses close to its 10 %."""
    import time

    def no_clock(*_: object) -> float:
        raise AssertionError("the link simulator read the wall clock or slept")

    for name in ("sleep", "time", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, no_clock)
    profile = EU868[0]
    assert isinstance(profile, LoRaProfile)
    sent = lost = 0
    for device in range(20):
        budget, channel = (
            LoRaBudget(profile),
            Channel(profile, seed=device, faults=FaultInjector(loss=Bernoulli(0.1))),
        )
        t = 0.0
        while t < 86400:
            start = budget.earliest_tx(t, 20)
            lost += not channel.uplink(budget.commit(start, 20)).delivered
            sent += 1
            t = start + 600
    assert sent == 20 * 144
    assert 0.07 < lost / sent < 0.13  # 2,880 Bernoulli(0.1) draws: 3 sigma is 1.7 %
