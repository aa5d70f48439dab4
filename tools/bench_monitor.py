"""Benchmark the monitor's ingest: per worker with each store, and 1, 2, 4 workers on MQTT shared subscriptions.

    .venv/bin/python tools/bench_monitor.py [--json runs/bench_monitor.json] [--devices 200] [--messages 40]
        [--workers 1,2,4] [--pg postgresql://USER@HOST:PORT/DB]

1. One worker, in-process (no broker): the same LoRaWAN uplinks (three records each, every device counting from
   0) fed to :class:`~kasmina_edge.net.monitor.Monitor` with no store, the JSON-lines store, SQLite and
   PostgreSQL. Messages and records per second; ratio to the store-less monitor.
2. Scale-out on Mosquitto: N worker processes, each a monitor writing PostgreSQL (SQLite where no PostgreSQL is
   at hand), subscribed to ``$share/monitors/kasmina/bench/+/telemetry/#``; a publisher sends every message
   (QoS 1) and the broker spreads them over the workers. Messages/s from the first message in to the last one
   stored, per worker and in total; ratio to one worker. The store must hold every record exactly once.

PostgreSQL: ``--pg URL`` or a throwaway cluster from the Debian binaries (tests/dashboard/pg_cluster.py).
Mosquitto shares a subscription round-robin, so one device's uplinks reach several workers: each worker's
reorder buffer then sees gaps (its records are released at the end) and the store's unique (device, sequence)
key keeps every record once; deploy/CAPACITY.md says how a deployment keeps a device on one worker instead.
The machine's core count caps the scale-out: the figures say how many cores this machine had.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kasmina_edge.contracts.telemetry import AnomalyEvent, AnomalyKind, BeatCounts, Severity  # noqa: E402
from kasmina_edge.net import topics  # noqa: E402
from kasmina_edge.net.monitor import Monitor  # noqa: E402
from kasmina_edge.net.packet import Packet, SeqRecord, Uplink, encode_packet  # noqa: E402

FLEET = "bench"
SHARE = f"$share/monitors/kasmina/{FLEET}/+/telemetry/#"
T0 = 1_800_000_000


def messages(devices: int, per_device: int) -> list[tuple[str, bytes]]:
    """LoRaWAN EU868 DR3 uplinks of three records each, devices interleaved as a broker delivers them."""
    out: list[tuple[str, bytes]] = []
    for k in range(per_device):
        for d in range(devices):
            name = f"dev{d:05d}"
            recs = []
            for j in range(3):
                fseq = 3 * k + j
                rec: Any = (BeatCounts(0, T0 + fseq, 60, 70, 1, 1, 0, 0) if j else
                            AnomalyEvent(0, T0 + fseq, AnomalyKind.PVC_RUN, Severity.WARNING, 0, 900, 0.8))
                recs.append(SeqRecord(fseq, rec))
            payload = encode_packet(Packet(tuple(recs), ()))
            up = Uplink(name, "lorawan-eu868-dr3", k, k * 60.0, k * 60.0 + 1.2, 0.2, payload, float(T0))
            out.append((topics.telemetry(FLEET, name, "batch"), up.to_bytes()))
    return out


def ingest_once(store: Any, msgs: list[tuple[str, bytes]]) -> dict[str, Any]:
    monitor = Monitor(store)
    t0 = time.perf_counter()
    for topic, payload in msgs:
        monitor.ingest(topic, payload)
    monitor.close()
    wall = time.perf_counter() - t0
    s = monitor.summary()
    return {"messages": s["messages"], "records": s["records"], "wall_s": round(wall, 3),
            "msgs_per_s": round(s["messages"] / wall), "records_per_s": round(s["records"] / wall)}


# --------------------------------------------------------------------------------------------- scale-out


def _worker(url: str, store: str, index: int, expected: int, ready: Any, out: Any) -> None:
    """One monitor worker on the shared subscription: counts, ingests, stores; reports its figures."""
    import threading

    import paho.mqtt.client as paho

    monitor = Monitor(store)
    lock = threading.Lock()
    state = {"first": 0.0, "last": 0.0, "n": 0}

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            if not state["n"]:
                state["first"] = time.perf_counter()
            monitor.ingest(msg.topic, bytes(msg.payload))
            state["n"] += 1
            state["last"] = time.perf_counter()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(SHARE, qos=1)

    client = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=f"bench-monitor-{index}",
                         protocol=paho.MQTTv5)  # fmt: skip
    client.on_message, client.on_connect = on_message, on_connect
    client.on_subscribe = lambda *a: ready.put(index)
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    quiet_since = time.monotonic()
    last_n = -1
    while True:  # stop when the stream has been quiet for 2 s after it began
        time.sleep(0.2)
        with lock:
            n = state["n"]
        if n != last_n:
            last_n, quiet_since = n, time.monotonic()
        elif time.monotonic() - quiet_since > (2.0 if n else 120.0):
            break
    client.loop_stop()
    client.disconnect()
    t = time.perf_counter()
    monitor.close()  # the records held back for reordering go to the store too: part of the work
    close_s = time.perf_counter() - t
    out.put({"worker": index, "messages": state["n"], "records": monitor.stats.records, "first": state["first"],
             "last": state["last"] + close_s, "close_s": round(close_s, 3)})  # fmt: skip


def _publish(url: str, msgs: list[tuple[str, bytes]]) -> float:
    import paho.mqtt.client as paho

    client = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id="bench-publisher",
                         protocol=paho.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    t0 = time.perf_counter()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in msgs]
    for info in infos:
        info.wait_for_publish(60)
    wall = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return wall


def scale_out(url: str, store_for: Any, workers: int, msgs: list[tuple[str, bytes]]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    store = store_for()
    procs = [ctx.Process(target=_worker, args=(url, store, i, len(msgs), ready, out)) for i in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    publish_s = _publish(url, msgs)
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    first = min(r["first"] for r in results if r["messages"])
    last = max(r["last"] for r in results)
    wall = last - first
    total = sum(r["messages"] for r in results)
    stored = _count(store)
    return {"workers": workers, "messages": total, "records_stored": stored, "wall_s": round(wall, 3),
            "msgs_per_s": round(total / wall), "per_worker": [r["messages"] for r in results],
            "msgs_per_s_per_worker": round(total / wall / workers), "publish_s": round(publish_s, 3),
            "store": store.split("@")[-1]}  # fmt: skip


def _count(url: str) -> int:
    from kasmina_edge.net.store import open_store, records

    st = open_store(url)
    try:
        return st.count(records)
    finally:
        st.close()


# --------------------------------------------------------------------------------------------- services


class Services:
    """A Mosquitto broker and, unless --pg was given, a throwaway PostgreSQL cluster; both stopped at the end."""

    def __init__(self, pg_url: str | None) -> None:
        sys.path.insert(0, str(ROOT / "tests" / "net"))
        sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
        self.pg_url = pg_url
        self.pg: Any = None
        self.broker: Any = None

    def postgres(self) -> Any:
        """A fresh database per call (a function), or None where PostgreSQL is not installed."""
        if self.pg_url:
            return lambda: self.pg_url
        from pg_cluster import PgCluster, pg_bin

        if pg_bin() is None:
            return None
        if self.pg is None:
            self.pg = PgCluster().start()
        return self.pg.new_database

    def mosquitto(self) -> str | None:
        from mosquitto_broker import Mosquitto, mosquitto_path

        if mosquitto_path() is None:
            return None
        self.broker = Mosquitto(self.tmp / "mq")
        conf = self.broker.conf.read_text() + "max_queued_messages 0\nmax_inflight_messages 0\n"
        self.broker.conf.write_text(conf)
        self.broker.start()
        return str(self.broker.url)

    def close(self) -> None:
        import shutil

        if self.broker is not None:
            self.broker.stop()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def fleet_run(url: str, store: str, devices: int, minutes: float, link: str, speed: float, home: Path) -> dict[str, Any]:
    """``devices`` emulated devices for ``minutes`` through the broker into the store: was anything lost?"""
    from kasmina_edge.dashboard.fleet_up import FleetSpec, fleet_up
    from kasmina_edge.dashboard.server import DashboardBackend
    from kasmina_edge.net.store import open_store, records

    os.environ.setdefault("KASMINA_COMMAND_KEYS", str(home / "command-keys"))
    backend = DashboardBackend(url, store).start()
    try:
        run = fleet_up(FleetSpec(devices, link, url, minutes * 60.0, home=home, speed=speed))
        time.sleep(2.0)
        summary = backend.service.summary()
    finally:
        backend.close()
    st = open_store(store)
    try:
        missing = extra = 0
        for name, d in run.devices.items():
            got, sent = set(st.fseqs(name)), set(d["fseqs"])
            missing += len(sent - got)
            extra += len(got - sent)
        stored = st.count(records)
    finally:
        st.close()
    totals = run.totals()
    sim_h = totals["simulated_s"] / 3600
    return {**totals, "stored_records": stored, "missing": missing, "not_sent_but_stored": extra,
            "monitor_messages": summary["messages"], "duplicates_seen": summary["duplicates"], "link": link,
            "uplinks_per_device_hour": round(totals["uplinks"] / devices / sim_h, 2),
            "records_per_device_hour": round(totals["delivered_records"] / devices / sim_h, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_monitor.json")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--messages", type=int, default=40, help="uplinks per device")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: a throwaway cluster)")
    ap.add_argument("--fleet", type=int, default=0, help="instead: run this many emulated devices (fleet up)")
    ap.add_argument("--minutes", type=float, default=10.0, help="with --fleet: wall-clock minutes")
    ap.add_argument("--link", default="lorawan-eu868-dr3", help="with --fleet: the devices' link")
    ap.add_argument("--speed", type=float, default=60.0, help="with --fleet: simulated seconds per wall second")
    args = ap.parse_args()
    if args.fleet:
        services = Services(args.pg)
        try:
            url = services.mosquitto()
            if url is None:
                raise SystemExit("mosquitto is not installed: the fleet run needs a broker")
            r = fleet_run(url, f"sqlite:///{services.tmp / 'fleet.sqlite'}", args.fleet, args.minutes, args.link,
                          args.speed, services.tmp / "fleet")  # fmt: skip
        finally:
            services.close()
        table = Table(title=f"fleet: {args.fleet} devices on {args.link}, {args.minutes:g} min at {args.speed:g}x")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for k, v in r.items():
            table.add_row(k.replace("_", " "), str(v))
        Console().print(table)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"fleet": r}, indent=1))
        return
    console = Console()
    msgs = messages(args.devices, args.messages)
    services = Services(args.pg)
    result: dict[str, Any] = {"devices": args.devices, "messages": len(msgs), "records": 3 * len(msgs),
                              "cpus": os.cpu_count(), "per_store": {}, "scale_out": []}  # fmt: skip
    try:
        pg = services.postgres()
        stores: dict[str, Any] = {"none (in memory)": None, "json lines": services.tmp / "m.jsonl",
                                  "sqlite": f"sqlite:///{services.tmp / 'one.sqlite'}"}  # fmt: skip
        if pg is not None:
            stores["postgresql"] = pg()
        base = None
        table = Table(title=f"monitor ingest, one worker in-process: {len(msgs):,} LoRaWAN uplinks, "
                            f"{3 * len(msgs):,} records, {args.devices} devices")  # fmt: skip
        for col in ("store", "msgs/s", "records/s", "wall s", "ratio to no store"):
            table.add_column(col, justify="right" if col != "store" else "left")
        for name, store in stores.items():
            r = ingest_once(store, msgs)
            base = base or r["msgs_per_s"]
            r["ratio"] = round(r["msgs_per_s"] / base, 3)
            result["per_store"][name] = r
            table.add_row(name, f"{r['msgs_per_s']:,}", f"{r['records_per_s']:,}", str(r["wall_s"]), f"{r['ratio']:.2f}")
        console.print(table)
        url = services.mosquitto()
        if url is None:
            console.print("[yellow]mosquitto not installed: the shared-subscription runs are skipped")
        else:
            store_for = pg or (lambda: f"sqlite:///{services.tmp / f'scale-{time.time_ns()}.sqlite'}")
            table = Table(title=f"shared subscription {SHARE} on Mosquitto, workers write "
                                f"{'PostgreSQL' if pg else 'SQLite'}; {os.cpu_count()} CPUs here")  # fmt: skip
            for col in ("workers", "msgs/s total", "msgs/s per worker", "ratio to 1 worker", "messages per worker",
                        "records stored / sent"):  # fmt: skip
                table.add_column(col, justify="right")
            one = None
            for n in [int(w) for w in args.workers.split(",")]:
                r = scale_out(url, store_for, n, msgs)
                one = one or r["msgs_per_s"]
                r["ratio"] = round(r["msgs_per_s"] / one, 3)
                result["scale_out"].append(r)
                table.add_row(str(n), f"{r['msgs_per_s']:,}", f"{r['msgs_per_s_per_worker']:,}", f"{r['ratio']:.2f}",
                              " / ".join(map(str, r["per_worker"])), f"{r['records_stored']:,} / {3 * len(msgs):,}")
            console.print(table)
    finally:
        services.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".partial")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, args.json)
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
