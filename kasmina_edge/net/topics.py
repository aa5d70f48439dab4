"""The MQTT topic scheme (ARCHITECTURE.md) and the QoS of each kind of message.

``kasmina/<fleet>/<device>/telemetry/<kind>`` device -> cloud (``kind``: a record type, ``batch`` for a packet of
several types, ``cmd_ack`` and ``ota_report`` for command and update outcomes), ``.../status`` retained with a
last-will ``offline``, ``.../cmd`` signed commands and ``.../ota`` update offers and fragments (cloud -> device),
and ``.../ack`` the cloud's acknowledgement of the device's stream (which records arrived, which are missing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kasmina_edge.contracts.errors import KasminaError

ROOT = "kasmina"
DEFAULT_FLEET = "default"
QOS_EVENT = 1  # events and commands: at least once (duplicates are removed by sequence number)
QOS_PERIODIC = 0  # periodic counts: the next summary supersedes a lost one
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class TopicError(KasminaError):
    """A topic outside the scheme, or a fleet/device name MQTT cannot carry."""


def check_name(what: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TopicError(f"{what} {name!r}: letters, digits, '_', '.', '-' only (no MQTT wildcards or '/')")
    return name


def telemetry(fleet: str, device: str, kind: str) -> str:
    return f"{ROOT}/{check_name('fleet', fleet)}/{check_name('device', device)}/telemetry/{check_name('kind', kind)}"


def status(fleet: str, device: str) -> str:
    return f"{ROOT}/{check_name('fleet', fleet)}/{check_name('device', device)}/status"


def command(fleet: str, device: str) -> str:
    return f"{ROOT}/{check_name('fleet', fleet)}/{check_name('device', device)}/cmd"


def ota(fleet: str, device: str) -> str:
    return f"{ROOT}/{check_name('fleet', fleet)}/{check_name('device', device)}/ota"


def ack(fleet: str, device: str) -> str:
    return f"{ROOT}/{check_name('fleet', fleet)}/{check_name('device', device)}/ack"


def fleet_filter(fleet: str = "+") -> str:
    """Everything devices publish in ``fleet`` (``+``: every fleet)."""
    return f"{ROOT}/{fleet}/+/telemetry/#"


def status_filter(fleet: str = "+") -> str:
    return f"{ROOT}/{fleet}/+/status"


@dataclass(frozen=True)
class Topic:
    fleet: str
    device: str
    channel: str  # telemetry, status, cmd, ota, ack
    kind: str | None = None


def parse(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT:
        raise TopicError(f"topic {topic!r} is not under {ROOT}/<fleet>/<device>/...")
    fleet, device, channel = parts[1], parts[2], parts[3]
    if channel == "telemetry" and len(parts) == 5:
        return Topic(fleet, device, channel, parts[4])
    if channel in ("status", "cmd", "ota", "ack") and len(parts) == 4:
        return Topic(fleet, device, channel)
    raise TopicError(f"topic {topic!r}: unknown channel layout")
