"""`kasmina-edge profiles` and `targets`: lists, show, --json (with every number's source), one-line
errors with exit 2, and the demo step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import kasmina_edge
from kasmina_edge.cli import catalog as cli_catalog
from kasmina_edge.cli.app import app
from kasmina_edge.core import catalog

REPO = Path(kasmina_edge.__file__).resolve().parent.parent
HARDWARE = {
    "coral-usb", "coral-devboard", "stm32h743", "stm32f446", "nrf52840",
    "rpi4", "jetson-nano", "x86-64-host", "npu-u55",
}  # fmt: skip
TARGETS = {"edgetpu", "cortex-m", "linux-arm", "x86"}
IP_LINKS = {"nb-iot", "lte-m", "5g-embb", "5g-urllc", "wifi"}
LORA_MAX_PAYLOAD = {
    "lorawan-eu868-dr0": 51, "lorawan-eu868-dr1": 51, "lorawan-eu868-dr2": 51,
    "lorawan-eu868-dr3": 115, "lorawan-eu868-dr4": 222, "lorawan-eu868-dr5": 222,
    "lorawan-us915-dr0": 11, "lorawan-us915-dr1": 53, "lorawan-us915-dr2": 125,
    "lorawan-us915-dr3": 242, "lorawan-us915-dr4": 242,
}  # fmt: skip


def _copy_catalog(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "profiles", dest / "profiles")
    shutil.copytree(REPO / "targets", dest / "targets")
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


WIDE = {"COLUMNS": "200"}


def _run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=WIDE if env is None else env)


def test_cli_profiles_list() -> None:
    result = _run("profiles", "list")
    assert result.exit_code == 0, result.output
    for name in HARDWARE | set(LORA_MAX_PAYLOAD) | IP_LINKS:
        assert name in result.stdout
    assert "480 MHz" in result.stdout and "4 TOPS" in result.stdout

    result = _run("profiles", "list", "--kind", "hardware")
    assert result.exit_code == 0 and "stm32h743" in result.stdout and "lorawan" not in result.stdout
    result = _run("profiles", "list", "--kind", "network")
    assert result.exit_code == 0 and "lorawan-us915-dr4" in result.stdout and "stm32h743" not in result.stdout
    assert _run("profiles", "list", "--kind", "satellite").exit_code == 2


def test_cli_profiles_list_json() -> None:
    result = _run("profiles", "list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {p["name"] for p in data["hardware"]} == HARDWARE
    assert {p["name"] for p in data["network"]} == set(LORA_MAX_PAYLOAD) | IP_LINKS
    only_network = json.loads(_run("profiles", "list", "--kind", "network", "--json").stdout)
    assert list(only_network) == ["network"]


def test_cli_profiles_show() -> None:
    result = _run("profiles", "show", "stm32h743")
    assert result.exit_code == 0, result.output
    assert "480 MHz" in result.stdout and "memory.sram_bytes" in result.stdout and "1 MiB" in result.stdout
    data = json.loads(_run("profiles", "show", "stm32h743", "--json").stdout)
    assert data["clock_hz"] == 480e6 and data["memory"]["flash_bytes"] == 2 * 2**20
    data = json.loads(_run("profiles", "show", "lorawan-eu868-dr3", "--json").stdout)
    assert data["data_rate"]["max_payload_bytes"] == 115 and data["duty_cycle"] == 0.01
    result = _run("profiles", "show", "lorawan-eu868-dr0")
    assert result.exit_code == 0 and "time on air of 51 B" in result.stdout and "2.79 s" in result.stdout


def test_cli_unknown_name_is_one_line_exit_2() -> None:
    for args in (("profiles", "show", "nope"), ("targets", "show", "nope")):
        result = _run(*args, env={"COLUMNS": "80"})  # narrow: the message must still not wrap
        assert result.exit_code == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "unknown" in lines[0] and "'nope'" in lines[0]
    assert "stm32h743" in _run("profiles", "show", "nope").stderr
    assert "edgetpu" in _run("targets", "show", "nope").stderr


def test_cli_targets() -> None:
    result = _run("targets", "list")
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in TARGETS) and "onnx-qdq" in result.stdout
    data = json.loads(_run("targets", "list", "--json").stdout)
    assert {t["name"] for t in data} == TARGETS
    result = _run("targets", "show", "edgetpu")
    assert (
        result.exit_code == 0 and "CONV_2D" in result.stdout and "rules.max_nontrivial_dims" in result.stdout
    )
    data = json.loads(_run("targets", "show", "edgetpu", "--json").stdout)
    assert data["rules"]["max_nontrivial_dims"] == 3 and data["bits_allowed"] == [8]


def test_cli_broken_file_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    _edit(data / "targets/edgetpu.toml", "max_nontrivial_dims = 3", "max_nontrivial_dims = 0")
    monkeypatch.setattr(catalog, "default_data_dir", lambda: data)
    result = _run("targets", "list")
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "edgetpu.toml:" in result.stderr and "rules.max_nontrivial_dims" in result.stderr


def test_demo_step_prints_the_tables(tmp_path: Path) -> None:
    out = Console(record=True, width=200)
    cli_catalog.demo_step(out, tmp_path)
    text = out.export_text()
    assert "hardware profiles" in text and "build targets" in text
    assert all(name in text for name in HARDWARE | TARGETS)
    assert list(tmp_path.iterdir()) == []  # the step writes nothing


def test_profiles_show_json_prints_sources() -> None:
    proc = subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", "profiles", "show", "stm32h743", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["sources"]["efficiency"]["kind"] == "estimated"
    assert shown["sources"]["memory.sram_bytes"] == {"kind": "published", "source": shown["sources"]["memory.sram_bytes"]["source"]}
