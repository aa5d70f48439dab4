"""`kasmina-edge dashboard` as a user starts it: it serves its pages and assets, its API answers, it stops after
--seconds with a JSON summary; bad input is one line and exit 2. Skipped without mosquitto."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "net"))

from mosquitto_broker import Mosquitto, require_mosquitto  # noqa: E402

from kasmina_edge.net.broker import free_port  # noqa: E402

pytest.importorskip("fastapi", reason="the server extra is not installed")


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require_mosquitto()
    b = Mosquitto(tmp_path / "mq").start()
    try:
        yield b
    finally:
        b.stop()


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers.get("content-type", ""), r.read()


def test_the_dashboard_serves_its_pages_and_stops_with_a_summary(broker: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KASMINA_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kasmina_edge.cli.app", "dashboard", "--mqtt", broker.url, "--store",
         f"sqlite:///{tmp_path / 'store.sqlite'}", "--port", str(port), "--seconds", "8", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        pages: dict[str, Any] = {p: _get(base + p) for p in ("/", "/device/x", "/static/charts.js", "/favicon.ico")}
        assert all(status == 200 for status, _, _ in pages.values())
        assert b"kasmina-edge" in pages["/"][2] and "text/html" in pages["/"][1]
        assert "javascript" in pages["/static/charts.js"][1]
        assert json.loads(_get(base + "/api/fleet")[2])["devices"] == []
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(base + "/api/device/nobody")
        assert missing.value.code == 404
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["url"] == base and summary["store"].endswith("store.sqlite") and summary["devices"] == []
    assert (tmp_path / "store.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "mysql://x@h/db"], "only sqlite:/// and postgresql://"),
        (["--port", "0"], "--port"),
        (["--bundle", "no-such.kedge"], "no-such.kedge"),
    ],
)
def test_bad_input_is_one_line(kasmina: Any, broker: Mosquitto, args: list[str], message: str) -> None:
    out = kasmina("dashboard", "--mqtt", broker.url, "--port", str(free_port()), "--seconds", "1", *args)
    assert out.code == 2, (out.out, out.err)
    assert len(out.err_lines) == 1 and message in out.err, out.err


def test_a_broker_that_is_not_there_is_one_line(kasmina: Any) -> None:
    out = kasmina("dashboard", "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--seconds", "1")
    assert out.code == 2 and len(out.err_lines) == 1, out.err


def test_a_port_in_use_is_one_line(kasmina: Any, broker: Mosquitto) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = kasmina("dashboard", "--mqtt", broker.url, "--port", str(s.getsockname()[1]), "--seconds", "1")
    assert out.code == 2 and "already in use" in out.err and len(out.err_lines) == 1, out.err
