"""The MQTT ACL check reads mosquitto's acl_file syntax: '#' starts a comment only at the start of a line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.validate.checks_network import default_acl, mqtt_acl_check, tls_check


def test_the_shipped_acl_confines_every_device() -> None:
    got = mqtt_acl_check(default_acl())
    assert got.status == "pass" and "5 per-device rule(s)" in got.evidence


@pytest.mark.parametrize(("extra", "message"), [
    ("topic readwrite kasmina/#\n", "applies to anonymous clients"),
    ("user patch-09\ntopic write kasmina/+/+/cmd\n", "user patch-09 may write kasmina/+/+/cmd"),
    ("pattern read kasmina/+/+/telemetry/#\n", "is not confined to the client's own device"),
    ("pattern readwrite #\n", "opens every device's topics to every client"),
])  # fmt: skip
def test_a_rule_open_beyond_one_device_fails(tmp_path: Path, extra: str, message: str) -> None:
    acl = tmp_path / "acl"
    acl.write_text(extra + default_acl().read_text())
    got = mqtt_acl_check(acl)
    assert got.status == "fail" and message in got.evidence, got.evidence


def test_no_acl_file_fails(tmp_path: Path) -> None:
    assert mqtt_acl_check(tmp_path / "none").status == "fail"


def test_a_listener_without_a_certificate_is_plain_text(tmp_path: Path) -> None:
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 8883\ncertfile /etc/c.pem\nlistener 1883\n")
    got = tls_check(["mqtts://b:8883"], conf)
    assert got.status == "fail" and "listener 1883 has no certfile" in got.evidence
    assert tls_check(["mqtts://b:8883"], default_acl().with_name("mosquitto.conf")).status == "pass"
