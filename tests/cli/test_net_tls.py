"""Item 3: TLS and credentials on the MQTT commands, and the shipped Mosquitto example (TLS listener, password
file, per-device ACL) run for real: `kasmina-edge run` publishes over mqtts:// as its own device user, the
operator's monitor reads it, another device cannot publish under its name, a password in a URL is refused.

The broker tests skip, with the reason, where mosquitto is not installed (`apt-get install mosquitto`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "net"))  # the broker helper

from mosquitto_broker import make_test_ca, require_mosquitto

from kasmina_edge.net import topics
from kasmina_edge.net.cloud import MonitorService
from kasmina_edge.net.credentials import example_config
from kasmina_edge.net.mqtt import MqttClient, MqttError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "runtime"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class ExampleBroker:
    """Mosquitto with the shipped example config and ACL, its /etc paths moved under ``folder``."""

    USERS = {"operator": "op-pw", "patch-01": "pw-one", "patch-02": "pw-two"}

    def __init__(self, folder: Path) -> None:
        binary = require_mosquitto()
        etc = folder / "etc"
        etc.mkdir(parents=True)
        ca, cert, key = make_test_ca(etc)
        for src, dst in ((cert, etc / "server.pem"), (key, etc / "server.key")):
            if src != dst:
                src.rename(dst)
        passwd = etc / "passwd"
        passwd.write_text("")
        for user, password in self.USERS.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
        (etc / "acl").write_text(example_config("acl"))
        self.port = _free_port()
        conf = example_config("mosquitto.conf").replace("/etc/mosquitto/kasmina/", f"{etc}/")
        conf = conf.replace("listener 8883", f"listener {self.port} 127.0.0.1")
        conf = conf.replace("persistence true", "persistence false").replace(
            "persistence_location /var/lib/mosquitto/", f"log_dest file {folder / 'mosquitto.log'}"
        )
        if os.geteuid() == 0:  # as root mosquitto drops to user "mosquitto", who cannot read a 0700 tmp folder
            conf += "user root\n"
        (folder / "mosquitto.conf").write_text(conf)
        self.ca = ca
        self.proc = subprocess.Popen([binary, "-c", str(folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait(self._open, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {(folder / 'mosquitto.log').read_text()[-400:]}")

    def _open(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def _cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def test_run_over_tls_with_the_shipped_mosquitto_example(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    require_mosquitto()
    sys.path.insert(0, str(FIXTURES))
    from runtime_fixtures import ensure_fixture_bundles

    bundles = ensure_fixture_bundles(request.config)
    broker = ExampleBroker(tmp_path / "mosq")
    from kasmina_edge.net.mqtt import TlsFiles

    tls = TlsFiles(broker.ca)
    service = MonitorService(broker.url, fleet="default", tls=tls, username="operator", password="op-pw").start()
    try:
        env = {"KASMINA_DEVICES_DIR": str(tmp_path / "devices"), "KASMINA_COMMAND_KEYS": str(tmp_path / "ops")}
        flashed = _cli("flash", str(bundles / "linux-arm-v1.kedge"), "--device", "emu://patch-01",
                       "--keys", str(bundles / "keys"), env=env)
        assert flashed.returncode == 0, flashed.stderr
        pw = tmp_path / "patch-01.pw"
        pw.write_text("pw-one\n")
        pw.chmod(0o600)
        run = _cli("run", "--device", "emu://patch-01", "--ecg", "synthetic:clean?minutes=3", "--link", "wifi",
                   "--mqtt", broker.url, "--ca", str(broker.ca), "--user", "patch-01", "--password-file", str(pw),
                   "--out", str(tmp_path / "run.jsonl"), env=env)
        assert run.returncode == 0, run.stderr
        assert _wait(lambda: service.summary()["devices"].get("patch-01", {}).get("records", 0) >= 3), (
            service.summary(), run.stdout[-800:])
        # the password never goes in the URL
        leaked = _cli("run", "--device", "emu://patch-01", "--ecg", "synthetic:clean?minutes=0.2",
                      "--mqtt", f"mqtts://patch-01:pw-one@127.0.0.1:{broker.port}", "--ca", str(broker.ca), env=env)
        err = leaked.stderr.strip()
        assert leaked.returncode == 2 and "carries a password" in err and len(err.splitlines()) == 1, err
        # the example ACL: patch-02 cannot publish under patch-01's name, nor read its commands
        got: list[str] = []
        spy = MqttClient(broker.url, "spy", tls=tls, username="operator", password="op-pw")
        spy.subscribe("kasmina/#", lambda topic, p: got.append(topic))
        spy.connect()
        other = MqttClient(broker.url, "patch-02", tls=tls, username="patch-02", password="pw-two")
        snooped: list[str] = []
        other.subscribe(topics.command("default", "patch-01"), lambda topic, p: snooped.append(topic))
        other.connect()
        other.publish(topics.telemetry("default", "patch-01", "batch"), b"forged", qos=1).wait_for_publish(5)
        own = topics.telemetry("default", "patch-02", "batch")
        other.publish(own, b"mine", qos=1).wait_for_publish(5)
        spy.publish(topics.command("default", "patch-01"), b"for patch-01", qos=1).wait_for_publish(5)
        assert _wait(lambda: own in got)
        time.sleep(0.3)
        assert topics.telemetry("default", "patch-01", "batch") not in got  # the broker dropped the forgery
        assert snooped == []
        other.close()
        spy.close()
        with pytest.raises(MqttError):  # no anonymous access, no plain-text listener
            MqttClient(f"mqtt://127.0.0.1:{broker.port}", "plain").connect(timeout_s=3)
    finally:
        service.close()
        broker.stop()


def test_broker_writes_the_mosquitto_example(tmp_path: Path) -> None:
    out = _cli("broker", "--mosquitto-example", str(tmp_path / "ex"), env={})
    assert out.returncode == 0, out.stderr
    conf = (tmp_path / "ex" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "listener 8883" in conf and "acl_file" in conf
    assert "pattern read kasmina/+/%u/cmd" in (tmp_path / "ex" / "acl").read_text()
