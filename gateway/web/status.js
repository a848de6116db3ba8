// The status page: polls /api/status every few seconds and /api/series less often,
// and draws each numeric quantity's history as an inline SVG sparkline. No framework,
// nothing fetched from anywhere but this gateway.
"use strict";

const STATUS_EVERY_MS = 2000;
const SERIES_EVERY_MS = 30000;
let series = {};
let lastSeries = 0;

const $ = (id) => document.getElementById(id);

function fmtAge(s) {
  if (s === null || s === undefined) return "no reading yet";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
  return (s / 86400).toFixed(1) + " d ago";
}

function fmtValue(v, unit) {
  if (typeof v === "number") {
    const a = Math.abs(v);
    const text = Number.isInteger(v) ? String(v)
      : a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
    return unit ? text + " " + unit : text;
  }
  if (Array.isArray(v)) {  // inference results: labels or detections
    return v.slice(0, 3).map((d) => d.label + (d.score !== undefined ? " " + d.score.toFixed(2) : "")).join(", ") || "—";
  }
  if (v === null || v === undefined) return "—";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function fmtBytes(n) {
  return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
}

// points: [[t, avg, min, max], ...]; returns an <svg> with a min..max band and the average line.
function sparkline(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("viewBox", "0 0 100 20");
  svg.setAttribute("preserveAspectRatio", "none");
  if (points.length < 2) return svg;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  let lo = Infinity, hi = -Infinity;
  for (const p of points) { lo = Math.min(lo, p[2]); hi = Math.max(hi, p[3]); }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const x = (t) => ((t - t0) / Math.max(1e-9, t1 - t0)) * 100;
  const y = (v) => 19 - ((v - lo) / (hi - lo)) * 18;
  const line = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(2) + " " + y(p[1]).toFixed(2)).join(" ");
  const top = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(2) + " " + y(p[3]).toFixed(2)).join(" ");
  const bottom = points.slice().reverse().map((p) => "L" + x(p[0]).toFixed(2) + " " + y(p[2]).toFixed(2)).join(" ");
  const band = document.createElementNS(ns, "path");
  band.setAttribute("class", "band");
  band.setAttribute("d", top + " " + bottom + " Z");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("class", "line");
  path.setAttribute("d", line);
  svg.append(band, path);
  return svg;
}

function pointsFor(device, key, live) {
  const s = (series[device] || {})[key];
  const pts = [];
  if (s) for (let i = 0; i < s.t.length; i++) pts.push([s.t[i], s.avg[i], s.min[i], s.max[i]]);
  if (live && typeof live.value === "number" && live.t !== null) {
    if (!pts.length || live.t > pts[pts.length - 1][0]) pts.push([live.t, live.value, live.value, live.value]);
  }
  return pts;
}

function renderDevice(d) {
  const id = "device-" + d.name;
  let el = document.getElementById(id);
  if (!el) {
    el = $("device-tpl").content.firstElementChild.cloneNode(true);
    el.id = id;
    el.dataset.device = d.name;
    el.querySelector(".name").textContent = d.name;
    $("devices").append(el);
  }
  const state = el.querySelector(".state");
  state.textContent = d.state;
  state.className = "badge state " + d.state;
  el.querySelector(".driver").textContent = d.driver;
  el.querySelector(".age").textContent = fmtAge(d.age_s);
  el.querySelector(".counts").textContent = d.readings + " readings, " + d.errors + " errors";
  el.querySelector(".last-error").textContent =
    d.last_error ? "last error " + (d.last_error_at || "") + ": " + d.last_error : "";
  const body = el.querySelector("tbody");
  const liveT = d.last_reading ? Date.parse(d.last_reading) / 1000 : null;
  const rows = [];
  for (const v of d.values) {
    const tr = document.createElement("tr");
    tr.dataset.key = v.key;
    const label = document.createElement("td");
    label.className = "label";
    label.textContent = v.label;
    label.title = v.key;
    const value = document.createElement("td");
    value.className = "value";
    value.textContent = fmtValue(v.value, v.unit);
    const spark = document.createElement("td");
    spark.className = "spark";
    if (typeof v.value === "number") spark.append(sparkline(pointsFor(d.name, v.key, { t: liveT, value: v.value })));
    tr.append(label, value, spark);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function render(st) {
  $("offline").hidden = true;
  $("gw-id").textContent = st.gateway.id;
  $("gw-version").textContent = "edge-gateway " + st.gateway.version + (st.gateway.simulate ? " · simulator" : "");
  document.title = st.gateway.id + " · edge-gateway";
  const b = $("broker");
  b.textContent = "broker " + st.broker.host + ":" + st.broker.port + " " +
    (st.broker.connected ? "connected" : "unreachable" + (st.broker.last_error ? " (" + st.broker.last_error + ")" : ""));
  b.className = "pill " + (st.broker.connected ? "ok" : "bad");
  const sp = $("spool");
  sp.textContent = "spool " + st.spool.depth + " waiting (" + fmtBytes(st.spool.bytes) + ")" +
    (st.spool.oldest_age_s !== null ? ", oldest " + fmtAge(st.spool.oldest_age_s).replace(" ago", "") : "");
  sp.className = "pill " + (st.spool.depth > 1000 ? "warn" : "");
  $("uptime").textContent = "up " + fmtAge(st.gateway.uptime_s).replace(" ago", "");
  const names = new Set(st.devices.map((d) => "device-" + d.name));
  for (const el of [...$("devices").children]) if (!names.has(el.id)) el.remove();
  st.devices.forEach(renderDevice);
  const items = st.events.slice(0, 50).map((e) => {
    const li = document.createElement("li");
    const t = document.createElement("time");
    t.textContent = e.ts.replace("T", " ").replace(/\.\d+Z$/, "Z");
    const what = document.createElement("span");
    what.textContent = (e.device ? e.device + ": " : "") + e.what;
    if (e.level === "error") what.className = "error";
    li.append(t, what);
    return li;
  });
  $("events").replaceChildren(...items);
}

async function refresh() {
  try {
    if (Date.now() - lastSeries > SERIES_EVERY_MS) {
      const r = await fetch("/api/series", { cache: "no-store" });
      if (r.ok) { series = await r.json(); lastSeries = Date.now(); }
    }
    const r = await fetch("/api/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (err) {
    $("offline").hidden = false;
    $("offline-why").textContent = String(err.message || err);
  } finally {
    setTimeout(refresh, STATUS_EVERY_MS);
  }
}

refresh();
