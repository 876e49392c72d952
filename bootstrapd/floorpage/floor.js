// The live floor page: renders /events (the report JSON, then a tick a second) into counts and a table.
// Every value from the report goes in with textContent: phone-supplied text (option 12/60, syslog) is data,
// never markup. Nothing here changes state on the server.
"use strict";
(() => {
  const TOTALS = [["expected", "expected"], ["seen", "seen"], ["done", "done"], ["in_progress", "in progress"],
                  ["stalled", "stalled"], ["failed", "failed"], ["missing", "missing"], ["unexpected", "unexpected"]];
  const PATHS = { option_66_150: "TFTP (66/150)", option_160_159: "URL (160/159)", srv: "SRV" };
  const STATES = ["failed", "stalled", "missing", "in_progress", "done"];
  const FIRST = { failed: 0, stalled: 1 }; // then everything else in report order
  const STALE_MS = 5000; // no event for this long: say so
  const MAX_ROWS = 2000; // rows drawn (problems first); the search narrows the rest, the CSV has them all
  const $ = (id) => document.getElementById(id);

  let doc = null; // the last report
  let now = NaN; // server time of the last event (ms), for time in stage
  let timers = []; // [row, td] of the rendered rows
  let lastEvent = 0;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function duration(s) {
    if (typeof s !== "number" || !isFinite(s) || s < 0) return "—";
    s = Math.floor(s);
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + pad(s % 60) + "s";
    return Math.floor(m / 60) + "h " + pad(m % 60) + "m";
  }

  function inStage(row) {
    const since = row.since ? Date.parse(row.since) : NaN;
    if (isFinite(since) && isFinite(now)) return Math.max(0, (now - since) / 1000);
    return row.since ? row.in_stage_s : null;
  }

  function count(v) { return typeof v === "number" ? v : "—"; }

  function card(key, label, value, extra) {
    const c = el("div", "card");
    c.dataset.key = key;
    c.append(el("span", "n", count(value)), el("span", "label", label));
    if (extra) c.append(el("span", "extra", extra));
    return c;
  }

  function renderCards(summary) {
    $("totals").replaceChildren(...TOTALS.map(([k, label]) => card(k, label, summary[k])));
    const stalled = summary.stalled_by_stage || {};
    const byStage = summary.by_stage || {};
    const cards = Object.entries(byStage).map(([k, v]) =>
      card(k, k.replace(/_/g, " "), v, stalled[k] ? stalled[k] + " stalled" : ""));
    for (const [k, v] of Object.entries(stalled)) { // stalls off the main track (a firmware upgrade)
      if (!(k in byStage) && v) cards.push(card(k, k.replace(/_/g, " "), v, "stalled"));
    }
    $("stages").replaceChildren(...cards);
  }

  // A MAC in any spelling (00:56:2B:04:36:15, 00-56-2b-..., 0056.2b04.3615, SEP00562B043615) or part of a
  // serial; case-insensitive.
  function matcher(text) {
    const q = text.trim().toLowerCase();
    if (!q) return () => true;
    const hex = /^(sep)?[0-9a-f:.\-\s]+$/.test(q) ? q.replace(/^sep/, "").replace(/[^0-9a-f]/g, "") : "";
    return (row) => (hex !== "" && String(row.mac || "").toLowerCase().replace(/[^0-9a-f]/g, "").includes(hex)) ||
      String(row.serial || "").toLowerCase().includes(q);
  }

  // the main stage, and the firmware side track when there is one (an upgrading phone is busy, not stuck)
  function stage(row) { return (row.stage || "—") + (row.upgrade ? ", upgrade " + row.upgrade : ""); }

  function lastError(row) { return row.resync_error || row.upgrade_error || row.conflicts || ""; }

  function rowElement(row) {
    const tr = el("tr");
    if (STATES.includes(row.state)) tr.className = "state-" + row.state;
    const time = el("td", "time", duration(inStage(row)));
    const path = row.path ? (PATHS[row.path] || row.path) : "";
    tr.append(el("td", "mac", row.mac), el("td", "serial", row.serial), el("td", "model", row.model),
              el("td", "address", row.address), el("td", "stage", stage(row)),
              el("td", "state", String(row.state || "").replace(/_/g, " ")), time, el("td", "path", path),
              el("td", "error", lastError(row)));
    timers.push([row, time]);
    return tr;
  }

  function renderRows() {
    if (!doc) return;
    const rows = Array.isArray(doc.devices) ? doc.devices : [];
    const keep = matcher($("search").value);
    const ordered = rows.map((row, i) => [row, i])
      .sort((a, b) => (FIRST[a[0].state] ?? 2) - (FIRST[b[0].state] ?? 2) || a[1] - b[1]);
    timers = [];
    const body = document.createDocumentFragment();
    let shown = 0;
    for (const [row] of ordered) {
      if (!keep(row)) continue;
      if (shown < MAX_ROWS) body.append(rowElement(row));
      shown++;
    }
    document.querySelector("#devices tbody").replaceChildren(body);
    const drawn = Math.min(shown, MAX_ROWS);
    $("shown").textContent = (drawn === rows.length ? "" : drawn + " of ") + rows.length + " devices" +
      (shown > MAX_ROWS ? " (" + shown + " match: search to narrow)" : "");
  }

  function setTime(generatedAt) {
    now = generatedAt ? Date.parse(generatedAt) : NaN;
    $("generated").textContent = generatedAt ? "as of " + generatedAt : "";
    document.body.dataset.generatedAt = generatedAt || ""; // the server time shown (tests wait on it)
    for (const [row, td] of timers) td.textContent = duration(inStage(row));
  }

  function onReport(text) {
    const d = JSON.parse(text);
    if (!d || typeof d !== "object") return;
    doc = d;
    $("site").textContent = d.site || "";
    document.title = "bootstrapd floor" + (d.site ? " — " + d.site : "");
    now = d.generated_at ? Date.parse(d.generated_at) : NaN;
    renderCards(d.summary || {});
    renderRows();
    setTime(d.generated_at);
  }

  function live(state, text) {
    document.body.dataset.live = state;
    $("status").textContent = text;
  }

  function heard(handler) {
    return (e) => {
      lastEvent = Date.now();
      live("live", "live");
      try { handler(e.data); } catch (err) { console.error("bad event", err); }
    };
  }

  function connect() {
    const es = new EventSource("/events");
    es.addEventListener("report", heard(onReport));
    es.addEventListener("tick", heard((text) => setTime(JSON.parse(text).generated_at)));
    es.onerror = () => {
      live("reconnecting", "reconnecting…");
      if (es.readyState === EventSource.CLOSED) { // an HTTP error (e.g. 503): EventSource gives up; we don't
        es.close();
        setTimeout(connect, 3000);
      }
    };
  }

  $("search").addEventListener("input", renderRows);
  setInterval(() => {
    const state = document.body.dataset.live;
    if (lastEvent && Date.now() - lastEvent > STALE_MS && (state === "live" || state === "stale")) {
      live("stale", "no update for " + Math.round((Date.now() - lastEvent) / 1000) + "s");
    }
  }, 1000);
  connect();
})();
