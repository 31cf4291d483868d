// Gossamer dashboard: the tap panel. Streams GET /v1/tap (newline-delimited JSON) for
// one service and shows the last records; a record with a sampled trace links to
// Jaeger (observability.jaeger_url). Tap needs an operator token: a viewer token is
// refused (403) and the panel says so. app.js calls tapPanel.update(overview).
"use strict";

const tapPanel = (() => {
  const KEEP = 50; // records shown
  let controller = null;
  let jaegerUrl = null;
  let rows = [];
  const $ = (id) => document.getElementById(id);

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.append(text); else td.textContent = text;
    return td;
  }

  function short(id) { return id ? id.split("/").pop() : "-"; }

  function row(r) {
    const tr = document.createElement("tr");
    tr.dataset.status = String(r.status);
    let trace = r.trace_id || "-";
    if (r.trace_id && r.sampled && jaegerUrl) {
      const a = document.createElement("a");
      a.href = `${jaegerUrl.replace(/\/+$/, "")}/trace/${r.trace_id}`;
      a.target = "_blank"; a.rel = "noopener"; a.className = "trace-link";
      a.textContent = r.trace_id.slice(0, 12) + "…";
      trace = a;
    } else if (r.trace_id) {
      trace = r.trace_id.slice(0, 12) + "…" + (r.sampled ? "" : " (not sampled)");
    }
    for (const c of [new Date(r.ts * 1000).toLocaleTimeString(), r.direction, short(r.source),
      short(r.destination), r.method, r.authority, r.path]) tr.append(cell(c));
    tr.append(cell(String(r.status), "num"), cell(`${r.latency_ms.toFixed(1)} ms`, "num"),
      cell(r.bytes === null ? "-" : String(r.bytes), "num"), cell(trace));
    return tr;
  }

  function say(text, kind) {
    const msg = $("tap-message");
    msg.textContent = text;
    msg.dataset.kind = kind || "";
  }

  function setRunning(running) {
    $("tap-start").hidden = running;
    $("tap-stop").hidden = !running;
    $("tap-service").disabled = running;
  }

  async function start() {
    const service = $("tap-service").value;
    const token = sessionStorage.getItem("gossamer.token");
    if (!service || !token) return;
    controller = new AbortController();
    rows = [];
    $("tap-records").querySelector("tbody").replaceChildren();
    setRunning(true);
    say(`tapping ${service}…`);
    try {
      const resp = await fetch(`/v1/tap?service=${encodeURIComponent(service)}`, {
        headers: { Authorization: "Bearer " + token }, signal: controller.signal, cache: "no-store",
      });
      if (resp.status === 401 || resp.status === 403) {
        const body = await resp.json().catch(() => ({}));
        say("Tap needs an operator API token; this dashboard's token was refused" +
          (body.error ? ` (${body.error})` : "") + ". Open the page with #token=<operator token>.",
          "refused");
        return;
      }
      if (!resp.ok) {
        const body = await resp.json().catch(() => ({}));
        say(`tap failed: ${body.error || "HTTP " + resp.status}`, "refused");
        return;
      }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) handle(JSON.parse(line), service);
        }
      }
      say(`tap of ${service} ended`);
    } catch (err) {
      if (err.name !== "AbortError") say(`tap failed: ${err.message}`, "refused");
      else say(`tap of ${service} stopped (${rows.length} records)`);
    } finally {
      controller = null;
      setRunning(false);
    }
  }

  function handle(obj, service) {
    if (obj.type === "status") {
      say(obj.sidecars ? `tapping ${service}: ${obj.sidecars} sidecar(s), ${obj.dropped} dropped over the cap`
        : `tapping ${service}: waiting, no sidecar connected to this control plane`);
      return;
    }
    if (obj.ts === undefined) return;
    const body = $("tap-records").querySelector("tbody");
    body.prepend(row(obj));
    rows.push(obj);
    while (body.children.length > KEEP) body.lastChild.remove();
  }

  function stop() { if (controller) controller.abort(); }

  let followed = null; // the service last chosen in the graph or the services table

  function update(data) {
    jaegerUrl = data.jaeger_url || null;
    const select = $("tap-service");
    const names = data.graph.nodes.filter((n) => !n.outside).map((n) => n.id);
    const current = select.value;
    if (select.options.length !== names.length ||
        names.some((n, i) => select.options[i].value !== n)) {
      select.replaceChildren(...names.map((n) => new Option(n, n)));
      if (names.includes(current)) select.value = current;
    }
    // app.js's `selected`: clicking a service makes it the one to tap (not while tapping)
    const chosen = typeof selected === "undefined" ? null : selected;
    if (chosen && chosen !== followed && !controller && names.includes(chosen)) {
      select.value = chosen;
    }
    followed = chosen;
  }

  $("tap-start").addEventListener("click", start);
  $("tap-stop").addEventListener("click", stop);
  return { update, start, stop };
})();
