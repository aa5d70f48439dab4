"""`kasmina-edge ota` while it works: a bar of the pieces the device has asked for, with the time left.

The transfer itself is :func:`kasmina_edge.net.ota.run_ota`; this watches the same session from a second
MQTT connection (the device's ``ota_req`` messages name the chunks it pulls), so the bar moves per chunk
and its ETA comes from the pace the device actually keeps, not from the link's airtime alone. A LoRaWAN
transfer (fragments pushed, none requested) shows the device's reports only.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console


@contextmanager
def ota_progress(
    con: Console,
    url: str,
    fleet: str,
    device: str,
    session: int,
    pieces: int,
    *,
    chunked: bool = True,
    tls: Any = None,
    username: str | None = None,
    password: str | None = None,
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich progress bar for one OTA session; yields the ``on_progress`` callback for the device's reports."""
    from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Pieces(ProgressColumn):  # 'n/N pieces' and the time left, only where the count is known (no '0/?')
        def render(self, task: Task) -> Text:
            if task.total is None:
                return Text("")
            left = task.time_remaining
            eta = "" if left is None or task.finished else f", ~{int(left) // 60}:{int(left) % 60:02d} left"
            return Text(f"{int(task.completed)}/{int(task.total)} pieces{eta}")

    from kasmina_edge.net import topics
    from kasmina_edge.net.mqtt import MqttClient

    seen: set[int] = set()
    lock = threading.Lock()
    t0 = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=24), Pieces(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), console=con, transient=False,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"ota → {device}", total=pieces if chunked else None, info="offered")

        def on_request(_topic: str, payload: bytes) -> None:
            try:
                body = json.loads(payload)
            except ValueError:
                return
            if not isinstance(body, dict) or body.get("session") != session:
                return
            with lock:
                seen.update(i for i in body.get("chunks", []) if isinstance(i, int) and not isinstance(i, bool))
                progress.update(task, completed=min(len(seen), pieces), info="pulling")

        def on_report(rep: dict[str, Any]) -> None:
            what = str(rep.get("status")) + (f" ({rep.get('reason')})" if rep.get("reason") else "")
            if rep.get("final") and chunked:
                progress.update(task, completed=pieces)
            progress.update(task, info=what)
            progress.console.print(f"  {time.monotonic() - t0:6.1f} s  device: {what}", highlight=False)

        watcher = None
        if chunked:
            watcher = MqttClient(url, f"kasmina-ota-watch-{secrets.token_hex(4)}", tls=tls, username=username,
                                 password=password)  # fmt: skip
            watcher.subscribe(topics.telemetry(fleet, device, "ota_req"), on_request, qos=0)
            watcher.connect()
        try:
            yield on_report
        finally:
            if watcher is not None:
                watcher.close()
