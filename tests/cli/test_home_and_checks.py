"""KASMINA_HOME moves keys and device state (device names are per home); checks that need a device or a
broker: an OTA bundle for another target, refused vs unresolvable brokers; messages that say what is true."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def test_home_holds_keys_and_devices(kasmina, home: Path, bundles: Path) -> None:  # type: ignore[no-untyped-def]
    got = kasmina("keys", "init")
    assert got.code == 0, got.err
    assert (home / "keys" / "bundle-signing.key").exists() and str(home / "keys") in got.out
    got = kasmina("flash", str(bundles / "edgetpu-v1.kedge"), "--device", "emu://patch-01", "--keys", str(bundles / "keys"))
    assert got.code == 0, got.err
    assert (home / "devices" / "patch-01" / "device.json").exists()


def test_device_names_are_per_home(kasmina, home: Path, bundles: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    got = kasmina("flash", str(bundles / "edgetpu-v1.kedge"), "--device", "emu://patch-01", "--keys", str(bundles / "keys"))
    assert got.code == 0, got.err
    monkeypatch.setenv("KASMINA_HOME", str(tmp_path / "other-home"))
    got = kasmina("run", "--device", "emu://patch-01", "--ecg", "synthetic:clean?minutes=0.2")
    assert got.code == 2 and "flash a bundle to it first" in got.err, got.err
    assert str(tmp_path / "other-home" / "devices") in got.err


def test_ota_of_a_bundle_for_another_target_is_refused_before_any_transfer(kasmina, bundles: Path) -> None:  # type: ignore[no-untyped-def]
    keys = str(bundles / "keys")
    assert kasmina("flash", str(bundles / "edgetpu-v1.kedge"), "--device", "emu://patch-01", "--keys", keys).code == 0
    # no broker runs: the refusal must come first, in one line
    got = kasmina("ota", str(bundles / "cortex-m-v1.kedge"), "--device", "patch-01", "--keys", keys,
                  "--mqtt", "mqtt://127.0.0.1:9")  # fmt: skip
    assert got.code == 2, got.err
    assert len(got.err_lines) == 1 and "built for target cortex-m" in got.err_lines[0], got.err
    assert "nothing offered" in got.err_lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_and_unresolvable_brokers_read_differently() -> None:
    from kasmina_edge.cli.checks import broker_reachable
    from kasmina_edge.contracts.errors import KasminaError

    with pytest.raises(KasminaError, match="connection refused"):
        broker_reachable(f"mqtt://127.0.0.1:{_free_port()}")
    with pytest.raises(KasminaError, match="cannot resolve the host 'no-such-host.invalid'"):
        broker_reachable("mqtt://no-such-host.invalid:1883")


def test_send_names_the_refused_broker_in_one_line(kasmina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "patch-01.key"
    key.write_text("00" * 32 + "\n")  # hex, as the key store writes it
    got = kasmina("send", "patch-01", "pause", "--key", str(key), "--mqtt", f"mqtt://127.0.0.1:{_free_port()}")
    assert got.code == 2 and len(got.err_lines) == 1 and "connection refused" in got.err, got.err


def test_an_acknowledgement_reads_as_settings_not_a_dict() -> None:
    from kasmina_edge.cli.net import _ack_detail

    assert _ack_detail({"adapt": False}) == "adapt=false"
    assert _ack_detail({"summary_every_s": 600.0, "mode": "batch"}) == "summary_every_s=600.0, mode=batch"


def test_battery_reads_in_mah_and_a_percentage_that_moves() -> None:
    from kasmina_edge.cli.device import battery_text
    from kasmina_edge.core.catalog import hardware

    spec = hardware("nrf52840").battery
    assert spec is not None
    used_j = 0.917
    charge = 1 - used_j / spec.energy_j
    text = battery_text({"charge": charge, "used_j": used_j}, "nrf52840")
    assert "mAh" in text and "100.00" not in text  # 0.917 J of a coin cell shows in the digits
    assert f"{spec.capacity_mAh:,.0f} mAh" in text
    assert battery_text({"charge": 1.0, "used_j": 917.0}, "coral-devboard").startswith("mains-powered")


def test_the_monitor_store_is_a_database_url_or_a_json_lines_file(tmp_path: Path) -> None:
    import typer

    from kasmina_edge.cli import checks

    assert checks.monitor_store("sqlite:///x.db") == "sqlite:///x.db"
    assert checks.monitor_store("postgresql://u@h/db") == "postgresql://u@h/db"
    assert checks.monitor_store(str(tmp_path / "m.jsonl")) == tmp_path / "m.jsonl"
    bad = tmp_path / "not.jsonl"
    bad.write_text("this is not json\n")
    with pytest.raises(typer.BadParameter, match="not a JSON-lines file"):
        checks.monitor_store(str(bad))
