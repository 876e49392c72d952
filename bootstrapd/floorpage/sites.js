// The all-sites page: /sites.json (the central database, as `bootstrapd report --all-sites --json` shows it)
// every few seconds, as counts and one row per site. Every value goes in with textContent.
"use strict";
(() => {
  const COUNTS = ["expected", "seen", "done", "in_progress", "stalled", "failed", "missing", "unexpected"];
  const EVERY_MS = 5000;
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function count(v) { return typeof v === "number" ? v : "—"; }

  function card(key, value) {
    const c = el("div", "card");
    c.dataset.key = key;
    c.append(el("span", "n", count(value)), el("span", "label", key.replace(/_/g, " ")));
    return c;
  }

  function row(name, nodes, shipped, pending, summary, cls) {
    const tr = el("tr", cls);
    tr.append(el("td", "site", name), el("td", "", nodes), el("td", "time", shipped), el("td", "", count(pending)));
    for (const k of COUNTS) tr.append(el("td", "n-" + k, count(summary[k])));
    return tr;
  }

  function render(doc) {
    const total = doc.summary || {};
    $("totals").replaceChildren(...COUNTS.map((k) => card(k, total[k])));
    const sites = Array.isArray(doc.sites) ? doc.sites : [];
    const rows = sites.map((s) => row(s.site, (s.nodes || []).join(", "), s.last_shipped_at || "never", s.pending,
                                      s.summary || {}, ""));
    rows.push(row("all sites", "", "", null, total, "total"));
    document.querySelector("#sites tbody").replaceChildren(...rows);
    $("generated").textContent = doc.generated_at ? "as of " + doc.generated_at : "";
    document.body.dataset.generatedAt = doc.generated_at || "";
  }

  function status(state, text) {
    document.body.dataset.live = state;
    $("status").textContent = text;
  }

  async function load() {
    try {
      const r = await fetch("/sites.json", { cache: "no-store" });
      if (!r.ok) {
        status("reconnecting", (await r.text()).trim() || "HTTP " + r.status);
        return;
      }
      render(await r.json());
      status("live", "live");
    } catch (err) {
      status("reconnecting", "unreachable");
    }
  }

  load();
  setInterval(load, EVERY_MS);
})();
