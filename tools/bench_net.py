"""Benchmark the telemetry path: airtime, the fair-use day, delivery per link, monitor ingest, simulator speed.

    .venv/bin/python tools/bench_net.py [--json runs/bench_net.json] [--quick]

1. Time on air of each frame type (one record in a packet: 2-byte header + the codec frame; bare where only the
   frame fits) at every EU868 and US915 data rate, from the Semtech formula.
2. The fair-use day at EU868 DR0: 24 h of one device with the default plan (beats at ~75 bpm, PVCs, three VT
   runs, four seed-condition episodes); every uplink in the ledger, airtime against the 30 s budget.
3. Delivery per link profile over a 1 h noisy-walk: the scenario's ground-truth beats (MIT-BIH-like synthetic
   patient, ``kasmina_edge.ecg.scenarios``) feed the device's telemetry as beat events, its condition episodes
   become seed lifecycle events, and three scripted VT runs the critical events. Events delivered / produced
   (within the hour, and after the backlog drained), median and p99 end-to-end latency, airtime, and whether
   every critical event left in the first uplink opportunity after its detection.
4. Monitor ingest: messages/s decoded, deduplicated and stored, 1,000 simulated devices publishing through a
   loopback broker (Mosquitto when installed, else the embedded amqtt), beside the same messages fed to the
   monitor in-process (the broker's share of the cost is the ratio).
5. Link simulator speed in simulated device-hours per second: the whole device pipeline (beat events ->
   records -> queue -> scheduler -> link -> monitor), and the link with its scheduler alone.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kasmina_edge.contracts import codec  # noqa: E402
from kasmina_edge.contracts.events import RuntimeEvent  # noqa: E402
from kasmina_edge.contracts.telemetry import BeatCounts  # noqa: E402
from kasmina_edge.core import catalog  # noqa: E402
from kasmina_edge.core.airtime import time_on_air_s  # noqa: E402
from kasmina_edge.core.profiles import LoRaProfile  # noqa: E402
from kasmina_edge.net.link import Channel  # noqa: E402
from kasmina_edge.net.loopback import LoopbackNetwork  # noqa: E402
from kasmina_edge.net.monitor import Monitor  # noqa: E402
from kasmina_edge.net.ota import OtaError, plan_transfer  # noqa: E402
from kasmina_edge.net.packet import HEADER_BYTES, Packet, SeqRecord, Uplink, encode_packet  # noqa: E402
from kasmina_edge.net.priority import Priority  # noqa: E402
from kasmina_edge.net.session import DeviceLink  # noqa: E402
from tools.net_scenarios import EPOCH, Driver, day_events, noisy_walk_events  # noqa: E402

DELIVERY_LINKS = [
    "lorawan-eu868-dr0",
    "lorawan-eu868-dr3",
    "lorawan-eu868-dr5",
    "lorawan-us915-dr0",
    "lorawan-us915-dr3",
    "nb-iot",
    "lte-m",
    "5g-embb",
    "5g-urllc",
    "wifi",
]
DRAIN_LORA_S = 48 * 3600  # after the hour, the link alone until the backlog is through (or two days)


# --------------------------------------------------------------------------------------------- 1. airtime


def airtime_table() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for region, drs in (("eu868", range(6)), ("us915", range(5))):
        for dr in drs:
            profile = catalog.network(f"lorawan-{region}-dr{dr}")
            row: dict[str, Any] = {}
            for layout in codec.LAYOUTS:
                packed = HEADER_BYTES + layout.size
                if packed <= profile.max_payload_bytes:
                    row[layout.name] = {"bytes": packed, "ms": round(1e3 * time_on_air_s(profile, packed), 1)}
                elif layout.size <= profile.max_payload_bytes:
                    row[layout.name] = {
                        "bytes": layout.size,
                        "ms": round(1e3 * time_on_air_s(profile, layout.size), 1),
                        "bare": True,
                    }
                else:
                    row[layout.name] = None
            full = profile.max_payload_bytes
            row["full_packet"] = {"bytes": full, "ms": round(1e3 * time_on_air_s(profile, full), 1)}
            out[profile.name] = row
    return out


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def delivery(events: list[RuntimeEvent], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in DELIVERY_LINKS:
        d = Driver(name, seed=1)
        lora = isinstance(d.profile, LoRaProfile)
        d.run(events, seconds, step=1.0, drain_s=DRAIN_LORA_S if lora else 600)
        produced = set(d.created)
        got = set(d.arrivals)
        event_subs = [f for f, p in d.submissions if p >= Priority.EVENT]  # runtime events, before merging
        lat = [d.arrivals[f].arrival_at - d.created[f] for f in got if f in d.in_hour]
        crit = [f for f in produced if d.priority[f] == Priority.CRITICAL]
        crit_ok = [
            f for f in crit if f in d.arrivals and d.arrivals[f].sent_at <= d.critical_opportunity[f] + 1.0
        ]
        out[name] = {
            "records_produced": len(produced),
            "events_produced": len(event_subs),
            "events_delivered_in_hour": sum(1 for f in event_subs if f in d.in_hour),
            "events_delivered": sum(1 for f in event_subs if f in got),
            "records_delivered": len(got & produced),
            "duplicates_removed": d.net.monitor.devices["d1"].duplicates
            if "d1" in d.net.monitor.devices
            else 0,
            "latency_median_s": _q(lat, 0.5),
            "latency_p99_s": _q(lat, 0.99),
            "airtime_s": round(d.link.ledger.airtime_s, 3),
            "uplinks": d.link.ledger.uplinks,
            "critical": len(crit),
            "critical_in_first_opportunity": len(crit_ok),
            "critical_latency_max_s": max(
                (d.arrivals[f].arrival_at - d.created[f] for f in crit if f in d.arrivals), default=None
            ),
            "dropped_by_device": d.link.queue.stats.dropped,
            "merged": d.link.queue.stats.merged,
        }
    return out


def fair_use_day() -> dict[str, Any]:
    d = Driver("lorawan-eu868-dr0", seed=2, keep_log=True)
    d.run(day_events(24.0), 86400, step=2.0)
    log = d.link.ledger.log
    profile = d.profile
    assert isinstance(profile, LoRaProfile)
    cumulative, rows = 0.0, []
    for r in log:
        cumulative += r["airtime_s"]
        rows.append({**r, "cumulative_s": round(cumulative, 3)})
    ordinary = sum(r["airtime_s"] for r in log if r["priority"] != "critical")
    critical = sum(r["airtime_s"] for r in log if r["priority"] == "critical")
    crit = [f for f, p in d.priority.items() if p == Priority.CRITICAL]
    worst_hour = 0.0
    for r in log:
        end = r["t"] + r["airtime_s"]
        worst_hour = max(
            worst_hour, sum(x["airtime_s"] for x in log if end - 3600 < x["t"] + x["airtime_s"] <= end)
        )
    return {
        "uplinks": len(log),
        "airtime_s": round(cumulative, 3),
        "airtime_ordinary_s": round(ordinary, 3),
        "airtime_critical_s": round(critical, 3),
        "budget_s": profile.fair_use.uplink_airtime_s_per_day,
        "downlinks_used": d.link.network.fair_use.downlinks_per_day
        - d.link.network.fair_use.downlinks_left(86400)
        if d.link.network is not None and d.link.network.fair_use is not None
        else None,
        "worst_hour_airtime_s": round(worst_hour, 3),
        "duty_cycle_hour_budget_s": profile.duty_cycle * 3600 if profile.duty_cycle else None,
        "critical_events": len(crit),
        "critical_delivered": sum(1 for f in crit if f in d.arrivals),
        "critical_latency_s": [
            round(d.arrivals[f].arrival_at - d.created[f], 1) for f in crit if f in d.arrivals
        ],
        "records_produced": len(d.created),
        "records_delivered": len(d.arrivals),
        "ledger": rows,
    }


# --------------------------------------------------------------------------------------------- 4. ingest


def _messages(devices: int, per_device: int, seed: int = 0) -> list[tuple[str, bytes]]:
    from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, DeviceStatus, Severity, Slot
    from kasmina_edge.net import topics

    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for k in range(per_device):
        for dev in range(devices):
            name = f"dev-{dev:04d}"
            f0 = 3 * k
            recs = [
                SeqRecord(
                    f0,
                    BeatCounts(0, int(EPOCH) + 60 * k, 60, 70 + rng.randrange(10), 0, rng.randrange(3), 0, 0),
                ),
                SeqRecord(f0 + 1, DeviceStatus(0, int(EPOCH) + 60 * k, 90, 60 * k, Slot.A, 3)),
                SeqRecord(
                    f0 + 2,
                    AnomalyEvent(
                        0, int(EPOCH) + 60 * k, AnomalyKind.PVC_RUN, Severity.WARNING, 100, 100, 0.7
                    ),
                ),
            ]
            payload = encode_packet(Packet(tuple(recs)))
            up = Uplink(name, "lorawan-eu868-dr3", k + 1, 60.0 * k, 60.0 * k + 0.5, 0.2, payload, EPOCH)
            out.append((topics.telemetry("bench", name, "batch"), up.to_bytes()))
    return out


def _broker() -> tuple[Any, str, str]:
    """(handle, url, name): Mosquitto when installed (a subprocess), else the embedded amqtt broker."""
    from kasmina_edge.net.broker import EmbeddedBroker, free_port

    port = free_port()
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary:
        folder = Path(tempfile.mkdtemp(prefix="bench-mosq-"))
        conf = folder / "m.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_queued_messages 100000\nlog_dest none\n"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)
        return proc, f"mqtt://127.0.0.1:{port}", "mosquitto"
    broker = EmbeddedBroker(port).start()
    return broker, broker.url, "amqtt (embedded)"


def ingest(devices: int, per_device: int) -> dict[str, Any]:
    from kasmina_edge.net.cloud import MonitorService
    from kasmina_edge.net.mqtt import MqttClient

    msgs = _messages(devices, per_device)
    tmp = Path(tempfile.mkdtemp(prefix="bench-net-"))
    # in-process: decode, dedup, reorder, store
    m = Monitor(tmp / "inproc.jsonl", flush_every=512)
    t0 = time.perf_counter()
    for topic, payload in msgs:
        m.ingest(topic, payload)
    m.close()
    inproc_s = time.perf_counter() - t0
    # through the broker
    handle, url, name = _broker()
    try:
        service = MonitorService(url, fleet="bench", store=tmp / "broker.jsonl").start()
        service.monitor.store.flush_every = 512
        pubs = [MqttClient(url, f"bench-pub-{i}") for i in range(4)]
        for p in pubs:
            p._client.max_inflight_messages_set(1000)
            p.connect()
        t0 = time.perf_counter()

        def publish(part: list[tuple[str, bytes]], client: MqttClient) -> None:
            for topic, payload in part:
                client.publish(topic, payload, qos=1)

        threads = [threading.Thread(target=publish, args=(msgs[i::4], pubs[i])) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        deadline = time.monotonic() + 120
        while service.monitor.stats.messages < len(msgs) and time.monotonic() < deadline:
            time.sleep(0.05)
        broker_s = time.perf_counter() - t0
        received = service.monitor.stats.messages
        records = service.monitor.stats.records
        for p in pubs:
            p.close()
        service.close()
    finally:
        if isinstance(handle, subprocess.Popen):
            handle.terminate()
            handle.wait(5)
        else:
            handle.stop()
    return {
        "devices": devices,
        "messages": len(msgs),
        "broker": name,
        "received": received,
        "records": records,
        "broker_msgs_per_s": round(received / broker_s, 1),
        "inprocess_msgs_per_s": round(len(msgs) / inproc_s, 1),
        "inprocess_records_per_s": round(3 * len(msgs) / inproc_s, 1),
        "broker_over_inprocess": round((received / broker_s) / (len(msgs) / inproc_s), 3),
    }


# --------------------------------------------------------------------------------------------- 5. speed


def simulator_speed(full_devices: int, link_devices: int) -> dict[str, Any]:
    events = day_events(24.0, seed=3)
    t0 = time.perf_counter()
    net = LoopbackNetwork(Monitor())
    for k in range(full_devices):
        Driver("lorawan-eu868-dr0", seed=k, net=net, device=f"full-{k}").run(events, 86400, step=10.0)
    full_s = time.perf_counter() - t0
    # the link and its scheduler alone: one beat-count record a minute per device, ticks every minute
    t0 = time.perf_counter()
    net = LoopbackNetwork(Monitor())
    profile = catalog.network("lorawan-eu868-dr0")
    for k in range(link_devices):
        link = DeviceLink(f"link-{k}", profile, net, channel=Channel(profile, seed=k))
        net.attach(link)
        for minute in range(24 * 60):
            t = minute * 60.0
            link.queue.submit(BeatCounts(0, int(EPOCH + t), 60, 75, 0, 1, 0, 0), t)
            link.tick(t)
            net.advance(t)
    link_s = time.perf_counter() - t0
    return {
        "full_pipeline_device_days": full_devices,
        "full_pipeline_device_hours_per_s": round(24 * full_devices / full_s, 1),
        "full_pipeline_beat_events_per_s": round(len(events) * full_devices / full_s),
        "link_only_device_days": link_devices,
        "link_only_device_hours_per_s": round(24 * link_devices / link_s, 1),
        "ratio_link_over_full": round((24 * link_devices / link_s) / (24 * full_devices / full_s), 1),
    }


def kernel_arrival() -> dict[str, Any]:
    """How long a 6 KB kernel bundle takes to arrive on each link (the plan's estimate, nothing lost)."""
    size = 7_000  # a 6 KB kernel plus manifest and signature, zipped
    out = {}
    for name in DELIVERY_LINKS:
        try:
            plan = plan_transfer(catalog.network(name), size)
        except OtaError as exc:
            out[name] = {"mode": "-", "pieces": 0, "parity": 0, "estimate_s": None, "note": str(exc)}
            continue
        out[name] = {
            "mode": plan.mode,
            "pieces": plan.pieces,
            "parity": plan.parity,
            "estimate_s": round(plan.estimate_s, 1),
            "note": plan.note,
        }
    return out


# --------------------------------------------------------------------------------------------- tables


def airtime_view(air: dict[str, Any]) -> Table:
    t = Table(title="time on air per frame type (one record + 2-byte packet header; bare = frame alone), ms")
    t.add_column("data rate")
    names = [layout.name for layout in codec.LAYOUTS] + ["full_packet"]
    for n in names:
        t.add_column(n.replace("_", " "), justify="right")
    for dr, row in air.items():
        t.add_row(
            dr,
            *[
                "-" if row[n] is None else f"{row[n]['ms']:.0f}" + ("*" if row[n].get("bare") else "")
                for n in names
            ],
        )
    return t


def fair_use_view(day: dict[str, Any]) -> Table:
    t = Table(
        title=f"EU868 DR0, 24 h: {day['uplinks']} uplinks, {day['airtime_s']:.1f} s airtime "
        f"(ordinary {day['airtime_ordinary_s']:.1f} s + critical {day['airtime_critical_s']:.1f} s; budget "
        f"{day['budget_s']:.0f} s), worst hour {day['worst_hour_airtime_s']:.1f} s of {day['duty_cycle_hour_budget_s']:.0f} s"
    )
    for col in ("time", "airtime s", "bytes", "records", "priority", "outcome", "cumulative s"):
        t.add_column(col, justify="right")
    for r in day["ledger"]:
        t.add_row(
            time.strftime("%H:%M:%S", time.gmtime(r["t"])),
            f"{r['airtime_s']:.2f}",
            str(r["bytes"]),
            str(r["records"]),
            r["priority"],
            r["outcome"],
            f"{r['cumulative_s']:.1f}",
        )
    return t


def delivery_view(dl: dict[str, Any], info: dict[str, Any]) -> Table:
    t = Table(
        title=f"1 h noisy-walk ({info['beats']} beats, conditions {info['conditions']}): delivery per link"
    )
    for col in (
        "link",
        "events in 1 h",
        "events after drain",
        "records",
        "latency p50 s",
        "latency p99 s",
        "airtime s",
        "uplinks",
        "critical 1st opp.",
        "dup removed",
        "dropped",
    ):
        t.add_column(col, justify="right" if col != "link" else "left")
    for name, r in dl.items():
        t.add_row(
            name,
            f"{r['events_delivered_in_hour']}/{r['events_produced']}",
            f"{r['events_delivered']}/{r['events_produced']}",
            f"{r['records_delivered']}/{r['records_produced']}",
            "-" if r["latency_median_s"] is None else f"{r['latency_median_s']:.2f}",
            "-" if r["latency_p99_s"] is None else f"{r['latency_p99_s']:.2f}",
            f"{r['airtime_s']:.2f}",
            str(r["uplinks"]),
            f"{r['critical_in_first_opportunity']}/{r['critical']}",
            str(r["duplicates_removed"]),
            str(r["dropped_by_device"]),
        )
    return t


def kernel_arrival_view(ka: dict[str, Any]) -> Table:
    t = Table(title="a 7 KB kernel bundle: transfer plan per link (nothing lost)")
    for col in ("link", "mode", "pieces + parity", "time"):
        t.add_column(col)
    for name, r in ka.items():
        when = "-" if r["estimate_s"] is None else f"{r['estimate_s']:,.1f} s"
        t.add_row(name, r["mode"], f"{r['pieces']} + {r['parity']}", when)
    return t


def ingest_view(ing: dict[str, Any], devices: int) -> Table:
    t = Table(title=f"monitor ingest: {ing['messages']:,} messages from {devices} devices")
    for col in ("path", "messages/s", "records/s"):
        t.add_column(col, justify="right")
    t.add_row(
        f"through {ing['broker']} on loopback",
        f"{ing['broker_msgs_per_s']:,.0f}",
        f"{3 * ing['broker_msgs_per_s']:,.0f}",
    )
    t.add_row(
        "in-process (no broker)",
        f"{ing['inprocess_msgs_per_s']:,.0f}",
        f"{ing['inprocess_records_per_s']:,.0f}",
    )
    t.add_row("ratio broker / in-process", f"{ing['broker_over_inprocess']:.2f}", "")
    return t


def speed_view(sp: dict[str, Any]) -> Table:
    t = Table(title="link simulator speed, EU868 DR0")
    for col in ("what", "device-hours / s"):
        t.add_column(col, justify="right")
    t.add_row(
        f"whole device pipeline ({sp['full_pipeline_beat_events_per_s']:,} beat events/s)",
        f"{sp['full_pipeline_device_hours_per_s']:,.0f}",
    )
    t.add_row("link + scheduler alone", f"{sp['link_only_device_hours_per_s']:,.0f}")
    t.add_row("ratio", f"{sp['ratio_link_over_full']:.1f}x")
    return t


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_net.json")
    ap.add_argument("--quick", action="store_true", help="fewer devices and messages (a smoke run)")
    args = ap.parse_args(argv)
    con = Console(width=170)
    result: dict[str, Any] = {"argv": sys.argv[1:]}

    result["time_on_air_ms"] = air = airtime_table()
    con.print(airtime_view(air))

    con.print("fair-use day at EU868 DR0 ...")
    result["fair_use_day_eu868_dr0"] = day = fair_use_day()
    con.print(fair_use_view(day))
    con.print(
        f"critical events {day['critical_delivered']}/{day['critical_events']} delivered, latency "
        f"{day['critical_latency_s']} s; records {day['records_delivered']}/{day['records_produced']}"
    )

    con.print("delivery per link over a 1 h noisy-walk ...")
    events, info = noisy_walk_events(60.0)
    result["noisy_walk"] = info
    result["delivery_1h_noisy_walk"] = dl = delivery(events, 3600.0)
    con.print(delivery_view(dl, info))

    result["kernel_arrival"] = ka = kernel_arrival()
    con.print(kernel_arrival_view(ka))

    devices, per = (200, 5) if args.quick else (1000, 10)
    con.print(f"monitor ingest, {devices} devices x {per} messages ...")
    result["monitor_ingest"] = ing = ingest(devices, per)
    con.print(ingest_view(ing, devices))

    con.print("link simulator speed ...")
    result["simulator_speed"] = sp = simulator_speed(2 if args.quick else 5, 20 if args.quick else 100)
    con.print(speed_view(sp))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(args.json.name + ".partial")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(args.json)
    con.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
