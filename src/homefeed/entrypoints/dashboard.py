"""``GET /dashboard``: a live page for a person. One HTML document with its CSS and script
inline: no build step, no external asset, nothing fetched but ``metrics.json`` beside it,
every 2 seconds. Charts are inline SVG drawn from the server's 10-second slots (the last five
minutes) and from its lag samples, so a page opened late still shows the history.

Every figure has an ``id`` (``api-rps-1m``, ``fanout-p99-1m``, ``lag-fanout``...) so that a
browser test can read it.
"""

from __future__ import annotations

DASHBOARD_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>homefeed dashboard</title>
<style>
  :root { --bg:#0f1419; --panel:#182029; --line:#2a3541; --text:#dce3ea; --dim:#8a98a8;
          --accent:#4fb3ff; --accent2:#ffb547; --bad:#ff5c5c; --good:#46d17d; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
         background:var(--bg); color:var(--text); }
  header { display:flex; gap:16px; align-items:baseline; padding:12px 20px;
           border-bottom:1px solid var(--line); flex-wrap:wrap; }
  header h1 { margin:0; font-size:18px; }
  header .meta { color:var(--dim); }
  #conn { display:inline-block; width:10px; height:10px; border-radius:50%;
          background:var(--dim); margin-right:6px; }
  #conn.ok { background:var(--good); } #conn.bad { background:var(--bad); }
  main { padding:16px 20px; display:grid; gap:16px; }
  .cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(170px, 1fr)); gap:12px; }
  .card { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
  .card .label { color:var(--dim); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
  .card .value { font-size:24px; font-variant-numeric:tabular-nums; margin-top:2px; }
  .card .sub { color:var(--dim); font-size:12px; font-variant-numeric:tabular-nums; }
  .charts { display:grid; grid-template-columns:repeat(auto-fill, minmax(330px, 1fr)); gap:12px; }
  .chart h3, section h2 { margin:0 0 6px; font-size:13px; color:var(--dim); font-weight:600; }
  svg { width:100%; height:110px; display:block; }
  svg .grid { stroke:var(--line); stroke-width:1; }
  svg .axis { fill:var(--dim); font-size:10px; }
  svg .s0 { stroke:var(--accent); } svg .s1 { stroke:var(--accent2); }
  svg .s2 { stroke:var(--good); } svg .s3 { stroke:#c58cff; }
  svg polyline { fill:none; stroke-width:1.6; }
  svg .dot0 { fill:var(--accent); } svg .dot1 { fill:var(--accent2); }
  svg .dot2 { fill:var(--good); } svg .dot3 { fill:#c58cff; }
  .legend span { margin-right:10px; font-size:11px; color:var(--dim); }
  .legend i { display:inline-block; width:10px; height:2px; vertical-align:middle; margin-right:4px; }
  table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
  th, td { padding:4px 8px; text-align:right; border-bottom:1px solid var(--line); white-space:nowrap; }
  th { color:var(--dim); font-weight:600; font-size:12px; }
  td:first-child, th:first-child { text-align:left; }
  .bad { color:var(--bad); }
  .panel { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:10px 12px;
           overflow-x:auto; }
  .two { display:grid; grid-template-columns:repeat(auto-fit, minmax(380px, 1fr)); gap:16px; }
  #errors { color:var(--bad); }
</style>
</head>
<body>
<header>
  <h1>homefeed</h1>
  <span class="meta"><span id="conn"></span><span id="status">connecting…</span></span>
  <span class="meta" id="profile"></span>
  <span class="meta" id="uptime"></span>
</header>
<main>
  <div class="cards">
    <div class="card"><div class="label">Throughput (1 min)</div>
      <div class="value"><span id="api-rps-1m">–</span> <small>req/s</small></div>
      <div class="sub"><span id="api-count-1m">–</span> requests · 5 min <span id="api-rps-5m">–</span>/s</div></div>
    <div class="card"><div class="label">Error rate (5xx, 1 min)</div>
      <div class="value" id="api-error-rate-1m">–</div>
      <div class="sub">4xx <span id="api-client-errors-1m">–</span> · 5 min <span id="api-error-rate-5m">–</span></div></div>
    <div class="card"><div class="label">Latency p99 (1 min)</div>
      <div class="value"><span id="api-p99-1m">–</span> <small>ms</small></div>
      <div class="sub">p50 <span id="api-p50-1m">–</span> · p99.9 <span id="api-p999-1m">–</span> ms</div></div>
    <div class="card"><div class="label">Fan-out delay p99 (1 min)</div>
      <div class="value"><span id="fanout-p99-1m">–</span> <small>ms</small></div>
      <div class="sub">p50 <span id="fanout-p50-1m">–</span> ms · <span id="fanout-rate-1m">–</span> posts/s</div></div>
    <div class="card"><div class="label">Consumer lag</div>
      <div class="value"><span id="lag-total">–</span> <small>events</small></div>
      <div class="sub" id="lag-detail">–</div></div>
    <div class="card"><div class="label">Outbox not relayed</div>
      <div class="value" id="outbox-unrelayed">–</div>
      <div class="sub">dead-lettered <span id="dead-lettered">–</span></div></div>
    <div class="card"><div class="label">Timeline cache hits</div>
      <div class="value" id="timeline-hit-ratio">–</div>
      <div class="sub">1 min <span id="timeline-hit-ratio-1m">–</span> · rebuilds <span id="rebuilds">–</span></div></div>
    <div class="card"><div class="label">In flight</div>
      <div class="value" id="in-flight">–</div>
      <div class="sub">post cache hits <span id="post-hit-ratio">–</span></div></div>
  </div>

  <div class="charts">
    <div class="panel chart"><h3>Throughput, req/s (10 s steps, 5 min)</h3><svg id="chart-rps"></svg></div>
    <div class="panel chart"><h3>Latency, ms</h3><svg id="chart-latency"></svg>
      <div class="legend"><span><i style="background:var(--accent)"></i>p50</span><span><i style="background:var(--accent2)"></i>p99</span></div></div>
    <div class="panel chart"><h3>Error rate (5xx share)</h3><svg id="chart-errors"></svg></div>
    <div class="panel chart"><h3>Fan-out delay p99, ms</h3><svg id="chart-fanout"></svg></div>
    <div class="panel chart"><h3>Consumer lag, events</h3><svg id="chart-lag"></svg>
      <div class="legend" id="lag-legend"></div></div>
  </div>

  <section class="panel">
    <h2>Routes — latency percentiles (ms), throughput and errors</h2>
    <table id="routes">
      <thead><tr><th>route</th>
        <th>1m req/s</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>5xx</th><th>4xx</th>
        <th>5m req/s</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>5xx</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>

  <div class="two">
    <section class="panel">
      <h2>Fan-out delay (commit → timelines), ms</h2>
      <table id="fanout"><thead><tr><th>window</th><th>posts</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th></tr></thead><tbody></tbody></table>
      <h2 style="margin-top:12px">Consumers</h2>
      <table id="consumers"><thead><tr><th>consumer</th><th>behind</th><th>runs here</th><th>failed batches</th><th>dead-lettered</th></tr></thead><tbody></tbody></table>
    </section>
    <section class="panel">
      <h2>Derived stores and caches</h2>
      <table id="stores"><thead><tr><th>figure</th><th>value</th></tr></thead><tbody></tbody></table>
      <div id="errors"></div>
    </section>
  </div>
</main>
<script>
"use strict";
(function () {
  var POLL_MS = 2000;
  var SVGNS = "http://www.w3.org/2000/svg";

  function $(id) { return document.getElementById(id); }
  function set(id, text) { var el = $(id); if (el) { el.textContent = text; } }
  function num(v, digits) {
    if (v === null || v === undefined || isNaN(v)) { return "–"; }
    if (digits === undefined) { digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2; }
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function int(v) { return (v === null || v === undefined) ? "–" : Number(v).toLocaleString("en-US"); }
  function pct(v) { return (v === null || v === undefined) ? "–" : (v * 100).toFixed(v < 0.01 && v > 0 ? 3 : 2) + "%"; }
  function ago(seconds) {
    var s = Math.round(seconds);
    if (s < 120) { return s + " s"; }
    if (s < 7200) { return Math.round(s / 60) + " min"; }
    return (s / 3600).toFixed(1) + " h";
  }

  function el(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); } }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // A small line chart: xs (seconds), several series of ys (numbers or null).
  function chart(svg, xs, series, fmt) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var W = svg.clientWidth || 320, H = svg.clientHeight || 110;
    var L = 44, R = 6, T = 8, B = 16;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var max = 0;
    series.forEach(function (ys) { ys.forEach(function (y) { if (y !== null && y > max) { max = y; } }); });
    if (max <= 0) { max = 1; }
    var x0 = xs.length ? xs[0] : 0, x1 = xs.length ? xs[xs.length - 1] : 1;
    if (x1 - x0 < 60) { x0 = x1 - 60; }
    function X(x) { return L + (W - L - R) * (x - x0) / (x1 - x0); }
    function Y(y) { return T + (H - T - B) * (1 - y / max); }
    [0, 0.5, 1].forEach(function (f) {
      var y = T + (H - T - B) * (1 - f);
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid" }));
      svg.appendChild(el("text", { x: L - 4, y: y + 3, "text-anchor": "end", "class": "axis" }, fmt(max * f, max)));
    });
    svg.appendChild(el("text", { x: L, y: H - 3, "class": "axis" }, ago(x1 - x0) + " ago"));
    svg.appendChild(el("text", { x: W - R, y: H - 3, "text-anchor": "end", "class": "axis" }, "now"));
    series.forEach(function (ys, i) {
      var pts = [], segs = [];
      for (var j = 0; j < ys.length && j < xs.length; j++) {
        if (ys[j] === null || ys[j] === undefined) {
          if (pts.length) { segs.push(pts); pts = []; }
          continue;
        }
        pts.push(X(xs[j]).toFixed(1) + "," + Y(ys[j]).toFixed(1));
      }
      if (pts.length) { segs.push(pts); }
      segs.forEach(function (p) {
        if (p.length === 1) {  // a lone point: a dot, not an invisible zero-length line
          var xy = p[0].split(",");
          svg.appendChild(el("circle", { cx: xy[0], cy: xy[1], r: 2.2, "class": "dot" + (i % 4) }));
          return;
        }
        svg.appendChild(el("polyline", { points: p.join(" "), "class": "s" + (i % 4) }));
      });
    });
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
  }

  function fillRoutes(data) {
    var w1 = data.windows["1m"].routes, w5 = data.windows["5m"].routes;
    var names = Object.keys(w5).sort(function (a, b) { return (w5[b].count - w5[a].count) || (a < b ? -1 : 1); });
    var body = document.querySelector("#routes tbody");
    var rows = [];
    names.forEach(function (name) {
      var a = w1[name] || { rps: 0, count: 0, errors: 0, client_errors: 0 }, b = w5[name];
      var tr = document.createElement("tr");
      tr.setAttribute("data-route", name);
      cell(tr, name);
      cell(tr, num(a.rps)); cell(tr, num(a.p50)); cell(tr, num(a.p95)); cell(tr, num(a.p99)); cell(tr, num(a.p999));
      cell(tr, int(a.errors), a.errors ? "bad" : ""); cell(tr, int(a.client_errors));
      cell(tr, num(b.rps)); cell(tr, num(b.p50)); cell(tr, num(b.p95)); cell(tr, num(b.p99)); cell(tr, num(b.p999));
      cell(tr, int(b.errors), b.errors ? "bad" : "");
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
  }

  function fillTable(sel, rows) {
    var body = document.querySelector(sel + " tbody");
    body.replaceChildren.apply(body, rows.map(function (r) {
      var tr = document.createElement("tr");
      r.forEach(function (c) { cell(tr, c); });
      return tr;
    }));
  }

  function render(d) {
    var w1 = d.windows["1m"], w5 = d.windows["5m"];
    set("profile", d.profile + " · " + d.role + " · pid " + d.pid);
    set("uptime", "up " + ago(d.uptime_s));
    set("api-rps-1m", num(w1.api.rps)); set("api-count-1m", int(w1.api.count)); set("api-rps-5m", num(w5.api.rps));
    set("api-error-rate-1m", pct(w1.api.error_rate)); set("api-error-rate-5m", pct(w5.api.error_rate));
    set("api-client-errors-1m", int(w1.api.client_errors));
    set("api-p50-1m", num(w1.api.p50)); set("api-p99-1m", num(w1.api.p99)); set("api-p999-1m", num(w1.api.p999));
    set("fanout-p50-1m", num(w1.fanout.p50)); set("fanout-p99-1m", num(w1.fanout.p99));
    set("fanout-rate-1m", num(w1.fanout.rate));
    var total = 0, parts = [], dead = 0, known = false;
    Object.keys(d.consumers).sort().forEach(function (name) {
      var c = d.consumers[name];
      if (c.behind !== null && c.behind !== undefined) { total += c.behind; known = true; }
      dead += c.dead_lettered || 0;
      parts.push(name + " " + int(c.behind));
    });
    set("lag-total", known ? int(total) : "–"); set("lag-detail", parts.join(" · "));
    Object.keys(d.consumers).forEach(function (name) { set("lag-" + name, int(d.consumers[name].behind)); });
    set("outbox-unrelayed", d.outbox_unrelayed === null ? "n/a" : int(d.outbox_unrelayed));
    set("dead-lettered", int(dead));
    set("timeline-hit-ratio", pct(d.timeline_cache.hit_ratio));
    set("timeline-hit-ratio-1m", pct(d.timeline_cache.hit_ratio_1m));
    set("rebuilds", int(d.timeline_cache.rebuilds));
    set("in-flight", int(d.in_flight));
    set("post-hit-ratio", d.post_cache ? pct(d.post_cache.hit_ratio) : "n/a");

    var s = d.series;
    // axis labels: as many decimals as the chart's scale needs
    function axis(v, max) { return num(v, max >= 20 ? 0 : max >= 2 ? 1 : 2); }
    chart($("chart-rps"), s.t, [s.rps], axis);
    chart($("chart-latency"), s.t, [s.p50_ms, s.p99_ms], axis);
    chart($("chart-errors"), s.t, [s.error_rate], function (v, max) { return (v * 100).toFixed(max > 0.2 ? 0 : 1) + "%"; });
    chart($("chart-fanout"), s.t, [s.fanout_p99_ms], axis);
    var names = Object.keys(d.samples.lag).sort();
    chart($("chart-lag"), d.samples.t, names.map(function (n) { return d.samples.lag[n]; }), axis);
    var legend = $("lag-legend");
    var colors = ["var(--accent)", "var(--accent2)", "var(--good)", "#c58cff"];
    legend.replaceChildren.apply(legend, names.map(function (n, i) {
      var span = document.createElement("span"), dot = document.createElement("i");
      dot.style.background = colors[i % 4];
      span.appendChild(dot); span.appendChild(document.createTextNode(n));
      return span;
    }));

    fillRoutes(d);
    fillTable("#fanout", [["1 min", w1.fanout], ["5 min", w5.fanout]].map(function (r) {
      var f = r[1];
      return [r[0], int(f.count), num(f.p50), num(f.p95), num(f.p99), num(f.p999)];
    }));
    fillTable("#consumers", Object.keys(d.consumers).sort().map(function (n) {
      var c = d.consumers[n];
      return [n, int(c.behind), c.running ? "yes" : "no", int(c.failures), int(c.dead_lettered)];
    }));
    var rows = [
      ["home timeline reads", int(d.timeline_cache.home_reads)],
      ["timeline rebuilds (home)", int(d.timeline_cache.rebuilds)],
      ["author list rebuilds", int(d.timeline_cache.author_rebuilds)],
      ["pages continued from the database", int(d.timeline_cache.db_pages)],
      ["ids pushed by fan-out here", int(d.timeline_cache.pushes)]
    ];
    if (d.post_cache) { rows.push(["post cache hit ratio (1 min)", pct(d.post_cache.hit_ratio_1m)]); }
    Object.keys(d.sizes).sort().forEach(function (k) { rows.push(["size: " + k.replace(/_/g, " "), int(d.sizes[k])]); });
    if (d.relay) { rows.push(["relay: events relayed here", int(d.relay.relayed)], ["relay: leader", d.relay.leader ? "yes" : "no"]); }
    fillTable("#stores", rows);
    var errs = Object.keys(d.errors || {}).map(function (k) { return k + ": " + d.errors[k]; });
    set("errors", errs.length ? "not answering: " + errs.join("; ") : "");
  }

  var failures = 0;
  function poll() {
    fetch("metrics.json", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (d) {
      failures = 0;
      render(d);
      $("conn").className = "ok";
      set("status", "live · updated " + new Date(d.time * 1000).toLocaleTimeString());
      document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
    }).catch(function (e) {
      failures += 1;
      $("conn").className = "bad";
      set("status", "no answer from the server (" + (e && e.message ? e.message : e) + "); retrying");
    }).then(function () {
      setTimeout(poll, failures ? Math.min(POLL_MS * (failures + 1), 15000) : POLL_MS);
    });
  }
  poll();
})();
</script>
</body>
</html>
"""
