// Gossamer dashboard, metrics over time: requests/s, success rate and p99 of the selected
// service (a click on a node or a services row) or edge (a click on an edge in the graph),
// from /v1/series, redrawn every few seconds. Plain SVG, no libraries. Kept apart from
// app.js: it reads the token app.js stored and listens to clicks on the page it draws.
"use strict";

const Charts = (() => {
  const METRICS = [
    { metric: "rps", title: "requests/s", fmt: (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(2)) + "/s" },
    { metric: "success_rate", title: "success rate", fmt: (v) => (v * 100).toFixed(1) + "%" },
    { metric: "latency_p99_ms", title: "latency p99", fmt: (v) => (v < 10 ? v.toFixed(2) : v.toFixed(0)) + "ms" },
  ];
  const RANGES = [["5m", 300], ["1h", 3600], ["6h", 21600], ["24h", 86400]];
  const REFRESH_MS = 5000;
  const FETCH_TIMEOUT_MS = 30000;
  const NS = "http://www.w3.org/2000/svg";
  const W = 360, H = 130, L = 58, R = 8, T = 10, B = 22;
  let target = null; // {service} or {service, peer, direction}
  let timer = null;
  let available = null; // /v1/series/info, once
  let generation = 0; // of the newest refresh: an older one's replies are not drawn
  let inflight = 0; // the generation whose requests are still out (0: none)

  const token = () => sessionStorage.getItem("gossamer.token");

  function node(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  async function get(path) {
    // a request that never settles must not hold the refresh (it waits for requests out)
    const resp = await fetch(path, {
      headers: { Authorization: "Bearer " + token() },
      cache: "no-store",
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
    return body;
  }

  function label(t) {
    if (!t) return "";
    if (!t.peer) return t.service;
    return t.direction === "outbound" ? `${t.service} → ${t.peer}` : `${t.peer} → ${t.service}`;
  }

  function clock(t, span) {
    const d = new Date(t * 1000);
    return span <= 600 ? d.toLocaleTimeString() : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // One chart: the line (broken where a point is null), y labels max/min, x labels first/last.
  function draw(box, spec, body) {
    const values = body.points.filter((p) => p[1] !== null).map((p) => p[1]);
    const chart = node("svg", { viewBox: `0 0 ${W} ${H}`, class: "series-chart", "data-metric": spec.metric });
    // which series the reply was for (from the reply itself, not from the selection)
    chart.dataset.series = body.service + (body.peer ? ` ${body.direction} ${body.peer}` : "");
    chart.append(node("text", { x: L, y: T - 1, class: "series-title" }, spec.title));
    const end = body.end, start = end - body.range_s;
    let lo = values.length ? Math.min(...values) : 0;
    let hi = values.length ? Math.max(...values) : 1;
    if (spec.metric === "rps") lo = 0;
    if (spec.metric === "success_rate") { lo = Math.min(lo, 0.9); hi = Math.max(hi, 1); }
    if (hi <= lo) hi = lo + (Math.abs(lo) * 0.1 || 1);
    const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    chart.append(node("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    chart.append(node("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    chart.append(node("text", { x: L - 4, y: T + 8, "text-anchor": "end", class: "tick" }, spec.fmt(hi)));
    chart.append(node("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "tick" }, spec.fmt(lo)));
    chart.append(node("text", { x: L, y: H - 6, class: "tick" }, clock(start, body.range_s)));
    chart.append(node("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "tick" }, clock(end, body.range_s)));
    let d = "", pen = false;
    for (const [t, v] of body.points) {
      if (v === null) { pen = false; continue; }
      d += `${pen ? "L" : "M"} ${x(t).toFixed(1)} ${y(v).toFixed(1)} `;
      pen = true;
    }
    chart.append(node("path", { d: d.trim(), class: "series-line" }));
    if (!values.length) chart.append(node("text", { x: (L + W) / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, "no data"));
    const last = values.length ? spec.fmt(values[values.length - 1]) : "-";
    const cell = document.createElement("div");
    cell.className = "series-cell";
    cell.append(chart);
    const caption = document.createElement("div");
    caption.className = "muted";
    caption.textContent = `last ${last}`;
    cell.append(caption);
    box.append(cell);
  }

  function busiest() {
    // app.js keeps the newest /v1/overview in `last`; chart its busiest service by default
    const nodes = (typeof last !== "undefined" && last && last.graph ? last.graph.nodes : []).filter((n) => !n.outside);
    nodes.sort((a, b) => ((b.stat && b.stat.rps) || 0) - ((a.stat && a.stat.rps) || 0));
    return nodes.length ? { service: nodes[0].id } : null;
  }

  // Every refresh (the timer, a click, the range picker) takes a new generation; replies
  // of an older one that arrive late (a slow request, a click meanwhile) are dropped, so
  // the charts never show one selection's data under another's label. The timer never
  // supersedes requests still out: a history slower to answer than REFRESH_MS is drawn
  // late instead of never.
  const tick = () => refresh(true);
  async function refresh(byTimer) {
    clearTimeout(timer);
    timer = setTimeout(tick, REFRESH_MS);
    if (byTimer === true && inflight) return;
    const mine = ++generation;
    inflight = mine;
    try {
      await update(mine);
    } finally {
      if (inflight === mine) inflight = 0;
    }
  }

  async function update(mine) {
    const section = document.getElementById("charts-section");
    if (!token()) return;
    try {
      if (available === null) available = await get("/v1/series/info");
    } catch (err) {
      if (mine !== generation) return;
      section.hidden = false;
      document.getElementById("charts-note").textContent = "no history: " + err.message;
      return;
    }
    if (mine !== generation) return;
    limitRanges();
    if (!target) target = busiest();
    if (!target) { clearTimeout(timer); timer = setTimeout(tick, 1000); return; }
    section.hidden = false;
    const want = target;
    const range = document.getElementById("chart-range").value;
    const params = new URLSearchParams({ service: want.service, range });
    if (want.peer) { params.set("peer", want.peer); params.set("direction", want.direction); }
    try {
      const bodies = await Promise.all(METRICS.map((m) => {
        params.set("metric", m.metric);
        return get("/v1/series?" + params.toString());
      }));
      if (mine !== generation) return;
      const box = document.getElementById("charts");
      box.replaceChildren();
      METRICS.forEach((spec, i) => draw(box, spec, bodies[i]));
      box.dataset.target = label(want);
      document.getElementById("charts-title").textContent = label(want);
      document.getElementById("charts-note").textContent =
        `from ${bodies[0].source === "prometheus" ? "Prometheus" : "the control plane's history"}, ` +
        `one point per ${bodies[0].step_s}s`;
    } catch (err) {
      if (mine !== generation) return;
      document.getElementById("charts-note").textContent = "update failed: " + err.message;
    }
  }

  function limitRanges() {
    const select = document.getElementById("chart-range");
    if (select.options.length) return;
    for (const [name, seconds] of RANGES) {
      if (seconds > available.length_s) continue;
      select.append(new Option(name, name));
    }
    if (!select.options.length) select.append(new Option(`${available.length_s}s`, `${available.length_s}s`));
    const hour = [...select.options].find((o) => o.value === "1h");
    select.value = hour ? "1h" : select.options[select.options.length - 1].value;
  }

  function select(next) {
    target = next;
    refresh();
  }

  function onClick(ev) {
    const edge = ev.target.closest && ev.target.closest("g.edge");
    if (edge) {
      select({ service: edge.dataset.destination, peer: edge.dataset.source, direction: "inbound" });
      return;
    }
    const svc = ev.target.closest && ev.target.closest("[data-service]");
    if (svc && svc.dataset.service) select({ service: svc.dataset.service });
  }

  function start() {
    document.getElementById("graph").addEventListener("click", onClick);
    document.getElementById("services").addEventListener("click", onClick);
    document.getElementById("chart-range").addEventListener("change", () => refresh());
    refresh();
  }

  return { start, refresh, select };
})();

Charts.start();
