// The fleet page: one row per device; refreshed when the server pushes a change (Server-Sent Events).
"use strict";
import { hhmm } from "/static/charts.js";

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text instanceof Node) td.appendChild(text); else td.textContent = text == null ? "-" : String(text);
  tr.appendChild(td);
  return td;
}

async function refresh() {
  const res = await fetch("/api/fleet");
  if (!res.ok) return;
  const data = await res.json();
  const body = document.querySelector("#fleet tbody");
  const rows = data.devices.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.device = d.device;
    const a = document.createElement("a");
    a.href = `/device/${encodeURIComponent(d.device)}`;
    a.textContent = d.device;
    cell(tr, a);
    cell(tr, d.link);
    cell(tr, d.status, d.status === "online" ? "online" : d.status === "offline" ? "offline" : "");
    cell(tr, d.battery_pct == null ? null : `${d.battery_pct} %`, "num");
    cell(tr, hhmm(d.last_seen), "num");
    cell(tr, d.records, "num");
    const badge = document.createElement("span");
    badge.className = `badge ${d.critical_alerts ? "critical" : d.alerts ? "warning" : ""} alert-count`;
    badge.textContent = d.alerts ? `${d.alerts}${d.last_alert ? " · " + d.last_alert : ""}` : "0";
    cell(tr, badge);
    cell(tr, d.duty_cycle_left == null ? null : `${(100 * d.duty_cycle_left).toFixed(0)} %`, "num");
    cell(tr, d.airtime_last_hour_s == null ? null : `${d.airtime_last_hour_s.toFixed(1)} s`, "num");
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("count").textContent = `${rows.length} devices`;
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; refresh(); }, 100);
}

const events = new EventSource("/api/events");
events.addEventListener("open", () => { document.getElementById("live").textContent = "live"; });
events.addEventListener("change", schedule);
events.addEventListener("error", () => { document.getElementById("live").textContent = "reconnecting…"; });
refresh();
