"""`ota` shows a bar per chunk the device pulls (watched on a second MQTT connection), with the time left."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console


def test_the_bar_counts_the_chunks_the_device_asks_for() -> None:
    pytest.importorskip("amqtt")
    from kasmina_edge.cli.ota_progress import ota_progress
    from kasmina_edge.net import topics
    from kasmina_edge.net.broker import EmbeddedBroker, free_port
    from kasmina_edge.net.mqtt import MqttClient

    con = Console(width=100, record=True, force_terminal=False)
    with EmbeddedBroker(free_port()) as broker:
        device = MqttClient(broker.url, "fake-device")
        device.connect()
        try:
            with ota_progress(con, broker.url, "default", "patch-01", 77, 8) as on_report:
                on_report({"session": 77, "status": "receiving"})
                req = topics.telemetry("default", "patch-01", "ota_req")
                device.publish(req, json.dumps({"session": 77, "chunks": [0, 1, 2]}), qos=1).wait_for_publish(5)
                device.publish(req, json.dumps({"session": 99, "chunks": [3, 4, 5, 6]}), qos=1).wait_for_publish(5)
                device.publish(req, json.dumps({"session": 77, "chunks": [2, 3, 4]}), qos=1).wait_for_publish(5)
                time.sleep(1.0)  # the watcher's loop delivers
        finally:
            device.close()
    text = con.export_text()
    assert "5/8 pieces" in text, text  # chunks 0-4 of this session; another session's and repeats not counted
    assert "device: receiving" in text
