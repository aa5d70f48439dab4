"""Link airtime: how long a radio transmits one frame, and how much one frame may carry.

One definition for every side: the link simulator (:mod:`kasmina_edge.net.link`), OTA planning, the
profiler's radio energy and the catalog's tables. LoRa: the Semtech time-on-air formula on the payload
plus LoRaWAN's framing, with the data rate's payload limit (LoRaWAN Regional Parameters RP002). IP links:
the bytes at the profile's uplink rate (serialisation only; protocol headers and scheduling delay are in
the profile's latency).
"""

from __future__ import annotations

import math

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.profiles import LoRaProfile, NetworkProfile, coding_rate_index


class LinkError(KasminaError):
    """A frame the link cannot carry (too long for the data rate, over the dwell time) or a bad link spec."""


def lora_time_on_air_s(
    phy_payload_bytes: int,
    spreading_factor: int,
    bandwidth_hz: float,
    *,
    coding_rate: str = "4/5",
    preamble_symbols: int = 8,
    explicit_header: bool = True,
    crc: bool = True,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Time on air of one LoRa frame (Semtech AN1200.13, "LoRa Modem Designer's Guide", and SX1276 datasheet).

    Written out because the formula is eight lines and no library in the base install provides it.
    """
    sf, cr = spreading_factor, coding_rate_index(coding_rate)
    t_sym = (2**sf) / bandwidth_hz
    de = int(t_sym >= 0.016) if low_data_rate_optimize is None else int(low_data_rate_optimize)
    ih = 0 if explicit_header else 1
    numerator = 8 * phy_payload_bytes - 4 * sf + 28 + 16 * int(crc) - 20 * ih
    payload_symbols = 8 + max(math.ceil(numerator / (4 * (sf - 2 * de))) * (cr + 4), 0)
    return (preamble_symbols + 4.25 + payload_symbols) * t_sym


def max_payload_bytes(profile: NetworkProfile) -> int:
    """Application payload one uplink can carry (LoRaWAN: N without FOpts, RP002; IP: the MTU less headers)."""
    return profile.max_payload_bytes


def time_on_air_s(profile: NetworkProfile, payload_bytes: int) -> float:
    """Seconds the radio transmits ``payload_bytes`` of application payload (LoRaWAN: no FOpts).

    :class:`LinkError` (one line) when the payload does not fit one frame of the profile.
    """
    limit = profile.max_payload_bytes
    if not 0 <= payload_bytes <= limit:
        per = " per uplink" if isinstance(profile, LoRaProfile) else ""
        raise LinkError(f"{payload_bytes} B does not fit {profile.name}: at most {limit} B{per}")
    if isinstance(profile, LoRaProfile):
        rate = profile.data_rate
        return lora_time_on_air_s(
            payload_bytes + profile.mac_overhead_bytes,
            rate.spreading_factor,
            rate.bandwidth_hz,
            coding_rate=profile.coding_rate,
            preamble_symbols=profile.preamble_symbols,
            explicit_header=profile.explicit_header,
            crc=profile.crc,
            low_data_rate_optimize=rate.low_data_rate_optimize,
        )
    return payload_bytes * 8.0 / profile.uplink_bps
