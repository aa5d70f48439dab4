"""MQTT credentials: never a password in a URL; from a file or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.net.credentials import read_password_file, resolve_auth
from kasmina_edge.net.mqtt import MqttError


def test_a_password_in_the_url_is_refused_and_credentials_come_from_a_file_or_the_environment(tmp_path: Path) -> None:
    with pytest.raises(MqttError, match="URL carries a password .* --password-file FILE or KASMINA_MQTT_PASSWORD"):
        resolve_auth("mqtt://ops:secret@127.0.0.1:1883", env={})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    with pytest.raises(MqttError, match="readable by others"):
        read_password_file(pw)
    pw.chmod(0o600)
    auth = resolve_auth("mqtt://127.0.0.1", user="ops", password_file=pw, env={})
    assert (auth.username, auth.password, auth.tls) == ("ops", "s3cret", None)
    env = {"KASMINA_MQTT_USER": "patch-01", "KASMINA_MQTT_PASSWORD": "from-env"}
    assert resolve_auth("mqtt://127.0.0.1", env=env).password == "from-env"
    with pytest.raises(MqttError, match="mqtts needs --ca"):
        resolve_auth("mqtts://127.0.0.1", env={})
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(MqttError, match="--cert and --key go together"):
        resolve_auth("mqtts://127.0.0.1", ca=ca, cert=ca, env={})
    with pytest.raises(MqttError, match="need an mqtts:// URL"):
        resolve_auth("mqtt://127.0.0.1", ca=ca, env={})
    with pytest.raises(MqttError, match="a password without a user"):
        resolve_auth("mqtt://127.0.0.1", env={"KASMINA_MQTT_PASSWORD": "x"})
    assert resolve_auth("mqtts://127.0.0.1", env={"KASMINA_MQTT_CA": str(ca)}).tls.ca_file == ca  # type: ignore[union-attr]
