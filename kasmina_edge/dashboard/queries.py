"""What the dashboard pages show, read from the telemetry store (plain JSON-ready dicts).

The fleet list and each device's beat-class counts, alerts, seed lifecycle (transitions and gate verdicts per
site and kernel), activation drift reports, signal quality, command/update reports and ECG strips all come from
the database the monitor writes (:mod:`kasmina_edge.net.store`), so a restarted dashboard shows the history.
Strips are stored sealed as the device sent them; they are opened here with the operator's copy of the
device's key (``KASMINA_COMMAND_KEYS``) and thinned for drawing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, desc, func, select

from kasmina_edge.net.store import alerts, devices, lifecycle, records, reports, strips

MAX_POINTS = 1200  # what an SVG polyline draws smoothly; strips are thinned to it
ACTIVE_STAGES = ("BLENDING", "SHADOWING", "PROBATIONARY")


def fleet(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        devs = conn.execute(select(devices).order_by(devices.c.device)).mappings().all()
        counts: dict[str, int] = dict(conn.execute(select(records.c.device, func.count()).group_by(records.c.device)).all())
        alert_counts: dict[str, int] = dict(
            conn.execute(select(alerts.c.device, func.count()).group_by(alerts.c.device)).all()
        )
        critical: dict[str, int] = dict(
            conn.execute(
                select(alerts.c.device, func.count()).where(alerts.c.severity == "critical").group_by(alerts.c.device)
            ).all()
        )
        newest: dict[str, tuple[float, str]] = {}  # device -> (time, kind) of its latest alert
        for d, k, ts in conn.execute(
            select(alerts.c.device, alerts.c.kind, func.max(alerts.c.ts)).group_by(alerts.c.device, alerts.c.kind)
        ).all():
            if d not in newest or (ts or 0.0) > newest[d][0]:
                newest[d] = (ts or 0.0, k)
        last_alert = {d: k for d, (_, k) in newest.items()}
    return [
        {
            "device": d["device"],
            "fleet": d["fleet"],
            "patient": d["patient"],
            "link": d["link"],
            "status": d["status"],
            "battery_pct": d["battery_pct"],
            "last_seen": d["last_seen"],
            "records": int(counts.get(d["device"], 0)),
            "alerts": int(alert_counts.get(d["device"], 0)),
            "critical_alerts": int(critical.get(d["device"], 0)),
            "last_alert": last_alert.get(d["device"]),
        }
        for d in devs
    ]


def _beats(conn: Any, device: str) -> dict[str, int]:
    out = dict.fromkeys("NSVFQ", 0)
    rows = conn.execute(select(records.c.body).where(records.c.device == device, records.c.kind == "beat_counts"))
    for (body,) in rows:
        for k in out:
            out[k] += int(body.get(k.lower(), 0))
    return out


def _lifecycle(conn: Any, device: str) -> list[dict[str, Any]]:
    """One lane per (site, kernel): its events in sequence order and the stage it is in now."""
    rows = conn.execute(
        select(lifecycle).where(lifecycle.c.device == device).order_by(lifecycle.c.fseq)
    ).mappings().all()
    lanes: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        lanes[(r["site"], r["kernel_id"])].append({
            "fseq": r["fseq"], "ts": r["ts"], "event": r["event"], "src": r["src"], "dst": r["dst"],
            "gate": r["gate"], "passed": r["passed"], "reason": r["reason"], "metric": r["metric"],
        })  # fmt: skip
    out = []
    for (site, kernel), events in sorted(lanes.items()):
        moves = [e for e in events if e["event"] == "transition"]
        out.append({"site": site, "kernel_id": kernel, "stage": moves[-1]["dst"] if moves else None, "events": events})
    return out


def _series(conn: Any, device: str, kind: str, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(records.c.ts, records.c.body)
        .where(records.c.device == device, records.c.kind == kind)
        .order_by(desc(records.c.fseq))
        .limit(limit)
    ).all()
    return [{"ts": ts, **body} for ts, body in reversed(rows)]


def _reports(conn: Any, device: str, kind: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(reports.c.stored_at, reports.c.body)
        .where(reports.c.device == device, reports.c.kind == kind)
        .order_by(desc(reports.c.id))
        .limit(limit)
    ).all()
    return [{"stored_at": at, **body} for at, body in reversed(rows)]


def device(engine: Engine, name: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(devices).where(devices.c.device == name)).mappings().first()
        if row is None:
            return None
        alert_rows = conn.execute(
            select(alerts).where(alerts.c.device == name).order_by(desc(alerts.c.fseq)).limit(200)
        ).mappings().all()
        return {
            "device": dict(row),
            "beats": _beats(conn, name),
            "alerts": [dict(a) for a in reversed(alert_rows)],
            "lifecycle": _lifecycle(conn, name),
            "drift": [r for r in _reports(conn, name, "drift") if isinstance(r.get("sites"), list)],
            "signal": _series(conn, name, "signal_quality"),
            "link_stats": _series(conn, name, "link_stats", 50),
            "ota": _reports(conn, name, "ota_report", 20),
            "commands": _reports(conn, name, "cmd_ack", 20),
            "strips": strip_list(conn, name),
        }


def strip_list(conn: Any, name: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(strips.c.id, strips.c.nonce, strips.c.fs, strips.c.samples, strips.c.stored_at)
        .where(strips.c.device == name)
        .order_by(strips.c.id)
    ).mappings().all()
    return [dict(r) for r in rows]


def open_strip(engine: Engine, name: str, strip_id: int) -> dict[str, Any] | None:
    """A stored strip, opened with the operator's copy of the device key; ``error`` says why it cannot be."""
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.net.commands import open_strip as unseal
    from kasmina_edge.net.commands import operator_key

    with engine.connect() as conn:
        row = conn.execute(
            select(strips).where(strips.c.device == name, strips.c.id == strip_id)
        ).mappings().first()
    if row is None:
        return None
    out: dict[str, Any] = {"id": row["id"], "fs": row["fs"], "samples": row["samples"], "nonce": row["nonce"]}
    try:
        mv = unseal(operator_key(name), row["sealed"])
    except KasminaError as exc:
        return {**out, "error": str(exc)}
    step = max(1, -(-len(mv) // MAX_POINTS))
    out.update(mv=[round(float(v), 4) for v in mv[::step]], step=step)
    return out


def latest_per_device(engine: Engine) -> dict[str, dict[str, Any]]:
    """Each device's newest seed stage and newest update report status (for ``fleet status``)."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    with engine.connect() as conn:
        newest = (
            select(lifecycle.c.device, func.max(lifecycle.c.fseq).label("fseq"))
            .where(lifecycle.c.event == "transition")
            .group_by(lifecycle.c.device)
            .subquery()
        )
        for device, dst in conn.execute(
            select(lifecycle.c.device, lifecycle.c.dst).join(
                newest, (lifecycle.c.device == newest.c.device) & (lifecycle.c.fseq == newest.c.fseq)
            )
        ):
            out[device]["seed_stage"] = dst
        for device, body in conn.execute(
            select(reports.c.device, reports.c.body).where(reports.c.kind == "ota_report").order_by(reports.c.id)
        ):
            out[device]["update"] = body.get("status")
    return dict(out)
