"""The radio budget: LoRa time on air against the Semtech formula, payload limits per data rate, dwell time,
the duty cycle (never broken over a greedy day) and the fair-use ledger."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from kasmina_edge.core import catalog
from kasmina_edge.core.airtime import LinkError, time_on_air_s
from kasmina_edge.core.profiles import LoRaProfile
from kasmina_edge.net.radio_budget import (
    DutyCycleLedger,
    FairUseLedger,
    LoRaBudget,
    Transmission,
)

EU868 = {dr: catalog.network(f"lorawan-eu868-dr{dr}") for dr in range(6)}
US915 = {dr: catalog.network(f"lorawan-us915-dr{dr}") for dr in range(5)}


# RP002-1.0.x regional parameters, application payload N without FOpts (typed in from the tables, not the profiles).
EU868_MAX = {0: 51, 1: 51, 2: 51, 3: 115, 4: 222, 5: 222}


US915_MAX = {0: 11, 1: 53, 2: 125, 3: 242, 4: 242}


US915_SF_BW = {0: (10, 125_000), 1: (9, 125_000), 2: (8, 125_000), 3: (7, 125_000), 4: (8, 500_000)}


LORAWAN_OVERHEAD = 13  # MHDR 1 + FHDR 7 + FPort 1 + MIC 4


def semtech_toa_ms(phy_bytes: int, sf: int, bw_hz: int, *, cr: int = 1, preamble: int = 8) -> Fraction:
    """Semtech AN1200.13 / SX1276 datasheet section 4.1.1.7, written independently in exact arithmetic.

    Explicit header, CRC on, low data rate optimisation on when the symbol lasts >= 16 ms.
    """
    t_sym_ms = Fraction(2**sf * 1000, bw_hz)
    de = 1 if t_sym_ms >= 16 else 0
    num = 8 * phy_bytes - 4 * sf + 28 + 16  # + 16 CRC, - 0 (explicit header)
    den = 4 * (sf - 2 * de)
    blocks = -(-num // den)  # ceil of a positive or negative integer ratio
    n_payload = 8 + max(blocks * (cr + 4), 0)
    return (preamble + Fraction(17, 4) + n_payload) * t_sym_ms


def test_semtech_reference_written_out_by_hand() -> None:
    # SF12/125 kHz (DE=1), 64 PHY bytes (51 B app): Tsym 32.768 ms, ceil((512-48+28+16)/(4*10)) = 13 blocks x 5
    # = 65, 8 + 65 = 73 payload symbols + 12.25 preamble = 85.25 symbols = 2793.472 ms (the well-known 2.79 s).
    assert semtech_toa_ms(64, 12, 125_000) == Fraction(8525, 100) * Fraction(32768, 1000)
    # SF7/125 kHz, 13 PHY bytes: Tsym 1.024 ms, ceil((104-28+28+16)/28) = 5 x 5 = 25 + 8 = 33 -> 45.25 symbols = 46.336 ms.
    assert semtech_toa_ms(13, 7, 125_000) == Fraction(4525, 100) * Fraction(1024, 1000)


@pytest.mark.parametrize("region", ["eu868", "us915"])
def test_time_on_air_matches_the_semtech_formula_at_every_data_rate_and_size(region: str) -> None:
    profiles = EU868 if region == "eu868" else US915
    for dr, profile in profiles.items():
        assert isinstance(profile, LoRaProfile)
        sf, bw = profile.data_rate.spreading_factor, profile.data_rate.bandwidth_hz
        if region == "us915":
            assert (sf, bw) == US915_SF_BW[dr]
        else:
            assert (sf, bw) == (12 - dr, 125_000)
        for payload in range(0, profile.max_payload_bytes + 1):
            expected = float(semtech_toa_ms(payload + LORAWAN_OVERHEAD, sf, bw)) / 1000
            assert time_on_air_s(profile, payload) == pytest.approx(expected, rel=1e-12), (dr, payload)


def test_payload_limits_per_data_rate() -> None:
    for table, limits in ((EU868, EU868_MAX), (US915, US915_MAX)):
        for dr, profile in table.items():
            assert profile.max_payload_bytes == limits[dr]
            time_on_air_s(profile, limits[dr])
            with pytest.raises(LinkError, match="does not fit"):
                time_on_air_s(profile, limits[dr] + 1)


def test_us915_dr0_limit_is_what_the_dwell_time_allows() -> None:
    profile = US915[0]
    assert isinstance(profile, LoRaProfile)
    budget = LoRaBudget(profile)
    assert budget.check(11) <= 0.4  # 24 PHY bytes at SF10: 370.7 ms
    assert float(semtech_toa_ms(12 + LORAWAN_OVERHEAD, 10, 125_000)) / 1000 > 0.4  # one byte more would not


def test_dwell_time_refuses_a_frame_too_long_on_air() -> None:
    profile = US915[0].model_copy(update={"dwell_time_s": 0.2})
    assert isinstance(profile, LoRaProfile)
    with pytest.raises(LinkError, match="dwell time"):
        LoRaBudget(profile).check(11)


def _max_window_airtime(log: list[Transmission], window: float) -> float:
    """The largest airtime inside any window of ``window`` seconds (windows ending at each frame's end)."""
    best = 0.0
    ends = [tx.end for tx in log]
    for end in ends:
        lo = end - window
        total = sum(
            max(0.0, min(tx.end, end) - max(tx.start, lo)) for tx in log if tx.end > lo and tx.start < end
        )
        best = max(best, total)
    return best


@pytest.mark.parametrize("name", ["lorawan-eu868-dr0", "lorawan-eu868-dr5", "lorawan-us915-dr0"])
def test_a_greedy_day_never_breaks_duty_cycle_or_dwell(name: str) -> None:
    """A device sending whenever its MAC lets it, for 24 h: every hour within the duty cycle, every frame within dwell."""
    profile = catalog.network(name)
    assert isinstance(profile, LoRaProfile)
    budget = LoRaBudget(profile, fair_use=False, keep_log=True)
    rng = random.Random(1)
    t = 0.0
    while t < 86400:
        size = rng.randint(1, profile.max_payload_bytes)
        start = budget.earliest_tx(t + rng.random() * 5, size)
        if start >= 86400:
            break
        budget.commit(start, size)
        t = start
    log = budget.log
    assert log is not None and len(log) > 20
    assert all(b.start >= a.end for a, b in zip(log, log[1:], strict=False))  # one radio: no overlap
    if profile.duty_cycle is not None:
        worst = _max_window_airtime(log, 3600.0)
        assert worst <= profile.duty_cycle * 3600 + 1e-9
        assert worst >= 0.9 * profile.duty_cycle * 3600  # the greedy sender really used the budget
    if profile.dwell_time_s is not None:
        assert max(tx.airtime_s for tx in log) <= profile.dwell_time_s


def test_commit_refuses_a_transmission_the_duty_cycle_forbids() -> None:
    profile = EU868[0]
    assert isinstance(profile, LoRaProfile)
    budget = LoRaBudget(profile)
    tx = budget.commit(0.0, 51)
    with pytest.raises(LinkError, match="receive windows"):  # Class A: RX1 and RX2 come first
        budget.commit(tx.end + 1.0, 51)
    with pytest.raises(LinkError, match="duty cycle"):
        budget.commit(tx.end + 10.0, 51)
    # LoRaMac's time-off: airtime x 99 after the end of the frame
    assert budget.earliest_tx(tx.end, 51) == pytest.approx(tx.end + tx.airtime_s * 99)


def test_duty_cycle_ledger_window_rule() -> None:
    ledger = DutyCycleLedger(0.01)
    assert ledger.earliest(0.0, 37.0) == math.inf  # longer than a whole hour's budget (36 s)
    ledger.record(Transmission(0.0, 20.0, 10))
    ledger.off_until = -math.inf  # window rule alone
    # 16 s more fits (36 s budget), 17 s must wait until the first frame leaves the hour
    assert ledger.earliest(100.0, 16.0) == 100.0
    assert ledger.earliest(100.0, 17.0) == pytest.approx(20.0 + 3600.0 - 17.0)
    assert ledger.used_s(100.0) == 20.0
    assert ledger.left_fraction(100.0) == pytest.approx(1 - 20 / 36)


def test_fair_use_day_ledger() -> None:
    ledger = FairUseLedger(30.0, 10)
    for i in range(10):
        ledger.record_uplink(Transmission(i * 100.0, 2.5, 51))
        ledger.record_downlink(i * 100.0 + 3)
    assert ledger.airtime_left_s(1000.0) == pytest.approx(5.0)
    assert ledger.downlinks_left(1000.0) == 0
    assert ledger.airtime_left_s(86400.0 + 450.0) == pytest.approx(30.0 - 2.5 * 5)  # the first five expired
    assert ledger.downlinks_left(86400.0 + 450.0) == 5
    profile = EU868[0]
    assert isinstance(profile, LoRaProfile)
    budget = LoRaBudget(profile)
    budget.commit(0.0, 51)
    assert budget.fair_use_left_s(1.0) == pytest.approx(30.0 - budget.airtime_s(51))
