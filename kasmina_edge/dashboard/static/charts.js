// Small inline-SVG plots for the dashboard (no chart library: nothing to fetch, nothing to vendor).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#0b6fa4", "#d1495b", "#2e933c", "#edae49", "#66456b", "#00798c"];
const STAGE_COLORS = { DORMANT: "#c9d1d9", GERMINATED: "#9ecae1", TRAINING: "#6baed6", BLENDING: "#4292c6",
  SHADOWING: "#2171b5", PROBATIONARY: "#edae49", FOSSILIZED: "#2e933c", CULLED: "#d1495b", EMBARGOED: "#8c6d8c",
  RESETTING: "#b0b0b0", TERMINATED: "#444" };

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function svgIn(container, width, height) {
  container.replaceChildren();
  return el("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", height, preserveAspectRatio: "none" }, container);
}

function label(svg, x, y, text, anchor) {
  const t = el("text", { x, y, "text-anchor": anchor || "start" }, svg);
  t.textContent = text;
  return t;
}

function hhmm(ts) { return ts ? new Date(ts * 1000).toISOString().slice(11, 19) : "-"; }

function scale(lo, hi, a, b) { const span = hi - lo || 1; return (v) => a + ((v - lo) / span) * (b - a); }

export function barChart(container, data) {
  const W = 420, H = 150, keys = Object.keys(data), max = Math.max(1, ...Object.values(data));
  const svg = svgIn(container, W, H), bw = (W - 40) / keys.length;
  keys.forEach((k, i) => {
    const h = ((H - 40) * data[k]) / max, x = 30 + i * bw;
    el("rect", { x: x + 6, y: H - 20 - h, width: bw - 12, height: h, fill: COLORS[i % COLORS.length], class: "bar" }, svg);
    label(svg, x + bw / 2, H - 6, k, "middle");
    label(svg, x + bw / 2, H - 24 - h, String(data[k]), "middle");
  });
}

export function lineChart(container, series, opts) {
  // series: [{name, points: [[x, y], ...]}]; x is unix seconds
  const W = 420, H = 160, pts = series.flatMap((s) => s.points);
  const svg = svgIn(container, W, H);
  if (!pts.length) { label(svg, 10, 20, (opts && opts.empty) || "no data yet"); return svg; }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]).concat(opts && opts.refs ? opts.refs : []);
  const sx = scale(Math.min(...xs), Math.max(...xs), 40, W - 10), sy = scale(Math.min(0, ...ys), Math.max(...ys), H - 20, 10);
  el("line", { x1: 40, x2: W - 10, y1: H - 20, y2: H - 20, stroke: "#d9e0e7" }, svg);
  label(svg, 36, 14, Math.max(...ys).toFixed(2), "end");
  label(svg, 40, H - 6, hhmm(Math.min(...xs)));
  label(svg, W - 10, H - 6, hhmm(Math.max(...xs)), "end");
  for (const r of (opts && opts.refs) || []) {
    el("line", { x1: 40, x2: W - 10, y1: sy(r), y2: sy(r), stroke: "#d1495b", "stroke-dasharray": "4 3" }, svg);
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    el("polyline", { points: s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
      fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.5, class: "series" }, svg);
    label(svg, 44 + i * 80, 24, s.name).setAttribute("style", `fill:${COLORS[i % COLORS.length]}`);
  });
  return svg;
}

export function eventStrip(container, items, color) {
  // items: [{ts, text, severity}] drawn as ticks along a time axis
  const W = 420, H = 50, svg = svgIn(container, W, H);
  if (!items.length) { label(svg, 10, 20, "none"); return; }
  const xs = items.map((a) => a.ts), sx = scale(Math.min(...xs), Math.max(...xs) + 1, 10, W - 10);
  el("line", { x1: 10, x2: W - 10, y1: 25, y2: 25, stroke: "#d9e0e7" }, svg);
  for (const a of items) {
    const c = el("circle", { cx: sx(a.ts), cy: 25, r: a.severity === "critical" ? 6 : 4,
      fill: a.severity === "critical" ? "#c62828" : color || "#b26a00", class: "mark" }, svg);
    el("title", {}, c).textContent = a.text;
  }
  label(svg, 10, H - 2, hhmm(Math.min(...xs)));
  label(svg, W - 10, H - 2, hhmm(Math.max(...xs)), "end");
}

export function lifecycleLane(container, events) {
  // one seed's stages over time: a coloured band per stage, a tick per gate verdict
  const W = 420, H = 46, svg = svgIn(container, W, H);
  const moves = events.filter((e) => e.event === "transition");
  const ts = events.map((e) => e.ts || 0);
  const lo = Math.min(...ts), hi = Math.max(...ts) + 1, sx = scale(lo, hi + (hi - lo) * 0.1, 10, W - 10);
  moves.forEach((m, i) => {
    const x0 = sx(m.ts), x1 = i + 1 < moves.length ? sx(moves[i + 1].ts) : W - 10;
    const r = el("rect", { x: x0, y: 8, width: Math.max(2, x1 - x0), height: 16, fill: STAGE_COLORS[m.dst] || "#999",
      class: "stage", "data-stage": m.dst }, svg);
    el("title", {}, r).textContent = `${m.src} → ${m.dst} (${m.reason})`;
  });
  for (const g of events.filter((e) => e.event === "gate")) {
    const t = el("path", { d: `M${sx(g.ts)},28 l4,8 l-8,0 z`, fill: g.passed ? "#2e933c" : "#c62828", class: "gate" }, svg);
    el("title", {}, t).textContent = `${g.gate} ${g.passed ? "passed" : "failed"} (${g.metric})`;
  }
  label(svg, 10, H - 1, hhmm(lo));
}

export function ecgStrip(container, strip) {
  const W = 840, H = 160, svg = svgIn(container, W, H);
  const v = strip.mv, n = v.length, lo = Math.min(...v), hi = Math.max(...v);
  const sx = scale(0, n - 1, 0, W), sy = scale(lo - 0.1, hi + 0.1, H, 0);
  // the paper's grid: 0.2 s columns
  const cols = (n * strip.step) / strip.fs / 0.2;
  for (let i = 1; i < cols; i++) el("line", { x1: (W * i) / cols, x2: (W * i) / cols, y1: 0, y2: H, stroke: "#f6d0d0" }, svg);
  el("polyline", { points: v.map((y, i) => `${sx(i).toFixed(1)},${sy(y).toFixed(1)}`).join(" "), fill: "none",
    stroke: "#1d2733", "stroke-width": 1.2, class: "ecg" }, svg);
}

export { hhmm };
