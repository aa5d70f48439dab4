"""How the commands reach a broker: TLS files and a user's credentials, never a password in a URL.

A password in ``--mqtt mqtts://user:secret@host`` is visible to every user of the machine (``ps``) and stays in
the shell history, so the commands refuse it and take the password from a file (``--password-file``, first line)
or the ``KASMINA_MQTT_PASSWORD`` environment variable. The user name comes from ``--user``, ``KASMINA_MQTT_USER``
or the URL (a name is not a secret). TLS: ``--ca`` (or ``KASMINA_MQTT_CA``) to verify the broker, ``--cert`` and
``--key`` (or ``KASMINA_MQTT_CERT`` / ``KASMINA_MQTT_KEY``) for a client certificate; ``mqtts://`` needs a CA.

The example Mosquitto configuration in ``kasmina_edge/net/mosquitto/`` (TLS listener, password file, per-device
ACL: a device publishes and reads only under its own name) is what the tests run a real broker with.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kasmina_edge.net.mqtt import BrokerUrl, MqttError, TlsFiles

ENV_USER = "KASMINA_MQTT_USER"
ENV_PASSWORD = "KASMINA_MQTT_PASSWORD"
ENV_CA, ENV_CERT, ENV_KEY = "KASMINA_MQTT_CA", "KASMINA_MQTT_CERT", "KASMINA_MQTT_KEY"
EXAMPLE_FILES = ("mosquitto.conf", "acl")


@dataclass(frozen=True)
class MqttAuth:
    """What a client needs besides the broker's address."""

    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        who = f"user {self.username}" if self.username else "anonymous"
        how = "TLS" + (" with a client certificate" if self.tls and self.tls.cert_file else "") if self.tls else "no TLS"
        return f"{who}, {how}"


def _file(flag: str, path: Path | None) -> Path | None:
    if path is not None and not Path(path).is_file():
        raise MqttError(f"{flag} {path}: no such file")
    return Path(path) if path is not None else None


def read_password_file(path: Path) -> str:
    """The first line of ``path``; a file others may read is refused (it holds a secret)."""
    path = Path(path)
    if not path.is_file():
        raise MqttError(f"--password-file {path}: no such file")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MqttError(f"--password-file {path}: readable by others (chmod 600 {path})")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise MqttError(f"--password-file {path}: empty")
    return lines[0].strip()


def resolve_auth(
    url: str,
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    user: str | None = None,
    password_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> MqttAuth:
    """TLS files and credentials for ``url`` from the options, else the environment; one line on a problem."""
    env = os.environ if env is None else env
    parsed = BrokerUrl.parse(url)
    if parsed.password is not None:
        raise MqttError(
            f"--mqtt {parsed}: the URL carries a password (visible in ps and the shell history); "
            f"give it with --password-file FILE or {ENV_PASSWORD}"
        )
    ca = _file("--ca", ca or (Path(env[ENV_CA]) if env.get(ENV_CA) else None))
    cert = _file("--cert", cert or (Path(env[ENV_CERT]) if env.get(ENV_CERT) else None))
    key = _file("--key", key or (Path(env[ENV_KEY]) if env.get(ENV_KEY) else None))
    if (cert is None) != (key is None):
        raise MqttError("--cert and --key go together (a client certificate and its private key)")
    if parsed.tls and ca is None:
        raise MqttError(f"--mqtt {parsed}: mqtts needs --ca FILE (the CA that signed the broker's certificate)")
    if not parsed.tls and (ca or cert):
        raise MqttError(f"--mqtt {parsed}: --ca/--cert/--key need an mqtts:// URL (this one is plain MQTT)")
    password = read_password_file(password_file) if password_file is not None else env.get(ENV_PASSWORD) or None
    username = user or env.get(ENV_USER) or parsed.username
    if password is not None and not username:
        raise MqttError(f"a password without a user: give --user NAME or {ENV_USER}")
    return MqttAuth(TlsFiles(ca, cert, key) if ca is not None else None, username, password)


def example_config(name: str) -> str:
    """One file of the shipped Mosquitto example (``mosquitto.conf`` or ``acl``)."""
    if name not in EXAMPLE_FILES:
        raise MqttError(f"no example file {name!r} (known: {', '.join(EXAMPLE_FILES)})")
    return resources.files("kasmina_edge.net").joinpath("mosquitto", name).read_text(encoding="utf-8")
