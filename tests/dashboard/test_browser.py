"""The dashboard in a real headless Chromium (Playwright driving the Debian ``chromium``), live over Mosquitto.

Emulated devices publish through their link simulator to a real broker; the dashboard's monitor writes the
SQLite store; the pages update by server push. The fleet page lists the devices; a seed transition a device
publishes is on its timeline within 2 s; a critical alarm shows on both pages; a strip requested from the page
(a signed command to the device and back, sealed) is drawn; the browser logged no error. Skipped with the
reason when chromium, Playwright or mosquitto is missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from live_fleet import Driver
from mosquitto_broker import Mosquitto, require_mosquitto

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, Severity
from kasmina_edge.net.broker import free_port
from kasmina_edge.net.priority import Priority

pytest.importorskip("fastapi", reason="the server extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
DEVICES = ["ward-a", "ward-b", "ward-c"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from kasmina_edge.dashboard.server import DashboardBackend, DashboardServer

    require_mosquitto()
    tmp = tmp_path_factory.mktemp("dash")
    mp = pytest.MonkeyPatch()
    mp.setenv("KASMINA_COMMAND_KEYS", str(tmp / "operator-keys"))
    broker = Mosquitto(tmp / "mq").start()
    backend = server = driver = None
    try:
        backend = DashboardBackend(broker.url, f"sqlite:///{tmp / 'store.sqlite'}", audit_path=tmp / "audit.jsonl")
        backend.start()
        server = DashboardServer(backend, port=free_port()).start()
        driver = Driver(broker.url, DEVICES, tmp / "devices")
        yield {"url": server.url, "driver": driver, "backend": backend}
    finally:
        if driver is not None:
            driver.close()
        if server is not None:
            server.stop()
        if backend is not None:
            backend.close()
        broker.stop()
        mp.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    pg.close()
    assert errors == [], f"the browser logged errors: {errors}"


def test_fleet_page_lists_the_running_devices(stack: dict[str, Any], page: Any) -> None:
    page.goto(stack["url"] + "/")
    for name in DEVICES:
        sync_api.expect(page.locator(f'#fleet tr[data-device="{name}"]')).to_be_visible(timeout=15_000)
    row = page.locator('#fleet tr[data-device="ward-a"]')
    sync_api.expect(row).to_contain_text("wifi")
    sync_api.expect(row).to_contain_text("online")


def test_a_seed_transition_is_on_its_timeline_within_2_s(
    stack: dict[str, Any], page: Any, record_property: Any
) -> None:
    driver: Driver = stack["driver"]
    page.goto(stack["url"] + "/device/ward-b")
    sync_api.expect(page.locator("#state")).to_contain_text("wifi", timeout=15_000)
    delays = []
    for dst in (Stage.GERMINATED, Stage.TRAINING):
        with driver.lock:
            t = time.monotonic()
            ev = driver.devices["ward-b"].move_seed()
        assert ev is not None and ev.dst == dst
        published = driver.publishes_after("ward-b", t)
        item = page.locator("#timeline li.event", has_text=f"→ {dst.name}")
        sync_api.expect(item).to_be_visible(timeout=5_000)
        delays.append(time.monotonic() - published)
    record_property("publish_to_timeline_s", [round(d, 3) for d in delays])
    print(f"publish to timeline: {[round(d, 3) for d in delays]} s")
    assert max(delays) <= 2.0, f"transition to timeline took {delays} s"
    sync_api.expect(page.locator("#timeline li.pass", has_text="G0 passed")).to_be_visible()
    sync_api.expect(page.locator('#timeline .lane[data-site="1"] rect.stage[data-stage="TRAINING"]')).to_have_count(1)


def test_an_alert_shows_on_the_device_and_the_fleet_page(stack: dict[str, Any], page: Any) -> None:
    driver: Driver = stack["driver"]
    page.goto(stack["url"] + "/device/ward-c")
    sync_api.expect(page.locator("#state")).to_contain_text("wifi", timeout=15_000)
    with driver.lock:
        tel = driver.devices["ward-c"].tel
        tel.submit_priority(AnomalyEvent(0, int(time.time()), AnomalyKind.VT_RUN, Severity.CRITICAL, 0, 2400, 0.93),
                            Priority.CRITICAL)
    sync_api.expect(page.locator("#alerts li.alert.critical", has_text="vt_run")).to_be_visible(timeout=5_000)
    sync_api.expect(page.locator("#alert-plot circle.mark")).not_to_have_count(0)
    page.goto(stack["url"] + "/")
    badge = page.locator('#fleet tr[data-device="ward-c"] .alert-count')
    sync_api.expect(badge).to_have_class("badge critical alert-count", timeout=5_000)
    sync_api.expect(badge).to_contain_text("vt_run")


def test_a_requested_ecg_strip_is_drawn(stack: dict[str, Any], page: Any) -> None:
    page.goto(stack["url"] + "/device/ward-a")
    sync_api.expect(page.locator("#state")).to_contain_text("wifi", timeout=15_000)
    page.click("#request-strip")
    strip = page.locator("#strips figure.strip svg polyline.ecg")
    sync_api.expect(strip).to_have_count(1, timeout=20_000)
    points = strip.get_attribute("points") or ""
    assert len(points.split()) == 720  # 2 s at 360 Hz, every sample drawn
    ys = {p.split(",")[1] for p in points.split()}
    assert len(ys) > 50  # a signal, not a flat line
    sync_api.expect(page.locator("#strips figcaption")).to_contain_text("720 samples at 360 Hz")


def test_pages_and_assets_come_from_the_package(stack: dict[str, Any], page: Any) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(stack["url"] + "/device/ward-a")
    page.wait_for_timeout(500)  # SSE keeps the network busy: no "networkidle" to wait for
    assert requested and all(u.startswith(stack["url"]) for u in requested), requested
