"""Profiles and targets: every shipped file validates, bad files are named by file/line/field, the CLI works."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import kasmina_edge
from kasmina_edge.core import catalog
from kasmina_edge.core.profiles import PEAK_TOLERANCE, CatalogError, IpLinkProfile, LoRaProfile
from kasmina_edge.core.toml_lines import field_lines, line_of

REPO = Path(kasmina_edge.__file__).resolve().parent.parent

HARDWARE = {
    "coral-usb", "coral-devboard", "stm32h743", "stm32f446", "nrf52840",
    "rpi4", "jetson-nano", "x86-64-host", "npu-u55",
}  # fmt: skip
TARGETS = {"edgetpu", "cortex-m", "linux-arm", "x86"}
IP_LINKS = {"nb-iot", "lte-m", "5g-embb", "5g-urllc", "wifi"}
# LoRaWAN Regional Parameters RP002 (N = application payload without FOpts).
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


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` in the file; return the 1-based line the new text starts on."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    index = text.index(old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text.count("\n", 0, index) + 1


def _error(fn: object) -> str:
    with pytest.raises(CatalogError) as info:
        fn()  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message, "catalog errors are one line"
    return message


# ------------------------------------------------------------------------------------------ shipped data


def test_checkout_is_the_default_data_dir() -> None:
    assert catalog.default_data_dir() == REPO


def test_every_shipped_file_validates_and_cross_references_hold() -> None:
    assert {p.name for p in catalog.list_hardware()} == HARDWARE
    assert {t.name for t in catalog.list_targets()} == TARGETS
    assert set(catalog.network_names()) == set(LORA_MAX_PAYLOAD) | IP_LINKS
    # Each file loads on its own too (the path the CLI's `show` takes).
    for path in sorted((REPO / "profiles" / "hardware").glob("*.toml")):
        assert catalog.hardware(path.stem).name == path.stem
    for path in sorted((REPO / "targets").glob("*.toml")):
        assert catalog.target(path.stem).name == path.stem
    catalog.check_catalog()


def _numbers_without_source(path: Path) -> list[int]:
    """Lines assigning a number with neither an inline comment nor a comment right above their table."""
    bare: list[int] = []
    commented_tables: set[str] = set()
    table, previous = "", ""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if header := re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", stripped):
            table = header.group(1)
            if previous.startswith("#"):
                commented_tables.add(table)
        elif (
            re.match(r"^[A-Za-z0-9_.-]+\s*=\s*[-+0-9]", stripped)
            and "#" not in stripped
            and table not in commented_tables
        ):
            bare.append(lineno)
        previous = stripped
    return bare


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "profiles").glob("*/*.toml")) + sorted((REPO / "targets").glob("*.toml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_number_says_where_it_comes_from(path: Path) -> None:
    assert _numbers_without_source(path) == [], f"{path.name}: numbers without a source comment"


def test_source_check_catches_a_bare_number(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\n[memory]\nsram_bytes = 5\nflash_bytes = 6  # DS1\n', encoding="utf-8")
    assert _numbers_without_source(bad) == [3]


def test_hardware_numbers_match_the_datasheets() -> None:
    h7 = catalog.hardware("stm32h743")
    assert (h7.clock_hz, h7.memory.sram_bytes, h7.memory.flash_bytes) == (480e6, 2**20, 2 * 2**20)
    assert catalog.hardware("stm32f446").clock_hz == 180e6
    assert catalog.hardware("nrf52840").clock_hz == 64e6
    assert catalog.hardware("nrf52840").battery is not None
    pi = catalog.hardware("rpi4")
    assert (pi.cores, pi.clock_hz) == (4, 1.5e9)
    usb = catalog.hardware("coral-usb")
    assert usb.peak("int8") == 4e12
    assert usb.memory.param_cache_bytes == 8 * 2**20
    assert usb.host_link is not None and usb.host_link.host_profile == "x86-64-host"
    assert usb.power.active_w == pytest.approx(2.0)
    npu = catalog.hardware("npu-u55")
    assert npu.kind == "npu" and npu.peak("int8") == pytest.approx(0.512e12)
    with pytest.raises(CatalogError, match="no fp16 compute"):
        h7.peak("fp16")
    for profile in catalog.list_hardware():
        for dtype, peak in profile.peak_ops_per_s.items():
            derived = 2 * profile.macs_per_cycle[dtype] * profile.clock_hz * profile.cores
            assert peak == pytest.approx(derived, rel=PEAK_TOLERANCE)
        assert profile.effective_ops_per_s("int8") < profile.peak("int8")


def test_lorawan_payload_limits_match_the_regional_parameters() -> None:
    lora = {p.name: p for p in catalog.list_network() if isinstance(p, LoRaProfile)}
    assert {name: p.max_payload_bytes for name, p in lora.items()} == LORA_MAX_PAYLOAD
    for name, limit in LORA_MAX_PAYLOAD.items():
        assert catalog.network(name).max_payload_bytes == limit


def test_lorawan_duty_cycle_dwell_time_and_fair_use() -> None:
    eu = catalog.network("lorawan-eu868-dr0")
    us = catalog.network("lorawan-us915-dr0")
    assert isinstance(eu, LoRaProfile) and isinstance(us, LoRaProfile)
    assert (eu.duty_cycle, eu.downlink_duty_cycle, eu.dwell_time_s) == (0.01, 0.10, None)
    assert (us.duty_cycle, us.dwell_time_s) == (None, 0.4)
    region = tomllib.loads((REPO / "profiles/network/lorawan-eu868.toml").read_text(encoding="utf-8"))
    assert sorted(band["duty_cycle"] for band in region["sub_bands"]) == [0.001, 0.01, 0.10]
    for profile in (eu, us):
        assert profile.fair_use.uplink_airtime_s_per_day == 30
        assert profile.fair_use.downlinks_per_day == 10
        assert (profile.preamble_symbols, profile.coding_rate, profile.explicit_header) == (8, "4/5", True)
    assert (eu.data_rate.spreading_factor, eu.data_rate.bandwidth_hz) == (12, 125_000)
    assert catalog.network("lorawan-us915-dr4").data_rate.bandwidth_hz == 500_000  # type: ignore[union-attr]


def test_ip_links_have_rates_latency_and_power() -> None:
    for name in IP_LINKS:
        link = catalog.network(name)
        assert isinstance(link, IpLinkProfile)
        assert link.latency.p99_s > link.latency.median_s and link.latency.sigma > 0
        assert 0 <= link.loss_rate < 0.05
        assert link.radio.tx_power_w > link.radio.sleep_power_w
    urllc, nbiot = catalog.network("5g-urllc"), catalog.network("nb-iot")
    assert isinstance(urllc, IpLinkProfile) and isinstance(nbiot, IpLinkProfile)
    assert urllc.loss_rate == 1e-5
    assert urllc.latency.median_s < nbiot.latency.median_s


def test_targets_carry_the_published_rules() -> None:
    tpu = catalog.target("edgetpu")
    assert (tpu.format, tpu.runtime, tpu.default_profile) == ("tflite-int8", "litert-edgetpu", "coral-usb")
    assert tpu.rules.max_nontrivial_dims == 3 and tpu.rules.static_shapes and tpu.bits_allowed == [8]
    assert tpu.quantization.weights_granularity == "per-channel"
    assert tpu.quantization.activations_granularity == "per-tensor"
    assert tpu.quantization.io_dtype == "int8"
    assert tpu.rules.allows("CONV_2D") and tpu.rules.allows("MEAN") and not tpu.rules.allows("DEQUANTIZE")
    assert tpu.rules.cpu_fallback == "partition"
    cm = catalog.target("cortex-m")
    assert cm.bits_allowed == [8, 4] and cm.quantization.int4_weights and cm.runtime == "tflite-micro"
    assert catalog.target("x86").format == "onnx-qdq"
    assert catalog.target("linux-arm").rules.allows("ANY_OP_AT_ALL")


# ------------------------------------------------------------------------------------------ bad files


def test_bad_value_names_file_line_and_field(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "profiles/hardware/stm32h743.toml"
    line = _edit(path, "sram_bytes = 1_048_576", "sram_bytes = -5")
    message = _error(lambda: catalog.hardware("stm32h743", data))
    assert message.startswith(f"{path}:{line}: field 'memory.sram_bytes':"), message
    assert "greater than or equal to 0" in message and "-5" in message
    # The list path reports the same file.
    assert _error(lambda: catalog.list_hardware(data)) == message


def test_inconsistent_peak_names_the_dtype_line(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "profiles/hardware/stm32f446.toml"
    line = _edit(path, "int8 = 7.2e8", "int8 = 3.0e9")
    message = _error(lambda: catalog.hardware("stm32f446", data))
    assert message.startswith(f"{path}:{line}: field 'peak_ops_per_s.int8':"), message
    assert "2 x macs_per_cycle x clock_hz x cores" in message


def test_bad_value_in_an_array_of_tables(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "profiles/network/lorawan-eu868.toml"
    line = _edit(path, "max_payload_bytes = 115", "max_payload_bytes = 300")
    message = _error(lambda: catalog.network("lorawan-eu868-dr0", data))
    assert message.startswith(f"{path}:{line}: field 'data_rates[3].max_payload_bytes':"), message


def test_bit_rate_that_contradicts_the_modulation(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "profiles/network/lorawan-us915.toml"
    line = _edit(path, "bit_rate_bps = 12500", "bit_rate_bps = 25000")
    message = _error(lambda: catalog.list_network(data))
    assert message.startswith(f"{path}:{line}: field 'data_rates[4].bit_rate_bps':"), message


def test_misspelt_and_missing_fields(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "targets/edgetpu.toml"
    line = _edit(path, "static_shapes = true", "static_shape = true")
    message = _error(lambda: catalog.target("edgetpu", data))
    assert message.startswith(f"{path}:{line}: field 'rules.static_shape':"), message
    assert "unknown field (did you mean 'static_shapes'?)" in message and "(and 1 more)" in message

    path = data / "profiles/network/wifi.toml"
    _edit(path, "loss_rate = 0.001", "")
    message = _error(lambda: catalog.network("wifi", data))
    assert str(path) in message and "field 'loss_rate': Field required" in message


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "targets/x86.toml"
    line = _edit(path, 'format = "onnx-qdq"', 'format = "onnx-qdq')
    message = _error(lambda: catalog.list_targets(data))
    assert message.startswith(f"{path}:{line}: TOML syntax error:"), message


def test_name_must_match_the_file_name(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    shutil.copy(data / "profiles/hardware/rpi4.toml", data / "profiles/hardware/rpi5.toml")
    message = _error(lambda: catalog.hardware("rpi5", data))
    assert "rpi5.toml:" in message and "field 'name'" in message and "must match the file name" in message


def test_unknown_network_kind(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "profiles/network/lte-m.toml"
    line = _edit(path, 'kind = "cellular"', 'kind = "satellite"')
    message = _error(lambda: catalog.network("lte-m", data))
    assert message.startswith(f"{path}:{line}: field 'kind': must be one of lorawan, cellular, wifi"), message


def test_cross_reference_errors(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "targets/cortex-m.toml"
    line = _edit(path, 'default_profile = "stm32h743"', 'default_profile = "stm32h999"')
    message = _error(lambda: catalog.check_catalog(data))
    assert message.startswith(f"{path}:{line}: field 'default_profile': unknown hardware profile"), message

    data = _copy_catalog(tmp_path / "second")
    path = data / "profiles/hardware/rpi4.toml"
    line = _edit(path, 'targets = ["linux-arm"]', 'targets = ["linux-arm", "riscv"]')
    message = _error(lambda: catalog.check_catalog(data))
    assert message.startswith(f"{path}:{line}: field 'targets': unknown target 'riscv'"), message


def test_unknown_names_list_the_known_ones() -> None:
    message = _error(lambda: catalog.hardware("stm32h999"))
    assert message.startswith("unknown hardware profile 'stm32h999'; known: ")
    assert all(name in message for name in HARDWARE)
    message = _error(lambda: catalog.network("lorawan-eu868-dr9"))
    assert "unknown network profile 'lorawan-eu868-dr9'" in message and "lorawan-eu868-dr5" in message
    assert "wifi" in _error(lambda: catalog.network("lorawan-eu868"))  # a region is not a profile
    assert "edgetpu" in _error(lambda: catalog.target("../targets/edgetpu"))  # no path tricks


def test_missing_folder(tmp_path: Path) -> None:
    assert "no profiles/hardware folder" in _error(lambda: catalog.list_hardware(tmp_path))


def test_an_edited_file_loads_afresh(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    assert catalog.hardware("rpi4", data).cores == 4
    _edit(data / "profiles/hardware/rpi4.toml", "cores = 4 ", "cores = 2 ")
    _edit(data / "profiles/hardware/rpi4.toml", "int8 = 1.92e11", "int8 = 0.96e11")
    _edit(data / "profiles/hardware/rpi4.toml", "fp32 = 9.6e10", "fp32 = 4.8e10")
    assert catalog.hardware("rpi4", data).cores == 2


def test_field_lines_reads_tables_arrays_and_dotted_keys() -> None:
    text = "\n".join(
        [
            'name = "x"  # a = b',  # 1
            "ops = [",  # 2
            '  "A = B", "[not.a.table]",',  # 3
            "]",  # 4
            "[power]",  # 5
            "active_w = 1",  # 6
            "[[rates]]",  # 7
            "dr = 0",  # 8
            "[[rates]]",  # 9
            "dr = 1",  # 10
            "limits.max = 3",  # 11
            '[tab."quoted.key"]',  # 12
            "v = 1",  # 13
        ]
    )
    lines = field_lines(text)
    assert lines[("name",)] == 1 and lines[("ops",)] == 2 and ("not", "a", "table") not in lines
    assert lines[("power",)] == 5 and lines[("power", "active_w")] == 6
    assert lines[("rates", 0, "dr")] == 8 and lines[("rates", 1, "dr")] == 10 and lines[("rates", 1)] == 9
    assert lines[("rates", 1, "limits", "max")] == 11
    assert lines[("tab", "quoted.key", "v")] == 13
    assert line_of(("rates", 1, "sf"), text) == 9  # missing key: its table's line
    assert line_of(("absent",), text) == 1


# ------------------------------------------------------------------------------------------ packaged data


def test_loads_from_the_packaged_layout(tmp_path: Path) -> None:
    # The wheel installs the files as kasmina_edge/_data/{profiles,targets}: same tree, other root.
    packaged = _copy_catalog(tmp_path / "site-packages" / "kasmina_edge" / "_data")
    assert {t.name for t in catalog.list_targets(packaged)} == TARGETS
    assert {p.name for p in catalog.list_hardware(packaged)} == HARDWARE
    assert catalog.network("lorawan-us915-dr0", packaged).max_payload_bytes == 11
    catalog.check_catalog(packaged)


def test_installed_package_looks_in_its_own_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Outside a checkout (no pyproject.toml next to the package) the loader uses the package's _data.
    monkeypatch.setattr(catalog, "__file__", str(tmp_path / "site-packages" / "kasmina_edge" / "core" / "catalog.py"))
    found = catalog.default_data_dir()
    assert found.parts[-2:] == ("kasmina_edge", "_data")


@pytest.mark.slow
def test_wheel_ships_profiles_and_targets(tmp_path: Path) -> None:
    """Build the wheel from a copy of the checkout and look for every data file under kasmina_edge/_data."""
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_data")
    for name in ("kasmina_edge", "firmware_sim", "profiles", "targets"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("kasmina-edge\n", encoding="utf-8")  # pyproject names a readme
    dist = tmp_path / "dist"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(dist),
        str(src),
    ]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("kasmina_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"kasmina_edge/_data/targets/{p.name}" for p in (REPO / "targets").glob("*.toml")}
    expected |= {
        f"kasmina_edge/_data/profiles/{p.relative_to(REPO / 'profiles').as_posix()}"
        for p in (REPO / "profiles").glob("**/*.toml")
    }
    assert expected, "no data files found in the checkout"
    assert sorted(expected - names) == [], "data files missing from the wheel"
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    assert {t.name for t in catalog.list_targets(unpacked / "kasmina_edge" / "_data")} == TARGETS


# ------------------------------------------------------------------------------------------ CLI
