"""The checks on the broker: a per-device MQTT ACL (mosquitto ``acl_file`` syntax) and TLS on every broker URL."""

from __future__ import annotations

from pathlib import Path

from kasmina_edge.validate.check_result import CheckResult, check

DEVICE_TOPICS = ("telemetry", "status", "cmd", "ota", "ack")
TLS_SCHEMES = ("mqtts", "ssl", "wss")
OPERATOR_USERS = frozenset({"operator"})  # the shipped ACL's fleet operator: reads every device, writes commands


def default_acl() -> Path:
    return Path(__file__).resolve().parent.parent / "net" / "mosquitto" / "acl"


def _rules(text: str) -> list[tuple[int, str | None, str, str, str]]:
    """(line, user or None for a pattern/anonymous rule, kind 'topic'|'pattern', access, topic)."""
    rules, user = [], None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()  # '#' starts a comment only at the line's start: in a topic it is the wildcard
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "user" and len(parts) > 1:
            user = parts[1]
        elif parts[0] in ("topic", "pattern"):
            access, topic = ("readwrite", parts[1]) if len(parts) == 2 else (parts[1], parts[2])
            rules.append((n, user if parts[0] == "topic" else None, parts[0], access, topic))
    return rules


def _open_to_all(topic: str) -> bool:
    """A topic filter that reaches every device's topics: '#', 'kasmina/#', 'kasmina/+/#', '+/+/+/cmd', ..."""
    levels = topic.split("/")
    return levels[0] == "#" or (levels[0] in ("kasmina", "+") and len(levels) <= 3 and levels[-1] == "#")


def mqtt_acl_check(acl: Path | None) -> CheckResult:
    acl = acl or default_acl()
    if not acl.is_file():
        return check("mqtt-acl", "fail", f"{acl}: no ACL file (every client could read and write every topic)")
    problems: list[str] = []
    device_rules = 0
    for n, user, kind, access, topic in _rules(acl.read_text(encoding="utf-8")):
        levels = topic.split("/")
        where = f"{acl.name}:{n}"
        if kind == "pattern":
            if _open_to_all(topic):
                problems.append(f"{where}: pattern {access} {topic} opens every device's topics to every client")
            elif len(levels) >= 3 and levels[2] not in ("%u", "%c"):
                problems.append(f"{where}: pattern {access} {topic} is not confined to the client's own device (%u)")
            else:
                device_rules += 1
        elif user is None:
            problems.append(f"{where}: topic {access} {topic} applies to anonymous clients")
        elif user not in OPERATOR_USERS and (_open_to_all(topic) or (len(levels) > 2 and levels[2] in ("+", "#"))):
            verb = "write" if "write" in access else "read"
            problems.append(f"{where}: user {user} may {verb} {topic}: every device's topics")
    if not device_rules and not problems:
        problems.append(f"{acl}: no per-device pattern (kasmina/+/%u/...): devices are not confined")
    if problems:
        return check("mqtt-acl", "fail", problems[0], problems)
    return check("mqtt-acl", "pass", f"{acl}: {device_rules} per-device rule(s) (%u), nothing open to all clients")


def tls_check(brokers: list[str], mosquitto_conf: Path | None) -> CheckResult:
    problems: list[str] = []
    for url in brokers:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in TLS_SCHEMES:
            problems.append(f"broker {url}: not TLS (use mqtts://HOST:8883)")
    listeners = 0
    if mosquitto_conf is not None and mosquitto_conf.is_file():
        listener, certfile = None, False
        for raw in [*mosquitto_conf.read_text(encoding="utf-8").splitlines(), "listener end"]:
            line = raw.split("#", 1)[0].strip()
            if line.startswith("listener"):
                if listener is not None and not certfile:
                    problems.append(f"{mosquitto_conf.name}: listener {listener} has no certfile (plain text)")
                listener, certfile = line.split()[1] if len(line.split()) > 1 else "?", False
                listeners += 1
            elif line.startswith("certfile"):
                certfile = True
        listeners -= 1  # the sentinel
    if not brokers and listeners <= 0:
        return check("tls", "skipped", "no broker URL in the config and no mosquitto.conf to check")
    if problems:
        return check("tls", "fail", problems[0], problems)
    return check("tls", "pass", f"{len(brokers)} broker URL(s) on TLS" + (f", {listeners} listener(s) with a "
                 "certificate" if listeners > 0 else ""))
