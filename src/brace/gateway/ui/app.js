// Brace dashboard: a small one-page app over the gateway's admin API.
// Plain JavaScript, no dependencies, no build step.  Charts are inline SVG drawn here.
// Pages (hash routes): #/overview  #/deployments  #/requests[?filters]  #/requests/<id>  #/runs[?filters]
// #/runs/<id>?key=<tenant>  #/spend  #/keys[?team=&state=]
"use strict";

(() => {
  const KEY_STORAGE = "brace.adminKey";
  const REFRESH_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = String(v);
      else if (k === "class") el.setAttribute("class", v);
      else if (k === "style") Object.assign(el.style, v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  // ------------------------------------------------------------------ formatting

  const nf = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => (n === null || n === undefined ? "–" : nf.format(Math.round(n)));
  function fmtCompact(n) {
    if (n === null || n === undefined) return "–";
    const a = Math.abs(n);
    if (a >= 1e6) return trim(n / 1e6) + "M";
    if (a >= 1e4) return trim(n / 1e3) + "k";
    if (a >= 1000) return nf.format(Math.round(n));
    return trim(n);
  }
  function trim(n) {
    const a = Math.abs(n);
    const d = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return String(Number(n.toFixed(d)));
  }
  function fmtMs(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
    if (ms >= 10000) return trim(ms / 1000) + " s";
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (ms >= 10) return Math.round(ms) + " ms";
    return trim(ms) + " ms";
  }
  const fmtSec = (sec) => (sec === null || sec === undefined ? "–" : fmtMs(sec * 1000));
  function fmtUsd(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "$0";
    const a = Math.abs(v);
    if (a >= 100) return "$" + nf.format(Math.round(v));
    if (a >= 1) return "$" + v.toFixed(2);
    if (a >= 0.01) return "$" + v.toFixed(3);
    return "$" + v.toPrecision(2);
  }
  const fmtPct = (r) => (r === null || r === undefined ? "–" : trim(r * 100) + "%");
  function fmtClock(t, withSeconds) {
    const d = new Date(t * 1000);
    const p = (x) => String(x).padStart(2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + (withSeconds ? ":" + p(d.getSeconds()) : "");
  }
  function fmtDateTime(t) {
    if (!t) return "–";
    const d = new Date(t * 1000);
    const p = (x) => String(x).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + fmtClock(t, true);
  }
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

  // ------------------------------------------------------------------ colours

  const CAUSE_COLORS = {
    rate_limited: "#e0a030",
    shed: "#c9b037",
    overloaded: "#e07b39",
    server_error: "#d14343",
    timeout: "#8b5cc7",
    deadline_exceeded: "#6d4bb0",
    connection_error: "#c2467e",
    circuit_open: "#8a6f5a",
    malformed_response: "#a3522d",
    no_capacity: "#b0739c",
    context_window_exceeded: "#3f8f8a",
    content_filtered: "#4d7ea8",
    authentication: "#5b6b7b",
    bad_request: "#7a8794",
    not_found: "#97a3ae",
  };
  const EXTRA = ["#3b8ea5", "#ab6c82", "#6a994e", "#bc6c25", "#5e60ce", "#9c6644"];
  function causeColor(cause) {
    if (CAUSE_COLORS[cause]) return CAUSE_COLORS[cause];
    let x = 0;
    for (const ch of String(cause)) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
    return EXTRA[x % EXTRA.length];
  }
  const OK_COLOR = "#2f9e6e";
  const TRAFFIC_COLOR = "#3f6fd8";

  // ------------------------------------------------------------------ API

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const getKey = () => sessionStorage.getItem(KEY_STORAGE) || "";

  async function api(path, params, key) {
    const url = new URL("../admin/" + path, location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
    }
    const headers = { Accept: "application/json" };
    const useKey = key === undefined ? getKey() : key;
    if (useKey) headers.Authorization = "Bearer " + useKey;
    let res;
    try {
      res = await fetch(url, { headers, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "the gateway did not answer (" + err.message + ")");
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    const message = (body && body.error && body.error.message) || res.statusText || "error";
    if (res.status === 401) throw new AuthError(message);
    if (!res.ok) throw new ApiError(res.status, message);
    return body;
  }

  // ------------------------------------------------------------------ status line

  const statusEl = () => document.getElementById("status");
  function setStatus(text, kind) {
    const el = statusEl();
    el.textContent = text;
    el.className = "status" + (kind ? " " + kind : "");
  }

  // ------------------------------------------------------------------ admin key dialog

  let keyWaiters = [];
  function askForKey(reason) {
    const dialog = document.getElementById("key-dialog");
    const err = document.getElementById("key-error");
    if (reason) {
      err.textContent = reason;
      err.hidden = false;
    } else {
      err.hidden = true;
    }
    if (!dialog.open) dialog.showModal();
    document.getElementById("key-input").focus();
    return new Promise((resolve) => keyWaiters.push(resolve));
  }

  function setupKeyDialog() {
    const dialog = document.getElementById("key-dialog");
    const form = document.getElementById("key-form");
    const input = document.getElementById("key-input");
    const err = document.getElementById("key-error");
    const submit = document.getElementById("key-submit");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      submit.disabled = true;
      err.hidden = true;
      try {
        await api("deployments", null, key);
        sessionStorage.setItem(KEY_STORAGE, key);
        input.value = "";
        dialog.close();
        const waiters = keyWaiters;
        keyWaiters = [];
        waiters.forEach((w) => w());
        setStatus("Admin key accepted", "ok");
        router.reload();
      } catch (e) {
        err.textContent =
          e instanceof AuthError
            ? "Wrong admin key: the gateway answered 401 (" + e.message + ")."
            : "Could not check the key: " + e.message;
        err.hidden = false;
        input.select();
      } finally {
        submit.disabled = false;
      }
    });
    document.getElementById("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      input.value = "";
      setStatus("Admin key forgotten");
      err.hidden = true;
    });
    document.getElementById("key-button").addEventListener("click", () => askForKey());
    dialog.addEventListener("cancel", () => {
      // Escape closes the dialog; the page shows why it has no data.
    });
  }

  // Runs an API call; on 401 asks for the key and tries once more after it is given.
  async function load(path, params) {
    try {
      return await api(path, params);
    } catch (e) {
      if (!(e instanceof AuthError)) throw e;
      const hadKey = !!getKey();
      if (hadKey) sessionStorage.removeItem(KEY_STORAGE);
      await askForKey(hadKey ? "The gateway refused the stored admin key; type it again." : "");
      return api(path, params);
    }
  }

  // ------------------------------------------------------------------ charts (SVG)

  function niceStep(max, ticks) {
    const raw = max / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  function niceMax(max, ticks) {
    if (!(max > 0)) return { max: 1, step: 0.25 };
    const step = niceStep(max, ticks);
    return { max: Math.ceil(max / step - 1e-9) * step, step };
  }

  const CH = { w: 600, h: 230, left: 56, right: 12, top: 14, bottom: 34 };

  // The frame every time chart shares: y grid with labels, x time labels, axis titles.
  function timeFrame(opts) {
    const { start, end, yMax, yStep, yFmt, yLabel, symmetric } = opts;
    const pw = CH.w - CH.left - CH.right;
    const ph = CH.h - CH.top - CH.bottom;
    const x = (t) => CH.left + ((t - start) / (end - start)) * pw;
    const yMin = symmetric ? -yMax : 0;
    const y = (v) => CH.top + ph - ((v - yMin) / (yMax - yMin)) * ph;
    const g = s("g", { class: "axes" });
    for (let v = yMin; v <= yMax + 1e-9; v += yStep) {
      const yy = y(v);
      g.append(
        s("line", { x1: CH.left, x2: CH.w - CH.right, y1: yy, y2: yy, class: v === 0 ? "zero" : "grid" }),
        s("text", { x: CH.left - 6, y: yy + 4, class: "tick", "text-anchor": "end", text: yFmt(Math.abs(v)) }),
      );
    }
    const span = end - start;
    const step = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].find((st) => span / st <= 6) || 86400;
    for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
      const xx = x(t);
      g.append(
        s("line", { x1: xx, x2: xx, y1: CH.top + ph, y2: CH.top + ph + 4, class: "axis" }),
        s("text", { x: xx, y: CH.top + ph + 16, class: "tick", "text-anchor": "middle", text: fmtClock(t) }),
      );
    }
    g.append(
      s("line", { x1: CH.left, x2: CH.left, y1: CH.top, y2: CH.top + ph, class: "axis" }),
      s("text", { x: CH.left + pw / 2, y: CH.h - 3, class: "axis-title", "text-anchor": "middle", text: "time (local)" }),
      s("text", {
        x: 12, y: CH.top + ph / 2, class: "axis-title", "text-anchor": "middle",
        transform: "rotate(-90 12 " + (CH.top + ph / 2) + ")", text: yLabel,
      }),
    );
    return { g, x, y, pw, ph };
  }

  function chartSvg(label, desc) {
    return s("svg", {
      viewBox: "0 0 " + CH.w + " " + CH.h, role: "img", "aria-label": label,
      class: "chart", preserveAspectRatio: "xMidYMid meet",
    }, s("title", { text: label }), s("desc", { text: desc }));
  }

  // Stacked columns per bucket.  series: [{key, label, color, value(bucket) -> n, down?, faded?}].
  // Series marked `down` stack below the zero line (a diverging chart).
  function barChart({ label, buckets, bucket, start, end, series, yFmt, yLabel, empty }) {
    let upMax = 0;
    let downMax = 0;
    for (const b of buckets) {
      let up = 0;
      let down = 0;
      for (const se of series) (se.down ? (down += num(se.value(b))) : (up += num(se.value(b))));
      upMax = Math.max(upMax, up);
      downMax = Math.max(downMax, down);
    }
    const symmetric = series.some((se) => se.down);
    const { max, step } = niceMax(Math.max(upMax, downMax), symmetric ? 2 : 4);
    const total = buckets.reduce((a, b) => a + series.reduce((c, se) => c + num(se.value(b)), 0), 0);
    const svg = chartSvg(label, total > 0 ? label + ": " + buckets.length + " buckets" : empty);
    const f = timeFrame({ start, end, yMax: max, yStep: step, yFmt, yLabel, symmetric });
    svg.append(f.g);
    const bw = Math.max(1, (f.pw * bucket) / (end - start) - 1);
    const bars = s("g", { class: "bars" });
    for (const b of buckets) {
      if (b.t + bucket < start || b.t > end) continue;
      const x0 = f.x(b.t) + 0.5;
      let up = 0;
      let down = 0;
      for (const se of series) {
        const v = num(se.value(b));
        if (v <= 0) continue;
        const from = se.down ? -down : up;
        const to = se.down ? -(down + v) : up + v;
        if (se.down) down += v;
        else up += v;
        const y1 = f.y(Math.max(from, to));
        const y2 = f.y(Math.min(from, to));
        bars.append(
          s("rect", {
            x: x0, y: y1, width: bw, height: Math.max(0.5, y2 - y1), fill: se.color,
            class: "bar" + (se.faded ? " faded" : ""),
            "data-series": se.key, "data-t": b.t, "data-value": v,
          }, s("title", { text: fmtClock(b.t) + " · " + se.label + ": " + yFmt(v) })),
        );
      }
    }
    svg.append(bars);
    if (symmetric) {
      svg.append(
        s("text", { x: CH.w - CH.right - 4, y: CH.top + 10, class: "corner", "text-anchor": "end", text: "▲ surfaced to clients" }),
        s("text", { x: CH.w - CH.right - 4, y: CH.h - CH.bottom - 6, class: "corner", "text-anchor": "end", text: "▼ absorbed by Brace" }),
      );
    }
    if (total === 0) svg.append(s("text", { x: CH.left + f.pw / 2, y: CH.top + f.ph / 2, class: "empty", "text-anchor": "middle", text: empty }));
    return svg;
  }

  // Lines with a point per bucket.  series: [{key, label, color, value(bucket) -> n|null}].
  function lineChart({ label, buckets, bucket, start, end, series, yFmt, yLabel, empty }) {
    let vmax = 0;
    let count = 0;
    for (const b of buckets) for (const se of series) {
      const v = se.value(b);
      if (typeof v === "number") { vmax = Math.max(vmax, v); count++; }
    }
    const { max, step } = niceMax(vmax, 4);
    const svg = chartSvg(label, count ? label + ": " + buckets.length + " buckets" : empty);
    const f = timeFrame({ start, end, yMax: max, yStep: step, yFmt, yLabel });
    svg.append(f.g);
    for (const se of series) {
      const pts = [];
      const g = s("g", { class: "series", "data-series": se.key });
      for (const b of buckets) {
        const v = se.value(b);
        if (typeof v !== "number" || b.t + bucket < start || b.t > end) continue;
        const px = f.x(b.t + bucket / 2);
        const py = f.y(v);
        pts.push(px.toFixed(1) + "," + py.toFixed(1));
        g.append(s("circle", { cx: px, cy: py, r: 2.4, fill: se.color, class: "point", "data-series": se.key, "data-t": b.t, "data-value": v },
          s("title", { text: fmtClock(b.t) + " · " + se.label + ": " + yFmt(v) })));
      }
      if (pts.length > 1) g.prepend(s("polyline", { points: pts.join(" "), fill: "none", stroke: se.color, "stroke-width": 1.8, class: "line" }));
      svg.append(g);
    }
    if (!count) svg.append(s("text", { x: CH.left + f.pw / 2, y: CH.top + f.ph / 2, class: "empty", "text-anchor": "middle", text: empty }));
    return svg;
  }

  function legend(items) {
    return h("ul", { class: "legend", "aria-label": "Legend" },
      items.map((it) => h("li", null, h("span", { class: "swatch" + (it.faded ? " faded" : ""), style: { background: it.color }, "aria-hidden": "true" }), it.label)));
  }

  function card(title, ...body) {
    const id = "c-" + title.toLowerCase().replace(/[^a-z0-9]+/g, "-");
    return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id, text: title }), body);
  }

  function badge(text, kind, title) {
    return h("span", { class: "badge " + (kind || ""), title: title || null, text });
  }

  // ------------------------------------------------------------------ data shapes

  // Failures of one bucket (or of the totals) by cause and by who saw them:
  // {absorbed: {cause: n}, surfaced: {cause: n}, all: {cause: n}, exact}.  The request
  // log may give the split (absorbed_by_cause / surfaced_by_cause, or by_cause values
  // {absorbed, surfaced}: exact) or only by_cause: {cause: n} (then only `all` is known).
  function causeSplit(b) {
    const absorbed = {};
    const surfaced = {};
    const all = {};
    const add = (m, k, v) => { if (num(v) > 0) m[k] = (m[k] || 0) + num(v); };
    const byCause = b.by_cause || {};
    if (b.absorbed_by_cause || b.surfaced_by_cause) {
      for (const [k, v] of Object.entries(b.absorbed_by_cause || {})) { add(absorbed, k, v); add(all, k, v); }
      for (const [k, v] of Object.entries(b.surfaced_by_cause || {})) { add(surfaced, k, v); add(all, k, v); }
      return { absorbed, surfaced, all, exact: true };
    }
    if (Object.values(byCause).some((v) => v && typeof v === "object")) {
      for (const [k, v] of Object.entries(byCause)) {
        if (v && typeof v === "object") { add(absorbed, k, v.absorbed); add(surfaced, k, v.surfaced); add(all, k, num(v.absorbed) + num(v.surfaced)); }
        else add(all, k, v);
      }
      return { absorbed, surfaced, all, exact: true };
    }
    for (const [k, v] of Object.entries(byCause)) add(all, k, v);
    return { absorbed, surfaced, all, exact: false };
  }

  const limiterMode = (lim) => (lim ? lim.status || lim.mode || lim.backend || "local" : "local");
  const tenantOf = (r) => r.tenant || r.key || r.api_key || null;

  // ------------------------------------------------------------------ pages

  const WINDOWS = [
    { label: "15 minutes", window: 900, bucket: 15 },
    { label: "1 hour", window: 3600, bucket: 60 },
    { label: "6 hours", window: 21600, bucket: 300 },
    { label: "24 hours", window: 86400, bucket: 1800 },
  ];
  let overviewWindow = 3600;

  function overviewPage(main) {
    const select = h("select", { id: "window", name: "window" },
      WINDOWS.map((w) => h("option", { value: w.window, selected: w.window === overviewWindow, text: w.label })));
    const body = h("div", { class: "overview-body", "aria-busy": "true" });
    main.append(
      h("div", { class: "page-head" },
        h("h1", { text: "Overview" }),
        h("div", { class: "controls" }, h("label", { for: "window", text: "Time window" }), select,
          h("span", { class: "hint", text: "refreshes every 5 s" }))),
      body,
    );
    select.addEventListener("change", () => { overviewWindow = Number(select.value); view.refresh(); });

    async function refresh() {
      const w = WINDOWS.find((x) => x.window === overviewWindow) || WINDOWS[1];
      const data = await load("overview", { window_s: w.window, bucket_s: w.bucket });
      renderOverview(body, data, w);
      body.setAttribute("aria-busy", "false");
    }
    return { refresh, interval: REFRESH_MS };
  }

  function renderOverview(body, data, w) {
    const bucket = num(data.bucket_s) || num(data.bucket) || w.bucket;
    const buckets = (data.buckets || []).slice().sort((a, b) => a.t - b.t);
    let start = num(data.since);
    let end = num(data.until);
    if (!(end > start)) {
      const now = Date.now() / 1000;
      const last = buckets.length ? buckets[buckets.length - 1].t + bucket : now;
      end = Math.max(Math.ceil(Math.max(now, last) / bucket) * bucket, last);
      start = end - (num(data.window_s) || num(data.window) || w.window);
    }
    const totals = data.totals || {};
    const sum = (k) => buckets.reduce((a, b) => a + num(b[k]), 0);
    const requests = totals.requests ?? sum("requests");
    const absorbedN = totals.errors_absorbed ?? sum("errors_absorbed");
    const surfacedN = totals.errors_surfaced ?? sum("errors_surfaced");
    const cost = totals.cost_usd ?? sum("cost_usd");

    // totals by cause: from the totals when given, else summed over buckets
    const split = { absorbed: {}, surfaced: {}, all: {} };
    // the totals when they hold as much as the buckets (the split by cause), else the buckets
    const bucketsExact = buckets.some((b) => causeSplit(b).exact);
    const totalsHave = totals.by_cause || totals.absorbed_by_cause || totals.surfaced_by_cause;
    const source = totalsHave && (causeSplit(totals).exact || !bucketsExact) ? [totals] : buckets;
    let exact = false;
    for (const b of source) {
      const c = causeSplit(b);
      exact = exact || c.exact;
      for (const side of ["absorbed", "surfaced", "all"]) for (const [k, v] of Object.entries(c[side])) split[side][k] = (split[side][k] || 0) + v;
    }
    const causes = Object.keys(split.all).sort((a, b) => split.all[b] - split.all[a]);
    const causeTotal = causes.reduce((a, c) => a + split.all[c], 0);

    let headline;
    if (absorbedN + surfacedN === 0) headline = requests ? "No failures in this window." : "No requests in this window yet.";
    else {
      headline = fmtInt(absorbedN) + " failures absorbed, " + fmtInt(surfacedN) + " surfaced to clients.";
      if (causes.length) {
        const top = causes[0];
        const n = split.all[top];
        headline += " Most were " + top.replace(/_/g, " ") + " (" + fmtPct(n / causeTotal) + ").";
      }
    }

    const stats = h("div", { class: "stats" },
      stat("Requests", fmtInt(requests), "stat-requests"),
      stat("Failures absorbed", fmtInt(absorbedN), "stat-absorbed", "good"),
      stat("Failures surfaced", fmtInt(surfacedN), "stat-surfaced", surfacedN ? "bad" : ""),
      stat("Error rate (surfaced)", requests ? fmtPct(surfacedN / requests) : "–", "stat-error-rate"),
      stat("Latency p50 / p99", fmtMs(totals.p50_ms) + " / " + fmtMs(totals.p99_ms), "stat-latency"),
      stat("Spend", fmtUsd(cost), "stat-spend"),
    );

    const causeRows = causes.map((c) => {
      const a = split.absorbed[c] || 0;
      const sf = split.surfaced[c] || 0;
      const n = split.all[c];
      const pct = (v) => (causeTotal ? (v / causeTotal) * 100 : 0) + "%";
      const sw = h("span", { class: "swatch", style: { background: causeColor(c) }, "aria-hidden": "true" });
      return h("tr", { dataset: { cause: c } },
        h("th", { scope: "row" }, sw, c),
        exact ? [h("td", { class: "num", text: fmtInt(a) }), h("td", { class: "num", text: fmtInt(sf) })] : h("td", { class: "num", text: fmtInt(n) }),
        h("td", { class: "num", text: fmtPct(causeTotal ? n / causeTotal : 0) }),
        h("td", { class: "barcell" }, h("div", { class: "hbar", role: "presentation" },
          exact ? [h("span", { class: "faded", style: { width: pct(a), background: causeColor(c) } }), h("span", { style: { width: pct(sf), background: causeColor(c) } })]
            : h("span", { style: { width: pct(n), background: causeColor(c) } }))));
    });
    const causeHead = exact ? ["Absorbed", "Surfaced", "Share"] : ["Failures", "Share"];
    const causeTable = causes.length
      ? h("table", { class: "data causes", id: "cause-table" },
        h("caption", { class: "sr-only", text: "Failures by cause" }),
        h("thead", null, h("tr", null, h("th", { scope: "col", text: "Cause" }), causeHead.map((t) => h("th", { scope: "col", class: "num", text: t })),
          h("th", { scope: "col", text: exact ? "light: absorbed, solid: surfaced" : "" }))),
        h("tbody", null, causeRows))
      : h("p", { class: "muted", text: "No failed attempts in this window." });

    const failSeries = [];
    if (exact) {
      for (const c of causes) failSeries.push({ key: "surfaced:" + c, label: c + " surfaced", color: causeColor(c), value: (b) => causeSplit(b).surfaced[c] || 0 });
      for (const c of causes) failSeries.push({ key: "absorbed:" + c, label: c + " absorbed", color: causeColor(c), faded: true, down: true, value: (b) => causeSplit(b).absorbed[c] || 0 });
    } else {
      for (const c of causes) failSeries.push({ key: "cause:" + c, label: c, color: causeColor(c), value: (b) => causeSplit(b).all[c] || 0 });
    }
    const common = { buckets, bucket, start, end };

    body.replaceChildren(
      h("p", { class: "headline", id: "headline", text: headline }),
      stats,
      h("div", { class: "grid" },
        card("Traffic",
          barChart({ ...common, label: "Requests per " + bucket + " s", yLabel: "requests", yFmt: fmtCompact, empty: "No requests in this window",
            series: [
              { key: "ok", label: "answered", color: TRAFFIC_COLOR, value: (b) => num(b.requests) - num(b.errors_surfaced) },
              { key: "failed", label: "failed (surfaced)", color: "#d14343", value: (b) => num(b.errors_surfaced) },
            ] }),
          legend([{ label: "answered", color: TRAFFIC_COLOR }, { label: "failed (error given to the client)", color: "#d14343" }])),
        card("Failures by cause",
          barChart({ ...common, label: exact ? "Failures by cause: surfaced above, absorbed below" : "Failures by cause (failed attempts absorbed and errors surfaced)",
            yLabel: "failures", yFmt: fmtCompact, empty: "No failures in this window", series: failSeries }),
          causes.length ? legend(causes.map((c) => ({ label: c, color: causeColor(c) })).concat(exact ? [{ label: "absorbed (light)", color: "#888", faded: true }] : [])) : null),
        exact ? null : card("Absorbed vs surfaced",
          barChart({ ...common, label: "Failures absorbed by Brace (below) and surfaced to clients (above)", yLabel: "failures", yFmt: fmtCompact,
            empty: "No failures in this window",
            series: [
              { key: "surfaced", label: "surfaced to clients", color: "#d14343", value: (b) => num(b.errors_surfaced) },
              { key: "absorbed", label: "absorbed by Brace", color: OK_COLOR, down: true, value: (b) => num(b.errors_absorbed) },
            ] }),
          legend([{ label: "surfaced to clients", color: "#d14343" }, { label: "absorbed by Brace (retried or failed over)", color: OK_COLOR }])),
        card("Latency",
          lineChart({ ...common, label: "Latency p50 and p99", yLabel: "latency", yFmt: fmtMs, empty: "No latency samples",
            series: [
              { key: "p50", label: "p50", color: TRAFFIC_COLOR, value: (b) => (typeof b.p50_ms === "number" ? b.p50_ms : null) },
              { key: "p99", label: "p99", color: "#e07b39", value: (b) => (typeof b.p99_ms === "number" ? b.p99_ms : null) },
            ] }),
          legend([{ label: "p50", color: TRAFFIC_COLOR }, { label: "p99", color: "#e07b39" }])),
        card("Spend",
          barChart({ ...common, label: "Spend per " + bucket + " s", yLabel: "USD", yFmt: fmtUsd, empty: "No spend in this window",
            series: [{ key: "cost", label: "spend", color: "#6a994e", value: (b) => num(b.cost_usd) }] })),
        card(exact ? "Failures absorbed and surfaced, by cause" : "Failures by cause, whole window", causeTable),
      ),
    );
  }

  function stat(label, value, id, kind) {
    return h("div", { class: "stat " + (kind || ""), id }, h("div", { class: "stat-label", text: label }), h("div", { class: "stat-value", text: value }));
  }

  // ---------------------------------------------------------------- deployments

  function deploymentsPage(main) {
    const body = h("div", { "aria-busy": "true" });
    main.append(h("div", { class: "page-head" }, h("h1", { text: "Deployments" }), h("span", { class: "hint", text: "refreshes every 5 s" })), body);
    async function refresh() {
      const data = await load("deployments");
      renderDeployments(body, data);
      body.setAttribute("aria-busy", "false");
    }
    return { refresh, interval: REFRESH_MS };
  }

  const BREAKER = { closed: ["closed", "ok"], half_open: ["half-open", "warn"], open: ["open", "bad"] };
  const MODE = { shared: "ok", degraded: "warn", local: "muted" };

  function meter(value, max, label, neutral) {
    if (typeof value !== "number" || !(max > 0)) return h("span", { class: "muted", text: "–" });
    const pct = Math.max(0, Math.min(1, value / max));
    return h("div", { class: "meter-wrap" },
      h("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": trim(max), "aria-valuenow": trim(value), "aria-label": label },
        h("span", { class: neutral ? "neutral" : pct > 0.9 ? "hot" : pct > 0.7 ? "warm" : "", style: { width: (pct * 100).toFixed(1) + "%" } })),
      h("span", { class: "meter-text", text: fmtCompact(value) + " / " + fmtCompact(max) }));
  }

  function renderDeployments(body, data) {
    const lim = data.limiter;
    const mode = limiterMode(lim);
    const limiterFacts = [];
    if (lim) {
      if (lim.backend) limiterFacts.push(["Backend", lim.backend]);
      if (lim.live_instances !== undefined) limiterFacts.push(["Live instances", fmtInt(lim.live_instances)]);
      if (lim.degraded_calls) limiterFacts.push(["Degraded calls", fmtInt(lim.degraded_calls)]);
      if (lim.degraded_since) limiterFacts.push(["Degraded since", fmtDateTime(lim.degraded_since)]);
      if (lim.last_error) limiterFacts.push(["Last error", lim.last_error]);
    }
    const limiterCard = card("Limiter",
      h("div", { class: "limiter" },
        h("span", null, "Mode "), badge(mode, MODE[mode] || "muted"),
        h("span", { class: "muted", text: mode === "shared" ? " limits shared across gateway instances"
          : mode === "degraded" ? " the shared store is unreachable: limits are enforced locally until it is back"
            : " limits are enforced by this instance alone" })),
      limiterFacts.length ? h("dl", { class: "facts" }, limiterFacts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])) : null);

    const groups = Object.entries(data.groups || {});
    const admission = data.admission || {};
    const sections = groups.map(([group, deps]) => {
      const adm = admission[group];
      const byPrio = adm && adm.by_priority ? Object.entries(adm.by_priority).map(([p, n]) => p + " " + n).join(", ") : "";
      const rows = deps.map((d) => {
        const br = d.breaker || {};
        const [brText, brKind] = BREAKER[br.state] || [br.state || "none", "muted"];
        const cap = d.capacity || {};
        const learnedRpm = cap.learned_rpm ?? cap.configured_rpm;
        const learnedTpm = cap.learned_tpm ?? cap.configured_tpm;
        const budget = d.retry_budget || {};
        return h("tr", { dataset: { deployment: d.id } },
          h("th", { scope: "row" }, h("span", { class: "mono", text: d.id }), h("div", { class: "muted small", text: "weight " + trim(num(d.weight)) })),
          h("td", null, badge(brText + (br.state === "open" && typeof br.retry_after === "number" ? " · retry in " + fmtSec(br.retry_after) : ""), brKind),
            h("div", { class: "muted small", text: "failures " + fmtPct(br.failure_rate) })),
          h("td", { class: "num", text: fmtInt(d.outstanding) }),
          h("td", { class: "num", text: fmtSec(d.ewma_latency_s) }),
          h("td", { class: "num " + (num(d.ewma_error_rate) > 0.2 ? "bad-text" : ""), text: fmtPct(d.ewma_error_rate) }),
          h("td", null, cap.effective_rpm != null ? meter(cap.effective_rpm, learnedRpm ?? cap.effective_rpm, "requests per minute: effective of learned", true) : h("span", { class: "muted", text: "unlimited" })),
          h("td", null, cap.effective_tpm != null ? meter(cap.effective_tpm, learnedTpm ?? cap.effective_tpm, "tokens per minute: effective of learned", true) : h("span", { class: "muted", text: "unlimited" })),
          h("td", null, cap.concurrency_limit ? meter(num(cap.in_flight), cap.concurrency_limit, "in flight of concurrency limit") : h("span", { class: "muted", text: fmtInt(cap.in_flight ?? d.outstanding) })),
          h("td", { class: "num", text: cap.upstream_429s !== undefined ? fmtInt(cap.upstream_429s) : "–" }),
          h("td", { class: "num", text: budget.allowed !== undefined ? fmtInt(budget.retries) + " / " + fmtInt(budget.allowed) : "–" }),
        );
      });
      return card("Group " + group,
        h("div", { class: "admission", dataset: { group } },
          h("span", null, "Admission queue: "), h("strong", { class: "queue-depth", text: fmtInt(adm ? adm.queue_depth : 0) }), " waiting",
          byPrio ? h("span", { class: "muted", text: " (" + byPrio + ")" }) : null,
          adm ? h("span", { class: "muted", text: " · shed " + fmtInt(adm.shed) }) : null),
        h("div", { class: "table-scroll" }, h("table", { class: "data deployments" },
          h("caption", { class: "sr-only", text: "Deployments of group " + group }),
          h("thead", null, h("tr", null, ["Deployment", "Breaker", "Outstanding", "Latency EWMA", "Errors EWMA", "RPM effective / learned",
            "TPM effective / learned", "In flight / limit", "429s", "Retries / budget"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", null, rows))));
    });
    body.replaceChildren(limiterCard, ...(sections.length ? sections : [h("p", { class: "muted", text: "No model groups." })]));
  }

  // ---------------------------------------------------------------- requests

  const ERROR_CLASSES = ["rate_limited", "overloaded", "server_error", "timeout", "connection_error", "circuit_open", "shed",
    "deadline_exceeded", "malformed_response", "context_window_exceeded", "content_filtered", "authentication", "bad_request", "not_found", "no_capacity"];
  const FILTERS = ["model", "deployment", "tenant", "status", "error_class", "q"];
  let lastRequestsHash = "#/requests";

  function requestsPage(main, query) {
    const f = Object.fromEntries(FILTERS.map((k) => [k, query.get(k) || ""]));
    lastRequestsHash = location.hash || "#/requests";
    const { input, select } = filterFields("f-", f);
    const form = h("form", { class: "filters", role: "search", "aria-label": "Filter requests" },
      input("q", "Request id", { type: "search", placeholder: "search by request id", class: "wide" }),
      input("model", "Model", { list: "dl-model" }),
      input("deployment", "Deployment", { list: "dl-deployment" }),
      input("tenant", "Key (tenant)", { list: "dl-tenant" }),
      select("status", "Status", [["", "any"], ["ok", "ok (2xx)"], ["error", "error"], ["429", "429"], ["5xx", "5xx"]]),
      select("error_class", "Error class", [["", "any"], ...ERROR_CLASSES.map((c) => [c, c])]),
      h("div", { class: "field buttons" }, h("button", { type: "submit", text: "Apply" }), h("button", { type: "button", class: "ghost", text: "Clear", onclick: () => { location.hash = "#/requests"; } })),
      h("datalist", { id: "dl-model" }), h("datalist", { id: "dl-deployment" }), h("datalist", { id: "dl-tenant" }));
    submitToHash(form, "#/requests", FILTERS);
    const tbody = h("tbody");
    const note = h("p", { class: "muted", id: "requests-note", role: "status" });
    const more = h("button", { type: "button", id: "load-more", class: "ghost", text: "Load more", hidden: true });
    const table = h("div", { class: "table-scroll" }, h("table", { class: "data requests", id: "requests-table" },
      h("caption", { class: "sr-only", text: "Requests, newest first" }),
      h("thead", null, h("tr", null, ["Time", "Request", "Model → deployment", "Status", "Error", "Duration", "TTFT", "Tokens in / out", "Cost", "Attempts"]
        .map((t) => h("th", { scope: "col", class: ["Duration", "TTFT", "Tokens in / out", "Cost"].includes(t) ? "num" : null, text: t })))),
      tbody));
    main.append(h("div", { class: "page-head" }, h("h1", { text: "Requests" }),
      h("button", { type: "button", class: "ghost", text: "Refresh", onclick: () => view.refresh() })), form, card("Request log", table, note, more));

    let cursor = null;
    const seen = { model: new Set(), deployment: new Set(), tenant: new Set() };
    const params = () => ({ ...f, limit: 50 });

    function addRows(rows) {
      for (const r of rows) {
        for (const k of ["model", "deployment"]) if (r[k]) seen[k].add(r[k]);
        if (tenantOf(r)) seen.tenant.add(tenantOf(r));
        tbody.append(requestRow(r));
      }
      for (const k of Object.keys(seen)) {
        document.getElementById("dl-" + k).replaceChildren(...[...seen[k]].sort().map((v) => h("option", { value: v })));
      }
    }

    async function refresh() {
      const data = await load("requests", params());
      let rows = data.data || [];
      if (!rows.length && f.q) {
        // an exact id the list search did not match: ask for the record itself
        try {
          const one = await api("requests/" + encodeURIComponent(f.q));
          if (one && one.request_id) rows = [one];
        } catch (e) {
          if (e instanceof AuthError) throw e;
        }
      }
      tbody.replaceChildren();
      cursor = nextCursor(data);
      addRows(rows);
      more.hidden = !cursor;
      note.textContent = rows.length ? "" : "No requests match these filters.";
      if (!rows.length && !Object.values(f).some(Boolean)) note.textContent = "No requests recorded yet.";
    }
    onLoadMore(more, async () => {
      const data = await load("requests", { ...params(), before: cursor });
      cursor = nextCursor(data);
      addRows(data.data || []);
      more.hidden = !cursor;
    });
    return { refresh };
  }

  const nextCursor = (page) => page.next_cursor || page.next || null;

  // "Load more": the button is off while the next page loads; an error shows in the banner.
  function onLoadMore(more, next) {
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        await next();
      } catch (e) {
        showError(e);
      } finally {
        more.disabled = false;
      }
    });
  }

  // A filter form's fields: inputs and selects labelled "<prefix><name>", holding f[name].
  function filterFields(prefix, f) {
    const input = (name, label, attrs) => h("div", { class: "field" }, h("label", { for: prefix + name, text: label }),
      h("input", { id: prefix + name, name, value: f[name], autocomplete: "off", ...attrs }));
    const select = (name, label, options) => h("div", { class: "field" }, h("label", { for: prefix + name, text: label }),
      h("select", { id: prefix + name, name }, options.map(([v, t]) => h("option", { value: v, text: t, selected: f[name] === v }))));
    return { input, select };
  }

  // Submitting a filter form puts its non-empty fields in the URL (base?k=v...): a filtered
  // view can be shared; the same filters again just refresh.
  function submitToHash(form, base, names) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const k of names) { const v = form.elements[k].value.trim(); if (v) p.set(k, v); }
      const next = base + (p.toString() ? "?" + p : "");
      if (next === location.hash) view.refresh();
      else location.hash = next;
    });
  }

  function statusBadge(status, errorClass) {
    const ok = status >= 200 && status < 300 && !errorClass;
    return badge(String(status ?? "–"), ok ? "ok" : status === 429 ? "warn" : "bad");
  }

  function requestRow(r) {
    const href = "#/requests/" + encodeURIComponent(r.request_id);
    const attempts = r.attempts_count ?? (r.attempts ? r.attempts.length : 1);
    const absorbed = r.absorbed ?? 0;
    const fallback = Array.isArray(r.fallback) ? r.fallback.length > 0 : !!r.fallback;
    const tr = h("tr", { class: "clickable" + (r.error_class ? " failed" : ""), dataset: { requestId: r.request_id } },
      h("td", { class: "nowrap", text: fmtDateTime(r.started_at) }),
      h("td", null, h("a", { href, class: "mono", title: r.request_id, text: r.request_id.length > 14 ? r.request_id.slice(0, 12) + "…" : r.request_id })),
      h("td", null, h("span", { text: r.model }), r.deployment ? h("span", { class: "muted", text: " → " + r.deployment }) : null),
      h("td", null, statusBadge(r.status, r.error_class)),
      h("td", null, r.error_class ? h("span", { class: "cause" }, h("span", { class: "swatch", style: { background: causeColor(r.error_class) }, "aria-hidden": "true" }), r.error_class) : ""),
      h("td", { class: "num", text: fmtSec(r.duration) }),
      h("td", { class: "num", text: fmtSec(r.ttft) }),
      h("td", { class: "num", text: fmtInt(r.input_tokens) + " / " + fmtInt(r.output_tokens) }),
      h("td", { class: "num", text: fmtUsd(r.cost_usd) }),
      h("td", null, String(attempts),
        absorbed ? badge("absorbed " + absorbed, "ok", absorbed + " failed attempt(s) the client never saw") : null,
        fallback ? badge("fallback", "info") : null,
        r.hedged ? badge("hedged", "info") : null,
        r.stream ? badge("stream", "muted") : null),
    );
    tr.addEventListener("click", (ev) => { if (!ev.target.closest("a")) location.hash = href; });
    return tr;
  }

  // ---------------------------------------------------------------- trace view

  function tracePage(main, id) {
    const body = h("div", { "aria-busy": "true" });
    main.append(h("div", { class: "page-head" },
      h("h1", null, "Request ", h("span", { class: "mono", text: id })),
      h("a", { href: lastRequestsHash, class: "back", text: "← Back to requests" })), body);
    async function refresh() {
      let rec;
      try {
        rec = await load("requests/" + encodeURIComponent(id));
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          body.replaceChildren(h("p", { class: "banner error", role: "alert", text: "No request " + id + " in the log (it may have expired)." }));
          return;
        }
        throw e;
      }
      renderTrace(body, rec);
      body.setAttribute("aria-busy", "false");
    }
    return { refresh };
  }

  function renderTrace(body, r) {
    // numbered from 1 in the order they started (the log's seq may count from 0)
    const attempts = (r.attempts || []).map((a, i) => ({ ...a, n: i + 1 }));
    const fallbackPath = Array.isArray(r.fallback) ? r.fallback : r.fallback ? [String(r.fallback)] : [];
    const absorbed = r.absorbed ?? (r.error_class ? 0 : attempts.filter((a) => a.error_class).length);
    const facts = [
      ["Status", statusBadge(r.status, r.error_class)],
      ["Model asked", r.model],
      ["Answered by", (r.group || "–") + (r.deployment ? " / " + r.deployment : "")],
      ["Started", fmtDateTime(r.started_at)],
      ["Duration", fmtSec(r.duration)],
      ["Time to first token", fmtSec(r.ttft)],
      ["Tokens in / out", fmtInt(r.input_tokens) + " / " + fmtInt(r.output_tokens) + (r.cached_tokens ? " (" + fmtInt(r.cached_tokens) + " cached)" : "")],
      ["Cost", fmtUsd(r.cost_usd)],
      ["Attempts", String(attempts.length) + (absorbed ? " (" + absorbed + " absorbed)" : "")],
      ["Fallback", fallbackPath.length ? fallbackPath.join(" → ") : "none"],
      ["Stream", r.stream ? "yes" : "no"],
      ["Priority", r.priority || "–"],
      ["Key (tenant)", tenantOf(r) || "–"],
      ["Queue wait", fmtSec(r.queue_wait)],
      ["Trace id", r.trace_id || "–"],
    ];
    if (r.error_class || r.error) facts.push(["Error", (r.error_class || "") + (r.error ? ": " + r.error : "")]);
    body.replaceChildren(
      h("div", { class: "trace-grid" },
        card("Timeline", timeline(r, attempts),
          legend([{ label: "answered", color: OK_COLOR }, ...[...new Set(attempts.map((a) => a.error_class).filter(Boolean))].map((c) => ({ label: c, color: causeColor(c) }))])),
        card("Request", h("dl", { class: "facts", id: "trace-facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)])))),
      card("Attempts", h("div", { class: "table-scroll" }, h("table", { class: "data attempts" },
        h("caption", { class: "sr-only", text: "Attempts of this request" }),
        h("thead", null, h("tr", null, ["#", "Deployment", "Group", "Provider", "Start", "Waited before", "Duration", "Outcome", "Status", "Error"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", null, attempts.map((a) => h("tr", { class: a.error_class ? "failed" : "" },
          h("td", { text: a.n }), h("td", { class: "mono", text: a.deployment }), h("td", { text: a.group || "–" }), h("td", { text: a.provider || "–" }),
          h("td", { class: "num", text: "+" + fmtSec(a.offset) }),
          h("td", { class: "num waited", title: "backoff (or retry-after) the retry policy waited before this attempt", text: a.retry_delay == null ? "–" : fmtSec(a.retry_delay) }),
          h("td", { class: "num", text: fmtSec(a.duration) }),
          h("td", null, a.error_class ? badge(a.error_class, "bad") : badge("ok", "ok"), a.hedge ? badge("hedge", "info") : null),
          h("td", { text: a.status ?? "–" }), h("td", { class: "small", text: a.error || "" }))))))));
  }

  function timeline(r, attempts) {
    const W = 760;
    const left = 22;
    const right = 30;
    const rowH = 40;
    const top = 30;
    const end = Math.max(num(r.duration), ...attempts.map((a) => num(a.offset) + num(a.duration)), 0.001);
    const { max, step } = niceMax(end, 5);
    const pw = W - left - right;
    const x = (t) => left + (t / max) * pw;
    const H = top + rowH * (attempts.length + 1) + 30;
    const svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "chart timeline", role: "img",
      "aria-label": "Timeline of " + attempts.length + " attempts over " + fmtSec(end) },
    s("title", { text: "Attempts timeline" }));
    const axisY = H - 26;
    for (let t = 0; t <= max + 1e-9; t += step) {
      svg.append(s("line", { x1: x(t), x2: x(t), y1: top - 8, y2: axisY, class: "grid" }),
        s("text", { x: x(t), y: axisY + 14, class: "tick", "text-anchor": "middle", text: fmtSec(t) }));
    }
    svg.append(s("text", { x: left + pw / 2, y: H - 1, class: "axis-title", "text-anchor": "middle", text: "time since the request started" }));
    // the request itself
    svg.append(s("rect", { x: x(0), y: top - 6, width: Math.max(2, x(num(r.duration)) - x(0)), height: 10, rx: 2, class: "request-bar" },
      s("title", { text: "request: " + fmtSec(r.duration) })),
    s("text", { x: x(0) + 2, y: top - 11, class: "label small", text: "request " + fmtSec(r.duration) + (r.ttft != null ? " · first token " + fmtSec(r.ttft) : "") }));
    if (typeof r.ttft === "number") {
      svg.append(s("line", { x1: x(r.ttft), x2: x(r.ttft), y1: top - 8, y2: axisY, class: "ttft" }, s("title", { text: "first token at " + fmtSec(r.ttft) })));
    }
    let prevGroup = attempts.length ? attempts[0].group : null;
    attempts.forEach((a, i) => {
      const y = top + 14 + i * rowH;
      const x0 = x(num(a.offset));
      const w = Math.max(3, x(num(a.offset) + num(a.duration)) - x0);
      const color = a.error_class ? causeColor(a.error_class) : OK_COLOR;
      const hop = i > 0 && a.group && a.group !== prevGroup;
      prevGroup = a.group || prevGroup;
      const g = s("g", { class: "attempt-row" });
      if (hop) {
        g.append(s("line", { x1: x0, x2: x0, y1: y - 6, y2: y + rowH - 8, class: "hop" }),
          s("text", { x: x0 + 3, y: y - 1, class: "hop-label", text: "↪ fallback to " + a.group }));
      }
      const label = "#" + a.n + " " + a.deployment + " · " + (a.error_class ? a.error_class + (a.status ? " " + a.status : "") : "ok" + (a.status ? " " + a.status : "")) + (a.hedge ? " · hedge" : "");
      g.append(s("rect", {
        x: x0, y: y + (hop ? 4 : 0), width: w, height: 18, rx: 3, fill: color,
        class: "attempt" + (a.error_class ? " failed" : " ok") + (a.hedge ? " hedge" : ""),
        "data-deployment": a.deployment, "data-error-class": a.error_class || "", "data-hedge": a.hedge ? "1" : "0", "data-fallback": hop ? "1" : "0",
      }, s("title", { text: label + " · start +" + fmtSec(a.offset) + " · " + fmtSec(a.duration) + (a.error ? " · " + a.error : "") })));
      const labelX = x0 + w + 6;
      const anchorEnd = labelX > W - 220;
      g.append(s("text", { x: anchorEnd ? x0 - 6 : labelX, y: y + (hop ? 4 : 0) + 13, class: "label", "text-anchor": anchorEnd ? "end" : "start", text: label }));
      svg.append(g);
    });
    return svg;
  }

  // ---------------------------------------------------------------- spend

  const GROUP_BY = [["model", "Model"], ["deployment", "Deployment"], ["tenant", "Key"], ["day", "Day"], ["hour", "Hour"]];
  let spendGroup = "model";

  function spendPage(main) {
    const body = h("div", { "aria-busy": "true" });
    const radios = h("fieldset", { class: "segmented" }, h("legend", { text: "Group spend by" }),
      GROUP_BY.map(([v, t]) => h("label", null, h("input", { type: "radio", name: "group_by", value: v, checked: v === spendGroup }), t)));
    radios.addEventListener("change", (ev) => { spendGroup = ev.target.value; view.refresh(); });
    main.append(h("div", { class: "page-head" }, h("h1", { text: "Spend" }), radios), body);
    async function refresh() {
      const data = await load("spend", { group_by: spendGroup });
      renderSpend(body, data, spendGroup);
      body.setAttribute("aria-busy", "false");
    }
    return { refresh };
  }

  function renderSpend(body, data, groupBy) {
    const label = (GROUP_BY.find(([v]) => v === groupBy) || [0, groupBy])[1];
    let rows = (data.rows || data.data || []).map((r) => ({ ...r, key: r.key ?? "(none)" }));
    const timeLike = groupBy === "day" || groupBy === "hour";
    rows = rows.slice().sort(timeLike ? (a, b) => String(a.key).localeCompare(String(b.key)) : (a, b) => num(b.cost_usd) - num(a.cost_usd));
    const keyText = (k) => (groupBy === "hour" && typeof k === "number" ? fmtDateTime(k) : groupBy === "day" && typeof k === "number" ? fmtDateTime(k).slice(0, 10) : String(k));
    const total = data.total || rows.reduce((t, r) => ({
      requests: num(t.requests) + num(r.requests), input_tokens: num(t.input_tokens) + num(r.input_tokens),
      output_tokens: num(t.output_tokens) + num(r.output_tokens), cost_usd: num(t.cost_usd) + num(r.cost_usd),
    }), {});
    body.replaceChildren(
      h("div", { class: "stats" }, stat("Total spend", fmtUsd(total.cost_usd), "spend-total"), stat("Requests", fmtInt(total.requests), "spend-requests"),
        stat("Input tokens", fmtCompact(total.input_tokens), "spend-in"), stat("Output tokens", fmtCompact(total.output_tokens), "spend-out")),
      h("div", { class: "grid spend-grid" },
        card("Spend by " + label.toLowerCase(), spendChart(rows.slice(0, 24), keyText, label)),
        card("Table", h("div", { class: "table-scroll" }, h("table", { class: "data spend", id: "spend-table" },
          h("caption", { class: "sr-only", text: "Spend by " + label }),
          h("thead", null, h("tr", null, h("th", { scope: "col", text: label }), ["Requests", "Input tokens", "Output tokens", "Cost"].map((t) => h("th", { scope: "col", class: "num", text: t })))),
          h("tbody", null, rows.map((r) => h("tr", { dataset: { key: String(r.key) } }, h("th", { scope: "row", class: "mono", text: keyText(r.key) }),
            h("td", { class: "num", text: fmtInt(r.requests) }), h("td", { class: "num", text: fmtInt(r.input_tokens) }),
            h("td", { class: "num", text: fmtInt(r.output_tokens) }), h("td", { class: "num", text: fmtUsd(r.cost_usd) })))),
          h("tfoot", null, h("tr", null, h("th", { scope: "row", text: "Total" }), h("td", { class: "num", text: fmtInt(total.requests) }),
            h("td", { class: "num", text: fmtInt(total.input_tokens) }), h("td", { class: "num", text: fmtInt(total.output_tokens) }),
            h("td", { class: "num", text: fmtUsd(total.cost_usd) })))))),
      ),
    );
  }

  function spendChart(rows, keyText, label) {
    const W = 560;
    const left = 150;
    const right = 70;
    const rowH = 22;
    const top = 8;
    const H = top + Math.max(1, rows.length) * rowH + 34;
    const { max, step } = niceMax(Math.max(0, ...rows.map((r) => num(r.cost_usd))), 4);
    const x = (v) => left + (v / max) * (W - left - right);
    const svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img", "aria-label": "Spend by " + label.toLowerCase() + ", USD" },
      s("title", { text: "Spend by " + label.toLowerCase() }));
    const axisY = top + Math.max(1, rows.length) * rowH;
    for (let v = 0; v <= max + 1e-9; v += step) {
      svg.append(s("line", { x1: x(v), x2: x(v), y1: top, y2: axisY, class: v === 0 ? "axis" : "grid" }),
        s("text", { x: x(v), y: axisY + 14, class: "tick", "text-anchor": "middle", text: fmtUsd(v) }));
    }
    svg.append(s("text", { x: left + (W - left - right) / 2, y: H - 3, class: "axis-title", "text-anchor": "middle", text: "cost (USD)" }));
    rows.forEach((r, i) => {
      const y = top + i * rowH + 3;
      const k = keyText(r.key);
      svg.append(
        s("text", { x: left - 6, y: y + 12, class: "label", "text-anchor": "end", text: k.length > 22 ? k.slice(0, 21) + "…" : k }, s("title", { text: k })),
        s("rect", { x: left, y, width: Math.max(1, x(num(r.cost_usd)) - left), height: rowH - 7, rx: 2, fill: "#6a994e", class: "bar", "data-key": String(r.key), "data-value": num(r.cost_usd) },
          s("title", { text: k + ": " + fmtUsd(r.cost_usd) + " · " + fmtInt(r.requests) + " requests" })),
        s("text", { x: x(num(r.cost_usd)) + 5, y: y + 12, class: "label small", text: fmtUsd(r.cost_usd) }),
      );
    });
    if (!rows.length) svg.append(s("text", { x: W / 2, y: top + 14, class: "empty", "text-anchor": "middle", text: "No spend recorded yet" }));
    return svg;
  }

  // ---------------------------------------------------------------- keys

  // Spend and budget use per virtual key and per team (GET /admin/keys, /admin/teams).
  // Filters (team, state) live in the URL: #/keys?team=&state=
  const KEY_STATES = { active: "ok", expired: "warn", revoked: "bad" };
  const PERIODS = [["day", "today", "daily"], ["month", "this month", "monthly"], ["total", "total", "total"]];
  const isoSec = (iso) => (iso ? Date.parse(iso) / 1000 : null);

  function keysPage(main, query) {
    const f = { team: query.get("team") || "", state: query.get("state") || "" };
    const setFilter = (k, v) => {
      const p = new URLSearchParams();
      for (const [name, value] of Object.entries({ ...f, [k]: v })) if (value) p.set(name, value);
      location.hash = "#/keys" + (p.toString() ? "?" + p : "");
    };
    const teamSelect = h("select", { id: "k-team", name: "team", onchange: (ev) => setFilter("team", ev.target.value) });
    const stateSelect = h("select", { id: "k-state", name: "state", onchange: (ev) => setFilter("state", ev.target.value) },
      [["", "any"], ["active", "active"], ["expired", "expired"], ["revoked", "revoked"]].map(([v, t]) => h("option", { value: v, text: t, selected: f.state === v })));
    let teamNames = null;
    function setTeams(names) {
      const all = [...new Set([...names, ...(f.team ? [f.team] : [])])].sort();
      const sig = all.join("\u0000");
      if (sig === teamNames) return;
      teamNames = sig;
      teamSelect.replaceChildren(h("option", { value: "", text: "any" }), ...all.map((t) => h("option", { value: t, text: t, selected: f.team === t })));
    }
    setTeams([]);
    const body = h("div", { "aria-busy": "true" });
    main.append(
      h("div", { class: "page-head" }, h("h1", { text: "Keys" }),
        h("form", { class: "controls", role: "search", "aria-label": "Filter keys", onsubmit: (ev) => ev.preventDefault() },
          h("label", { for: "k-team", text: "Team" }), teamSelect, h("label", { for: "k-state", text: "State" }), stateSelect,
          h("span", { class: "hint", text: "refreshes every 5 s" }))),
      body);
    async function refresh() {
      const [keys, teams] = await Promise.all([load("keys"), load("teams")]);
      const allKeys = keys.data || [];
      const allTeams = teams.data || [];
      setTeams([...allTeams.map((t) => t.team), ...allKeys.map((k) => k.team).filter(Boolean)]);
      renderKeys(body, allKeys, allTeams, f);
      body.setAttribute("aria-busy", "false");
    }
    return { refresh, interval: REFRESH_MS };
  }

  const usageOf = (x, period) => (x.usage || []).find((u) => u.period === period) || null;

  function renderKeys(body, allKeys, allTeams, f) {
    const keys = allKeys.filter((k) => (!f.team || k.team === f.team) && (!f.state || k.state === f.state));
    const teams = allTeams.filter((t) => !f.team || t.team === f.team);
    const spentIn = (period) => keys.reduce((a, k) => a + num((usageOf(k, period) || {}).spent_usd), 0);
    const active = keys.filter((k) => k.state === "active").length;
    const stats = h("div", { class: "stats" },
      stat("Keys (active / listed)", fmtInt(active) + " / " + fmtInt(keys.length), "keys-count"),
      stat("Spend today", fmtUsd(spentIn("day")), "keys-spend-day"),
      stat("Spend this month", fmtUsd(spentIn("month")), "keys-spend-month"),
      stat("Spend in total", fmtUsd(spentIn("total")), "keys-spend-total"));

    let keysBody;
    if (!allKeys.length) {
      keysBody = h("div", { class: "empty-state", id: "keys-empty" },
        h("p", null, h("strong", { text: "No keys yet: " }), "create one with ", h("code", { text: "brace keys create NAME" }), " or ",
          h("code", { text: "POST /admin/keys" }), "."),
        h("p", { class: "muted" }, "Until a virtual key exists this gateway runs in local mode: without ", h("code", { text: "server.admin_key" }),
          " it serves every request without authentication, with one it accepts only the master key. Either way no spend is counted per key and no budget applies."));
    } else if (!keys.length) {
      keysBody = h("p", { class: "muted", id: "keys-empty", text: "No key matches these filters (" + allKeys.length + " keys in all)." });
    } else {
      keysBody = h("div", { class: "table-scroll" }, h("table", { class: "data keys", id: "keys-table" },
        h("caption", { class: "sr-only", text: "Virtual keys, their spend and budget use" }),
        h("thead", null, h("tr", null,
          ["Key", "Team", "Prefix", "State", "Models", "RPM / TPM"].map((t) => h("th", { scope: "col", text: t })),
          spendHeads(),
          h("th", { scope: "col", text: "Budgets" }))),
        h("tbody", null, keys.map(keyRow))));
    }

    const teamsBody = teams.length
      ? h("div", { class: "table-scroll" }, h("table", { class: "data keys", id: "teams-table" },
        h("caption", { class: "sr-only", text: "Teams, their spend and budget use" }),
        h("thead", null, h("tr", null, h("th", { scope: "col", text: "Team" }), h("th", { scope: "col", class: "num", text: "Keys" }),
          spendHeads(),
          h("th", { scope: "col", text: "Budgets" }))),
        h("tbody", null, teams.map((t) => h("tr", { dataset: { team: t.team } },
          h("th", { scope: "row", text: t.team }),
          h("td", { class: "num", text: fmtInt(t.keys) }),
          spendCells(t),
          h("td", { class: "budgets" }, budgetBars(t, "team " + t.team)))))))
      : f.team ? h("p", { class: "muted", id: "teams-empty", text: "No team named " + f.team + "." })
        : h("p", { class: "muted", id: "teams-empty" }, "No teams: give a key a team, or set a team's budgets with ",
          h("code", { text: "PUT /admin/teams/{team}" }), ".");

    body.replaceChildren(stats, card("Keys", keysBody), card("Teams", teamsBody));
  }

  function keyRow(k) {
    const since = k.state === "revoked" ? "revoked " + fmtDateTime(isoSec(k.revoked_at))
      : k.expires_at ? (k.state === "expired" ? "expired " : "expires ") + fmtDateTime(isoSec(k.expires_at)) : "";
    const rpm = k.rpm ? fmtCompact(k.rpm) : "–";
    const tpm = k.tpm ? fmtCompact(k.tpm) : "–";
    return h("tr", { class: k.state === "active" ? "" : "inactive", dataset: { keyId: k.id, state: k.state } },
      h("th", { scope: "row" }, h("div", { class: "key-name", text: k.name }), h("div", { class: "mono muted small key-id", text: k.id })),
      h("td", { class: "key-team" }, k.team ? k.team : h("span", { class: "muted", text: "–" })),
      h("td", { class: "mono nowrap key-prefix", text: k.prefix + "…" }),
      h("td", null, badge(k.state, KEY_STATES[k.state] || ""), since ? h("div", { class: "muted small nowrap", text: since }) : null),
      h("td", { class: "small key-models" }, k.models ? k.models.join(", ") : h("span", { class: "muted", text: "all" })),
      h("td", { class: "nowrap key-limits" }, h("span", { title: "requests per minute / tokens per minute", text: rpm + " / " + tpm }),
        k.priority ? h("div", { class: "muted small", text: "priority " + k.priority }) : null),
      spendCells(k),
      h("td", { class: "budgets" }, budgetBars(k, "key " + k.name)));
  }

  const spendHeads = () => PERIODS.map(([, label]) => h("th", { scope: "col", class: "num", title: "spend " + label, text: label[0].toUpperCase() + label.slice(1) }));

  function spendCells(x) {
    return PERIODS.map(([period, label]) => {
      const u = usageOf(x, period);
      const held = u ? num(u.held_usd) : 0;
      return h("td", { class: "num spend", dataset: { period, usd: u ? num(u.spent_usd) : 0 },
        title: "spent " + label + (held ? "; " + fmtUsd(held) + " more held by requests in flight" : "") },
      u ? fmtUsd(num(u.spent_usd)) : "–", held ? h("div", { class: "muted small", text: "+" + fmtUsd(held) + " held" }) : null);
    });
  }

  function budgetBars(x, who) {
    const byPeriod = Object.fromEntries((x.usage || []).map((u) => [u.period, u]));
    const bars = [];
    for (const [period, , adjective] of PERIODS) {
      let u = byPeriod[period];
      if (!u || u.limit_usd === null || u.limit_usd === undefined) {
        const b = (x.budgets || []).find((bb) => bb.period === period);
        if (!b) continue;
        u = { period, spent_usd: u ? u.spent_usd : 0, held_usd: u ? u.held_usd : 0, limit_usd: b.limit_usd, mode: b.mode, resets_at: u ? u.resets_at : null };
      }
      bars.push(budgetBar(u, adjective, who));
    }
    return bars.length ? bars : h("span", { class: "muted", text: "no budget" });
  }

  function budgetBar(u, adjective, who) {
    const limit = num(u.limit_usd);
    const spent = num(u.spent_usd);
    const held = num(u.held_usd);
    const soft = u.mode === "soft";
    // a limit of 0 refuses everything (hard): shown full
    const used = typeof u.used === "number" ? u.used : limit > 0 ? spent / limit : spent > 0 || !soft ? Infinity : 0;
    const level = used >= 1 && !soft ? "hot" : used > 0.8 ? "warm" : "";
    const spentFrac = Math.min(1, Math.max(0, used));
    const heldFrac = limit > 0 ? Math.min(1 - spentFrac, Math.max(0, held / limit)) : 0;
    const pctText = Number.isFinite(used) ? fmtPct(used) : "–";
    const resets = isoSec(u.resets_at);
    const label = who + ": " + adjective + " " + (soft ? "soft" : "hard") + " budget, " + fmtUsd(spent) + " of " + fmtUsd(limit) + " spent (" + pctText + ")" +
      (held ? ", " + fmtUsd(held) + " held by requests in flight" : "");
    return h("div", { class: "budget" + (level ? " " + level : ""), dataset: { period: u.period, mode: soft ? "soft" : "hard", used: Number.isFinite(used) ? used : "inf", level: level || "ok" } },
      h("div", { class: "budget-head" },
        h("span", { class: "budget-name", text: adjective }),
        soft ? badge("soft", "info", "a soft budget alerts but does not refuse requests") : null,
        h("span", { class: "meter-text", text: fmtUsd(spent) + " of " + fmtUsd(limit) + " · " + pctText })),
      h("div", { class: "meter budget-meter", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": spent, title: label },
        h("span", { class: "spent " + (level || "ok"), style: { width: (spentFrac * 100).toFixed(2) + "%" } }),
        heldFrac > 0 ? h("span", { class: "held " + (level || "ok"), style: { width: (heldFrac * 100).toFixed(2) + "%" } }) : null),
      h("div", { class: "muted small budget-foot" },
        resets ? h("span", { class: "resets", title: fmtDateTime(resets), text: "resets " + fmtRelative(resets) }) : h("span", { class: "resets", text: "never resets" }),
        held ? h("span", { class: "held-text", text: " · +" + fmtUsd(held) + " held" }) : null));
  }

  function fmtRelative(t) {
    const d = t - Date.now() / 1000;
    if (d <= 0) return "now";
    if (d < 90) return "in " + Math.round(d) + " s";
    if (d < 5400) return "in " + Math.round(d / 60) + " min";
    if (d < 2 * 86400) return "in " + trim(d / 3600) + " h";
    return "in " + Math.round(d / 86400) + " days";
  }

  // ---------------------------------------------------------------- runs

  // Agent runs (GET /admin/runs, GET /admin/runs/{id}?key=): the list, filters in the URL
  // (#/runs?status=&agent=&key=&q=&within=), and one run's waterfall (#/runs/<id>?key=<tenant>).
  const RUN_STATUS = { running: "info", completed: "ok", failed: "bad", abandoned: "warn" };
  const STEP_STATUS = { running: "info", ok: "ok", error: "warn", failed: "bad", unfinished: "warn" };
  const RUN_FILTERS = ["q", "status", "agent", "key", "within"];
  // "Active": the API's since bounds a run's last activity
  const RUN_WITHIN = [["", "any time"], ["3600", "in the last hour"], ["86400", "in the last 24 hours"], ["604800", "in the last 7 days"]];
  const RUNS_PAGE = 50;
  const RUN_ID_CHARS = 24;
  let lastRunsHash = "#/runs";

  const runHref = (r) => "#/runs/" + encodeURIComponent(r.run_id) + "?key=" + encodeURIComponent(r.tenant);
  const plural = (n, one, many) => fmtInt(n) + " " + (n === 1 ? one : many || one + "s");

  // Long ids keep their head and their tail (ids made at the same time share a prefix):
  // the whole id is in the title, the aria-label and the copy button.
  function midEllipsis(text, max) {
    if (text.length <= max) return text;
    const tail = Math.ceil((max - 1) / 2);
    return text.slice(0, max - 1 - tail) + "…" + text.slice(-tail);
  }

  function copyButton(value, what) {
    return h("button", {
      type: "button", class: "ghost copy", title: "Copy the " + what, "aria-label": "Copy " + what + " " + value, dataset: { copy: value },
      onclick: async (ev) => {
        ev.stopPropagation();
        try {
          await navigator.clipboard.writeText(value);
          setStatus("Copied the " + what);
        } catch (_) {
          setStatus("Could not copy: select the " + what + " to copy it", "bad");
        }
      },
    }, s("svg", { viewBox: "0 0 16 16", width: 13, height: 13, class: "icon", "aria-hidden": "true" },
      s("rect", { x: 5.5, y: 5.5, width: 9, height: 9, rx: 1.5 }),
      s("path", { d: "M10.5 3.5v-1a1 1 0 0 0-1-1h-7a1 1 0 0 0-1 1v7a1 1 0 0 0 1 1h1" })));
  }

  function runsPage(main, query) {
    const f = Object.fromEntries(RUN_FILTERS.map((k) => [k, query.get(k) || ""]));
    lastRunsHash = location.hash || "#/runs";
    const { input, select } = filterFields("r-", f);
    const form = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
      input("q", "Search", { type: "search", placeholder: "run id prefix or agent", class: "wide" }),
      select("status", "Status", [["", "any"], ...Object.keys(RUN_STATUS).map((v) => [v, v])]),
      input("agent", "Agent", { list: "dl-agent" }),
      input("key", "Key (tenant)", { list: "dl-key" }),
      select("within", "Active", RUN_WITHIN),
      h("div", { class: "field buttons" }, h("button", { type: "submit", text: "Apply" }),
        h("button", { type: "button", class: "ghost", text: "Clear", onclick: () => { location.hash = "#/runs"; } })),
      h("datalist", { id: "dl-agent" }), h("datalist", { id: "dl-key" }));
    submitToHash(form, "#/runs", RUN_FILTERS);
    const tbody = h("tbody");
    const note = h("p", { class: "muted", id: "runs-note", role: "status" });
    const more = h("button", { type: "button", id: "runs-more", class: "ghost", text: "Load more", hidden: true });
    const heads = [["Status"], ["Run"], ["Agent · key"], ["Started"], ["Steps", "num", "model steps · tool steps"], ["Duration", "num"],
      ["Tokens in / out", "num"], ["Cost", "num"], ["Retries · waits", "num", "failed attempts absorbed · seconds waited for capacity and before retries"], ["Failure cause"]];
    main.append(
      h("div", { class: "page-head" }, h("h1", { text: "Runs" }), h("span", { class: "hint", text: "the most recently active first · refreshes every 5 s" })),
      form,
      card("Agent runs", h("div", { class: "table-scroll" }, h("table", { class: "data runs", id: "runs-table" },
        h("caption", { class: "sr-only", text: "Agent runs, the most recently active first" }),
        h("thead", null, h("tr", null, heads.map(([t, cls, title]) => h("th", { scope: "col", class: cls || null, title: title || null, text: t })))),
        tbody)), note, more));

    let cursor = null;
    let shown = 0;
    const seen = { agent: new Set(), key: new Set() };
    const params = () => {
      const p = { status: f.status, agent: f.agent, key: f.key, q: f.q };
      if (f.within) p.since = Math.floor(Date.now() / 1000 - Number(f.within));
      return p;
    };
    function addRows(rows) {
      for (const r of rows) {
        if (r.agent) seen.agent.add(r.agent);
        if (r.tenant) seen.key.add(r.tenant);
        tbody.append(runRow(r));
      }
      shown = tbody.rows.length;
      for (const k of Object.keys(seen)) document.getElementById("dl-" + k).replaceChildren(...[...seen[k]].sort().map((v) => h("option", { value: v })));
    }
    async function refresh() {
      // a refresh keeps what "Load more" added: it asks for as many rows as are shown
      const data = await load("runs", { ...params(), limit: Math.max(RUNS_PAGE, shown) });
      const rows = data.data || [];
      tbody.replaceChildren();
      cursor = nextCursor(data);
      addRows(rows);
      more.hidden = !cursor;
      note.textContent = rows.length ? "" : Object.values(f).some(Boolean) ? "No runs match these filters."
        : "No agent runs recorded yet: requests join a run with an x-brace-run-id header (see docs/runs.md).";
    }
    onLoadMore(more, async () => {
      const data = await load("runs", { ...params(), limit: RUNS_PAGE, before: cursor });
      cursor = nextCursor(data);
      addRows(data.data || []);
      more.hidden = !cursor;
    });
    return { refresh, interval: REFRESH_MS };
  }

  // the list gives the count as `steps`; one run gives its steps there and the count as `step_count`
  const stepCount = (r) => (typeof r.steps === "number" ? r.steps : r.step_count ?? num(r.model_steps) + num(r.tool_steps));

  function runRow(r) {
    const href = runHref(r);
    const retries = num(r.retries);
    const failure = r.failure_class || r.failure_error
      ? h("div", { class: "failure", title: r.failure_error || null },
        h("span", { class: "cause" }, h("span", { class: "swatch", style: { background: causeColor(r.failure_class) }, "aria-hidden": "true" }), r.failure_class || "error"),
        h("div", { class: "muted small nowrap" }, r.failure_step != null ? "step " + r.failure_step : "", r.failure_deployment ? " · " : "",
          r.failure_deployment ? h("span", { class: "mono", text: r.failure_deployment }) : null))
      : num(r.failed_steps) ? h("span", { class: "muted small", text: plural(num(r.failed_steps), "step") + " with an error" }) : "";
    const tr = h("tr", { class: "clickable" + (r.status === "failed" ? " failed" : ""), dataset: { runId: r.run_id, tenant: r.tenant, status: r.status } },
      h("td", null, badge(r.status, RUN_STATUS[r.status])),
      h("td", { class: "nowrap run-id-cell" },
        h("a", { href, class: "mono run-id", title: r.run_id, "aria-label": "Run " + r.run_id, text: midEllipsis(r.run_id, RUN_ID_CHARS) }), copyButton(r.run_id, "run id")),
      h("td", { class: "nowrap" }, h("div", { class: "run-agent" }, r.agent ? r.agent : h("span", { class: "muted", text: "–" })),
        h("div", { class: "mono muted small run-key", title: "key (tenant)", text: r.tenant })),
      h("td", { class: "nowrap run-started", title: fmtDateTime(r.started_at) }, fmtClock(r.started_at, true),
        h("div", { class: "muted small", text: fmtDateTime(r.started_at).slice(0, 10) })),
      h("td", { class: "num run-steps", dataset: { steps: stepCount(r), model: num(r.model_steps), tool: num(r.tool_steps) } },
        fmtInt(stepCount(r)), h("div", { class: "muted small", text: fmtInt(r.model_steps) + " model · " + fmtInt(r.tool_steps) + " tool" })),
      h("td", { class: "num run-duration", dataset: { value: num(r.duration) }, text: fmtSec(r.duration) }),
      h("td", { class: "num run-tokens", text: fmtInt(r.input_tokens) + " / " + fmtInt(r.output_tokens) }),
      h("td", { class: "num run-cost", dataset: { value: num(r.cost_usd) }, text: fmtUsd(r.cost_usd) }),
      h("td", { class: "num run-retries", text: (retries ? fmtInt(retries) : "–") + " · " + (num(r.wait_s) ? fmtSec(r.wait_s) : "–") }),
      h("td", { class: "run-failure" }, failure));
    tr.addEventListener("click", (ev) => { if (!ev.target.closest("a, button")) location.hash = href; });
    return tr;
  }

  // ---------------------------------------------------------------- run view

  function runPage(main, id, query) {
    const key = query.get("key") || "";
    const body = h("div", { "aria-busy": "true" });
    main.append(h("div", { class: "page-head" },
      h("h1", null, "Run ", h("span", { class: "mono", id: "run-title", text: id })), copyButton(id, "run id"),
      h("a", { href: lastRunsHash, class: "back", text: "← Back to runs" })), body);
    let last = null;
    async function refresh() {
      // a finished run does not change: only a running one is asked again
      if (last && last.status !== "running") return;
      let run;
      try {
        run = await load("runs/" + encodeURIComponent(id), { key });
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          body.replaceChildren(h("p", { class: "banner error", role: "alert", text: "No run " + id + (key ? " for key " + key : "") + " (it may have expired)." }));
          return;
        }
        throw e;
      }
      last = run;
      renderRun(body, run, Date.now() / 1000);
      body.setAttribute("aria-busy", "false");
    }
    return { refresh, interval: REFRESH_MS };
  }

  function renderRun(body, run, now) {
    const steps = (Array.isArray(run.steps) ? run.steps : []).slice().sort((a, b) => a.seq - b.seq);
    const failing = steps.find((st) => st.seq === run.failure_step) || null;
    const summary = h("p", { class: "run-summary", id: "run-summary" },
      badge(run.status, RUN_STATUS[run.status]),
      h("span", null, "agent ", h("strong", { id: "run-agent", text: run.agent || "–" })),
      h("span", null, "key ", h("span", { class: "mono", id: "run-tenant", text: run.tenant })),
      h("span", { class: "muted", text: "started " + fmtDateTime(run.started_at) + (run.ended_at ? " · ended " + fmtDateTime(run.ended_at) : " · last activity " + fmtDateTime(run.last_activity)) }));
    const stats = h("div", { class: "stats" },
      stat("Duration", fmtSec(run.duration), "run-duration"),
      stat("Steps (model · tool)", fmtInt(stepCount(run)) + " (" + fmtInt(run.model_steps) + " · " + fmtInt(run.tool_steps) + ")", "run-steps"),
      stat("Tokens in / out", fmtInt(run.input_tokens) + " / " + fmtInt(run.output_tokens), "run-tokens"),
      stat("Cost", fmtUsd(run.cost_usd), "run-cost"),
      stat("Retries absorbed", fmtInt(run.retries), "run-retries"),
      stat("Waited (capacity, retries)", fmtSec(run.wait_s), "run-wait"));
    const facts = [
      ["Run id", h("span", { class: "mono", text: run.run_id })],
      ["Trace id", run.trace_id ? [h("span", { class: "mono", id: "run-trace-id", text: run.trace_id }), " ", copyButton(run.trace_id, "trace id")] : "–"],
      ["Agent span", run.span_id ? h("span", { class: "mono", text: run.span_id }) : "–"],
      ["Joined by", run.linked_by || "–"],
      ["Steps with an error", fmtInt(run.failed_steps)],
      ["Requests", fmtInt((run.request_ids || []).length)],
    ];
    body.replaceChildren(...[
      summary,
      failing || run.failure_class ? failureBanner(run, failing) : null,
      stats,
      card("Waterfall", steps.length ? [waterfallLegend(), waterfall(run, steps, now)] : h("p", { class: "muted", id: "run-no-steps", text: "No step recorded yet." })),
      card("Run", h("dl", { class: "facts", id: "run-facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)]))),
    ].filter(Boolean));
  }

  function failureBanner(run, st) {
    const where = st ? "step " + st.seq + " (" + st.kind + " " + st.name + ")" : "step " + (run.failure_step ?? "?");
    return h("div", { class: "failure-banner", id: "run-failure" },
      h("strong", { text: "Failed at " + where + ": " }),
      badge(run.failure_class || (st && st.error_class) || "error", "bad"),
      run.failure_deployment ? [" from deployment ", h("span", { class: "mono failure-deployment", text: run.failure_deployment })] : null,
      h("div", { class: "failure-error", text: run.failure_error || (st && st.error) || "" }),
      st ? h("button", { type: "button", class: "ghost", text: "Show the step", onclick: () => {
        const row = document.getElementById("step-" + st.seq);
        if (row) { row.scrollIntoView({ block: "center" }); row.focus(); }
      } }) : null);
  }

  function waterfallLegend() {
    const item = (cls, label) => h("li", null, h("span", { class: "swatch wf " + cls, "aria-hidden": "true" }), label);
    return h("ul", { class: "legend wf-legend", "aria-label": "Legend" },
      item("model", "model step"), item("tool", "tool step"), item("queue", "waited for capacity"), item("retry", "waited before retries"),
      item("failed", "failed"), item("tool-error", "tool error"), item("open", "running or unfinished"));
  }

  // One row per step on a shared time axis from the run's start.  Bars: left at
  // started_at - run.started_at, as long as the step's duration; a step without one
  // (running, unfinished) reaches to now while the run runs, else to the run's end.
  function waterfall(run, steps, now) {
    const t0 = num(run.started_at);
    const running = run.status === "running";
    const runEnd = running ? Math.max(now, num(run.last_activity)) : num(run.ended_at ?? run.last_activity);
    const ends = steps.filter((st) => st.duration != null).map((st) => num(st.started_at) + num(st.duration));
    const span = Math.max(runEnd, ...ends) - t0;
    const { max, step } = niceMax(Math.max(span, 0.001), 6);
    const pct = (t) => Math.max(0, Math.min(100, (t / max) * 100));
    const ticks = [];
    for (let t = 0; t <= max + 1e-9; t += step) ticks.push(t);
    const gridLines = () => ticks.map((t) => h("span", { class: "tick-line", style: { left: pct(t) + "%" }, "aria-hidden": "true" }));
    const nowLine = () => (running ? h("span", { class: "now-line", style: { left: pct(now - t0) + "%" }, title: "now", "aria-hidden": "true" }) : null);
    const axis = h("div", { class: "wf-axis", "aria-hidden": "true" },
      ticks.map((t) => h("span", { class: "wf-tick", style: { left: pct(t) + "%" }, text: t === 0 ? "0" : step >= 1 ? trim(t) + " s" : fmtSec(t) })));
    const rows = [];
    for (const st of steps) {
      const start = num(st.started_at) - t0;
      const open = st.duration == null;
      const end = open ? Math.max(start, span) : start + num(st.duration);
      const isFailing = st.seq === run.failure_step;
      rows.push(stepRow(st, { start, end, open, isFailing, pct, gridLines, nowLine, trace: run.trace_id }));
      if (st.error || st.error_class) rows.push(stepErrorRow(st, isFailing));
    }
    return h("div", { class: "table-scroll" }, h("table", { class: "data waterfall", id: "waterfall" },
      h("caption", { class: "sr-only", text: "Steps of the run on a time axis from its start (" + fmtSec(max) + " across)" }),
      h("thead", null, h("tr", null,
        h("th", { scope: "col", class: "num", text: "#" }), h("th", { scope: "col", text: "Step" }), h("th", { scope: "col", text: "Status" }),
        h("th", { scope: "col", class: "wf-track-head" }, h("span", { class: "sr-only", text: "Timeline since the run started" }), axis),
        ["Duration", "Tokens in / out", "Cost"].map((t) => h("th", { scope: "col", class: "num", text: t })),
        h("th", { scope: "col", text: "Links" }))),
      h("tbody", null, rows)));
  }

  function stepRow(st, g) {
    const model = st.kind === "model";
    const dur = g.end - g.start;
    const queue = model ? Math.min(num(st.queue_wait), dur) : 0;
    const retry = model ? Math.min(num(st.retry_wait), dur - queue) : 0;
    const part = (v) => (dur > 0 ? (v / dur) * 100 : 0) + "%";
    const fallback = Array.isArray(st.fallback) && st.fallback.length > 1 ? st.fallback : null;
    const cls = ["wf-bar", st.kind, "s-" + st.status];
    if (g.open) cls.push("open");
    const what = "step " + st.seq + ", " + st.kind + " " + st.name + ": " + st.status + ", from +" + fmtSec(g.start) + ", " +
      (g.open ? "no end yet" : fmtSec(dur)) + (queue ? ", waited " + fmtSec(queue) + " for capacity" : "") +
      (retry ? ", " + fmtSec(retry) + " before retries" : "") + (st.error_class ? ", " + st.error_class : "");
    const bar = h("div", {
      class: cls.join(" "), role: "img", "aria-label": what, title: what,
      dataset: { seq: st.seq, start: g.start, end: g.end },
      style: { left: g.pct(g.start) + "%", width: g.pct(g.end) - g.pct(g.start) + "%" },
    },
    queue > 0 ? h("span", { class: "seg queue", style: { width: part(queue) } }) : null,
    retry > 0 ? h("span", { class: "seg retry", style: { width: part(retry) } }) : null,
    h("span", { class: "seg work" }));
    const labelText = g.open ? (st.status === "running" ? "running…" : st.status) : fmtSec(dur);
    // the label goes after the bar, else before it, else (a bar across the track) inside
    // its end, over the call itself rather than the hatched waits
    const place = g.pct(g.end) <= 86 ? "after" : g.pct(g.start) >= 14 ? "before" : "inside";
    const label = h("span", { class: "wf-label " + place + (g.open ? " open" : ""), "aria-hidden": "true", text: labelText,
      style: place === "after" ? { left: "calc(" + g.pct(g.end) + "% + 6px)" }
        : { right: "calc(" + (100 - g.pct(place === "before" ? g.start : g.end)) + "% + 6px)" } });

    const meta = [];
    const waits = [];
    if (model) {
      if (st.deployment) meta.push(h("span", { class: "mono", text: st.deployment }));
      if (num(st.attempts) > 1) meta.push(plural(num(st.attempts), "attempt"));
      if (num(st.retries)) meta.push(h("span", { class: "retries", text: "↻ " + plural(num(st.retries), "retry", "retries") }));
      if (fallback) meta.push(h("span", { class: "fallback", text: "↪ " + fallback.join(" → ") }));
      if (num(st.tool_calls)) meta.push(plural(num(st.tool_calls), "tool call"));
      if (queue) waits.push(h("span", null, h("span", { class: "swatch wf queue", "aria-hidden": "true" }), fmtSec(st.queue_wait) + " for capacity"));
      if (num(st.retry_wait)) waits.push(h("span", null, h("span", { class: "swatch wf retry", "aria-hidden": "true" }), fmtSec(st.retry_wait) + " before retries"));
    } else {
      if (st.tool_type) meta.push(st.tool_type);
      if (st.result_bytes != null) meta.push(fmtCompact(st.result_bytes) + " B result");
    }
    const sep = (items) => items.flatMap((x, i) => { const one = h("span", { class: "nowrap" }, x); return i ? [" · ", one] : [one]; });
    const links = [];
    if (model && st.request_id) {
      links.push(h("a", { href: "#/requests?q=" + encodeURIComponent(st.request_id), class: "step-log", title: "Request " + st.request_id + " in the request log" }, "log"),
        h("a", { href: "#/requests/" + encodeURIComponent(st.request_id), class: "step-trace",
          title: "Trace of request " + st.request_id + (g.trace ? " (run trace " + g.trace + ")" : "") + ": its attempts on a timeline" }, "trace"));
    }
    if (!model && st.opened_by) links.push(h("a", { href: "#/requests/" + encodeURIComponent(st.opened_by), class: "step-opened", title: "The request whose answer asked for this tool call: " + st.opened_by }, "asked by"));
    if (!model && st.closed_by) links.push(h("a", { href: "#/requests/" + encodeURIComponent(st.closed_by), class: "step-closed", title: "The request that carried its result: " + st.closed_by }, "result in"));

    const rowCls = ["step-row", st.kind];
    if (g.isFailing) rowCls.push("failing");
    return h("tr", { class: rowCls.join(" "), id: "step-" + st.seq, tabindex: "-1", dataset: { seq: st.seq, kind: st.kind, status: st.status } },
      h("td", { class: "num muted", text: st.seq }),
      h("th", { scope: "row", class: "step-name" },
        h("div", null, h("span", { class: "kind-tag " + st.kind, text: st.kind }), h("span", { class: "name", text: st.name }),
          st.label ? h("span", { class: "muted", text: " · " + st.label }) : null),
        meta.length || waits.length ? h("div", { class: "muted small step-meta" }, h("div", null, sep(meta)),
          waits.length ? h("div", { class: "step-waits" }, "waited ", sep(waits)) : null) : null),
      h("td", null, badge(st.status, STEP_STATUS[st.status])),
      h("td", { class: "wf-track-cell" }, h("div", { class: "wf-track" }, g.gridLines(), g.nowLine(), bar, label)),
      h("td", { class: "num step-duration", text: g.open ? "–" : fmtSec(st.duration) }),
      h("td", { class: "num step-tokens", text: model ? fmtInt(st.input_tokens) + " / " + fmtInt(st.output_tokens) : "" }),
      h("td", { class: "num step-cost", dataset: { value: num(st.cost_usd) }, text: model ? fmtUsd(st.cost_usd) : "" }),
      h("td", { class: "step-links" }, sep(links)));
  }

  function stepErrorRow(st, isFailing) {
    return h("tr", { class: "step-error" + (isFailing ? " failing" : ""), dataset: { seq: st.seq } },
      h("td", null),
      h("td", { colspan: 7 }, h("div", { class: "error-box" },
        h("strong", { text: isFailing ? "Step " + st.seq + " failed the run: " : "Step " + st.seq + " " + st.status + ": " }),
        st.error_class ? badge(st.error_class, isFailing ? "bad" : "warn") : null,
        st.kind === "model" && st.deployment ? [" from deployment ", h("span", { class: "mono step-error-deployment", text: st.deployment })] : null,
        st.error ? [st.error_class || st.kind === "model" ? ": " : "", h("span", { class: "step-error-text", text: st.error })] : null)));
  }

  // ------------------------------------------------------------------ router

  let view = { refresh: async () => {} };
  let timer = null;
  let generation = 0;

  function showError(e) {
    const main = document.getElementById("main");
    let box = document.getElementById("page-error");
    if (!box) {
      box = h("div", { id: "page-error", class: "banner error", role: "alert" });
      main.prepend(box);
    }
    let text = e.message || String(e);
    if (e instanceof ApiError && e.status === 404) text = "This gateway has no such admin endpoint (404): " + text;
    else if (e instanceof ApiError && e.status === 503) text = "The request log is not available (503): " + text;
    else if (e instanceof ApiError && e.status === 403) text = "The admin API is off (403): " + text;
    else if (e instanceof AuthError) text = "An admin key is needed to read this gateway (401).";
    box.textContent = text;
    setStatus("Error", "bad");
  }
  function clearError() {
    const box = document.getElementById("page-error");
    if (box) box.remove();
  }

  const PAGES = { overview: overviewPage, deployments: deploymentsPage, requests: requestsPage, runs: runsPage, spend: spendPage, keys: keysPage };

  const router = {
    go() {
      const raw = location.hash.replace(/^#\/?/, "");
      const [path, qs] = raw.split("?");
      const parts = path.split("/").filter(Boolean);
      let name = parts[0] || "overview";
      if (!PAGES[name]) name = "overview";
      const query = new URLSearchParams(qs || "");
      const main = document.getElementById("main");
      main.replaceChildren();
      main.dataset.page = name;
      for (const a of document.querySelectorAll(".tabs a")) {
        if (a.dataset.page === name) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      }
      const gen = ++generation;
      if (timer) clearInterval(timer);
      timer = null;
      if (name === "requests" && parts[1]) {
        view = tracePage(main, decodeURIComponent(parts.slice(1).join("/")));
        document.title = "Request " + decodeURIComponent(parts[1]) + " · Brace";
      } else if (name === "runs" && parts[1]) {
        const id = decodeURIComponent(parts.slice(1).join("/"));
        view = runPage(main, id, query);
        document.title = "Run " + id + " · Brace";
      } else {
        view = PAGES[name](main, query);
        document.title = name[0].toUpperCase() + name.slice(1) + " · Brace";
      }
      const inner = view.refresh;
      let busy = false;
      view.refresh = async () => {
        if (busy || gen !== generation) return;
        busy = true;
        try {
          await inner();
          if (gen === generation) {
            clearError();
            setStatus("Updated " + fmtClock(Date.now() / 1000, true), "ok");
          }
        } catch (e) {
          if (gen === generation) showError(e);
        } finally {
          busy = false;
        }
      };
      view.refresh();
      if (view.interval) {
        timer = setInterval(() => { if (!document.hidden && !document.getElementById("key-dialog").open) view.refresh(); }, view.interval);
      }
    },
    reload() { router.go(); },
  };

  document.addEventListener("DOMContentLoaded", () => {
    setupKeyDialog();
    window.addEventListener("hashchange", () => router.go());
    router.go();
  });
})();
