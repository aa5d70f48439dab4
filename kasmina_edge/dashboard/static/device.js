// One device: counts, alerts, each seed's lifecycle, drift, signal, link budget, strips; live through SSE.
"use strict";
import { barChart, ecgStrip, eventStrip, hhmm, lifecycleLane, lineChart } from "/static/charts.js";

const name = decodeURIComponent(location.pathname.split("/").pop());
document.getElementById("name").textContent = name;
document.title = `kasmina-edge · ${name}`;
const drawnStrips = new Set();

function li(text, cls) {
  const item = document.createElement("li");
  item.textContent = text;
  if (cls) item.className = cls;
  return item;
}

function kv(box, pairs) {
  box.replaceChildren();
  for (const [k, v] of pairs) {
    const a = document.createElement("span"); a.className = "muted"; a.textContent = k;
    const b = document.createElement("span"); b.textContent = v == null ? "-" : String(v);
    box.append(a, b);
  }
}

function describe(e) {
  if (e.event === "gate") return `${hhmm(e.ts)}  ${e.gate} ${e.passed ? "passed" : "failed"}${e.metric != null ? ` (${e.metric.toFixed(2)})` : ""}`;
  return `${hhmm(e.ts)}  ${e.src} → ${e.dst} (${e.reason})`;
}

function drawTimeline(lanes) {
  const box = document.getElementById("timeline");
  if (!lanes.length) return;
  box.replaceChildren(...lanes.map((lane) => {
    const div = document.createElement("div");
    div.className = "lane";
    div.dataset.site = lane.site;
    div.dataset.kernel = lane.kernel_id;
    const title = document.createElement("strong");
    title.textContent = `site ${lane.site} · kernel ${lane.kernel_id} · ${lane.stage || "-"}`;
    const plot = document.createElement("div");
    const list = document.createElement("ol");
    list.className = "events";
    list.append(...lane.events.map((e) => li(describe(e), e.event === "gate" ? (e.passed ? "pass event" : "fail event") : "event")));
    div.append(title, plot, list);
    lifecycleLane(plot, lane.events);
    return div;
  }));
}

async function drawStrips(strips) {
  const box = document.getElementById("strips");
  for (const s of strips) {
    if (drawnStrips.has(s.id)) continue;
    drawnStrips.add(s.id);
    const res = await fetch(`/api/device/${encodeURIComponent(name)}/strip/${s.id}`);
    const strip = await res.json();
    const fig = document.createElement("figure");
    fig.className = "strip";
    fig.dataset.strip = s.id;
    const plot = document.createElement("div");
    const cap = document.createElement("figcaption");
    if (strip.error) cap.textContent = `strip ${s.id}: ${strip.error}`;
    else { ecgStrip(plot, strip); cap.textContent = `${hhmm(s.stored_at)} · ${strip.samples} samples at ${strip.fs} Hz (${(strip.samples / strip.fs).toFixed(1)} s, mV)`; }
    fig.append(plot, cap);
    box.prepend(fig);
  }
}

async function refresh() {
  const res = await fetch(`/api/device/${encodeURIComponent(name)}`);
  if (!res.ok) { document.getElementById("state").textContent = "not in the store yet"; return; }
  const d = await res.json();
  const dev = d.device, live = d.live || {};
  document.getElementById("state").textContent =
    `${dev.link || "?"} · ${dev.status || "?"} · battery ${dev.battery_pct == null ? "-" : dev.battery_pct + " %"} · last seen ${hhmm(dev.last_seen)}`;
  barChart(document.getElementById("beats"), d.beats);
  eventStrip(document.getElementById("alert-plot"), d.alerts.map((a) => ({ ts: a.ts, severity: a.severity, text: `${a.kind} (${a.severity})` })));
  document.getElementById("alerts").replaceChildren(...d.alerts.slice().reverse().map((a) =>
    li(`${hhmm(a.ts)}  ${a.kind} · ${a.severity} · ${a.duration_ms} ms`, `alert ${a.severity}`)));
  drawTimeline(d.lifecycle);
  const nSites = Math.max(0, ...d.drift.map((r) => r.sites.length));
  const series = [...Array(nSites).keys()].map((i) => ({ name: `site ${i}`, points: d.drift.map((r) => [r.t, r.sites[i]]) }));
  lineChart(document.getElementById("drift"), series, { refs: [0.25], empty: "no drift report yet" });
  const ref = d.bundle;
  document.getElementById("drift-ref").textContent = ref && ref.sites
    ? `drift is |mean − build mean| / build std against bundle ${ref.bundle_id}: ` + ref.sites.map((s) => `site ${s.index} ${s.channels} ch, ${s.windows ?? "no"} windows`).join("; ") + "; dashed: the controller's drift threshold"
    : ref && ref.error ? `bundle statistics not read: ${ref.error}` : "drift against the device's bundle statistics (start the dashboard with --bundle to list them); dashed: the controller's drift threshold";
  lineChart(document.getElementById("signal"), [
    { name: "noise dB", points: d.signal.map((r) => [r.ts, r.noise_db]) },
    { name: "QRS corr", points: d.signal.map((r) => [r.ts, r.qrs_correlation]) },
  ], { empty: "no signal-quality record yet" });
  const p = d.link_profile || {};
  kv(document.getElementById("budget"), [
    ["link", p.name], ["uplinks", live.uplinks], ["uplink loss", live.uplink_loss == null ? null : `${(100 * live.uplink_loss).toFixed(1)} %`],
    ["airtime (total)", live.airtime_s == null ? null : `${live.airtime_s.toFixed(2)} s`],
    ["airtime (last hour)", live.airtime_last_hour_s == null ? null : `${live.airtime_last_hour_s.toFixed(2)} s`],
    ["duty cycle", p.duty_cycle == null ? "none" : `${(100 * p.duty_cycle).toFixed(1)} %`],
    ["duty cycle left", live.duty_cycle_left == null ? null : `${(100 * live.duty_cycle_left).toFixed(0)} %`],
    ["fair use", p.fair_use_airtime_s_per_day == null ? "none" : `${p.fair_use_airtime_s_per_day} s airtime, ${p.fair_use_downlinks_per_day} downlinks a day`],
    ["link latency (median)", live.link_latency_median_s == null ? null : `${live.link_latency_median_s} s`],
  ]);
  document.getElementById("ota").replaceChildren(
    ...d.ota.map((r) => li(`update ${r.bundle_id || ""}: ${r.status}${r.reason ? " — " + r.reason : ""}`)),
    ...d.commands.map((c) => li(`command ${c.name || ""}: ${c.status}`)));
  if (d.strip_request) document.getElementById("strip-status").textContent = `last request: ${d.strip_request}`;
  await drawStrips(d.strips);
}

document.getElementById("request-strip").addEventListener("click", async () => {
  document.getElementById("strip-status").textContent = "requesting…";
  await fetch(`/api/device/${encodeURIComponent(name)}/request-strip`, { method: "POST" });
});

let pending = false;
const events = new EventSource("/api/events");
events.addEventListener("open", () => { document.getElementById("live").textContent = "live"; });
events.addEventListener("error", () => { document.getElementById("live").textContent = "reconnecting…"; });
events.addEventListener("change", (ev) => {
  const changed = JSON.parse(ev.data).devices;
  if (!changed.includes(name) || pending) return;
  pending = true;
  setTimeout(() => { pending = false; refresh(); }, 50);
});
refresh();
