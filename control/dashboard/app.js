// Gossamer dashboard: polls /v1/overview and draws the mesh. Plain JS, no build step.
// The API token comes from the URL fragment (#token=...) once, then sessionStorage.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "gossamer.token";
const SVG_NS = "http://www.w3.org/2000/svg";
let selected = null;
let timer = null;
let last = null;

// -- token ---------------------------------------------------------------------------
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  document.getElementById("main").hidden = true;
  const form = document.getElementById("login");
  form.hidden = false;
  setStatus("error", message || "token needed");
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = document.getElementById("token-input").value.trim();
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("login").hidden = true;
    poll();
  }
});

document.getElementById("window").addEventListener("change", () => poll());

// -- helpers -------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const pct = (v) => (v === null || v === undefined ? "-" : (v * 100).toFixed(2) + "%");
const rps = (v) => (v === null || v === undefined ? "-" : v.toFixed(2));
const ms = (v) => (v === null || v === undefined ? "-" : v < 10 ? v.toFixed(2) + "ms" : Math.round(v) + "ms");

function duration(seconds) {
  const s = Math.abs(seconds);
  const sign = seconds < 0 ? "-" : "";
  if (s >= 86400) return sign + (s / 86400).toFixed(1) + "d";
  if (s >= 3600) return sign + (s / 3600).toFixed(1) + "h";
  if (s >= 60) return sign + Math.round(s / 60) + "m";
  return sign + Math.round(s) + "s";
}

function badge(text, kind) {
  return el("span", { class: "badge " + (kind || text) }, text);
}

function setStatus(state, text) {
  const node = document.getElementById("status");
  node.dataset.state = state;
  node.textContent = text;
}

function fillBody(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

// -- polling -------------------------------------------------------------------------
async function poll() {
  clearTimeout(timer);
  const token = takeTokenFromFragment();
  if (!token) {
    showLogin();
    return;
  }
  const win = document.getElementById("window").value;
  const query = win ? `?window=${encodeURIComponent(win)}` : "";
  try {
    const resp = await fetch(`/v1/overview${query}`, {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
    });
    if (resp.status === 401 || resp.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      const body = await resp.json().catch(() => ({}));
      showLogin(body.error || "token refused");
      return;
    }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    last = await resp.json();
    render(last);
    setStatus("live", "live · " + new Date().toLocaleTimeString());
  } catch (err) {
    setStatus("error", "update failed: " + err.message);
  }
  timer = setTimeout(poll, REFRESH_MS);
}

// -- rendering -----------------------------------------------------------------------
function render(data) {
  document.getElementById("main").hidden = false;
  document.getElementById("source").textContent =
    `figures from ${data.source === "prometheus" ? "Prometheus" : "the sidecars (live)"}, ` +
    `window ${duration(data.window_seconds)}`;
  renderSummary(data);
  renderGraph(data.graph);
  renderServices(data);
  renderDetail(data);
  renderSidecars(data.sidecars);
  renderGateways(data.gateways || []);
  renderCertificates(data.certificates);
  if (typeof tapPanel !== "undefined") tapPanel.update(data); // tap.js
  const problems = document.getElementById("problems");
  problems.hidden = !data.errors.length;
  document.getElementById("errors").replaceChildren(...data.errors.map((e) => el("li", {}, e)));
}

function renderSummary(data) {
  const s = data.summary;
  const card = (label, value, kind) =>
    el("div", { class: "card " + (kind || ""), "data-card": label },
      el("div", { class: "n" }, value), el("div", { class: "muted" }, label));
  document.getElementById("summary").replaceChildren(
    card("services", s.services),
    card("requests/s", rps(s.rps)),
    card("sidecars", s.sidecars),
    card("NACKs", s.nacks, s.nacks ? "bad" : ""),
    card("certificate warnings", s.certificates_warning, s.certificates_warning ? "warn" : ""),
  );
}

function layers(graph) {
  // longest path from the callers: sources left, leaves right (cycles cut)
  const depth = Object.fromEntries(graph.nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < graph.nodes.length; i++) {
    let changed = false;
    for (const e of graph.edges) {
      if (e.source !== e.destination && depth[e.destination] < depth[e.source] + 1) {
        depth[e.destination] = Math.min(depth[e.source] + 1, graph.nodes.length);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

function renderGraph(graph) {
  const root = document.getElementById("graph");
  const depth = layers(graph);
  const columns = {};
  for (const n of graph.nodes) (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n);
  const W = 210, H = 62, GX = 180, GY = 36, PAD = 24;
  const pos = {};
  let maxRows = 1, maxCol = 0;
  for (const [col, nodes] of Object.entries(columns)) {
    nodes.forEach((n, row) => {
      pos[n.id] = { x: PAD + col * (W + GX), y: PAD + row * (H + GY) };
    });
    maxRows = Math.max(maxRows, nodes.length);
    maxCol = Math.max(maxCol, Number(col));
  }
  const width = PAD * 2 + (maxCol + 1) * W + maxCol * GX;
  const height = PAD * 2 + maxRows * H + (maxRows - 1) * GY;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  // scale to the page width (never above natural size)
  root.setAttribute("width", "100%");
  root.style.maxWidth = width + "px";
  root.setAttribute("preserveAspectRatio", "xMinYMin meet");
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8a93b8" }));
  defs.append(marker);
  const parts = [defs];
  for (const e of graph.edges) {
    const a = pos[e.source], b = pos[e.destination];
    if (!a || !b) continue;
    const failing = e.success_rate !== null && e.success_rate < 0.95;
    const g = svg("g", { class: "edge" + (failing ? " failing" : ""),
      "data-source": e.source, "data-destination": e.destination });
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const mx = (x1 + x2) / 2;
    g.append(svg("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
      "marker-end": "url(#arrow)" }));
    const short = (v) => (v === null || v === undefined ? "-" : (v * 100).toFixed(1) + "%");
    const line1 = `${e.rps.toFixed(1)}/s · ${short(e.success_rate)}`;
    const line2 = `p99 ${ms(e.latency_p99_ms)}` + (e.secured ? " · mTLS" : "");
    const ly = (y1 + y2) / 2 - 10;
    g.append(svg("rect", { class: "lbl-bg", x: mx - 62, y: ly - 12, width: 124, height: 30, rx: 3 }));
    g.append(svg("text", { x: mx, y: ly, "text-anchor": "middle" }, line1));
    g.append(svg("text", { x: mx, y: ly + 14, "text-anchor": "middle" }, line2));
    parts.push(g);
  }
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const st = n.stat;
    const failing = st && st.success_rate !== null && st.success_rate < 0.95;
    const g = svg("g", { class: "node" + (n.outside ? " outside" : "") + (failing ? " failing" : ""),
      transform: `translate(${p.x},${p.y})`, "data-service": n.id });
    g.append(svg("rect", { width: W, height: H }));
    g.append(svg("text", { x: 10, y: 20, class: "name" }, n.id));
    if (st) {
      g.append(svg("text", { x: W - 10, y: 20, "text-anchor": "end", class: "meshed" },
        `${st.meshed}/${st.instances} meshed`));
      g.append(svg("text", { x: 10, y: 38 }, `${rps(st.rps)} rps · ${pct(st.success_rate)}`));
      g.append(svg("text", { x: 10, y: 54 },
        `p50 ${ms(st.latency_p50_ms)} · p99 ${ms(st.latency_p99_ms)}`));
    } else if (n.outside) {
      g.append(svg("text", { x: 10, y: 40 }, "callers outside the mesh"));
    }
    if (!n.outside) {
      g.style.cursor = "pointer";
      g.addEventListener("click", () => { selected = n.id; render(last); });
    }
    parts.push(g);
  }
  root.replaceChildren(...parts);
}

function renderServices(data) {
  const rows = data.graph.nodes.filter((n) => !n.outside).map((n) => {
    const st = n.stat || {};
    const link = n.traces_url ? el("a", { href: n.traces_url, target: "_blank", rel: "noopener" }, "traces") : "-";
    return el("tr", { class: "clickable" + (selected === n.id ? " selected" : ""), "data-service": n.id,
      onclick: () => { selected = selected === n.id ? null : n.id; render(last); } },
      el("td", {}, n.id),
      el("td", { class: "num" }, `${n.meshed}/${n.instances}`),
      el("td", { class: "num" }, pct(st.success_rate)),
      el("td", { class: "num" }, rps(st.rps)),
      el("td", { class: "num" }, ms(st.latency_p50_ms)),
      el("td", { class: "num" }, ms(st.latency_p95_ms)),
      el("td", { class: "num" }, ms(st.latency_p99_ms)),
      el("td", { class: "num" }, st.tcp_connections ?? "-"),
      el("td", {}, link));
  });
  fillBody("services", rows);
}

function renderDetail(data) {
  const box = document.getElementById("detail");
  const node = data.graph.nodes.find((n) => n.id === selected);
  if (!node) { box.hidden = true; return; }
  box.hidden = false;
  const st = node.stat || {};
  const inbound = data.graph.edges.filter((e) => e.destination === node.id);
  const outbound = data.graph.edges.filter((e) => e.source === node.id);
  const sidecars = data.sidecars.filter((s) => s.service === node.id);
  const certs = data.certificates.filter((c) => c.service === node.id);
  const edgeText = (e, other) => `${other} ${rps(e.rps)}/s ${pct(e.success_rate)}` +
    (e.client_identities.length ? ` [client ${e.client_identities.join(", ")}]` : "") +
    (e.server_identities.length ? ` [server ${e.server_identities.join(", ")}]` : "");
  const dl = el("dl", {},
    el("dt", {}, "namespace"), el("dd", {}, node.namespace || "-"),
    el("dt", {}, "meshed"), el("dd", {}, `${node.meshed}/${node.instances}`),
    el("dt", {}, "golden"), el("dd", {}, `${rps(st.rps)} rps, ${pct(st.success_rate)} success, ` +
      `p50 ${ms(st.latency_p50_ms)}, p95 ${ms(st.latency_p95_ms)}, p99 ${ms(st.latency_p99_ms)}`),
    el("dt", {}, "callers"), el("dd", {}, inbound.map((e) => edgeText(e, e.source)).join("; ") || "-"),
    el("dt", {}, "calls"), el("dd", {}, outbound.map((e) => edgeText(e, e.destination)).join("; ") || "-"),
    el("dt", {}, "sidecars"), el("dd", {}, sidecars.map((s) => `${s.node} (${s.state})`).join(", ") || "-"),
    el("dt", {}, "certificates"), el("dd", {}, certs.map((c) => `${c.instance}: ${duration(c.seconds_left)} left`).join(", ") || "-"),
    el("dt", {}, "traces"), el("dd", {}, node.traces_url
      ? el("a", { href: node.traces_url, target: "_blank", rel: "noopener" }, "open in Jaeger")
      : "no Jaeger URL configured (observability.jaeger_url)"),
  );
  box.replaceChildren(el("h3", {}, node.id), dl);
}

function renderSidecars(sidecars) {
  fillBody("sidecars", sidecars.map((s) => el("tr", { "data-node": s.node, "data-state": s.state },
    el("td", {}, s.node, s.connected ? null : el("span", { class: "muted" }, " (disconnected)")),
    el("td", {}, s.service),
    el("td", {}, el("code", {}, s.identity || "-")),
    el("td", {}, s.config_version || s.types.map((t) => `${t.type}:${t.acked_version || "-"}`).join(" ")),
    el("td", {}, badge(s.state)),
    el("td", {}, ...s.types.map((t) => badge(t.type, t.state))),
    el("td", {}, s.last_nack
      ? el("div", { class: "nack-error" },
        `${s.last_nack.type}${s.last_nack.version ? " version " + s.last_nack.version : ""} rejected` +
        `${s.last_nack.at ? " at " + new Date(s.last_nack.at * 1000).toLocaleTimeString() : ""}: ${s.last_nack.error}`)
      : "-"))));
}

function renderGateways(gateways) {
  document.getElementById("gateways-section").hidden = !gateways.length;
  fillBody("gateways", gateways.map((g) => el("tr", { "data-node": g.node },
    el("td", {}, g.node),
    el("td", {}, g.zone || "-"),
    el("td", {}, el("code", {}, `${g.address}:${g.port}`)),
    el("td", {}, badge(g.health, g.health === "healthy" ? "ok" : "expired")),
    el("td", {}, `${g.instances} (${g.healthy_instances})`))));
}

function renderCertificates(certs) {
  fillBody("certificates", certs.map((c) => el("tr", { "data-instance": c.instance, "data-status": c.status },
    el("td", {}, c.instance),
    el("td", {}, c.service),
    el("td", {}, el("code", {}, c.identity)),
    el("td", {}, new Date(c.expires_at * 1000).toLocaleString()),
    el("td", { class: "num" }, duration(c.seconds_left)),
    el("td", {}, badge(c.status === "ok" ? "ok" : c.status === "warning" ? "expires soon" : "expired", c.status)))));
}

poll();
