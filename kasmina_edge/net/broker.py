"""An embedded MQTT broker (amqtt) on loopback, for a laptop and for tests: ``kasmina-edge broker``.

amqtt is asyncio; :class:`EmbeddedBroker` runs it on its own event loop in a daemon thread so synchronous code
(paho clients, the CLI) can start and stop it. It binds 127.0.0.1 only: a broker without credentials must not
listen on a network. amqtt is imported when a broker starts, never at import time (a device does not install it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.optional import require

LOOPBACK = "127.0.0.1"


class BrokerError(KasminaError):
    """The embedded broker could not start (port in use, amqtt missing)."""


def port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_config(port: int, host: str = LOOPBACK) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "timeout_disconnect_delay": 0,
        # anonymous on loopback only; no $SYS publisher, no per-packet logging
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


class EmbeddedBroker:
    """``with EmbeddedBroker(port) as b: ...`` or ``start()`` / ``stop()``."""

    def __init__(self, port: int = 1883, host: str = LOOPBACK) -> None:
        if host not in (LOOPBACK, "localhost", "::1"):
            raise BrokerError(
                f"the embedded broker binds loopback only, not {host!r} (use Mosquitto with TLS)"
            )
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        require("amqtt", "the embedded MQTT broker")
        if not port_free(self.port, self.host):
            raise BrokerError(
                f"port {self.port} on {self.host} is in use (another broker running?); use --port"
            )
        self._thread = threading.Thread(target=self._run, name="kasmina-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise BrokerError(f"the embedded broker did not start within {timeout_s:.0f} s")
        if self._error is not None:
            raise BrokerError(f"the embedded broker failed to start: {self._error}")
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._broker = Broker(broker_config(self.port, self.host), loop=loop)
            loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        fut = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        with contextlib.suppress(Exception):  # a broker that fails to shut down cleanly is stopped anyway
            fut.result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
