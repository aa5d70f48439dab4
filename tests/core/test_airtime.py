"""Link airtime: the Semtech LoRa formula against published calculators, payload limits, IP serialisation."""

from __future__ import annotations

import pytest

from kasmina_edge.core import catalog
from kasmina_edge.core.airtime import LinkError, lora_time_on_air_s, max_payload_bytes, time_on_air_s
from kasmina_edge.core.profiles import IpLinkProfile, LoRaProfile


def test_lora_time_on_air_against_published_values() -> None:
    # Semtech LoRa calculator: SF7, 125 kHz, CR 4/5, 8-symbol preamble, explicit header, CRC, 10 B -> 41.216 ms.
    assert lora_time_on_air_s(10, 7, 125_000) == pytest.approx(0.041216, abs=1e-6)
    # TTN airtime calculator: EU868 SF12 with a 51-byte application payload -> 2793.5 ms.
    eu0 = catalog.network("lorawan-eu868-dr0")
    assert isinstance(eu0, LoRaProfile)
    assert time_on_air_s(eu0, 51) == pytest.approx(2.7935, abs=1e-4)
    assert time_on_air_s(eu0, 0) < time_on_air_s(eu0, 51)
    with pytest.raises(LinkError, match="52 B does not fit lorawan-eu868-dr0: at most 51 B"):
        time_on_air_s(eu0, 52)


def test_us915_maximum_payloads_fit_the_dwell_time() -> None:
    # RP002 sizes the US915 payload limits so that a full frame stays under the 400 ms dwell time.
    us915 = [n for n in catalog.network_names() if n.startswith("lorawan-us915-")]
    assert len(us915) == 5
    for name in us915:
        profile = catalog.network(name)
        assert isinstance(profile, LoRaProfile) and profile.dwell_time_s is not None
        airtime = time_on_air_s(profile, profile.max_payload_bytes)
        assert airtime <= profile.dwell_time_s, f"{name}: {airtime:.4f} s"


def test_ip_links_serialise_at_their_uplink_rate_and_refuse_what_does_not_fit() -> None:
    nb = catalog.network("nb-iot")
    assert isinstance(nb, IpLinkProfile)
    assert time_on_air_s(nb, 100) == pytest.approx(800 / nb.uplink_bps)
    assert time_on_air_s(nb, 0) == 0.0
    with pytest.raises(LinkError, match=f"does not fit nb-iot: at most {nb.max_payload_bytes} B"):
        time_on_air_s(nb, max_payload_bytes(nb) + 1)
    with pytest.raises(LinkError, match="-1 B does not fit"):
        time_on_air_s(nb, -1)
